package nftables

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"
)

// tracer walks a packet through the rules of a fake table, hook by hook, the
// way netfilter would, and reports every way it can end: the numgen vmap
// forks the walk once per endpoint. It understands exactly the rule pieces
// this package writes and fails the test on anything else, so a new kind of
// rule cannot slip past it unmodelled. (A model drifts from the kernel: the
// privileged tests send real packets through the same rules.)
type tracer struct {
	t     *testing.T
	fake  *knftables.Fake
	local map[netip.Addr]bool // addresses "fib daddr type local" matches
	// learned holds addresses added to dynamic sets by committed outcomes.
	learned map[string]map[netip.Addr]bool
}

func newTracer(t *testing.T, fake *knftables.Fake, localAddrs ...string) *tracer {
	tr := &tracer{t: t, fake: fake, local: map[netip.Addr]bool{addr("127.0.0.1"): true}, learned: map[string]map[netip.Addr]bool{}}
	for _, a := range localAddrs {
		tr.local[addr(a)] = true
	}
	return tr
}

// pkt is the state of one walk.
type pkt struct {
	src, dst netip.Addr
	proto    string // "tcp" / "udp"
	dport    int
	mark     bool
	masq     bool
	dnat     bool
	updates  []string // "set addr" recorded by update statements
}

// outcome is how one walk ended.
type outcome struct {
	Verdict string // "accept", "drop", "reject"
	Dest    string // destination after DNAT, "ip:port"
	DNAT    bool
	Masq    bool
	Path    string // "input", "forward" or "output"
	updates []string
}

func (o outcome) String() string {
	s := o.Verdict
	if o.Verdict == "accept" {
		s = o.Dest
		if o.Masq {
			s += " masq"
		}
	}
	return s
}

// result of running a chain on one walk: verdict "" means the walk continues
// after the chain (it fell off its end or returned).
type result struct {
	p       pkt
	verdict string
}

// fromOutside traces a packet arriving on an interface (from a pod or from
// the underlay): prerouting, routing, then input or forward (+postrouting).
func (tr *tracer) fromOutside(src, proto, dst string, dport int) []outcome {
	start := pkt{src: addr(src), dst: addr(dst), proto: proto, dport: dport}
	var outs []outcome
	for _, r := range tr.hook(start, natPreroutingChain) {
		if r.verdict == "drop" || r.verdict == "reject" {
			outs = append(outs, tr.end(r, ""))
			continue
		}
		if tr.local[r.p.dst] {
			for _, r2 := range tr.hook(r.p, filterInputChain) {
				outs = append(outs, tr.end(r2, "input"))
			}
			continue
		}
		for _, r2 := range tr.hook(r.p, filterForwardChain) {
			if r2.verdict == "drop" || r2.verdict == "reject" {
				outs = append(outs, tr.end(r2, "forward"))
				continue
			}
			for _, r3 := range tr.hook(r2.p, natPostroutingChain) {
				outs = append(outs, tr.end(r3, "forward"))
			}
		}
	}
	return tr.sorted(outs)
}

// fromNode traces a packet sent by a process of the node: output hook (filter
// before, NAT, filter after DNAT), then postrouting.
func (tr *tracer) fromNode(src, proto, dst string, dport int) []outcome {
	start := pkt{src: addr(src), dst: addr(dst), proto: proto, dport: dport}
	var outs []outcome
	for _, r := range tr.hook(start, filterOutputChain, natOutputChain, filterOutputPostDNATChain) {
		if r.verdict == "drop" || r.verdict == "reject" {
			outs = append(outs, tr.end(r, "output"))
			continue
		}
		for _, r2 := range tr.hook(r.p, natPostroutingChain) {
			outs = append(outs, tr.end(r2, "output"))
		}
	}
	return tr.sorted(outs)
}

// hook runs base chains in priority order; a drop/reject ends the walk.
func (tr *tracer) hook(p pkt, chains ...string) []result {
	walks := []result{{p: p}}
	for _, c := range chains {
		var next []result
		for _, w := range walks {
			if w.verdict == "drop" || w.verdict == "reject" {
				next = append(next, w)
				continue
			}
			for _, r := range tr.chain(c, w.p, 0) {
				if r.verdict != "drop" && r.verdict != "reject" {
					r.verdict = "" // accept ends this chain only
				}
				next = append(next, r)
			}
		}
		walks = next
	}
	return walks
}

func (tr *tracer) end(r result, path string) outcome {
	v := r.verdict
	if v == "" {
		v = "accept"
	}
	return outcome{Verdict: v, Dest: fmt.Sprintf("%s:%d", r.p.dst, r.p.dport), DNAT: r.p.dnat,
		Masq: r.p.masq, Path: path, updates: r.p.updates}
}

