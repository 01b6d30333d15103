// Package rulediff compares the kernel state two proxies program for the
// same cluster state: svcsim's datapath and the genuine kube-proxy's. It
// normalises what the real tools print (`iptables-save`, `nft list table ip
// kube-proxy`, `ipvsadm -Ln`, `ipset save`) into sorted lines that mean the
// same on both sides: no counters, comments of the tools, handles or
// generation stamps; hashed chain names (KUBE-SVC-<hash>, service-<hash>-...)
// mapped to stable names; the namespace and the addresses of one cluster
// state named (Names); elements one per line and every block's lines in
// order. Lines of objects outside the compared namespace are left out. Diff
// then lists what only one side has, and Classify marks each such line with
// the known difference (Known) that explains it.
package rulediff

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Format is the tool output a dump is in.
type Format int

// The formats.
const (
	// IPTablesSave is `iptables-save` (any backend, several tables).
	IPTablesSave Format = iota + 1
	// NFT is `nft list table ...` (or `nft list ruleset`).
	NFT
	// IPVSAdm is `ipvsadm -Ln`.
	IPVSAdm
	// IPSetSave is `ipset save`.
	IPSetSave
)

// Names tells the normaliser what one cluster state calls things.
type Names struct {
	// Namespace is the compared namespace; it prints as "NS". Objects of
	// other namespaces are left out.
	Namespace string
	// Addrs name addresses ("10.96.100.20" -> "CLUSTER-IP(web)"); an
	// address prints as its name wherever it appears (also as a /32).
	Addrs map[string]string
	// Foreign are prefixes whose unnamed addresses belong to objects
	// outside the comparison (the Service and cluster CIDRs, the API
	// server's address): a line holding one is left out.
	Foreign []netip.Prefix
}

var (
	ipv4      = regexp.MustCompile(`(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(/32)?`)
	counters  = regexp.MustCompile(`\[\d+:\d+\]`)
	nfacct    = regexp.MustCompile(` -m nfacct --nfacct-name +\S+`)
	iptHashed = regexp.MustCompile(`\bKUBE-(SVC|SVL|EXT|FW|SEP)-[A-Z0-9]{16}\b`)
	nftHashed = regexp.MustCompile(`\b(service|external|endpoint|firewall|affinity)-[A-Z0-9]{8}-`)
	comment   = regexp.MustCompile(`--comment ("[^"]*"|\S+)`)
)

