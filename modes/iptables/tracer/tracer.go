// Package tracer follows a packet through an iptables ruleset (kube-proxy's
// packet-tracer idea, pkg/proxy/iptables tests): the nat and filter chains a
// new connection's first packet traverses, evaluating the matches the iptables
// mode writes, both as it writes them and as iptables-save prints them back.
//
// Where the kernel decides at random (-m statistic), the tracer takes both
// branches, so a Result lists every endpoint the packet can reach. ClientIP
// affinity lookups (-m recent --rcheck) miss, as for a client seen for the
// first time. A match or target the tracer does not model is an error rather
// than a guess.
//
// The model ignores interfaces, routing and conntrack beyond "this is a NEW
// connection", so flow tests built on it complement, not replace, tests with
// real traffic.
package tracer

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/svcsim/svcsim/modes/iptrestore/ruleset"
)

// Packet is the first packet of a new connection.
type Packet struct {
	Src, Dst netip.Addr
	// Proto is "tcp" or "udp".
	Proto string
	DPort uint16
	// Local is true for a packet sent by the node itself (nat/filter
	// OUTPUT), false for one arriving on an interface (PREROUTING).
	Local bool
}

func (p Packet) String() string {
	from := "arriving"
	if p.Local {
		from = "local"
	}
	return fmt.Sprintf("%s %s -> %s:%d (%s)", p.Proto, p.Src, p.Dst, p.DPort, from)
}

// Node describes the node whose ruleset is traced.
type Node struct {
	// LocalAddrs are the node's own addresses: `-m addrtype --dst-type
	// LOCAL` matches them (and 127.0.0.0/8).
	LocalAddrs []netip.Addr
}

func (n Node) isLocal(a netip.Addr) bool {
	return a.IsLoopback() || slices.Contains(n.LocalAddrs, a)
}

// Outcome is one way the packet can go.
type Outcome struct {
	// Verdict is ACCEPT, DROP or REJECT.
	Verdict string
	// DNAT is the address the packet was rewritten to; invalid if none.
	DNAT netip.AddrPort
	// Masquerade is true when POSTROUTING masqueraded the packet.
	Masquerade bool
	// Mark is the packet mark after the last chain.
	Mark uint32
	// Chains lists the chains traversed, "table/chain", in order.
	Chains []string
}

// Endpoint is DNAT as "ip:port", or "" when the packet was not rewritten.
func (o Outcome) Endpoint() string {
	if !o.DNAT.IsValid() {
		return ""
	}
	return o.DNAT.String()
}

// Result is every outcome of one packet.
type Result struct {
	Packet   Packet
	Outcomes []Outcome
}