func (tr *tracer) sorted(outs []outcome) []outcome {
	sort.Slice(outs, func(i, j int) bool { return outs[i].String() < outs[j].String() })
	return outs
}

// commit makes the affinity updates of o visible to later traces, as if the
// random choice had picked o's endpoint.
func (tr *tracer) commit(o outcome) {
	for _, u := range o.updates {
		set, a, _ := strings.Cut(u, " ")
		if tr.learned[set] == nil {
			tr.learned[set] = map[netip.Addr]bool{}
		}
		tr.learned[set][addr(a)] = true
	}
}

// The rule pieces this package writes, each anchored at the start of what is
// left of a rule.
var (
	reCtNew       = regexp.MustCompile(`^ct state new`)
	reDestVmap    = regexp.MustCompile(`^ip daddr \. meta l4proto \. th dport vmap @(\S+)`)
	rePortVmap    = regexp.MustCompile(`^meta l4proto \. th dport vmap @(\S+)`)
	reFibLocal    = regexp.MustCompile(`^fib daddr type local`)
	reAddrSet     = regexp.MustCompile(`^ip (saddr|daddr) (!= )?@(\S+)`)
	reAddrAnon    = regexp.MustCompile(`^ip (saddr|daddr) (!= )?\{ ([^}]*) \}`)
	reAddr        = regexp.MustCompile(`^ip (saddr|daddr) (!= )?([0-9./]+)`)
	rePort        = regexp.MustCompile(`^(tcp|udp) dport (\d+)`)
	reNumgen      = regexp.MustCompile(`^numgen random mod (\d+) vmap \{ (.*) \}`)
	reNumgenEntry = regexp.MustCompile(`^(\d+) : (goto|jump) (\S+)$`)
	reUpdate      = regexp.MustCompile(`^update @(\S+) \{ ip saddr \}`)
	reMarkOr      = regexp.MustCompile(`^mark set mark or ` + masqMark)
	reMarkXor     = regexp.MustCompile(`^mark set mark xor ` + masqMark)
	reMarkZero    = regexp.MustCompile(`^mark and ` + masqMark + ` == 0`)
	reMasquerade  = regexp.MustCompile(`^masquerade fully-random`)
	reDNAT        = regexp.MustCompile(`^meta l4proto (tcp|udp) dnat to (\S+)`)
	reJump        = regexp.MustCompile(`^(jump|goto) (\S+)`)
	reVerdict     = regexp.MustCompile(`^(return|accept|drop|reject)`)
)

// chain runs the rules of one chain on p and returns every way it ends.
func (tr *tracer) chain(name string, p pkt, depth int) []result {
	tr.t.Helper()
	if depth > 16 {
		tr.t.Fatalf("chain recursion too deep at %s", name)
	}
	ch := tr.fake.Table.Chains[name]
	if ch == nil {
		tr.t.Fatalf("trace reached missing chain %q", name)
	}
	walks := []pkt{p}
	var done []result
	for _, rule := range ch.Rules {
		var next []pkt
		for _, w := range walks {
			for _, r := range tr.rule(rule.Rule, w, depth) {
				if r.verdict == "" {
					next = append(next, r.p) // rule did not end the chain
				} else {
					done = append(done, r)
				}
			}
		}
		walks = next
		if len(walks) == 0 {
			break
		}
	}
	for _, w := range walks {
		done = append(done, result{p: w}) // fell off the end
	}
	// "return" ends this chain like falling off its end.
	for i := range done {
		if done[i].verdict == "return" {
			done[i].verdict = ""
		}
	}
	return done
}

