// Package iptrestore writes iptables rules the way kube-proxy does, through
// iptables-save/iptables-restore of the host's default backend, behind a tiny
// Interface with an in-memory Fake that applies the same restore text.
// Commands run in the network namespace of the calling thread.
package iptrestore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
)

// Interface is what the IPVS proxy mode needs from iptables.
type Interface interface {
	// Save returns `iptables-save -t table`.
	Save(ctx context.Context, table string) ([]byte, error)
	// Restore applies data with `iptables-restore -w --noflush`: chains
	// declared with ":NAME - [0:0]" are created or flushed, other chains
	// are kept; each table's block is applied atomically at COMMIT.
	Restore(ctx context.Context, data []byte) error
}

// Exec implements Interface with the iptables binaries on $PATH.
type Exec struct{}

var _ Interface = Exec{}

// Save implements Interface.
func (Exec) Save(ctx context.Context, table string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "iptables-save", "-t", table)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("iptables-save -t %s: %w: %s", table, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Restore implements Interface.
func (Exec) Restore(ctx context.Context, data []byte) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "iptables-restore", "-w", "--noflush")
	cmd.Stdin = bytes.NewReader(data)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iptables-restore: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

// builtinChains of the tables the fake knows.
var builtinChains = map[string][]string{
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
}

// targets that are not chains.
var standardTargets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "REJECT": true, "MASQUERADE": true,
	"MARK": true, "DNAT": true, "SNAT": true, "LOG": true, "CONNMARK": true,
}

// Fake models iptables-restore --noflush over an in-memory ruleset: it checks
// that chains exist, jump targets exist, deleted rules exist and deleted
// chains are empty and unreferenced; a failing table block changes nothing.
type Fake struct {
	mu       sync.Mutex
	tables   map[string]*table
	Restores int // Restore calls
	Saves    int // Save calls
}

type table struct {
	order []string            // user chains in creation order
	rules map[string][]string // chain -> rule specs (text after "-A CHAIN ")
}

var _ Interface = (*Fake)(nil)

// NewFake returns a Fake holding the empty nat and filter tables.
func NewFake() *Fake {
	f := &Fake{tables: map[string]*table{}}
	for name, chains := range builtinChains {
		t := &table{rules: map[string][]string{}}
		for _, c := range chains {
			t.rules[c] = nil
		}
		f.tables[name] = t
	}
	return f
}

func (t *table) clone() *table {
	c := &table{order: append([]string(nil), t.order...), rules: map[string][]string{}}
	for k, v := range t.rules {
		c.rules[k] = append([]string(nil), v...)
	}
	return c
}

func isBuiltin(tbl, chain string) bool {
	for _, c := range builtinChains[tbl] {
		if c == chain {
			return true
		}
	}
	return false
}

// Restore implements Interface.
func (f *Fake) Restore(_ context.Context, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Restores++
	var (
		name string
		cur  *table
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		fail := func(err error) error { return fmt.Errorf("iptables-restore line %d %q: %w", n, line, err) }
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			name = line[1:]
			t, ok := f.tables[name]
			if !ok {
				return fail(errors.New("unknown table"))
			}
			cur = t.clone()
		case cur == nil:
			return fail(errors.New("rule outside a table"))
		case line == "COMMIT":
			if err := cur.check(name); err != nil {
				return fail(err)
			}
			f.tables[name], cur = cur, nil
		case strings.HasPrefix(line, ":"):
			chain := strings.Fields(line[1:])[0]
			if isBuiltin(name, chain) {
				continue // policy line: with --noflush the rules stay
			}
			if _, ok := cur.rules[chain]; !ok {
				cur.order = append(cur.order, chain)
			}
			cur.rules[chain] = nil
		default:
			if err := cur.apply(name, line); err != nil {
				return fail(err)
			}
		}
	}
	if cur != nil {
		return fmt.Errorf("iptables-restore: table %s without COMMIT", name)
	}
	return nil
}

func (t *table) apply(tbl, line string) error {
	op, rest, _ := strings.Cut(line, " ")
	chain, spec, _ := strings.Cut(rest, " ")
	if _, ok := t.rules[chain]; !ok {
		return fmt.Errorf("chain %s does not exist", chain)
	}
	switch op {
	case "-A":
		t.rules[chain] = append(t.rules[chain], spec)
	case "-I":
		t.rules[chain] = append([]string{spec}, t.rules[chain]...)
	case "-D":
		for i, r := range t.rules[chain] {
			if r == spec {
				t.rules[chain] = append(t.rules[chain][:i], t.rules[chain][i+1:]...)
				return nil
			}
		}
		return errors.New("rule to delete does not exist")
	case "-F":
		t.rules[chain] = nil
	case "-X":
		if isBuiltin(tbl, chain) {
			return errors.New("cannot delete a built-in chain")
		}
		if len(t.rules[chain]) > 0 {
			return fmt.Errorf("chain %s is not empty", chain)
		}
		for c, rules := range t.rules {
			for _, r := range rules {
				if target(r) == chain {
					return fmt.Errorf("chain %s is referenced by %s", chain, c)
				}
			}
		}
		delete(t.rules, chain)
		for i, c := range t.order {
			if c == chain {
				t.order = append(t.order[:i], t.order[i+1:]...)
				break
			}
		}
	default:
		return fmt.Errorf("unsupported command %s", op)
	}
	return nil
}

// check verifies that every jump goes to an existing chain.
func (t *table) check(tbl string) error {
	for c, rules := range t.rules {
		for _, r := range rules {
			tg := target(r)
			if tg == "" || standardTargets[tg] {
				continue
			}
			if _, ok := t.rules[tg]; !ok || isBuiltin(tbl, tg) {
				return fmt.Errorf("rule in %s jumps to missing chain %s", c, tg)
			}
		}
	}
	return nil
}

// target returns the word after the last "-j" of a rule spec.
func target(spec string) string {
	w := strings.Fields(spec)
	for i := len(w) - 2; i >= 0; i-- {
		if w[i] == "-j" {
			return w[i+1]
		}
	}
	return ""
}

// Save implements Interface in iptables-save's layout.
func (f *Fake) Save(_ context.Context, name string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Saves++
	t, ok := f.tables[name]
	if !ok {
		return nil, fmt.Errorf("iptables-save: unknown table %s", name)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%s\n", name)
	for _, c := range builtinChains[name] {
		fmt.Fprintf(&b, ":%s ACCEPT [0:0]\n", c)
	}
	user := append([]string(nil), t.order...)
	sort.Strings(user)
	for _, c := range user {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, c := range append(append([]string(nil), builtinChains[name]...), user...) {
		for _, r := range t.rules[c] {
			fmt.Fprintf(&b, "-A %s %s\n", c, r)
		}
	}
	b.WriteString("COMMIT\n")
	return b.Bytes(), nil
}
