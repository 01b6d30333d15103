package ipvs

import (
	"net/netip"
	"slices"

	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/iptrestore/ruleset"
)

// Chains and the mark of the iptables part of IPVS mode (kube-proxy's names:
// the modes are exclusive on a node).
const (
	chainServices     = "KUBE-SERVICES"
	chainPostrouting  = "KUBE-POSTROUTING"
	chainNodePort     = "KUBE-NODE-PORT"
	chainMarkMasq     = "KUBE-MARK-MASQ"
	chainForward      = "KUBE-FORWARD"
	chainIPVSFilter   = "KUBE-IPVS-FILTER"
	chainLoadBalancer = "KUBE-LOAD-BALANCER"

	masqMark = "0x4000"
)

// ourChains per table, in creation order.
var ourChains = map[string][]string{
	"nat":    {chainServices, chainPostrouting, chainNodePort, chainMarkMasq, chainLoadBalancer},
	"filter": {chainForward, chainIPVSFilter},
}

// jumps are inserted at the top of the built-in chains when missing.
var jumps = []iptrestore.Jump{
	{Table: "nat", From: "PREROUTING", To: chainServices, Comment: "kubernetes service portals"},
	{Table: "nat", From: "OUTPUT", To: chainServices, Comment: "kubernetes service portals"},
	{Table: "nat", From: "POSTROUTING", To: chainPostrouting, Comment: "kubernetes postrouting rules"},
	{Table: "filter", From: "FORWARD", To: chainForward, Comment: "kubernetes forwarding rules"},
	{Table: "filter", From: "INPUT", To: chainIPVSFilter, Comment: "kubernetes ipvs access filter"},
}

// ownsChain reports whether chain is one of IPVS mode's.
func ownsChain(chain string) bool {
	for _, cs := range ourChains {
		if slices.Contains(cs, chain) {
			return true
		}
	}
	return false
}

