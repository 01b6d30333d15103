package nftables

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/modes/modetest"
	"github.com/svcsim/svcsim/sim/state"
)

// The tests in this file program the real kernel, each in namespaces of its
// own; they skip unless run as root.

// nft runs the nft command in ns (nil: the test process's own namespace).
func nft(tb testing.TB, ns *netns.NS, args ...string) string {
	tb.Helper()
	var out []byte
	run := func() error {
		var err error
		out, err = exec.Command("nft", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	var err error
	if ns == nil {
		err = run()
	} else {
		err = ns.Do(run)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return string(out)
}

// hostRulesetUnchanged records the ruleset of the test process's namespace
// (the host's, under sudo) and checks at the end that it is the same.
func hostRulesetUnchanged(tb testing.TB) {
	tb.Helper()
	before := nft(tb, nil, "list", "ruleset")
	tb.Cleanup(func() {
		if after := nft(tb, nil, "list", "ruleset"); after != before {
			tb.Errorf("host ruleset changed:\n%s", lineDiff(before, after))
		}
	})
}

// sortedLines normalizes `nft list` output for comparisons that must not
// depend on the order the kernel lists set elements in.
func sortedLines(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		l = strings.TrimPrefix(l, "elements = {")
		l = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(l), "}"), ",")
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// inNS runs f inside ns and fails the test on error.
func inNS(tb testing.TB, ns *netns.NS, f func() error) {
	tb.Helper()
	if err := ns.Do(f); err != nil {
		tb.Fatal(err)
	}
}

func TestKernelSyncIdempotentCleanup(t *testing.T) {
	privtest.RequireRoot(t)
	hostRulesetUnchanged(t)
	ns := privtest.NS(t, "node")
	ctx := context.Background()

	var p *Proxier
	inNS(t, ns, func() error {
		var err error
		p, err = NewKernel(Config{Node: "node1"})
		return err
	})
	t.Cleanup(func() { _ = ns.Do(func() error { return p.Cleanup(ctx) }) })

	st := makeState(allServices()...)
	inNS(t, ns, func() error { return p.Sync(ctx, st) })
	if s := p.LastSync(); !s.Full || s.Ops == 0 {
		t.Errorf("first sync: %+v", s)
	}
	ruleset := nft(t, ns, "list", "ruleset")
	if n := strings.Count(ruleset, "\ntable ") + boolInt(strings.HasPrefix(ruleset, "table ")); n != 1 ||
		!strings.HasPrefix(ruleset, "table ip kube-proxy {") {
		t.Fatalf("ruleset should hold exactly table ip kube-proxy:\n%s", ruleset)
	}
	for _, want := range []string{
		"map service-ips", "map service-nodeports", "tcp . 30080 : goto external-",
		"numgen random mod 3 vmap", "dnat to 10.244.2.4:8080", "masquerade fully-random",
		"update @affinity-", "timeout 10m", "goto reject-chain",
	} {
		if !strings.Contains(ruleset, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
	var dump string
	inNS(t, ns, func() error {
		var err error
		dump, err = p.Dump(ctx)
		return err
	})
	if dump != ruleset {
		t.Errorf("Dump differs from nft list ruleset:\n%s", lineDiff(ruleset, dump))
	}

	// Same state again: nothing to do, nothing changes.
	inNS(t, ns, func() error { return p.Sync(ctx, makeState(allServices()...)) })
	if s := p.LastSync(); s.Full || s.Ops != 0 {
		t.Errorf("second sync did work: %+v", s)
	}
	if again := nft(t, ns, "list", "ruleset"); again != ruleset {
		t.Errorf("ruleset changed by an idempotent sync:\n%s", lineDiff(ruleset, again))
	}

	// One endpoint changes: a partial sync, equal to what a full one builds.
	svcs := allServices()
	svcs[0].Endpoints[2] = ep("10.244.2.9", 8080, "node2")
	st = makeState(svcs...)
	inNS(t, ns, func() error { return p.Sync(ctx, st) })
	if s := p.LastSync(); s.Full || s.Changed != 1 {
		t.Errorf("endpoint change: %+v", s)
	}
	partial := nft(t, ns, "list", "table", "ip", "kube-proxy")
	if strings.Contains(partial, "10.244.2.4") || !strings.Contains(partial, "dnat to 10.244.2.9:8080") {
		t.Errorf("endpoint change not applied:\n%s", partial)
	}
	p.ForceFullSync()
	inNS(t, ns, func() error { return p.Sync(ctx, st) })
	if full := nft(t, ns, "list", "table", "ip", "kube-proxy"); sortedLines(full) != sortedLines(partial) {
		t.Errorf("partial and full sync differ in the kernel:\n%s", lineDiff(sortedLines(full), sortedLines(partial)))
	}

	// A new process (as after a restart) takes over the table and removes
	// what the state no longer has.
	var p2 *Proxier
	inNS(t, ns, func() error {
		var err error
		if p2, err = NewKernel(Config{Node: "node1"}); err != nil {
			return err
		}
		return p2.Sync(ctx, makeState(getipService()))
	})
	chains := nft(t, ns, "list", "chains", "ip")
	if strings.Contains(chains, "myhttp-v2-service") || !strings.Contains(chains, "getip-service") {
		t.Errorf("restart sync left stale chains or lost wanted ones:\n%s", chains)
	}
	if sets := nft(t, ns, "list", "sets", "ip"); strings.Contains(sets, "affinity-") {
		t.Errorf("stale affinity sets left:\n%s", sets)
	}

	inNS(t, ns, func() error { return p2.Cleanup(ctx) })
	if left := nft(t, ns, "list", "ruleset"); strings.TrimSpace(left) != "" {
		t.Errorf("ruleset after Cleanup:\n%s", left)
	}
	inNS(t, ns, func() error { return p2.Cleanup(ctx) }) // idempotent
	inNS(t, ns, func() error {
		d, err := p2.Dump(ctx)
		if err == nil && d != "" {
			err = fmt.Errorf("Dump without a table: %q", d)
		}
		return err
	})
}

// TestKernelPartialSyncMatchesFull walks the real kernel through random
// changes; after each partial sync, a full resync of the same state must not
// change the table (it would remove leftovers and add what is missing).
func TestKernelPartialSyncMatchesFull(t *testing.T) {
	privtest.RequireRoot(t)
	hostRulesetUnchanged(t)
	ns := privtest.NS(t, "walk")
	ctx := context.Background()
	var p *Proxier
	inNS(t, ns, func() error {
		var err error
		p, err = NewKernel(Config{Node: "node1"})
		return err
	})
	t.Cleanup(func() { _ = ns.Do(func() error { return p.Cleanup(ctx) }) })

	rng := rand.New(rand.NewPCG(3, 4))
	svcs := allServices()
	inNS(t, ns, func() error { return p.Sync(ctx, makeState(svcs...)) })
	next := 100
	for step := 0; step < 40; step++ {
		svcs = randomChange(rng, svcs, &next)
		st := makeState(svcs...)
		inNS(t, ns, func() error { return p.Sync(ctx, st) })
		if s := p.LastSync(); s.Full {
			t.Fatalf("step %d: full sync", step)
		}
		partial := nft(t, ns, "list", "table", "ip", "kube-proxy")
		p.ForceFullSync()
		inNS(t, ns, func() error { return p.Sync(ctx, st) })
		if full := nft(t, ns, "list", "table", "ip", "kube-proxy"); sortedLines(full) != sortedLines(partial) {
			t.Fatalf("step %d: full resync changed the table:\n%s", step, lineDiff(sortedLines(partial), sortedLines(full)))
		}
		svcs = st.Services
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Real traffic through the rules, in modetest.Rig's namespaces:
//
//	client 10.244.1.2 --veth-- 10.244.1.1 node 10.244.2.1 --veth-- 10.244.2.2 server
//
// The node namespace runs the proxier and forwards; the server answers every
// TCP connection with the address it sees the client as.
func TestKernelTraffic(t *testing.T) {
	privtest.RequireRoot(t)
	hostRulesetUnchanged(t)
	rig := modetest.NewRig(t)
	node, client, server := rig.Node, rig.Client, rig.Server
	modetest.ServeRemoteAddr(t, server, modetest.ServerIP+":8080")

	ctx := context.Background()
	var p *Proxier
	inNS(t, node, func() error {
		var err error
		if p, err = NewKernel(Config{Node: "node1"}); err != nil {
			return err
		}
		st := makeState(
			makeService("default", "web", "10.96.0.50", 80, withNodePort(30080), withEndpoints(ep(modetest.ServerIP, 8080, "node1"))),
			makeService("default", "empty", "10.96.0.51", 80),
		)
		// The rig's node answers NodePorts on its client-side address.
		st.NodeIPs = []netip.Addr{netip.MustParseAddr(modetest.NodeClientSideIP)}
		return p.Sync(ctx, st)
	})
	t.Cleanup(func() { _ = node.Do(func() error { return p.Cleanup(ctx) }) })

	cases := []struct {
		name   string
		from   *netns.NS
		dst    string
		wantIP string // source the server sees; "" means refused
	}{
		{"pod to ClusterIP keeps the client address", client, "10.96.0.50:80", modetest.ClientIP},
		{"NodePort is masqueraded", client, modetest.NodeClientSideIP + ":30080", modetest.NodeServerSideIP},
		// A local address outside nodeport-ips (kube-proxy's
		// --nodeport-addresses=primary) serves no NodePort.
		{"NodePort on another local address is refused", server, modetest.NodeServerSideIP + ":30080", ""},
		{"hairpin is masqueraded", server, "10.96.0.50:80", modetest.NodeServerSideIP},
		{"service without endpoints is rejected", client, "10.96.0.51:80", ""},
		{"ClusterIP port the service lacks is rejected", client, "10.96.0.50:81", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen, err := modetest.AskRemoteAddr(tc.from, tc.dst)
			if tc.wantIP == "" {
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("dial %s: %v (saw %q), want connection refused", tc.dst, err, seen)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial %s: %v", tc.dst, err)
			}
			if seen != tc.wantIP {
				t.Errorf("server saw %q, want source %s", seen, tc.wantIP)
			}
		})
	}
}

// BenchmarkEndpointChange times the sync after one endpoint of one service
// changes, with n services (2 endpoints each) present, as a partial sync and
// as a full one, on the real kernel in a private namespace. Full syncs grow
// faster than linearly: each "numgen ... vmap { ... }" rule is an anonymous
// set, and the kernel scans the table's sets to name every new one (10,000
// such rules load in ~8 s, 5,000 in ~2 s on 6.18).
func BenchmarkEndpointChange(b *testing.B) {
	privtest.RequireRoot(b)
	for _, n := range []int{100, 1000, 10000} {
		for _, full := range []bool{false, true} {
			kind := "partial"
			if full {
				kind = "full"
			}
			b.Run(fmt.Sprintf("services=%d/%s", n, kind), func(b *testing.B) {
				benchEndpointChange(b, n, full)
			})
		}
	}
}

func benchEndpointChange(b *testing.B, n int, full bool) {
	ns := privtest.NS(b, "bench")
	ctx := context.Background()
	svcs := make([]state.ServicePort, n)
	for i := range svcs {
		svcs[i] = makeService("bench", fmt.Sprintf("svc-%d", i),
			fmt.Sprintf("10.96.%d.%d", i/250, i%250+1), 80, withEndpoints(
				ep(fmt.Sprintf("10.244.%d.%d", 1+i/250%200, i%250+1), 8080, "node1"),
				ep(fmt.Sprintf("10.245.%d.%d", 1+i/250%200, i%250+1), 8080, "node2")))
	}
	// Two states that differ in one endpoint of one service.
	states := [2]*state.NodeState{makeState(svcs...), nil}
	changed := cloneServices(svcs)
	changed[n/2].Endpoints[1].IP = addr("10.246.0.1")
	states[1] = makeState(changed...)

	var ops int
	err := ns.Do(func() error {
		p, err := NewKernel(Config{Node: "bench", AlwaysFullSync: full})
		if err != nil {
			return err
		}
		defer func() { _ = p.Cleanup(ctx) }()
		if err := p.Sync(ctx, states[0]); err != nil {
			return err
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := p.Sync(ctx, states[(i+1)%2]); err != nil {
				return err
			}
			if s := p.LastSync(); s.Full != full {
				return fmt.Errorf("sync %d: full=%v, want %v", i, s.Full, full)
			}
			ops += p.LastSync().Ops
		}
		b.StopTimer()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(ops)/float64(b.N), "nftops/sync")
}
