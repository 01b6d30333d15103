package ipvs

import (
	"bytes"
	"net/netip"
	"strings"
)

// Chains and the mark of the iptables part of IPVS mode (kube-proxy's names:
// the modes are exclusive on a node).
const (
	chainServices    = "KUBE-SERVICES"
	chainPostrouting = "KUBE-POSTROUTING"
	chainNodePort    = "KUBE-NODE-PORT"
	chainMarkMasq    = "KUBE-MARK-MASQ"
	chainForward     = "KUBE-FORWARD"
	chainIPVSFilter  = "KUBE-IPVS-FILTER"

	masqMark = "0x4000"
)

// ourChains per table, in creation order.
var ourChains = map[string][]string{
	"nat":    {chainServices, chainPostrouting, chainNodePort, chainMarkMasq},
	"filter": {chainForward, chainIPVSFilter},
}

// jump is a rule in a built-in chain leading to one of ours.
type jump struct {
	table, from, to, comment string
}

// jumps are inserted at the top of the built-in chains when missing.
var jumps = []jump{
	{"nat", "PREROUTING", chainServices, "kubernetes service portals"},
	{"nat", "OUTPUT", chainServices, "kubernetes service portals"},
	{"nat", "POSTROUTING", chainPostrouting, "kubernetes postrouting rules"},
	{"filter", "FORWARD", chainForward, "kubernetes forwarding rules"},
	{"filter", "INPUT", chainIPVSFilter, "kubernetes ipvs access filter"},
}

func (j jump) spec() string {
	return j.from + ` -m comment --comment "` + j.comment + `" -j ` + j.to
}

// ruleWriter builds restore text line by line.
type ruleWriter struct{ b bytes.Buffer }

func (w *ruleWriter) line(words ...string) {
	w.b.WriteString(strings.Join(words, " "))
	w.b.WriteByte('\n')
}

// buildRules returns the iptables-restore text of IPVS mode for a node whose
// pods are in clusterCIDR, followed per table by the jumps listed in
// missing (from built-in chains, absent in the kernel). The rules only
// reference ipsets, so they do not change with Services: a sync rewrites them
// only when this text changes.
//
//   - nat KUBE-SERVICES: traffic to a ClusterIP from outside the pod network,
//     to an external IP, or to a NodePort is marked for masquerading.
//   - nat KUBE-POSTROUTING: hairpin (a pod reaching itself through a
//     Service, KUBE-LOOP-BACK) and marked traffic are masqueraded.
//   - filter KUBE-FORWARD: marked and established traffic is forwarded.
//   - filter KUBE-IPVS-FILTER: new connections to a service address on a
//     port that is not a Service are rejected instead of reaching the node.
func buildRules(clusterCIDR netip.Prefix, missing []jump) []byte {
	var w ruleWriter
	w.line("*nat")
	for _, c := range ourChains["nat"] {
		w.line(":" + c + " - [0:0]")
	}
	if clusterCIDR.IsValid() {
		w.line("-A", chainServices, "-m comment --comment", `"cluster IP from outside the pod network"`,
			"-m set --match-set", setClusterIP, "dst,dst", "!", "-s", clusterCIDR.String(), "-j", chainMarkMasq)
	}
	w.line("-A", chainServices, "-m set --match-set", setClusterIP, "dst,dst", "-j ACCEPT")
	w.line("-A", chainServices, "-m comment --comment", `"external IP"`,
		"-m set --match-set", setExternalIP, "dst,dst", "-j", chainMarkMasq)
	w.line("-A", chainServices, "-m set --match-set", setExternalIP, "dst,dst", "-j ACCEPT")
	w.line("-A", chainServices, "-m addrtype --dst-type LOCAL", "-j", chainNodePort)
	w.line("-A", chainNodePort, "-p tcp", "-m set --match-set", setNodePortTCP, "dst", "-j", chainMarkMasq)
	w.line("-A", chainNodePort, "-p udp", "-m set --match-set", setNodePortUDP, "dst", "-j", chainMarkMasq)
	w.line("-A", chainMarkMasq, "-j MARK --or-mark", masqMark)
	w.line("-A", chainPostrouting, "-m comment --comment", `"hairpin: endpoint reached by itself"`,
		"-m set --match-set", setLoopBack, "dst,dst,src", "-j MASQUERADE")
	w.line("-A", chainPostrouting, "-m mark ! --mark", masqMark+"/"+masqMark, "-j RETURN")
	w.line("-A", chainPostrouting, "-j MARK --xor-mark", masqMark)
	w.line("-A", chainPostrouting, "-m comment --comment", `"kubernetes service traffic requiring SNAT"`, "-j MASQUERADE")
	writeJumps(&w, "nat", missing)
	w.line("COMMIT")

	w.line("*filter")
	for _, c := range ourChains["filter"] {
		w.line(":" + c + " - [0:0]")
	}
	w.line("-A", chainForward, "-m mark --mark", masqMark+"/"+masqMark, "-j ACCEPT")
	w.line("-A", chainForward, "-m conntrack --ctstate RELATED,ESTABLISHED", "-j ACCEPT")
	w.line("-A", chainIPVSFilter, "-m set --match-set", setClusterIP, "dst,dst", "-j RETURN")
	w.line("-A", chainIPVSFilter, "-m set --match-set", setExternalIP, "dst,dst", "-j RETURN")
	w.line("-A", chainIPVSFilter, "-m conntrack --ctstate NEW", "-m set --match-set", setIPVSIPs, "dst", "-j REJECT")
	writeJumps(&w, "filter", missing)
	w.line("COMMIT")
	return w.b.Bytes()
}