// buildRules returns the iptables-restore text of IPVS mode for a node whose
// pods are in clusterCIDR, followed per table by what makes the jumps from
// built-in chains exist exactly once in the saved tables (none when saved is
// nil; all when a table is missing from saved). The rules only
// reference ipsets, so they do not change with Services: a sync rewrites them
// only when this text changes.
//
//   - nat KUBE-SERVICES: traffic to a ClusterIP from outside the pod network,
//     to an external IP, or to a NodePort is marked for masquerading.
//   - nat KUBE-POSTROUTING: hairpin (a pod reaching itself through a
//     Service, KUBE-LOOP-BACK) and marked traffic are masqueraded.
//   - filter KUBE-FORWARD: marked and established traffic is forwarded.
//   - nat KUBE-LOAD-BALANCER: load-balancer IP traffic is masqueraded but
//     under externalTrafficPolicy Local (KUBE-LOAD-BALANCER-LOCAL); the
//     local sets of external IPs and NodePorts skip masquerading likewise,
//     so backends see the client's address.
//   - filter KUBE-IPVS-FILTER: load-balancer IPs with source ranges drop
//     other sources (KUBE-LOAD-BALANCER-FW, -SOURCE-CIDR); new connections to a service address on a
//     port that is not a Service are rejected instead of reaching the node.
func buildRules(clusterCIDR netip.Prefix, saved map[string]*ruleset.Table) []byte {
	var w iptrestore.LineBuffer
	w.Write("*nat")
	for _, c := range ourChains["nat"] {
		w.Write(":" + c + " - [0:0]")
	}
	if clusterCIDR.IsValid() {
		w.Write("-A", chainServices, "-m comment --comment", `"cluster IP from outside the pod network"`,
			"-m set --match-set", setClusterIP, "dst,dst", "!", "-s", clusterCIDR.String(), "-j", chainMarkMasq)
	}
	w.Write("-A", chainServices, "-m set --match-set", setClusterIP, "dst,dst", "-j ACCEPT")
	w.Write("-A", chainServices, "-m comment --comment", `"external IP with externalTrafficPolicy Local: not masqueraded"`,
		"-m set --match-set", setExternalIPLocal, "dst,dst", "-j ACCEPT")
	w.Write("-A", chainServices, "-m comment --comment", `"external IP"`,
		"-m set --match-set", setExternalIP, "dst,dst", "-j", chainMarkMasq)
	w.Write("-A", chainServices, "-m set --match-set", setExternalIP, "dst,dst", "-j ACCEPT")
	w.Write("-A", chainServices, "-m comment --comment", `"load balancer IP"`,
		"-m set --match-set", setLoadBalancer, "dst,dst", "-j", chainLoadBalancer)
	w.Write("-A", chainServices, "-m set --match-set", setLoadBalancer, "dst,dst", "-j ACCEPT")
	w.Write("-A", chainServices, "-m addrtype --dst-type LOCAL", "-j", chainNodePort)
	w.Write("-A", chainLoadBalancer, "-m set --match-set", setLoadBalancerLocal, "dst,dst", "-j RETURN")
	w.Write("-A", chainLoadBalancer, "-j", chainMarkMasq)
	w.Write("-A", chainNodePort, "-p tcp", "-m set --match-set", setNodePortLocalTCP, "dst", "-j RETURN")
	w.Write("-A", chainNodePort, "-p udp", "-m set --match-set", setNodePortLocalUDP, "dst", "-j RETURN")
	w.Write("-A", chainNodePort, "-p tcp", "-m set --match-set", setNodePortTCP, "dst", "-j", chainMarkMasq)
	w.Write("-A", chainNodePort, "-p udp", "-m set --match-set", setNodePortUDP, "dst", "-j", chainMarkMasq)
	w.Write("-A", chainMarkMasq, "-j MARK --or-mark", masqMark)
	w.Write("-A", chainPostrouting, "-m comment --comment", `"hairpin: endpoint reached by itself"`,
		"-m set --match-set", setLoopBack, "dst,dst,src", "-j MASQUERADE")
	w.Write("-A", chainPostrouting, "-m mark ! --mark", masqMark+"/"+masqMark, "-j RETURN")
	w.Write("-A", chainPostrouting, "-j MARK --xor-mark", masqMark)
	w.Write("-A", chainPostrouting, "-m comment --comment", `"kubernetes service traffic requiring SNAT"`, "-j MASQUERADE")
	if saved != nil {
		iptrestore.WriteJumps(&w, "nat", saved["nat"], jumps)
	}
	w.Write("COMMIT")

	w.Write("*filter")
	for _, c := range ourChains["filter"] {
		w.Write(":" + c + " - [0:0]")
	}
	w.Write("-A", chainForward, "-m mark --mark", masqMark+"/"+masqMark, "-j ACCEPT")
	w.Write("-A", chainForward, "-m conntrack --ctstate RELATED,ESTABLISHED", "-j ACCEPT")
	w.Write("-A", chainIPVSFilter, "-m comment --comment", `"load balancer source ranges"`,
		"-m set --match-set", setLoadBalancerFW, "dst,dst", "-m set ! --match-set", setLoadBalancerCIDR, "dst,dst,src", "-j DROP")
	w.Write("-A", chainIPVSFilter, "-m set --match-set", setClusterIP, "dst,dst", "-j RETURN")
	w.Write("-A", chainIPVSFilter, "-m set --match-set", setLoadBalancer, "dst,dst", "-j RETURN")
	w.Write("-A", chainIPVSFilter, "-m set --match-set", setExternalIP, "dst,dst", "-j RETURN")
	w.Write("-A", chainIPVSFilter, "-m conntrack --ctstate NEW", "-m set --match-set", setIPVSIPs, "dst", "-j REJECT")
	if saved != nil {
		iptrestore.WriteJumps(&w, "filter", saved["filter"], jumps)
	}
	w.Write("COMMIT")
	return w.Bytes()
}
