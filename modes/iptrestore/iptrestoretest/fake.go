// Package iptrestoretest provides Fake, an in-memory iptables for tests of
// every datapath that writes iptables rules: it implements
// iptrestore.Interface on a ruleset.Ruleset, so restore input is checked the
// way iptables-restore checks it (a failure quotes the input lines around
// the bad one, as iptrestore.RestoreError does for the real tool) and Save
// prints what the kernel would hold.
package iptrestoretest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/iptrestore/ruleset"
)

var _ iptrestore.Interface = (*Fake)(nil)

// Restore is one recorded call of Fake.Restore.
type Restore struct {
	Data     []byte
	NoFlush  bool
	Counters bool
}

// Fake is an in-memory iptables backend. It is safe for concurrent use.
type Fake struct {
	mu       sync.Mutex
	rs       *ruleset.Ruleset
	restores []Restore
	saves    int
	// failNext makes the next n Restore calls fail without applying.
	failNext int
	failErr  error
	version  string
}

// NewFake returns an empty fake that reports version v ("iptables v1.8.9
// (nf_tables)" when empty).
func NewFake(v string) *Fake {
	if v == "" {
		v = "iptables v1.8.9 (nf_tables)"
	}
	return &Fake{rs: ruleset.New(), version: v}
}

// Restore applies data like `iptables-restore [--noflush] [--counters]`.
func (f *Fake) Restore(ctx context.Context, data []byte, noFlush, counters bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restores = append(f.restores, Restore{Data: slices.Clone(data), NoFlush: noFlush, Counters: counters})
	if f.failNext > 0 {
		f.failNext--
		if f.failErr != nil {
			return f.failErr
		}
		return fmt.Errorf("iptables-restore (fake): injected failure")
	}
	if err := f.rs.Restore(data, noFlush); err != nil {
		return &iptrestore.RestoreError{Cmd: "iptables-restore (fake)", Err: err, Stderr: err.Error(), Input: slices.Clone(data)}
	}
	return nil
}

// Save prints one table like `iptables-save -t table`.
func (f *Fake) Save(ctx context.Context, table string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saves++
	return f.rs.Save(table), nil
}

// Version returns the configured version line.
func (f *Fake) Version(ctx context.Context) (string, error) { return f.version, ctx.Err() }

// FailNextRestores makes the next n Restore calls fail (and change nothing).
func (f *Fake) FailNextRestores(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext, f.failErr = n, nil
}

// FailNextRestore makes the next Restore call return err (and change
// nothing), as the real tool does when the xtables lock is held.
func (f *Fake) FailNextRestore(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext, f.failErr = 1, err
}

// Rules returns the rules of a chain as iptables-save prints them
// ("-A chain ...").
func (f *Fake) Rules(table, chain string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.rs.Table(table).Chain(chain)
	if c == nil {
		return nil
	}
	out := make([]string, 0, len(c.Rules))
	for _, r := range c.Rules {
		out = append(out, r.String())
	}
	return out
}

// Chains lists the user-defined chains of a table, sorted.
func (f *Fake) Chains(table string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	t := f.rs.Table(table)
	for _, n := range t.ChainNames() {
		if !t.Chains[n].Builtin {
			out = append(out, n)
		}
	}
	return out
}

// Restores returns the recorded Restore calls, oldest first.
func (f *Fake) Restores() []Restore {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.restores)
}

// LastRestore returns the input of the latest Restore call ("" if none).
func (f *Fake) LastRestore() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.restores) == 0 {
		return ""
	}
	return string(f.restores[len(f.restores)-1].Data)
}

// Saves counts Save calls.
func (f *Fake) Saves() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saves
}

// Dump prints the nat and filter tables as iptables-save would.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.rs.Save("nat")) + string(f.rs.Save("filter"))
}

// Ruleset returns a deep copy of the current kernel state, for the tracer.
func (f *Fake) Ruleset() *ruleset.Ruleset {
	f.mu.Lock()
	defer f.mu.Unlock()
	var data []byte
	for _, t := range []string{"nat", "filter"} {
		data = append(data, f.rs.Save(t)...)
	}
	rs, err := ruleset.Parse(data)
	if err != nil {
		panic(fmt.Sprintf("iptrestoretest: re-parse own dump: %v", err)) // a bug in ruleset
	}
	return rs
}

// AddRule appends a rule outside the proxy's control (e.g. another program's
// rule that must survive syncs). It creates the chain if needed.
func (f *Fake) AddRule(table, chain string, args ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	line := (ruleset.Rule{Chain: chain, Args: args}).String()
	in := fmt.Sprintf("*%s\n", table)
	if t := f.rs.Table(table); t.Chain(chain) == nil {
		in += fmt.Sprintf(":%s - [0:0]\n", chain)
	}
	in += line + "\nCOMMIT\n"
	return f.rs.Restore([]byte(in), true)
}

// Flush empties every table as `iptables -t <table> -F` then `-X` on each
// would (or a firewall reload that restores its own empty tables): every
// rule and user chain is gone, canaries included.
func (f *Fake) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rs = ruleset.New()
}