// Endpoints lists the distinct DNAT targets of accepted outcomes, sorted.
func (r Result) Endpoints() []string {
	var out []string
	for _, o := range r.Outcomes {
		if e := o.Endpoint(); e != "" && o.Verdict == "ACCEPT" && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out
}

// Verdicts lists the distinct verdicts, sorted.
func (r Result) Verdicts() []string {
	var out []string
	for _, o := range r.Outcomes {
		if !slices.Contains(out, o.Verdict) {
			out = append(out, o.Verdict)
		}
	}
	slices.Sort(out)
	return out
}

// Masquerade reports whether every accepted outcome was masqueraded (true),
// none was (false); mixed results are an error.
func (r Result) Masquerade() (bool, error) {
	seen := map[bool]bool{}
	for _, o := range r.Outcomes {
		if o.Verdict == "ACCEPT" {
			seen[o.Masquerade] = true
		}
	}
	if len(seen) > 1 {
		return false, fmt.Errorf("%s: masqueraded on some paths only", r.Packet)
	}
	return seen[true], nil
}

// Trace follows p through rs.
func Trace(rs *ruleset.Ruleset, node Node, p Packet) (Result, error) {
	tr := &tracer{rs: rs, node: node, parsed: map[*ruleset.Rule]*rule{}}
	if p.Proto != "tcp" && p.Proto != "udp" {
		return Result{}, fmt.Errorf("trace %s: protocol must be tcp or udp", p)
	}
	start := pkt{Packet: p, dst: netip.AddrPortFrom(p.Dst, p.DPort)}
	res := Result{Packet: p}

	natHook := "PREROUTING"
	if p.Local {
		natHook = "OUTPUT"
	}
	afterNAT, err := tr.hook("nat", natHook, start)
	if err != nil {
		return res, fmt.Errorf("trace %s: %w", p, err)
	}
	for _, st := range afterNAT {
		if st.verdict != "ACCEPT" {
			res.Outcomes = append(res.Outcomes, st.outcome())
			continue
		}
		toLocal := node.isLocal(st.dst.Addr())
		// The filter hooks a packet meets after its nat hook.
		var filterHooks []string
		switch {
		case p.Local && toLocal:
			filterHooks = []string{"OUTPUT", "INPUT"}
		case p.Local:
			filterHooks = []string{"OUTPUT"}
		case toLocal:
			filterHooks = []string{"INPUT"}
		default:
			filterHooks = []string{"FORWARD"}
		}
		states := []pkt{st}
		for _, h := range filterHooks {
			var next []pkt
			for _, s := range states {
				if s.verdict != "ACCEPT" {
					next = append(next, s)
					continue
				}
				out, err := tr.hook("filter", h, s)
				if err != nil {
					return res, fmt.Errorf("trace %s: %w", p, err)
				}
				next = append(next, out...)
			}
			states = next
		}
		for _, s := range states {
			// Packets delivered from outside to a local address skip
			// POSTROUTING; everything sent out (or looped back) takes it.
			if s.verdict == "ACCEPT" && (p.Local || !toLocal) {
				out, err := tr.hook("nat", "POSTROUTING", s)
				if err != nil {
					return res, fmt.Errorf("trace %s: %w", p, err)
				}
				for _, o := range out {
					res.Outcomes = append(res.Outcomes, o.outcome())
				}
				continue
			}
			res.Outcomes = append(res.Outcomes, s.outcome())
		}
	}
	return res, nil
}

// pkt is the packet's state along one path.
type pkt struct {
	Packet
	dst     netip.AddrPort
	dnat    bool
	mark    uint32
	masq    bool
	verdict string // "" while undecided
	chains  []string
}

func (s pkt) clone() pkt {
	s.chains = slices.Clone(s.chains)
	return s
}

func (s pkt) outcome() Outcome {
	o := Outcome{Verdict: s.verdict, Masquerade: s.masq, Mark: s.mark, Chains: s.chains}
	if s.dnat {
		o.DNAT = s.dst
	}
	return o
}

type tracer struct {
	rs     *ruleset.Ruleset
	node   Node
	parsed map[*ruleset.Rule]*rule
	steps  int // chain evaluations so far, bounded by maxSteps
}

// maxSteps bounds the chain evaluations of one trace. Every statistic match
// forks the walk, so a ruleset of n such rules jumping to a chain that
// returns has 2^n paths: without a bound a hostile iptables-save (found by
// FuzzTrace) keeps the tracer busy for ever. kube-proxy's own rules take a
// few steps per endpoint.
const maxSteps = 1 << 16

// hook runs a built-in chain and applies its policy to paths that fall off
// its end.
func (tr *tracer) hook(table, chain string, s pkt) ([]pkt, error) {
	s.verdict = ""
	t, ok := tr.rs.Tables[table]
	if !ok || t.Chain(chain) == nil {
		s.verdict = "ACCEPT"
		return []pkt{s}, nil
	}
	out, err := tr.run(t, chain, 0, s, 0)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].verdict == "" {
			out[i].verdict = t.Chain(chain).Policy
		}
	}
	return out, nil
}

