package cluster

import (
	"regexp"
	"slices"
	"strings"
)

// The plane's Dump shows what kube-proxy programmed for the cluster's own
// objects: the barrier Service (svcsim-system/barrier), which the plane
// renames on every WaitProgrammed, is left out, so that two dumps with no
// change between them are equal, as they are on the embedded plane. The
// barrier itself reads the unfiltered dump.

// barrierID is how kube-proxy names the barrier's Service in its rules:
// "svcsim-system/barrier:b7" in iptables comments,
// "svcsim-system/barrier/tcp/b7" in nftables chain names.
const barrierID = BarrierNamespace + "/" + barrierName

// iptablesView keeps of an iptables-save text what kube-proxy wrote, as
// svcsim's own iptables datapath dumps it: the table headers and COMMITs,
// the KUBE-* chains and their rules and the rules jumping to them. It drops
// iptables-save's "# Generated on <time>" comments and the packet
// counters of the built-in chains, which change with every dump, and every
// line of the barrier: its rules (kube-proxy comments each with the
// Service's name) and the declarations of chains holding only such rules
// (its KUBE-SVC-* and KUBE-SEP-* chains, whose hashed names change with its
// port name).
func iptablesView(save string) string {
	lines := strings.Split(save, "\n")
	barrierRules := map[string]int{} // chain -> barrier rules in it
	otherRules := map[string]int{}
	for _, l := range lines {
		chain, ok := appendedChain(l)
		if !ok {
			continue
		}
		if isBarrierRule(l) {
			barrierRules[chain]++
		} else {
			otherRules[chain]++
		}
	}
	var b strings.Builder
	for _, l := range lines {
		keep := false
		switch {
		case strings.HasPrefix(l, "*"), l == "COMMIT":
			keep = true
		case strings.HasPrefix(l, ":KUBE-"):
			chain, _, _ := strings.Cut(l[1:], " ")
			keep = barrierRules[chain] == 0 || otherRules[chain] > 0
		case strings.HasPrefix(l, "-A "):
			chain, _ := appendedChain(l)
			keep = (strings.HasPrefix(chain, "KUBE-") || strings.Contains(l, " -j KUBE-")) && !isBarrierRule(l)
		}
		if keep {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// appendedChain is the chain of an "-A CHAIN ..." line.
func appendedChain(l string) (string, bool) {
	rest, ok := strings.CutPrefix(l, "-A ")
	if !ok {
		return "", false
	}
	chain, _, _ := strings.Cut(rest, " ")
	return chain, true
}

// isBarrierRule: kube-proxy's comment on the rule names the barrier
// Service ("svcsim-system/barrier:b7 cluster IP", "... -> 198.18.0.2:9").
func isBarrierRule(l string) bool {
	return strings.Contains(l, `--comment "`+barrierID+":") || strings.Contains(l, `--comment `+barrierID+":")
}

// nftChainHeader matches "\tchain NAME {" in `nft list table` output.
var nftChainHeader = regexp.MustCompile(`^\s*chain (\S+) \{$`)

// nftablesView is `nft list table ip kube-proxy` without the barrier: its
// chains (kube-proxy names them after the Service port,
// "service-<hash>-svcsim-system/barrier/tcp/b7", also the emptied ones it
// deletes a sync later) and its elements in sets and maps (the ones naming
// those chains, and its ClusterIP, barrierIP, when known). Element lists
// are printed one element per line in sorted order (nft packs short
// elements several to a line, in hash order, which changes when an element
// is added or removed): a set has no order, and the same elements print
// the same.
func nftablesView(list, barrierIP string) string {
	lines := strings.Split(strings.TrimSuffix(list, "\n"), "\n")
	var out []string
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := nftChainHeader.FindStringSubmatch(l); m != nil && strings.Contains(m[1], barrierID+"/") {
			indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
			for i < len(lines) && lines[i] != indent+"}" {
				i++
			}
			// the blank line nft prints between chains
			if i+1 < len(lines) && strings.TrimSpace(lines[i+1]) == "" {
				i++
			}
			continue
		}
		if prefix, rest, ok := strings.Cut(l, "elements = { "); ok && strings.TrimSpace(prefix) == "" {
			body := rest
			for !strings.HasSuffix(strings.TrimRight(body, " "), "}") && i+1 < len(lines) {
				i++
				body += " " + strings.TrimSpace(lines[i])
			}
			body = strings.TrimSuffix(strings.TrimRight(body, " "), "}")
			var elems []string
			for _, e := range splitElements(body) {
				if strings.Contains(e, barrierID+"/") || (barrierIP != "" && hasToken(e, barrierIP)) {
					continue
				}
				elems = append(elems, e)
			}
			if len(elems) == 0 {
				continue // nft prints no elements line for an empty set
			}
			slices.Sort(elems)
			cont := alignTo(prefix + "elements = { ")
			out = append(out, prefix+"elements = { "+strings.Join(elems, ",\n"+cont)+" }")
			continue
		}
		out = append(out, l)
	}
	// A chain left out may have been the last one: drop a blank line before
	// a closing brace or another blank line, as nft prints none there.
	kept := out[:0]
	for i, l := range out {
		if strings.TrimSpace(l) == "" && i+1 < len(out) && (strings.TrimSpace(out[i+1]) == "" || strings.TrimSpace(out[i+1]) == "}") {
			continue
		}
		kept = append(kept, l)
	}
	return strings.Join(kept, "\n") + "\n"
}

// splitElements splits a set's element list at the commas between
// elements (not those inside a quoted comment or a nested {...}).
func splitElements(body string) []string {
	var elems []string
	depth, quoted, start := 0, false, 0
	for i, r := range body {
		switch {
		case r == '"':
			quoted = !quoted
		case quoted:
		case r == '{':
			depth++
		case r == '}':
			depth--
		case r == ',' && depth == 0:
			elems = append(elems, strings.TrimSpace(body[start:i]))
			start = i + 1
		}
	}
	if e := strings.TrimSpace(body[start:]); e != "" {
		elems = append(elems, e)
	}
	return elems
}

// hasToken reports whether word appears in s delimited by spaces or the
// string's ends ("10.96.0.9" in "10.96.0.9 . tcp . 9", not in "10.96.0.90").
func hasToken(s, word string) bool {
	for _, f := range strings.Fields(s) {
		if f == word {
			return true
		}
	}
	return false
}

// alignTo is the whitespace nft indents continuation lines with: tabs
// (eight columns each) and spaces up to the column where s ends.
func alignTo(s string) string {
	col := 0
	for _, r := range s {
		if r == '\t' {
			col += 8 - col%8
		} else {
			col++
		}
	}
	return strings.Repeat("\t", col/8) + strings.Repeat(" ", col%8)
}

// withoutBarrierLines is a line-per-rule dump (svcsim's userspace proxy:
// its KUBE-PORTALS rules, commented with the Service port, and its
// listeners, "svcsim-system/barrier:b7/TCP ...") without the lines naming
// the barrier.
func withoutBarrierLines(dump string) string {
	var b strings.Builder
	for l := range strings.Lines(dump) {
		if !strings.Contains(l, barrierID+":") {
			b.WriteString(l)
		}
	}
	return b.String()
}
