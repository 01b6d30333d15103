package nftables

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/modes/modetest"
	"github.com/svcsim/svcsim/sim/state"
)

// TestLongestNames: a Service whose namespace, name and port name are the
// longest the API server allows (63-character labels with inner '-') gives
// comments within nft's 128 characters (the kernel refuses longer ones:
// "comment too long") and chain names within its 256.
func TestLongestNames(t *testing.T) {
	st := longestNames(t)
	fake := knftables.NewFake(knftables.IPv4Family, tableName)
	if err := New(fake, Config{Node: "node1"}).Sync(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	dump := fake.Dump()
	comments := regexp.MustCompile(`comment "([^"]*)"`).FindAllStringSubmatch(dump, -1)
	if len(comments) == 0 {
		t.Fatal("no comments in the dump")
	}
	for _, m := range comments {
		if len(m[1]) > 128 { // nft's limit
			t.Errorf("comment of %d characters: %q", len(m[1]), m[1])
		}
	}
	for _, m := range regexp.MustCompile(`add chain ip kube-proxy (\S+)`).FindAllStringSubmatch(dump, -1) {
		if len(m[1]) > 255 {
			t.Errorf("chain name of %d characters: %q", len(m[1]), m[1])
		}
	}
}

// TestKernelLongestNames programs the same state into a real kernel, in a
// namespace of its own: nft accepts every comment and chain name (a
// 191-character comment made it refuse the transaction). Needs root.
func TestKernelLongestNames(t *testing.T) {
	privtest.RequireRoot(t)
	hostRulesetUnchanged(t)
	ns := privtest.NS(t, "node")
	ctx := context.Background()
	st := longestNames(t)
	var p *Proxier
	inNS(t, ns, func() error {
		var err error
		p, err = NewKernel(Config{Node: "node1"})
		return err
	})
	t.Cleanup(func() { _ = ns.Do(func() error { return p.Cleanup(ctx) }) })
	inNS(t, ns, func() error { return p.Sync(ctx, st) })
	if ruleset := nft(t, ns, "list", "ruleset"); !strings.Contains(ruleset, "n-n-n-n") {
		t.Fatalf("the long names are not in the ruleset:\n%s", ruleset)
	}
}

// longestNames is a state with a Service whose namespace, name and port
// names are 63-character labels with inner '-': one port without
// endpoints (its element carries a comment), one with.
func longestNames(t *testing.T) *state.NodeState {
	t.Helper()
	label := func(c string) string { return c + strings.Repeat("-"+c, 31) } // 63 characters
	sp := state.ServicePort{Namespace: label("n"), Name: label("s"), PortName: label("p"), Protocol: state.TCP,
		ClusterIP: netip.MustParseAddr("10.96.0.20"), Port: 80, NodePort: 30080}
	withEps := sp
	withEps.PortName = label("q")
	withEps.Port = 81
	withEps.NodePort = 30081
	withEps.Endpoints = []state.Endpoint{{IP: netip.MustParseAddr("10.244.1.2"), Port: 8080, Ready: true, Node: "node1"}}
	st := modetest.NodeState(sp, withEps)
	if err := st.Validate(); err != nil {
		t.Fatal(err)
	}
	return st
}
