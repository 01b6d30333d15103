// Package fakeipt is an in-memory model of the iptables nat table that
// speaks the userspace mode's Runner interface: Restore applies
// iptables-restore --noflush input atomically (checking that chains exist, that
// deleted rules exist and that deleted chains are empty and unreferenced), and
// SaveNAT prints the table the way iptables-save does.
package fakeipt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

var builtins = []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}

// NAT is a fake nat table. The zero value is an empty table, ready to use.
type NAT struct {
	mu       sync.Mutex
	chains   map[string][]string // user chain -> rule specs; builtins too
	restores [][]byte
	failNext error
}

// FailNextRestore makes the next Restore return err without applying.
func (n *NAT) FailNextRestore(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.failNext = err
}

// Restores returns the inputs of every Restore call, in order.
func (n *NAT) Restores() [][]byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.restores)
}

func (n *NAT) clone() map[string][]string {
	c := make(map[string][]string, len(n.chains)+len(builtins))
	for _, b := range builtins {
		c[b] = nil
	}
	for k, v := range n.chains {
		c[k] = slices.Clone(v)
	}
	return c
}

func isBuiltin(c string) bool { return slices.Contains(builtins, c) }

func target(spec string) string {
	i := strings.LastIndex(spec, "-j ")
	if i < 0 {
		return ""
	}
	f := strings.Fields(spec[i+3:])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// Restore implements the Runner method: `iptables-restore -w --noflush`.
func (n *NAT) Restore(_ context.Context, data []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.restores = append(n.restores, slices.Clone(data))
	if err := n.failNext; err != nil {
		n.failNext = nil
		return err
	}
	work := n.clone()
	inTable := false
	committed := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		fail := func(format string, a ...any) error {
			return fmt.Errorf("fake iptables-restore: line %d %q: %s", lineNo, line, fmt.Sprintf(format, a...))
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "*"):
			if line != "*nat" {
				return fail("only the nat table is modelled")
			}
			inTable = true
			continue
		case line == "COMMIT":
			if !inTable {
				return fail("COMMIT outside a table")
			}
			inTable, committed = false, true
			continue
		}
		if !inTable {
			return fail("rule outside a table")
		}
		if strings.HasPrefix(line, ":") {
			name := strings.Fields(line[1:])[0]
			if !isBuiltin(name) {
				work[name] = nil // create, or flush (--noflush semantics)
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return fail("bad command")
		}
		cmd, chain := f[0], f[1]
		rules, ok := work[chain]
		if !ok {
			return fail("no chain %s", chain)
		}
		rest := strings.TrimSpace(strings.TrimPrefix(line, cmd+" "+chain))
		switch cmd {
		case "-A", "-I":
			pos := len(rules)
			if cmd == "-I" {
				pos = 0
				if len(f) > 2 {
					if i, err := strconv.Atoi(f[2]); err == nil {
						if i < 1 || i > len(rules)+1 {
							return fail("bad insert position %d", i)
						}
						pos = i - 1
						rest = strings.TrimSpace(strings.TrimPrefix(rest, f[2]))
					}
				}
			}
			if t := target(rest); t != "" && strings.ToUpper(t) == t && !isTargetExt(t) {
				if _, ok := work[t]; !ok {
					return fail("jump to missing chain %s", t)
				}
			}
			work[chain] = slices.Insert(rules, pos, rest)
		case "-D":
			i := slices.Index(rules, rest)
			if i < 0 {
				return fail("no such rule in %s", chain)
			}
			work[chain] = slices.Delete(rules, i, i+1)
		case "-F":
			work[chain] = nil
		case "-X":
			if isBuiltin(chain) {
				return fail("cannot delete built-in chain")
			}
			if len(rules) > 0 {
				return fail("chain %s not empty", chain)
			}
			for c, rs := range work {
				for _, r := range rs {
					if target(r) == chain {
						return fail("chain %s referenced from %s", chain, c)
					}
				}
			}
			delete(work, chain)
		default:
			return fail("unsupported command %s", cmd)
		}
	}
	if inTable || !committed {
		return errors.New("fake iptables-restore: missing COMMIT")
	}
	n.chains = work
	return nil
}

func isTargetExt(t string) bool {
	switch t {
	case "ACCEPT", "DROP", "RETURN", "REDIRECT", "DNAT", "SNAT", "MASQUERADE", "MARK", "REJECT", "LOG":
		return true
	}
	return false
}

// SaveNAT implements the Runner method: `iptables-save -t nat`.
func (n *NAT) SaveNAT(context.Context) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return []byte(n.render()), nil
}

func (n *NAT) render() string {
	if n.chains == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, c := range builtins {
		fmt.Fprintf(&b, ":%s ACCEPT [0:0]\n", c)
	}
	var user []string
	for c := range n.chains {
		if !isBuiltin(c) {
			user = append(user, c)
		}
	}
	slices.Sort(user)
	for _, c := range user {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, c := range append(slices.Clone(builtins), user...) {
		for _, r := range n.chains[c] {
			fmt.Fprintf(&b, "-A %s %s\n", c, r)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Rules returns the rules of chain as "-A chain spec" lines.
func (n *NAT) Rules(chain string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, r := range n.chains[chain] {
		out = append(out, "-A "+chain+" "+r)
	}
	return out
}

// Chains lists the user-defined chains, sorted.
func (n *NAT) Chains() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for c := range n.chains {
		if !isBuiltin(c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

// Seed adds a rule as if another program had written it (for tests that
// check the mode leaves foreign rules alone).
func (n *NAT) Seed(chain, spec string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.chains == nil {
		n.chains = n.clone()
	}
	n.chains[chain] = append(n.chains[chain], spec)
}
