// Package ruleset is an in-memory model of iptables tables: it parses
// iptables-save output and applies iptables-restore input (with or without
// --noflush) the way the kernel would, checking what iptables-restore checks
// (chains exist before rules use them, a chain is empty and unreferenced when
// deleted, a deleted rule exists), and prints the result like iptables-save.
//
// The fake iptables (package iptrestoretest) and the packet tracer (package
// tracer) are built on it, so that rule-building code can be tested without
// root. Rules are kept as the argument words they were written with; unlike
// the kernel, the model does not canonicalise them (iptables-save prints
// "-d 10.96.0.1/32 -p tcp" for "-p tcp -d 10.96.0.1"), so a rule is deleted
// only by the exact words it was added with.
package ruleset

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// builtins lists each table's built-in chains in iptables-save's order.
var builtins = map[string][]string{
	"filter":   {"INPUT", "FORWARD", "OUTPUT"},
	"nat":      {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"mangle":   {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"raw":      {"PREROUTING", "OUTPUT"},
	"security": {"INPUT", "FORWARD", "OUTPUT"},
}

// standardTargets are the targets that are not chains. A "-j X" naming
// anything else must name an existing chain of the same table.
var standardTargets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "REJECT": true, "QUEUE": true,
	"DNAT": true, "SNAT": true, "MASQUERADE": true, "REDIRECT": true,
	"MARK": true, "CONNMARK": true, "LOG": true, "NOTRACK": true, "CT": true,
}

// Rule is one rule of a chain: the words after "-A <chain>".
type Rule struct {
	Chain string
	Args  []string
}

// Target is the rule's -j (or -g) argument, or "".
func (r Rule) Target() string {
	for i := 0; i+1 < len(r.Args); i++ {
		if r.Args[i] == "-j" || r.Args[i] == "--jump" || r.Args[i] == "-g" || r.Args[i] == "--goto" {
			return r.Args[i+1]
		}
	}
	return ""
}

// String renders the rule as an iptables-save line ("-A chain ...").
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString("-A ")
	b.WriteString(r.Chain)
	for i, a := range r.Args {
		b.WriteByte(' ')
		if i > 0 && r.Args[i-1] == "--comment" {
			b.WriteString(QuoteString(a))
		} else {
			b.WriteString(Quote(a))
		}
	}
	return b.String()
}

// QuoteString returns a string argument (a comment) as iptables-save prints
// it: bare when it holds only letters, digits, '_' and '-', else in double
// quotes.
func QuoteString(w string) string {
	if w != "" && strings.Trim(w, "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") == "" {
		return w
	}
	return `"` + w + `"`
}

// Quote returns w as iptables-save prints a word: in double quotes when it
// is empty or holds a space or quote.
func Quote(w string) string {
	if w == "" || strings.ContainsAny(w, " \t\"'") {
		return `"` + w + `"`
	}
	return w
}

// Chain is a built-in or user-defined chain.
type Chain struct {
	Name    string
	Builtin bool
	// Policy is ACCEPT/DROP for built-in chains, "-" for user chains.
	Policy string
	Rules  []Rule
}

// Table is one iptables table.
type Table struct {
	Name   string
	Chains map[string]*Chain
}

func newTable(name string) *Table {
	t := &Table{Name: name, Chains: map[string]*Chain{}}
	for _, c := range builtins[name] {
		t.Chains[c] = &Chain{Name: c, Builtin: true, Policy: "ACCEPT"}
	}
	return t
}

// ChainNames lists the chains like iptables-save: built-ins in their fixed
// order, then user chains sorted by name.
func (t *Table) ChainNames() []string {
	names := slices.Clone(builtins[t.Name])
	var user []string
	for n, c := range t.Chains {
		if !c.Builtin {
			user = append(user, n)
		}
	}
	slices.Sort(user)
	return append(names, user...)
}

// Chain returns the named chain or nil.
func (t *Table) Chain(name string) *Chain { return t.Chains[name] }

func (t *Table) clone() *Table {
	n := &Table{Name: t.Name, Chains: make(map[string]*Chain, len(t.Chains))}
	for k, c := range t.Chains {
		cc := *c
		cc.Rules = slices.Clone(c.Rules)
		n.Chains[k] = &cc
	}
	return n
}

// referenced reports whether any rule of the table jumps to chain.
func (t *Table) referenced(chain string) bool {
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			if r.Target() == chain {
				return true
			}
		}
	}
	return false
}

// Ruleset is a set of tables, as the kernel of one network namespace holds
// them for one iptables backend.
type Ruleset struct {
	Tables map[string]*Table
}

// New returns an empty ruleset (tables appear, with their built-in chains,
// when first used, as they do in the kernel).
func New() *Ruleset { return &Ruleset{Tables: map[string]*Table{}} }

// Parse reads iptables-save output (or restore input) into a new Ruleset.
//
// Unlike Restore, Parse accepts "-j X" for any X, since a real table may use
// extension targets this package does not know.
func Parse(data []byte) (*Ruleset, error) {
	rs := New()
	if err := rs.restore(data, false, false); err != nil {
		return nil, err
	}
	return rs, nil
}

// Table returns the named table, creating it with its built-in chains.
func (rs *Ruleset) Table(name string) *Table {
	t, ok := rs.Tables[name]
	if !ok {
		t = newTable(name)
		rs.Tables[name] = t
	}
	return t
}