// rule evaluates one rule. A result with verdict "" continues in the chain;
// "return" returns from the chain; others are final.
func (tr *tracer) rule(rule string, p pkt, depth int) []result {
	tr.t.Helper()
	rest := rule
	for {
		rest = strings.TrimSpace(rest)
		if rest == "" {
			return []result{{p: p}}
		}
		var m []string
		match := func(re *regexp.Regexp) bool {
			m = re.FindStringSubmatch(rest)
			if m != nil {
				rest = rest[len(m[0]):]
			}
			return m != nil
		}
		switch {
		case match(reCtNew):
			// Traces are of first packets: always new.
		case match(reDestVmap):
			v := tr.lookupMap(m[1], p.dst.String(), p.proto, strconv.Itoa(p.dport))
			if v == "" {
				return []result{{p: p}}
			}
			return tr.verdict(v, p, depth)
		case match(rePortVmap):
			v := tr.lookupMap(m[1], p.proto, strconv.Itoa(p.dport))
			if v == "" {
				return []result{{p: p}}
			}
			return tr.verdict(v, p, depth)
		case match(reFibLocal):
			if !tr.local[p.dst] {
				return []result{{p: p}}
			}
		case match(reAddrSet):
			a := p.src
			if m[1] == "daddr" {
				a = p.dst
			}
			if tr.inSet(m[3], a) == (m[2] != "") {
				return []result{{p: p}}
			}
		case match(reAddrAnon):
			a := p.src
			if m[1] == "daddr" {
				a = p.dst
			}
			in := false
			for _, s := range strings.Split(m[3], ",") {
				in = in || tr.addrMatches(a, strings.TrimSpace(s))
			}
			if in == (m[2] != "") {
				return []result{{p: p}}
			}
		case match(reAddr):
			a := p.src
			if m[1] == "daddr" {
				a = p.dst
			}
			if tr.addrMatches(a, m[3]) == (m[2] != "") {
				return []result{{p: p}}
			}
		case match(rePort):
			if p.proto != m[1] || strconv.Itoa(p.dport) != m[2] {
				return []result{{p: p}}
			}
		case match(reNumgen):
			n, _ := strconv.Atoi(m[1])
			entries := strings.Split(m[2], " , ")
			if len(entries) != n {
				tr.t.Errorf("numgen mod %d with %d entries: %s", n, len(entries), rule)
			}
			var out []result
			for i, e := range entries {
				em := reNumgenEntry.FindStringSubmatch(e)
				if em == nil || em[1] != strconv.Itoa(i) {
					tr.t.Fatalf("bad numgen entry %q in %s", e, rule)
				}
				out = append(out, tr.verdict(em[2]+" "+em[3], p, depth)...)
			}
			return out
		case match(reUpdate):
			p.updates = append(append([]string(nil), p.updates...), m[1]+" "+p.src.String())
		case match(reMarkOr):
			p.mark = true
		case match(reMarkXor):
			p.mark = !p.mark
		case match(reMarkZero):
			if p.mark {
				return []result{{p: p}}
			}
		case match(reMasquerade):
			p.masq = true
			return []result{{p: p, verdict: "accept"}}
		case match(reDNAT):
			if m[1] != p.proto {
				return []result{{p: p}}
			}
			ap := netip.MustParseAddrPort(m[2])
			p.dst, p.dport, p.dnat = ap.Addr(), int(ap.Port()), true
			return []result{{p: p, verdict: "accept"}}
		case match(reJump):
			if strings.TrimSpace(rest) != "" {
				tr.t.Fatalf("text after verdict in %q", rule)
			}
			return tr.verdict(m[1]+" "+m[2], p, depth)
		case match(reVerdict):
			return []result{{p: p, verdict: m[1]}}
		default:
			tr.t.Fatalf("tracer does not understand %q (in rule %q)", rest, rule)
		}
	}
}

// verdict applies "jump X", "goto X", or a plain verdict.
func (tr *tracer) verdict(v string, p pkt, depth int) []result {
	kind, target, _ := strings.Cut(v, " ")
	switch kind {
	case "jump":
		// Walks that come back continue after the jumping rule.
		return tr.chain(target, p, depth+1)
	case "goto":
		// Coming back from a goto returns from the current chain.
		out := tr.chain(target, p, depth+1)
		for i := range out {
			if out[i].verdict == "" {
				out[i].verdict = "return"
			}
		}
		return out
	case "drop", "reject", "accept", "return":
		return []result{{p: p, verdict: kind}}
	}
	tr.t.Fatalf("unknown verdict %q", v)
	return nil
}

func (tr *tracer) lookupMap(name string, key ...string) string {
	m := tr.fake.Table.Maps[name]
	if m == nil {
		tr.t.Fatalf("trace reached missing map %q", name)
	}
	if e := m.FindElement(key...); e != nil {
		return strings.Join(e.Value, " . ")
	}
	return ""
}

func (tr *tracer) inSet(name string, a netip.Addr) bool {
	s := tr.fake.Table.Sets[name]
	if s == nil {
		tr.t.Fatalf("trace reached missing set %q", name)
	}
	return s.FindElement(a.String()) != nil || tr.learned[name][a]
}

func (tr *tracer) addrMatches(a netip.Addr, spec string) bool {
	if strings.Contains(spec, "/") {
		return netip.MustParsePrefix(spec).Contains(a)
	}
	return netip.MustParseAddr(spec) == a
}
