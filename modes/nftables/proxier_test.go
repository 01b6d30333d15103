package nftables

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/sim/state"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden compares the table built by one (full) sync with reviewed golden
// dumps, one per representative service.
func TestGolden(t *testing.T) {
	cases := []struct {
		name string
		svcs []state.ServicePort
	}{
		{"no-services", nil},
		{"clusterip-3-endpoints", []state.ServicePort{getipService()}},
		{"nodeport-myhttp-v2", []state.ServicePort{myhttpV2Service()}},
		{"clientip-affinity", []state.ServicePort{stickyService()}},
		{"no-endpoints", []state.ServicePort{emptyService()}},
		{"multi-port", multiServices()},
		{"udp", []state.ServicePort{dnsService()}},
		{"selectorless-external", []state.ServicePort{externalService()}},
		{"external-ips", []state.ServicePort{makeService("default", "extip", "10.96.0.80", 80,
			func(sp *state.ServicePort) {
				sp.ExternalIPs = []netip.Addr{addr("198.18.0.200"), addr("2001:db8::1")}
			},
			withEndpoints(ep("10.244.2.8", 80, "node2")))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, fake := newFakeProxier(Config{})
			st := syncOK(t, p, makeState(tc.svcs...))
			if !st.Full {
				t.Errorf("first sync was not full: %+v", st)
			}
			got := fake.Dump()
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if got != string(want) {
				t.Errorf("dump differs from %s:\n%s", path, lineDiff(string(want), got))
			}
			// A dump must load back into a fake (valid references).
			if err := knftables.NewFake(knftables.IPv4Family, tableName).ParseDump(got); err != nil {
				t.Errorf("dump does not parse back: %v", err)
			}
		})
	}
}