// Save prints one table like `iptables-save -t table` (without the
// timestamp comments and with zero counters).
func (rs *Ruleset) Save(table string) []byte {
	t := rs.Table(table)
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%s\n", table)
	names := t.ChainNames()
	for _, n := range names {
		fmt.Fprintf(&b, ":%s %s [0:0]\n", n, t.Chains[n].Policy)
	}
	for _, n := range names {
		for _, r := range t.Chains[n].Rules {
			b.WriteString(r.String())
			b.WriteByte('\n')
		}
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// LineError is a restore failure at one input line, like iptables-restore's
// "line N failed".
type LineError struct {
	Line int
	Text string
	Msg  string
}

func (e *LineError) Error() string {
	return fmt.Sprintf("line %d failed (%s): %s", e.Line, e.Msg, e.Text)
}

// Restore applies iptables-restore input. With noFlush false every table in
// the input is first emptied (as plain iptables-restore does); with noFlush
// true only the chains declared with ":name" lines are flushed (created if
// missing). Each table is applied atomically at its COMMIT line: a failing
// line leaves that table as it was (tables committed earlier stay changed, as
// with the real tool).
func (rs *Ruleset) Restore(data []byte, noFlush bool) error {
	return rs.restore(data, noFlush, true)
}

func (rs *Ruleset) restore(data []byte, noFlush, checkTargets bool) error {
	var cur *Table // working copy of the table being restored
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		fail := func(format string, a ...any) error {
			return &LineError{Line: lineNo, Text: line, Msg: fmt.Sprintf(format, a...)}
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		switch {
		case strings.HasPrefix(line, "*"):
			if cur != nil {
				return fail("table %s not committed", cur.Name)
			}
			name := line[1:]
			if _, ok := builtins[name]; !ok {
				return fail("unknown table %q", name)
			}
			if noFlush {
				cur = rs.Table(name).clone()
			} else {
				cur = newTable(name)
			}
			continue
		case line == "COMMIT":
			if cur == nil {
				return fail("COMMIT outside a table")
			}
			rs.Tables[cur.Name] = cur
			cur = nil
			continue
		}
		if cur == nil {
			return fail("line outside a table")
		}
		if strings.HasPrefix(line, ":") {
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return fail("bad chain line")
			}
			name, policy := f[0], f[1]
			if c, ok := cur.Chains[name]; ok {
				if c.Builtin {
					if policy != "-" {
						c.Policy = policy
					}
					if !noFlush {
						c.Rules = nil
					}
					continue
				}
				c.Rules = nil // a declared user chain is flushed
				continue
			}
			if policy != "-" {
				return fail("policy %s on user chain %s", policy, name)
			}
			if len(name) > 28 {
				return fail("chain name %s too long", name)
			}
			cur.Chains[name] = &Chain{Name: name, Policy: "-"}
			continue
		}
		words, err := Split(line)
		if err != nil {
			return fail("%v", err)
		}
		// --counters input may prefix rules with [pkts:bytes].
		if len(words) > 0 && strings.HasPrefix(words[0], "[") {
			words = words[1:]
		}
		if len(words) < 2 {
			return fail("short command")
		}
		op, chain, args := words[0], words[1], words[2:]
		c := cur.Chains[chain]
		switch op {
		case "-A", "--append", "-I", "--insert":
			if c == nil {
				return fail("chain %s does not exist", chain)
			}
			pos := len(c.Rules)
			if op == "-I" || op == "--insert" {
				pos = 0
				if len(args) > 0 {
					if n, err := strconv.Atoi(args[0]); err == nil {
						if n < 1 || n > len(c.Rules)+1 {
							return fail("index %d out of range", n)
						}
						pos = n - 1
						args = args[1:]
					}
				}
			}
			r := Rule{Chain: chain, Args: slices.Clone(args)}
			if err := checkRule(cur, r); err != nil && checkTargets {
				return fail("%v", err)
			}
			c.Rules = slices.Insert(c.Rules, pos, r)
		case "-D", "--delete":
			if c == nil {
				return fail("chain %s does not exist", chain)
			}
			if len(args) == 1 {
				if n, err := strconv.Atoi(args[0]); err == nil {
					if n < 1 || n > len(c.Rules) {
						return fail("index %d out of range", n)
					}
					c.Rules = slices.Delete(c.Rules, n-1, n)
					break
				}
			}
			i := slices.IndexFunc(c.Rules, func(r Rule) bool { return slices.Equal(r.Args, args) })
			if i < 0 {
				return fail("rule does not exist in chain %s", chain)
			}
			c.Rules = slices.Delete(c.Rules, i, i+1)
		case "-F", "--flush":
			if c == nil {
				return fail("chain %s does not exist", chain)
			}
			c.Rules = nil
		case "-N", "--new-chain":
			if c != nil {
				return fail("chain %s already exists", chain)
			}
			cur.Chains[chain] = &Chain{Name: chain, Policy: "-"}
		case "-X", "--delete-chain":
			switch {
			case c == nil:
				return fail("chain %s does not exist", chain)
			case c.Builtin:
				return fail("cannot delete built-in chain %s", chain)
			case len(c.Rules) > 0:
				return fail("chain %s is not empty", chain)
			case cur.referenced(chain):
				return fail("chain %s is still referenced", chain)
			}
			delete(cur.Chains, chain)
		default:
			return fail("unsupported command %s", op)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read restore input: %w", err)
	}
	if cur != nil {
		return &LineError{Line: lineNo, Msg: fmt.Sprintf("table %s not committed", cur.Name)}
	}
	return nil
}

func checkRule(t *Table, r Rule) error {
	tgt := r.Target()
	if tgt == "" || standardTargets[tgt] {
		return nil
	}
	if _, ok := t.Chains[tgt]; !ok {
		return fmt.Errorf("couldn't load target %s: no chain of that name", tgt)
	}
	return nil
}

// Split breaks a restore line into words; double quotes group words.
func Split(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, inQuote := false, false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case inQuote && ch == '"':
			inQuote = false
		case inQuote:
			cur.WriteByte(ch)
		case ch == '"':
			inQuote, inWord = true, true
		case ch == ' ' || ch == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
