package iptables_test

import (
	"strings"
	"testing"

	"github.com/svcsim/svcsim/modes/iptrestore/ruleset"
)

// TestLongestNames: a Service whose namespace, name and port name are the
// longest the API server allows (63-character labels with inner '-')
// programs rules the restore parser accepts, every comment within the
// kernel's 256 bytes (xt_comment) and every chain name within 28 characters
// (iptables' limit): chain names are hashed, never taken from a name.
func TestLongestNames(t *testing.T) {
	label := func(c string) string { return c + strings.Repeat("-"+c, 31) } // 63 characters
	p, fake := newFakeProxier(t)
	st := makeState(
		makeService(label("n"), label("s"), "10.96.0.20", 80, withPortName(label("p")), withNodePort(30080),
			withEndpoints("10.244.1.2:8080@node1", "10.244.2.3:8080@node2"), withAffinity(0)),
		makeService(label("n"), label("s"), "10.96.0.20", 81, withPortName(label("q")), withNodePort(30081)),
	)
	mustSync(t, p, st)
	rs, err := ruleset.Parse([]byte(fake.Dump()))
	if err != nil {
		t.Fatal(err)
	}
	comments := 0
	for _, tbl := range rs.Tables {
		for _, name := range tbl.ChainNames() {
			if len(name) > 28 {
				t.Errorf("chain name %q has %d characters", name, len(name))
			}
			for _, r := range tbl.Chain(name).Rules {
				for i, a := range r.Args {
					if a == "--comment" && i+1 < len(r.Args) {
						comments++
						if c := r.Args[i+1]; len(c) > 255 {
							t.Errorf("comment of %d bytes: %q", len(c), c)
						}
					}
				}
			}
		}
	}
	if comments == 0 {
		t.Fatal("no comments in the rules")
	}
}