// lineDiff lists the lines only in want (-) or only in got (+).
func lineDiff(want, got string) string {
	inWant := map[string]int{}
	for _, l := range strings.Split(want, "\n") {
		inWant[l]++
	}
	var b strings.Builder
	for _, l := range strings.Split(got, "\n") {
		if inWant[l] > 0 {
			inWant[l]--
			continue
		}
		fmt.Fprintf(&b, "+ %s\n", l)
	}
	for _, l := range strings.Split(want, "\n") {
		if inWant[l] > 0 {
			inWant[l]--
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	if b.Len() == 0 {
		return "(same lines, different order)"
	}
	return b.String()
}

func TestChainNames(t *testing.T) {
	sp := getipService()
	svc := servicePrefix + serviceBase(&sp)
	if !strings.HasPrefix(svc, "service-") || !strings.HasSuffix(svc, "-default/getip-service/tcp/") {
		t.Errorf("service chain name %q", svc)
	}
	epc := endpointPrefix + endpointBase(&sp, sp.Endpoints[0])
	if !strings.HasSuffix(epc, "-default/getip-service/tcp/__10.244.1.3/8080") {
		t.Errorf("endpoint chain name %q", epc)
	}
	// Two endpoints differing in one digit differ in their hash prefix.
	a, b := endpointBase(&sp, ep("10.244.1.3", 80, "")), endpointBase(&sp, ep("10.244.1.4", 80, ""))
	if a[:8] == b[:8] {
		t.Errorf("hash prefixes equal: %q %q", a, b)
	}
	long := makeService(strings.Repeat("n", 63), strings.Repeat("s", 63), "10.96.0.1", 80, withPortName(strings.Repeat("p", 63)))
	name := endpointPrefix + endpointBase(&long, ep("10.244.1.3", 65535, ""))
	if len(name) > knftables.NameLengthMax || !strings.HasSuffix(name, "...") && len(name) > knftables.NameLengthMax-maxPrefixLen+len(endpointPrefix) {
		t.Errorf("long name not truncated: %d %q", len(name), name)
	}
}

func TestRegistered(t *testing.T) {
	if !contains(modes.Names(), ModeName) {
		t.Fatalf("mode %q not registered: %v", ModeName, modes.Names())
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestIdempotent: a second sync of the same state runs no transaction and
// leaves the same table.
func TestIdempotent(t *testing.T) {
	p, fake := newFakeProxier(Config{})
	st := makeState(allServices()...)
	syncOK(t, p, st)
	before, tx := fake.Dump(), fake.LastTransaction
	// An equal state built afresh, not the same pointer.
	stats := syncOK(t, p, makeState(allServices()...))
	if stats.Full || stats.Ops != 0 || stats.Changed != 0 {
		t.Errorf("second sync did work: %+v", stats)
	}
	if fake.LastTransaction != tx {
		t.Errorf("second sync ran a transaction:\n%s", fake.LastTransaction)
	}
	if after := fake.Dump(); after != before {
		t.Errorf("table changed:\n%s", lineDiff(before, after))
	}
	// A full sync of the same state rebuilds to the same table.
	p.ForceFullSync()
	stats = syncOK(t, p, st)
	if !stats.Full || stats.Ops == 0 {
		t.Errorf("requested full sync: %+v", stats)
	}
	if after := canonical(fake.Dump()); after != canonical(before) {
		t.Errorf("full resync changed the table:\n%s", lineDiff(canonical(before), after))
	}
}

// TestPartialSyncOneEndpoint: replacing one endpoint of one service rewrites
// only that service's chains, and the result equals a full sync of the new
// state.
func TestPartialSyncOneEndpoint(t *testing.T) {
	p, fake := newFakeProxier(Config{})
	syncOK(t, p, makeState(allServices()...))

	svcs := allServices()
	svcs[0].Endpoints[2] = ep("10.244.2.9", 8080, "node2") // getip-service: 10.244.2.4 -> 10.244.2.9
	st := makeState(svcs...)
	stats := syncOK(t, p, st)
	if stats.Full || stats.Changed != 1 || stats.Removed != 1 {
		t.Errorf("stats %+v, want partial, 1 changed, 1 removed", stats)
	}
	// add+flush of 4 chains (service + 3 endpoints), flush of the stale
	// endpoint chain, 2 service rules + 3x2 endpoint rules, delete of the
	// stale chain; the service-ips element is unchanged.
	if want := 4*2 + 1 + 2 + 3*2 + 1; stats.Ops != want {
		t.Errorf("ops = %d, want %d:\n%s", stats.Ops, want, fake.LastTransaction)
	}
	sp := getipService()
	base := serviceBase(&sp)[:8]
	for _, line := range strings.Split(strings.TrimSpace(fake.LastTransaction.String()), "\n") {
		if !strings.Contains(line, "default/getip-service/") {
			t.Errorf("transaction touches another service: %s", line)
		}
	}
	if !strings.Contains(fake.LastTransaction.String(), "delete chain ip kube-proxy endpoint-") {
		t.Errorf("stale endpoint chain not deleted:\n%s", fake.LastTransaction)
	}
	if got, want := canonical(fake.Dump()), fullDump(t, st); got != want {
		t.Errorf("partial sync result differs from a full sync (service %s):\n%s", base, lineDiff(want, got))
	}
}

// TestPartialSyncTransitions walks services through additions, removals and
// the transitions that move elements between maps, checking after every
// partial sync that the table equals the one a full sync builds.
func TestPartialSyncTransitions(t *testing.T) {
	steps := []struct {
		name   string
		mutate func([]state.ServicePort) []state.ServicePort
	}{
		{"endpoints to none", func(s []state.ServicePort) []state.ServicePort {
			s[0].Endpoints = nil
			return s
		}},
		{"none to endpoints", func(s []state.ServicePort) []state.ServicePort {
			s[3].Endpoints = []state.Endpoint{ep("10.244.1.9", 80, "node1")}
			return s
		}},
		{"remove service", func(s []state.ServicePort) []state.ServicePort { return s[1:] }},
		{"affinity timeout", func(s []state.ServicePort) []state.ServicePort {
			s[2].AffinityTimeout = 30
			return s
		}},
		{"affinity off", func(s []state.ServicePort) []state.ServicePort {
			s[2].SessionAffinity = false
			return s
		}},
		{"nodeport added", func(s []state.ServicePort) []state.ServicePort {
			s[0].NodePort = 30099
			return s
		}},
		{"nodeport removed", func(s []state.ServicePort) []state.ServicePort {
			s[1].NodePort = 0
			return s
		}},
		{"add service", func(s []state.ServicePort) []state.ServicePort {
			return append(s, makeService("ns2", "new", "10.96.1.1", 81, withEndpoints(ep("10.244.2.20", 81, "node2"))))
		}},
		{"remove one multi port", func(s []state.ServicePort) []state.ServicePort {
			return s[:len(s)-1] // keeps the shared ClusterIP in cluster-ips
		}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			p, fake := newFakeProxier(Config{})
			syncOK(t, p, makeState(allServices()...))
			st := makeState(step.mutate(allServices())...)
			stats := syncOK(t, p, st)
			if stats.Full {
				t.Errorf("sync was full")
			}
			if got, want := canonical(fake.Dump()), fullDump(t, st); got != want {
				t.Errorf("partial != full:\n%s\ntransaction:\n%s", lineDiff(want, got), fake.LastTransaction)
			}
		})
	}
}

// TestPartialSyncRandom applies a bounded random walk of changes; after each
// partial sync the table must equal a fresh full sync of the same state.
func TestPartialSyncRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	svcs := allServices()
	p, fake := newFakeProxier(Config{})
	syncOK(t, p, makeState(svcs...))
	next := 100
	for step := 0; step < 150; step++ {
		svcs = randomChange(rng, svcs, &next)
		st := makeState(svcs...)
		if err := st.Validate(); err != nil {
			t.Fatalf("step %d: generator made an invalid state: %v", step, err)
		}
		stats := syncOK(t, p, st)
		if stats.Full {
			t.Fatalf("step %d: full sync", step)
		}
		if got, want := canonical(fake.Dump()), fullDump(t, st); got != want {
			t.Fatalf("step %d: partial != full:\n%s\ntransaction:\n%s", step, lineDiff(want, got), fake.LastTransaction)
		}
		svcs = st.Services
	}
}

// randomChange returns a copy of svcs with one random change: a service
// added or removed, an endpoint added or removed, affinity or a NodePort
// toggled. *next numbers new objects.
func randomChange(rng *rand.Rand, svcs []state.ServicePort, next *int) []state.ServicePort {
	svcs = cloneServices(svcs)
	switch op := rng.IntN(6); {
	case op == 0 && len(svcs) > 1:
		i := rng.IntN(len(svcs))
		svcs = append(svcs[:i], svcs[i+1:]...)
	case op == 1:
		*next++
		svcs = append(svcs, makeService("rnd", fmt.Sprintf("s%d", *next), fmt.Sprintf("10.96.2.%d", *next%250+1), 80))
	case op == 2 && len(svcs) > 0:
		s := &svcs[rng.IntN(len(svcs))]
		*next++
		s.Endpoints = append(s.Endpoints, ep(fmt.Sprintf("10.244.%d.%d", 1+rng.IntN(3), *next%250+1), 80, "node1"))
	case op == 3 && len(svcs) > 0:
		s := &svcs[rng.IntN(len(svcs))]
		if len(s.Endpoints) > 0 {
			i := rng.IntN(len(s.Endpoints))
			s.Endpoints = append(s.Endpoints[:i], s.Endpoints[i+1:]...)
		}
	case op == 4 && len(svcs) > 0:
		s := &svcs[rng.IntN(len(svcs))]
		s.SessionAffinity = !s.SessionAffinity
		s.AffinityTimeout = int32(10 + rng.IntN(3))
	case op == 5 && len(svcs) > 0:
		s := &svcs[rng.IntN(len(svcs))]
		if s.NodePort == 0 {
			s.NodePort = int32(31000 + rng.IntN(500))
		} else {
			s.NodePort = 0
		}
	}
	return dedupe(svcs)
}

func cloneServices(in []state.ServicePort) []state.ServicePort {
	out := make([]state.ServicePort, len(in))
	for i, s := range in {
		s.Endpoints = append([]state.Endpoint(nil), s.Endpoints...)
		out[i] = s
	}
	return out
}

// dedupe drops duplicate endpoints and NodePorts, which a real cluster never
// has.
func dedupe(in []state.ServicePort) []state.ServicePort {
	nodePorts := map[int32]bool{}
	for i := range in {
		s := &in[i]
		if s.NodePort != 0 {
			if nodePorts[s.NodePort] {
				s.NodePort = 0
			}
			nodePorts[s.NodePort] = true
		}
		seen := map[state.Endpoint]bool{}
		var eps []state.Endpoint
		for _, e := range s.Endpoints {
			k := state.Endpoint{IP: e.IP, Port: e.Port}
			if !seen[k] {
				seen[k] = true
				eps = append(eps, e)
			}
		}
		s.Endpoints = eps
	}
	return in
}

// failingNFT fails the next Run when armed.
type failingNFT struct {
	knftables.Interface
	fail bool
}

func (f *failingNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	if f.fail {
		f.fail = false
		return errors.New("injected failure")
	}
	return f.Interface.Run(ctx, tx)
}

// TestFullSyncAfterError: a failed transaction makes the next sync full, and
// that sync repairs the table.
func TestFullSyncAfterError(t *testing.T) {
	fake := knftables.NewFake(knftables.IPv4Family, tableName)
	nft := &failingNFT{Interface: fake}
	p := New(nft, Config{Node: "node1"})
	syncOK(t, p, makeState(allServices()...))

	nft.fail = true
	svcs := allServices()
	svcs[0].Endpoints = svcs[0].Endpoints[:1]
	st := makeState(svcs...)
	if err := p.Sync(context.Background(), st); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("Sync error = %v, want the injected failure", err)
	}
	stats := syncOK(t, p, st)
	if !stats.Full {
		t.Errorf("sync after an error was partial: %+v", stats)
	}
	if got, want := canonical(fake.Dump()), fullDump(t, st); got != want {
		t.Errorf("table not repaired:\n%s", lineDiff(want, got))
	}
}

func TestAlwaysFullSync(t *testing.T) {
	p, _ := newFakeProxier(Config{AlwaysFullSync: true})
	syncOK(t, p, makeState(allServices()...))
	if stats := syncOK(t, p, makeState(allServices()...)); !stats.Full || stats.Ops == 0 {
		t.Errorf("AlwaysFullSync: %+v", stats)
	}
}

// TestGlobalsChangeForcesFullSync: the cluster CIDR is in every service chain.
func TestGlobalsChangeForcesFullSync(t *testing.T) {
	p, fake := newFakeProxier(Config{})
	syncOK(t, p, makeState(allServices()...))
	st := makeState(allServices()...)
	st.ClusterCIDR = netip.MustParsePrefix("10.240.0.0/12")
	if stats := syncOK(t, p, st); !stats.Full {
		t.Errorf("cluster CIDR change synced partially: %+v", stats)
	}
	if got, want := canonical(fake.Dump()), fullDump(t, st); got != want {
		t.Errorf("table:\n%s", lineDiff(want, got))
	}
}

// TestFullSyncRemovesLeftovers: chains and affinity sets of an earlier
// process that the state does not want are deleted by the first sync.
func TestFullSyncRemovesLeftovers(t *testing.T) {
	old, oldFake := newFakeProxier(Config{})
	syncOK(t, old, makeState(allServices()...))

	fake := knftables.NewFake(knftables.IPv4Family, tableName)
	if err := fake.ParseDump(oldFake.Dump()); err != nil {
		t.Fatal(err)
	}
	p := New(fake, Config{Node: "node1"})
	st := makeState(getipService())
	syncOK(t, p, st)
	if got, want := canonical(fake.Dump()), fullDump(t, st); got != want {
		t.Errorf("leftovers remain:\n%s", lineDiff(want, got))
	}
}

func TestCleanup(t *testing.T) {
	p, fake := newFakeProxier(Config{})
	ctx := context.Background()
	if err := p.Cleanup(ctx); err != nil {
		t.Fatalf("Cleanup before any sync: %v", err)
	}
	syncOK(t, p, makeState(allServices()...))
	if err := p.Cleanup(ctx); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if d := fake.Dump(); d != "" {
		t.Errorf("table left after Cleanup:\n%s", d)
	}
	if err := p.Cleanup(ctx); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	if stats := syncOK(t, p, makeState(getipService())); !stats.Full {
		t.Errorf("sync after Cleanup was partial")
	}
	if d, err := p.Dump(ctx); err != nil || !strings.Contains(d, "getip-service") {
		t.Errorf("Dump after re-sync: %v\n%s", err, d)
	}
}

func TestSyncRejectsInvalidState(t *testing.T) {
	p, _ := newFakeProxier(Config{})
	bad := makeState(makeService("default", "v6", "fd00::1", 80))
	if err := p.Sync(context.Background(), bad); err == nil {
		t.Error("IPv6 ClusterIP accepted")
	}
	if err := p.Sync(context.Background(), nil); err == nil {
		t.Error("nil state accepted")
	}
}

// TestDuplicateEndpoint: an endpoint listed twice is programmed once.
func TestDuplicateEndpoint(t *testing.T) {
	sp := getipService()
	sp.Endpoints = append(sp.Endpoints, sp.Endpoints[0])
	p, fake := newFakeProxier(Config{})
	syncOK(t, p, makeState(sp))
	if got, want := canonical(fake.Dump()), fullDump(t, makeState(getipService())); got != want {
		t.Errorf("duplicate endpoint changed the table:\n%s", lineDiff(want, got))
	}
}

// TestCanaryRepairsFlush: the table is the canary. Gone (`nft flush
// ruleset`), Intact says so, and the full resync the node proxy then runs
// rebuilds exactly the table a fresh proxier writes for the state, elements
// included (the proxier's memory of what it applied must not stand in for
// the kernel's).
func TestCanaryRepairsFlush(t *testing.T) {
	ctx := context.Background()
	p, fake := newFakeProxier(Config{})
	if ok, err := p.Intact(ctx); err != nil || ok {
		t.Fatalf("Intact before any sync = %v, %v; want false", ok, err)
	}
	st := makeState(allServices()...)
	syncOK(t, p, st)
	if ok, err := p.Intact(ctx); err != nil || !ok {
		t.Fatalf("Intact after a sync = %v, %v; want true", ok, err)
	}
	tx := fake.NewTransaction()
	tx.Delete(&knftables.Table{})
	if err := fake.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if ok, err := p.Intact(ctx); err != nil || ok {
		t.Fatalf("Intact after the table was deleted = %v, %v; want false", ok, err)
	}
	p.ForceFullSync()
	syncOK(t, p, st)
	if got, want := canonical(fake.Dump()), fullDump(t, st); got != want {
		t.Errorf("table after the repair:\n%s\nwant a fresh proxier's:\n%s", got, want)
	}
	if ok, err := p.Intact(ctx); err != nil || !ok {
		t.Errorf("Intact after the repair = %v, %v; want true", ok, err)
	}
}
