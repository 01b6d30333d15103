package iptrestore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/svcsim/svcsim/modes/iptrestore/ruleset"
)

// SaveTables reads the named tables with `iptables-save -t <table>` and
// parses them.
func SaveTables(ctx context.Context, ipt Interface, tables ...string) (map[string]*ruleset.Table, error) {
	out := make(map[string]*ruleset.Table, len(tables))
	for _, table := range tables {
		data, err := ipt.Save(ctx, table)
		if err != nil {
			return nil, fmt.Errorf("save table %s: %w", table, err)
		}
		rs, err := ruleset.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("parse iptables-save -t %s: %w", table, err)
		}
		out[table] = rs.Table(table)
	}
	return out, nil
}

// Jump is a rule in a built-in chain that sends traffic to one of a
// datapath's own chains: `-A <From> <Match...> -m comment --comment
// <Comment> -j <To>` in table Table.
type Jump struct {
	Table, From, To, Comment string
	// Match are the words before the comment ("-m", "conntrack", ...).
	Match []string
	// Append puts a missing jump at the end of From; by default it goes
	// first (-I From 1).
	Append bool
}

// Args are the rule's words after "-A <From>", as iptables-save prints them
// (unquoted). A jump without a Comment has no comment match (kube-proxy's
// jumps to the kubelet's KUBE-FIREWALL).
func (j Jump) Args() []string {
	args := slices.Clone(j.Match)
	if j.Comment != "" {
		args = append(args, "-m", "comment", "--comment", j.Comment)
	}
	return append(args, "-j", j.To)
}

// WriteJumps writes to w the lines that leave exactly one copy of each of
// table's jumps in existing (the table as iptables-save printed it, nil
// when unknown): a missing jump is inserted (or appended), extra copies are
// deleted. Jumps of other tables are skipped, so one list serves both.
func WriteJumps(w *LineBuffer, table string, existing *ruleset.Table, jumps []Jump) {
	for _, j := range jumps {
		if j.Table != table {
			continue
		}
		args := j.Args()
		n := 0
		if existing != nil {
			if c := existing.Chain(j.From); c != nil {
				for _, r := range c.Rules {
					if slices.Equal(r.Args, args) {
						n++
					}
				}
			}
		}
		quoted := QuoteAll(args)
		switch {
		case n == 0 && j.Append:
			w.Write("-A", j.From, quoted)
		case n == 0:
			w.Write("-I", j.From, "1", quoted)
		case n > 1:
			for range n - 1 {
				w.Write("-D", j.From, quoted)
			}
		}
	}
}

// CleanupInput returns the iptables-restore --noflush input that removes,
// from each saved table, every user chain owned reports true for and every
// rule of another chain that jumps to one of them; nil when there is
// nothing to remove. Declaring an owned chain flushes it, so nothing in it
// still refers elsewhere when -X deletes it.
func CleanupInput(saved map[string]*ruleset.Table, owned func(chain string) bool) []byte {
	names := make([]string, 0, len(saved))
	for name := range saved {
		names = append(names, name)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, name := range names {
		t := saved[name]
		var mine []string
		var jumps []ruleset.Rule
		for _, c := range t.ChainNames() {
			ch := t.Chains[c]
			if !ch.Builtin && owned(c) {
				mine = append(mine, c)
				continue
			}
			for _, r := range ch.Rules {
				if owned(r.Target()) {
					jumps = append(jumps, r)
				}
			}
		}
		if len(mine) == 0 && len(jumps) == 0 {
			continue
		}
		fmt.Fprintf(&b, "*%s\n", name)
		for _, c := range mine {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, r := range jumps {
			b.WriteString("-D" + r.String()[len("-A"):] + "\n")
		}
		for _, c := range mine {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
	}
	if b.Len() == 0 {
		return nil
	}
	return b.Bytes()
}

// QuoteAll quotes each word as iptables-save prints it (ruleset.Quote).
func QuoteAll(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = ruleset.Quote(w)
	}
	return out
}