// Normalise returns dump's lines, normalised for names, sorted.
func Normalise(f Format, dump string, n Names) ([]string, error) {
	var lines []string
	switch f {
	case IPTablesSave:
		lines = iptables(dump)
	case NFT:
		lines = nft(dump)
	case IPVSAdm:
		lines = ipvsadm(dump)
	case IPSetSave:
		lines = ipset(dump)
	default:
		return nil, fmt.Errorf("rulediff: unknown format %d", f)
	}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if l, ok := n.rename(l); ok {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return slices.Compact(out), nil
}

// rename applies n to one line; false leaves the line out.
func (n Names) rename(l string) (string, bool) {
	if n.Namespace != "" {
		l = strings.ReplaceAll(l, n.Namespace+"/", "NS/")
	}
	if foreignRef(l) {
		return "", false
	}
	keep := true
	var b strings.Builder
	last := 0
	for _, m := range ipv4.FindAllStringSubmatchIndex(l, -1) {
		start, end := m[0], m[1]
		if start > 0 && (isDigit(l[start-1]) || l[start-1] == '.') || end < len(l) && (isDigit(l[end]) || l[end] == '.') {
			continue // part of a longer number, not an address
		}
		addr := l[m[2]:m[3]]
		repl := l[start:end]
		if name, ok := n.Addrs[addr]; ok {
			repl = name
		} else if a, err := netip.ParseAddr(addr); err == nil && (m[4] < 0 || end == len(l) || l[end] != '/') {
			for _, p := range n.Foreign {
				if p.Contains(a) {
					keep = false
				}
			}
		}
		b.WriteString(l[last:start])
		b.WriteString(repl)
		last = end
	}
	b.WriteString(l[last:])
	return b.String(), keep
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// nftPrefixes begin nftables' per-service chain names (service-NS/web/tcp/http).
var nftPrefixes = []string{"service-", "external-", "endpoint-", "firewall-", "affinity-"}

// foreignRef reports whether l names an object of another namespace
// ("kube-system/kube-dns:dns" in a comment, service-kube-system/... as an
// nftables chain) once the compared one reads "NS/".
func foreignRef(l string) bool {
	for i := 0; i < len(l); i++ {
		if l[i] != '/' {
			continue
		}
		j := i
		for j > 0 && isLabelByte(l[j-1]) {
			j--
		}
		run := l[j:i]
		if run == "" || (j > 0 && (l[j-1] == '/' || l[j-1] == '.')) {
			continue // NS/..., a path's later part, an address's prefix length
		}
		for _, p := range nftPrefixes {
			run = strings.TrimPrefix(run, p)
		}
		if run == "" || strings.HasPrefix(run, "0x") || strings.Trim(run, "0123456789") == "" {
			continue // a mark/mask, a number
		}
		return true
	}
	return false
}

func isLabelByte(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' }

// iptables normalises iptables-save text: table-qualified lines ("nat: -A
// KUBE-SERVICES ..."), the tools' comments and counters gone, nfacct
// counters dropped from rules, hashed chains named after the comment of
// the first rule that jumps to them.
func iptables(dump string) []string {
	type line struct{ table, text string }
	var ls []line
	table := ""
	for raw := range strings.Lines(dump) {
		l := strings.TrimSpace(raw)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || l == "COMMIT":
			continue
		case strings.HasPrefix(l, "*"):
			table = l[1:]
			continue
		}
		l = counters.ReplaceAllString(l, "")
		l = nfacct.ReplaceAllString(l, "")
		ls = append(ls, line{table, strings.TrimSpace(l)})
	}
	names := map[string]string{}
	for _, l := range ls {
		target := ""
		if i := strings.Index(l.text, " -j "); i >= 0 {
			target = strings.Fields(l.text[i+4:])[0]
		}
		if !iptHashed.MatchString(target) || names[target] != "" {
			continue
		}
		if m := comment.FindStringSubmatch(l.text); m != nil {
			prefix := target[:strings.LastIndex(target, "-")]
			names[target] = prefix + "<" + strings.Trim(m[1], `"`) + ">"
		}
	}
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		text := iptHashed.ReplaceAllStringFunc(l.text, func(c string) string {
			if n := names[c]; n != "" {
				return n
			}
			return c[:strings.LastIndex(c, "-")] + "<unnamed>"
		})
		out = append(out, l.table+": "+text)
	}
	return out
}

// nft normalises `nft list` text: every rule, property and element on a
// line of its own, prefixed with its block ("chain services: ...", "map
// service-ips: element ..."); hashes left out of chain names.
func nft(dump string) []string {
	var out []string
	var block string
	var inElems bool
	var elems strings.Builder
	flush := func() {
		body := strings.TrimSpace(elems.String())
		body = strings.TrimSuffix(strings.TrimPrefix(body, "{"), "}")
		for _, e := range splitElements(body) {
			out = append(out, block+": element "+e)
		}
		elems.Reset()
		inElems = false
	}
	for raw := range strings.Lines(dump) {
		l := strings.TrimSpace(raw)
		l = nftHashed.ReplaceAllString(l, "$1-")
		switch {
		case inElems:
			elems.WriteString(" " + l)
			if strings.HasSuffix(l, "}") {
				flush()
			}
		case l == "" || l == "}":
		case strings.HasPrefix(l, "table "):
		case strings.HasSuffix(l, "{") && (strings.HasPrefix(l, "chain ") || strings.HasPrefix(l, "set ") || strings.HasPrefix(l, "map ")):
			block = strings.TrimSpace(strings.TrimSuffix(l, "{"))
			out = append(out, block)
		case strings.HasPrefix(l, "elements = "):
			elems.WriteString(strings.TrimPrefix(l, "elements = "))
			inElems = true
			if strings.HasSuffix(l, "}") {
				flush()
			}
		case block == "":
			out = append(out, "table: "+l)
		default:
			out = append(out, block+": "+l)
		}
	}
	return out
}

// splitElements splits a set's element list at its top-level commas.
func splitElements(body string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range body {
		switch r {
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.Join(strings.Fields(body[start:i]), " "))
				start = i + 1
			}
		}
	}
	if rest := strings.Join(strings.Fields(body[start:]), " "); rest != "" {
		out = append(out, rest)
	}
	return out
}

// ipvsadm normalises `ipvsadm -Ln`: the header and the connection counters
// of real servers gone, each real server prefixed with its virtual server.
func ipvsadm(dump string) []string {
	var out []string
	vs := ""
	for raw := range strings.Lines(dump) {
		l := strings.Join(strings.Fields(raw), " ")
		switch {
		case l == "", strings.HasPrefix(l, "IP Virtual Server"), strings.HasPrefix(l, "Prot LocalAddress"), strings.HasPrefix(l, "-> RemoteAddress"):
		case strings.HasPrefix(l, "->"):
			f := strings.Fields(l)
			if len(f) >= 4 {
				f = f[:4] // -> addr:port forward weight
			}
			out = append(out, vs+" "+strings.Join(f, " "))
		default:
			vs = l
			out = append(out, vs)
		}
	}
	return out
}

// ipset normalises `ipset save`: create lines without their sizing
// (hashsize, maxelem, bucketsize, initval: the kernel's and the tool's
// choices), add lines as they are (sorted later).
func ipset(dump string) []string {
	var out []string
	for raw := range strings.Lines(dump) {
		f := strings.Fields(raw)
		if len(f) == 0 {
			continue
		}
		if f[0] == "create" {
			var kept []string
			for i := 0; i < len(f); i++ {
				switch f[i] {
				case "hashsize", "maxelem", "bucketsize", "initval":
					i++
					continue
				}
				kept = append(kept, f[i])
			}
			f = kept
		}
		out = append(out, strings.Join(f, " "))
	}
	return out
}

// Diff returns the lines only a has and those only b has, both sorted (a
// and b are Normalise's output).
func Diff(a, b []string) (onlyA, onlyB []string) {
	inA, inB := map[string]bool{}, map[string]bool{}
	for _, l := range a {
		inA[l] = true
	}
	for _, l := range b {
		inB[l] = true
	}
	for _, l := range a {
		if !inB[l] {
			onlyA = append(onlyA, l)
		}
	}
	for _, l := range b {
		if !inA[l] {
			onlyB = append(onlyB, l)
		}
	}
	return onlyA, onlyB
}