func writeJumps(w *ruleWriter, table string, missing []jump) {
	for _, j := range missing {
		if j.table == table {
			w.line("-I", j.spec())
		}
	}
}

// missingJumps returns the jumps absent from the iptables-save output of
// their tables (saved maps table name to its text).
func missingJumps(saved map[string][]byte) []jump {
	var out []jump
	for _, j := range jumps {
		if findJump(saved[j.table], j) == "" {
			out = append(out, j)
		}
	}
	return out
}

// findJump returns the saved rule ("-A FROM ... -j TO") of j, or "".
func findJump(save []byte, j jump) string {
	for _, l := range strings.Split(string(save), "\n") {
		if strings.HasPrefix(l, "-A "+j.from+" ") && strings.HasSuffix(strings.TrimSpace(l), "-j "+j.to) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// cleanupRules returns restore text removing our jumps and chains from the
// saved tables, or nil when none of them is there.
func cleanupRules(saved map[string][]byte) []byte {
	var w ruleWriter
	any := false
	for _, table := range []string{"nat", "filter"} {
		save := string(saved[table])
		var dels, present []string
		for _, j := range jumps {
			if j.table != table {
				continue
			}
			// Remove every copy, not just one.
			for _, l := range strings.Split(save, "\n") {
				l = strings.TrimSpace(l)
				if strings.HasPrefix(l, "-A "+j.from+" ") && strings.HasSuffix(l, "-j "+j.to) {
					dels = append(dels, "-D"+strings.TrimPrefix(l, "-A"))
				}
			}
		}
		for _, c := range ourChains[table] {
			if strings.Contains(save, "\n:"+c+" ") || strings.HasPrefix(save, ":"+c+" ") {
				present = append(present, c)
			}
		}
		if len(dels) == 0 && len(present) == 0 {
			continue
		}
		any = true
		w.line("*" + table)
		for _, c := range present {
			w.line(":" + c + " - [0:0]") // flushes it
		}
		for _, d := range dels {
			w.line(d)
		}
		for _, c := range present {
			w.line("-X", c)
		}
		w.line("COMMIT")
	}
	if !any {
		return nil
	}
	return w.b.Bytes()
}