// run evaluates chain from rule i. Paths come back with a verdict, or with
// none when they returned from (or fell off) the chain.
func (tr *tracer) run(t *ruleset.Table, chain string, i int, s pkt, depth int) ([]pkt, error) {
	if depth > 32 {
		return nil, fmt.Errorf("chain nesting deeper than 32 at %s/%s", t.Name, chain)
	}
	if tr.steps++; tr.steps > maxSteps {
		return nil, fmt.Errorf("trace forks into more than %d chain evaluations at %s/%s", maxSteps, t.Name, chain)
	}
	c := t.Chain(chain)
	if c == nil {
		return nil, fmt.Errorf("jump to missing chain %s/%s", t.Name, chain)
	}
	if i == 0 {
		s.chains = append(s.chains, t.Name+"/"+chain)
	}
	for ; i < len(c.Rules); i++ {
		r, err := tr.rule(&c.Rules[i])
		if err != nil {
			return nil, err
		}
		m := r.matches(tr.node, s)
		if m == no {
			continue
		}
		var out []pkt
		if m == maybe { // the statistic coin: follow the miss too
			miss, err := tr.run(t, chain, i+1, s.clone(), depth)
			if err != nil {
				return nil, err
			}
			out = miss
		}
		hit, err := tr.apply(t, chain, i, r, s.clone(), depth)
		if err != nil {
			return nil, err
		}
		return append(hit, out...), nil
	}
	return []pkt{s}, nil
}

// apply runs rule i's target on a matching path and continues the chain as
// the target requires.
func (tr *tracer) apply(t *ruleset.Table, chain string, i int, r *rule, s pkt, depth int) ([]pkt, error) {
	cont := func(s pkt) ([]pkt, error) { return tr.run(t, chain, i+1, s, depth) }
	switch r.target {
	case "":
		return cont(s)
	case "ACCEPT", "DROP", "REJECT":
		s.verdict = r.target
		return []pkt{s}, nil
	case "RETURN":
		return []pkt{s}, nil
	case "DNAT":
		s.dst, s.dnat, s.verdict = r.toDest, true, "ACCEPT"
		return []pkt{s}, nil
	case "MASQUERADE":
		s.masq, s.verdict = true, "ACCEPT"
		return []pkt{s}, nil
	case "MARK":
		s.mark = (s.mark &^ r.markMask) ^ r.markValue
		return cont(s)
	}
	// A jump to a user chain: paths that come back continue here.
	sub, err := tr.run(t, r.target, 0, s, depth+1)
	if err != nil {
		return nil, err
	}
	var out []pkt
	for _, p := range sub {
		if p.verdict != "" {
			out = append(out, p)
			continue
		}
		more, err := cont(p)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

func (tr *tracer) rule(r *ruleset.Rule) (*rule, error) {
	if p, ok := tr.parsed[r]; ok {
		return p, nil
	}
	p, err := parseRule(r.Args)
	if err != nil {
		return nil, fmt.Errorf("rule %q: %w", r.String(), err)
	}
	tr.parsed[r] = p
	return p, nil
}

type tri int

const (
	no tri = iota
	yes
	maybe
)

// cond is one match of a rule.
type cond func(n Node, s pkt) tri

// rule is a parsed rule: its matches and its target.
type rule struct {
	conds     []cond
	target    string
	toDest    netip.AddrPort
	markValue uint32
	markMask  uint32
}

func (r *rule) matches(n Node, s pkt) tri {
	res := yes
	for _, c := range r.conds {
		switch c(n, s) {
		case no:
			return no
		case maybe:
			res = maybe
		}
	}
	return res
}

func boolTri(b, negate bool) tri {
	if b != negate {
		return yes
	}
	return no
}

// parseRule understands the options the iptables mode writes and the forms
// iptables-save prints them in.
func parseRule(args []string) (*rule, error) {
	r := &rule{}
	negate := false
	next := func(i *int) (string, error) {
		if *i+1 >= len(args) {
			return "", fmt.Errorf("%s needs a value", args[*i])
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "!" {
			negate = true
			continue
		}
		neg := negate
		negate = false
		switch a {
		case "-m", "--match":
			v, err := next(&i)
			if err != nil {
				return nil, err
			}
			switch v {
			case "tcp", "udp", "comment", "addrtype", "mark", "statistic", "recent", "conntrack":
			default:
				return nil, fmt.Errorf("match module %q not modelled", v)
			}
		case "--comment", "--mode", "--mask", "--name":
			if _, err := next(&i); err != nil {
				return nil, err
			}
		case "--rsource", "--reap", "--random-fully":
		case "-s", "--source", "-d", "--destination":
			v, err := next(&i)
			if err != nil {
				return nil, err
			}
			pfx, err := parsePrefix(v)
			if err != nil {
				return nil, err
			}
			src := a == "-s" || a == "--source"
			r.conds = append(r.conds, func(_ Node, s pkt) tri {
				addr := s.dst.Addr()
				if src {
					addr = s.Src
				}
				return boolTri(pfx.Contains(addr), neg)
			})
		case "-p", "--protocol":
			v, err := next(&i)
			if err != nil {
				return nil, err
			}
			r.conds = append(r.conds, func(_ Node, s pkt) tri { return boolTri(s.Proto == v, neg) })
		case "--dport", "--destination-port":
			v, err := next(&i)
			if err != nil {
				return nil, err
			}
			port, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("bad port %q", v)
			}
			r.conds = append(r.conds, func(_ Node, s pkt) tri { return boolTri(s.dst.Port() == uint16(port), neg) })
		case "--dst-type", "--src-type":
			v, err := next(&i)
			if err != nil {
				return nil, err
			}
			if v != "LOCAL" {
				return nil, fmt.Errorf("addrtype %s not modelled", v)
			}
			dst := a == "--dst-type"
			r.conds = append(r.conds, func(n Node, s pkt) tri {
				addr := s.Src
				if dst {
					addr = s.dst.Addr()
				}
				return boolTri(n.isLocal(addr), neg)
			})
		case "--mark":
			v, err := next(&i)
			if err != nil {
				return nil, err
			}
			val, mask, err := parseMark(v)
			if err != nil {
				return nil, err
			}
			r.conds = append(r.conds, func(_ Node, s pkt) tri { return boolTri(s.mark&mask == val, neg) })
		case "--probability":
			v, err := next(&i)
			if err != nil {
				return nil, err
			}
			prob, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, fmt.Errorf("bad probability %q", v)
			}
			r.conds = append(r.conds, func(Node, pkt) tri {
				switch {
				case prob >= 1:
					return yes
				case prob <= 0:
					return no
				}
				return maybe
			})
		case "--rcheck", "--update":
			// The client has no affinity entry yet.
			r.conds = append(r.conds, func(Node, pkt) tri { return boolTri(false, neg) })
		case "--set":
			// Recording the source always matches.
		case "--seconds":
			if _, err := next(&i); err != nil {
				return nil, err
			}
		case "--ctstate", "--state":
			v, err := next(&i)
			if err != nil {
				return nil, err
			}
			isNew := slices.Contains(strings.Split(v, ","), "NEW")
			r.conds = append(r.conds, func(Node, pkt) tri { return boolTri(isNew, neg) })
		case "-j", "--jump":
			v, err := next(&i)
			if err != nil {
				return nil, err
			}
			r.target = v
		case "--to-destination":
			v, err := next(&i)
			if err != nil {
				return nil, err
			}
			ap, err := netip.ParseAddrPort(v)
			if err != nil {
				return nil, fmt.Errorf("DNAT to %q not modelled (want ip:port)", v)
			}
			r.toDest = ap
		case "--or-mark", "--xor-mark", "--set-xmark", "--set-mark":
			v, err := next(&i)
			if err != nil {
				return nil, err
			}
			val, mask, err := parseMark(v)
			if err != nil {
				return nil, err
			}
			switch a {
			case "--or-mark": // mark |= v
				r.markValue, r.markMask = val, val
			case "--xor-mark": // mark ^= v
				r.markValue, r.markMask = val, 0
			case "--set-mark": // mark = (mark &^ mask) | v
				r.markValue, r.markMask = val, mask|val
			default: // --set-xmark v/m: mark = (mark &^ m) ^ v
				r.markValue, r.markMask = val, mask
			}
		case "--reject-with":
			if _, err := next(&i); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("option %q not modelled", a)
		}
	}
	return r, nil
}

func parsePrefix(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return p, fmt.Errorf("bad address %q: %w", v, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q: %w", v, err)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseMark reads "value[/mask]" (hex or decimal); the mask defaults to all
// ones.
func parseMark(v string) (val, mask uint32, err error) {
	vs, ms, hasMask := strings.Cut(v, "/")
	x, err := strconv.ParseUint(vs, 0, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("bad mark %q", v)
	}
	m := uint64(0xffffffff)
	if hasMask {
		if m, err = strconv.ParseUint(ms, 0, 32); err != nil {
			return 0, 0, fmt.Errorf("bad mark mask %q", v)
		}
	}
	return uint32(x), uint32(m), nil
}
