package iptables_test

import (
	"context"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/iptables"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/iptrestore/iptrestoretest"
	"github.com/svcsim/svcsim/sim/state"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

var _ iptrestore.Interface = (*iptrestoretest.Fake)(nil)

// kube-proxy's own tests name these chains (pkg/proxy/iptables/proxier_test.go):
// ns1/svc1:p80 TCP is KUBE-SVC-XPGD46QRK7WJZT7O, its endpoint 10.180.0.1:80
// KUBE-SEP-SXIVWICOYRO3J4NJ.
func TestChainNamesMatchKubeProxy(t *testing.T) {
	s := makeService("ns1", "svc1", "172.30.0.41", 80, withPortName("p80"), withEndpoints("10.180.0.1:80"))
	if got, want := iptables.ServiceChain(&s), "KUBE-SVC-XPGD46QRK7WJZT7O"; got != want {
		t.Errorf("ServiceChain = %s, want %s", got, want)
	}
	if got, want := iptables.ExternalChain(&s), "KUBE-EXT-XPGD46QRK7WJZT7O"; got != want {
		t.Errorf("ExternalChain = %s, want %s", got, want)
	}
	if got, want := iptables.EndpointChain(&s, s.Endpoints[0]), "KUBE-SEP-SXIVWICOYRO3J4NJ"; got != want {
		t.Errorf("EndpointChain = %s, want %s", got, want)
	}
	u := s
	u.Protocol = state.UDP
	if iptables.ServiceChain(&u) == iptables.ServiceChain(&s) {
		t.Errorf("TCP and UDP ports share chain %s", iptables.ServiceChain(&s))
	}
}

func TestRegistered(t *testing.T) {
	names := strings.Join(modes.Names(), " ")
	for _, n := range []string{"iptables", "iptables/legacy", "iptables/nft"} {
		if !strings.Contains(" "+names+" ", " "+n+" ") {
			t.Errorf("mode %q not registered (have %s)", n, names)
		}
	}
}

// The golden files hold the whole iptables-restore input of a first sync.
// Regenerate with: go test ./modes/iptables -run Golden -update
func TestGolden(t *testing.T) {
	cases := []struct {
		name string
		svcs []state.ServicePort
	}{
		{"clusterip-3-endpoints", []state.ServicePort{
			makeService("default", "getip-service", "10.96.0.20", 80,
				withEndpoints("10.244.1.5:8080@node1", "10.244.1.6:8080@node1", "10.244.2.5:8080@node2")),
		}},
		{"nodeport-myhttp-v2", []state.ServicePort{
			// The seed's myhttp-v2-service: port 8800 -> targetPort 80, nodePort 30080.
			makeService("default", "myhttp-v2-service", "10.96.0.30", 8800, withNodePort(30080),
				withEndpoints("10.244.1.7:80@node1", "10.244.2.7:80@node2")),
		}},
		{"affinity-default-timeout", []state.ServicePort{
			makeService("default", "getip-service", "10.96.0.20", 80, withAffinity(0),
				withEndpoints("10.244.1.5:8080@node1", "10.244.2.5:8080@node2")),
		}},
		{"affinity-small-timeout", []state.ServicePort{
			makeService("default", "getip-service", "10.96.0.20", 80, withAffinity(10),
				withEndpoints("10.244.1.5:8080@node1", "10.244.2.5:8080@node2")),
		}},
		{"no-endpoints", []state.ServicePort{
			makeService("default", "empty", "10.96.0.50", 80, withNodePort(30050), withExternalIPs("198.18.0.200")),
		}},
		{"multi-port", []state.ServicePort{
			makeService("default", "web", "10.96.0.70", 80, withPortName("http"),
				withEndpoints("10.244.1.5:8080@node1", "10.244.2.5:8080@node2")),
			makeService("default", "web", "10.96.0.70", 443, withPortName("https"),
				withEndpoints("10.244.1.5:8443@node1", "10.244.2.5:8443@node2")),
		}},
		{"udp-dns", []state.ServicePort{
			makeService("kube-system", "kube-dns", "10.96.0.10", 53, withPortName("dns"), withProtocol(state.UDP),
				withEndpoints("10.244.1.10:53@node1", "10.244.2.10:53@node2")),
			makeService("kube-system", "kube-dns", "10.96.0.10", 53, withPortName("dns-tcp"),
				withEndpoints("10.244.1.10:53@node1", "10.244.2.10:53@node2")),
		}},
		{"local-policies-loadbalancer", []state.ServicePort{
			// Both policies Local, a load-balancer IP with source ranges;
			// one endpoint here (node1), one on node2. And a Local
			// Service whose only endpoint is on node2: its traffic here
			// is dropped.
			makeService("default", "web", "10.96.0.80", 80, withNodePort(30080), withLocalPolicies,
				withLoadBalancer("198.18.1.5", "198.18.0.0/24"),
				withEndpoints("10.244.1.5:8080@node1", "10.244.2.5:8080@node2")),
			makeService("default", "remote", "10.96.0.81", 80, withNodePort(30081), withLocalPolicies,
				withLoadBalancer("198.18.1.6"), withEndpoints("10.244.2.6:8080@node2")),
		}},
		{"external-endpoint", []state.ServicePort{
			// A selectorless service whose Endpoints name a host outside
			// the cluster, also reachable on an external IP.
			makeService("default", "external-db", "10.96.0.60", 5432, withExternalIPs("198.18.0.201"),
				withEndpoints(externalIP+":5432")),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, fake := newFakeProxier(t)
			mustSync(t, p, makeState(tc.svcs...))
			checkGolden(t, tc.name, fake.LastRestore())
		})
	}
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("restore input differs from %s (run with -update after checking):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	count := map[string]int{}
	for l := range strings.Lines(want) {
		count[l]++
	}
	for l := range strings.Lines(got) {
		count[l]--
	}
	var b strings.Builder
	for l, n := range count {
		for ; n > 0; n-- {
			b.WriteString("- " + l)
		}
		for ; n < 0; n++ {
			b.WriteString("+ " + l)
		}
	}
	if b.Len() == 0 {
		return "(same lines, different order)\n--- want\n" + want + "--- got\n" + got
	}
	return b.String()
}

// chainsDeclared lists the per-service chains declared in restore input.
func chainsDeclared(in string) map[string]bool {
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^:(KUBE-(?:SVC|SEP|EXT)-\w+) `).FindAllStringSubmatch(in, -1) {
		out[m[1]] = true
	}
	return out
}

func TestPartialSyncWritesOnlyChangedService(t *testing.T) {
	a := makeService("default", "a", "10.96.0.21", 80, withEndpoints("10.244.1.5:8080@node1", "10.244.2.5:8080@node2"))
	b := makeService("default", "b", "10.96.0.22", 80, withNodePort(30022), withEndpoints("10.244.1.6:8080@node1"))
	c := makeService("default", "c", "10.96.0.23", 80, withAffinity(60), withEndpoints("10.244.2.6:8080@node2"))
	p, fake := newFakeProxier(t)
	mustSync(t, p, makeState(a, b, c))
	if ls := p.LastSync(); !ls.Full || ls.Rewritten != 3 {
		t.Fatalf("first sync: %+v, want full with 3 rewritten", ls)
	}

	// One endpoint of a moves.
	a2 := makeService("default", "a", "10.96.0.21", 80, withEndpoints("10.244.1.5:8080@node1", "10.244.2.9:8080@node2"))
	mustSync(t, p, makeState(a2, b, c))
	ls := p.LastSync()
	if ls.Full || ls.Rewritten != 1 || ls.StaleChains != 1 || ls.Services != 3 {
		t.Errorf("after one endpoint change: %+v, want partial, 1 rewritten, 1 stale chain", ls)
	}
	in := fake.LastRestore()
	want := map[string]bool{
		iptables.ServiceChain(&a2):                   true,
		iptables.EndpointChain(&a2, a2.Endpoints[0]): true,
		iptables.EndpointChain(&a2, a2.Endpoints[1]): true,
		iptables.EndpointChain(&a, a.Endpoints[1]):   true, // declared to be flushed, then deleted
	}
	if got := chainsDeclared(in); !mapsEqual(got, want) {
		t.Errorf("partial sync declared chains %v, want %v\n%s", keys(got), keys(want), in)
	}
	if !strings.Contains(in, "-X "+iptables.EndpointChain(&a, a.Endpoints[1])+"\n") {
		t.Errorf("partial sync does not delete the old endpoint chain:\n%s", in)
	}
	// Top-level chains are still complete: b's and c's jumps are there.
	for _, s := range []*state.ServicePort{&b, &c} {
		if !strings.Contains(in, "-j "+iptables.ServiceChain(s)+"\n") {
			t.Errorf("partial sync lost the KUBE-SERVICES jump of %s:\n%s", s.ID(), in)
		}
	}
	checkSameAsFullSync(t, fake, makeState(a2, b, c))

	// Nothing changed: only the top-level chains are written.
	mustSync(t, p, makeState(a2, b, c))
	if ls := p.LastSync(); ls.Full || ls.Rewritten != 0 || ls.StaleChains != 0 {
		t.Errorf("unchanged resync: %+v", ls)
	}
	if got := chainsDeclared(fake.LastRestore()); len(got) != 0 {
		t.Errorf("unchanged resync declared per-service chains %v", keys(got))
	}

	// A service goes away: its chains are deleted, others untouched.
	mustSync(t, p, makeState(a2, c))
	if ls := p.LastSync(); ls.Full || ls.Rewritten != 0 || ls.StaleChains != 3 {
		t.Errorf("service removal: %+v, want partial deleting SVC, EXT and SEP of b", ls)
	}
	checkSameAsFullSync(t, fake, makeState(a2, c))

	// Its last endpoint goes: the SVC chain goes, a REJECT appears.
	c0 := makeService("default", "c", "10.96.0.23", 80, withAffinity(60))
	mustSync(t, p, makeState(a2, c0))
	if !strings.Contains(fake.LastRestore(), `"default/c has no endpoints"`) {
		t.Errorf("no REJECT for c without endpoints:\n%s", fake.LastRestore())
	}
	checkSameAsFullSync(t, fake, makeState(a2, c0))
}

// checkSameAsFullSync syncs st with a fresh proxier on an empty fake and
// fails if the resulting tables differ from got's.
func checkSameAsFullSync(t *testing.T, got *iptrestoretest.Fake, st *state.NodeState) {
	t.Helper()
	p, want := newFakeProxier(t)
	mustSync(t, p, st)
	if g, w := got.Dump(), want.Dump(); g != w {
		t.Errorf("tables differ from a full sync of the same state:\n%s", lineDiff(w, g))
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestPartialSyncFallsBackToFull(t *testing.T) {
	svcs := manyServices(5, 2)
	p, fake := newFakeProxier(t)
	mustSync(t, p, makeState(svcs...))
	svcs[2].Endpoints = svcs[2].Endpoints[:1]
	fake.FailNextRestores(1)
	mustSync(t, p, makeState(svcs...))
	ls := p.LastSync()
	if !ls.Full || !ls.Fallback {
		t.Errorf("after a failed partial restore: %+v, want a full fallback", ls)
	}
	var kinds []string
	for _, r := range fake.Restores() {
		if string(r.Data) == string(iptrestore.CanaryInput()) {
			kinds = append(kinds, "canary")
		} else {
			kinds = append(kinds, "rules")
		}
	}
	// full (its canary first), the failed partial, the full fallback
	if want := []string{"canary", "rules", "rules", "canary", "rules"}; !slices.Equal(kinds, want) {
		t.Errorf("restores %v, want %v", kinds, want)
	}
}

func TestFailedSyncForcesFullSync(t *testing.T) {
	svcs := manyServices(3, 2)
	p, fake := newFakeProxier(t)
	mustSync(t, p, makeState(svcs...))
	fake.FailNextRestores(2) // partial and its fallback
	svcs[0].Endpoints = svcs[0].Endpoints[:1]
	if err := p.Sync(context.Background(), makeState(svcs...)); err == nil {
		t.Fatal("sync with failing restores succeeded")
	}
	mustSync(t, p, makeState(svcs...))
	if ls := p.LastSync(); !ls.Full || ls.Fallback {
		t.Errorf("sync after a failure: %+v, want a plain full sync", ls)
	}
}

func TestAlwaysFullSyncAndForce(t *testing.T) {
	st := makeState(manyServices(3, 2)...)
	p, _ := newFakeProxier(t, func(c *iptables.Config) { c.AlwaysFullSync = true })
	mustSync(t, p, st)
	mustSync(t, p, st)
	if ls := p.LastSync(); !ls.Full || ls.Rewritten != 3 {
		t.Errorf("AlwaysFullSync: second sync %+v", ls)
	}
	q, _ := newFakeProxier(t)
	mustSync(t, q, st)
	q.ForceFullSync()
	mustSync(t, q, st)
	if !q.LastSync().Full {
		t.Errorf("ForceFullSync: next sync was partial")
	}
	mustSync(t, q, st)
	if q.LastSync().Full {
		t.Errorf("the sync after a forced one was full too")
	}
	// A cluster CIDR change rewrites every SVC chain.
	st2 := makeState(manyServices(3, 2)...)
	st2.ClusterCIDR = netip.MustParsePrefix("10.0.0.0/8")
	mustSync(t, q, st2)
	if !q.LastSync().Full {
		t.Errorf("cluster CIDR change did a partial sync")
	}
}

func TestJumpRulesExactlyOnce(t *testing.T) {
	st := makeState(manyServices(2, 1)...)
	p, fake := newFakeProxier(t)
	// Someone else's rules, which must survive everything.
	must(t, fake.AddRule("nat", "POSTROUTING", "-s", "10.244.0.0/16", "!", "-d", "10.244.0.0/16", "-j", "MASQUERADE"))
	must(t, fake.AddRule("filter", "FORWARD", "-i", "cni0", "-j", "ACCEPT"))
	must(t, fake.AddRule("nat", "CNI-HOSTPORT", "-j", "RETURN"))
	mustSync(t, p, st)
	p.ForceFullSync()
	mustSync(t, p, st)
	// A restarted proxy finds the rules in place.
	p2, err := iptables.New(iptables.Config{Backend: iptrestore.NFT, Runner: fake})
	must(t, err)
	mustSync(t, p2, st)

	dump := fake.Dump()
	for _, rule := range []string{
		`-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
		`-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
		`-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING`,
		`-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD`,
		`-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
		`-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES`,
		`-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES`,
		`-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
		`-A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE`,
		`-A FORWARD -i cni0 -j ACCEPT`,
		`-A CNI-HOSTPORT -j RETURN`,
	} {
		if n := strings.Count(dump, rule+"\n"); n != 1 {
			t.Errorf("%d copies of %s, want 1:\n%s", n, rule, dump)
		}
	}

	// Duplicates left by someone else are reduced to one.
	must(t, fake.AddRule("nat", "PREROUTING", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"))
	p.ForceFullSync()
	mustSync(t, p, st)
	if n := strings.Count(fake.Dump(), "-A PREROUTING -m comment"); n != 1 {
		t.Errorf("%d PREROUTING jumps after dedup, want 1:\n%s", n, fake.Dump())
	}

	// Cleanup removes ours and only ours, and is idempotent.
	for range 2 {
		must(t, p.Cleanup(context.Background()))
		dump = fake.Dump()
		if strings.Contains(dump, "KUBE-") {
			t.Errorf("KUBE- left after cleanup:\n%s", dump)
		}
		for _, keep := range []string{"-A FORWARD -i cni0 -j ACCEPT", "-j MASQUERADE", "-A CNI-HOSTPORT -j RETURN"} {
			if !strings.Contains(dump, keep) {
				t.Errorf("cleanup removed %q:\n%s", keep, dump)
			}
		}
	}
	restores := len(fake.Restores())
	must(t, p.Cleanup(context.Background()))
	if len(fake.Restores()) != restores {
		t.Errorf("cleanup with nothing to do ran iptables-restore")
	}
	// After cleanup the next sync is full and puts everything back.
	mustSync(t, p, st)
	if !p.LastSync().Full || !strings.Contains(fake.Dump(), "-A PREROUTING -m comment") {
		t.Errorf("sync after cleanup: %+v\n%s", p.LastSync(), fake.Dump())
	}
}

func TestStaleChainsOfEarlierProcessDeleted(t *testing.T) {
	fake := iptrestoretest.NewFake("")
	old, err := iptables.New(iptables.Config{Backend: iptrestore.NFT, Runner: fake})
	must(t, err)
	mustSync(t, old, makeState(manyServices(4, 2)...))
	// A new process with a smaller state deletes what it does not own.
	p, err := iptables.New(iptables.Config{Backend: iptrestore.NFT, Runner: fake})
	must(t, err)
	small := makeState(manyServices(1, 2)...)
	mustSync(t, p, small)
	if ls := p.LastSync(); ls.StaleChains != 3*3 {
		t.Errorf("stale chains deleted: %d, want 9 (3 services x (SVC + 2 SEP))", ls.StaleChains)
	}
	checkSameAsFullSync(t, fake, small)
}

func TestLargeClusterDropsEndpointComments(t *testing.T) {
	svcs := manyServices(501, 2) // 1002 endpoints > 1000
	p, fake := newFakeProxier(t)
	mustSync(t, p, makeState(svcs...))
	in := fake.LastRestore()
	sep := iptables.EndpointChain(&svcs[0], svcs[0].Endpoints[0])
	if !strings.Contains(in, "-A "+sep+" -s "+svcs[0].Endpoints[0].IP.String()+" -j KUBE-MARK-MASQ\n") {
		t.Errorf("large cluster: endpoint rules still commented")
	}
	// Back under the threshold: a full sync puts the comments back.
	mustSync(t, p, makeState(svcs[:400]...))
	if ls := p.LastSync(); !ls.Full {
		t.Errorf("leaving large cluster mode did a partial sync")
	}
	if !strings.Contains(fake.LastRestore(), "-A "+sep+" -m comment --comment bench/svc-0 -s") {
		t.Errorf("comments not restored after leaving large cluster mode")
	}
}

func TestSyncRejectsInvalidState(t *testing.T) {
	p, fake := newFakeProxier(t)
	bad := makeState(makeService("default", "x", "10.96.0.1", 0))
	if err := p.Sync(context.Background(), bad); err == nil {
		t.Errorf("sync of a port-0 service succeeded")
	}
	if err := p.Sync(context.Background(), nil); err == nil {
		t.Errorf("sync of nil state succeeded")
	}
	if len(fake.Restores()) != 0 {
		t.Errorf("invalid state reached iptables-restore")
	}
}

func TestDumpFiltersToKubeChains(t *testing.T) {
	p, fake := newFakeProxier(t)
	must(t, fake.AddRule("nat", "POSTROUTING", "-j", "MASQUERADE"))
	mustSync(t, p, makeState(manyServices(1, 1)...))
	d, err := p.Dump(context.Background())
	must(t, err)
	for l := range strings.Lines(d) {
		if !strings.HasPrefix(l, "*") && l != "COMMIT\n" && !strings.Contains(l, "KUBE-") {
			t.Errorf("dump line without KUBE-: %q", l)
		}
	}
	for _, want := range []string{"*nat\n", "*filter\n", ":KUBE-SERVICES - [0:0]\n", "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"} {
		if !strings.Contains(d, want) {
			t.Errorf("dump lacks %q:\n%s", want, d)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestVersion(t *testing.T) {
	p, _ := newFakeProxier(t)
	v, err := p.Version(context.Background())
	if err != nil || v != "iptables v1.8.9 (nf_tables)" {
		t.Errorf("Version() = %q, %v", v, err)
	}
}

// TestCanaryRepairsFlush: a full sync leaves kube-proxy's canary chain in
// mangle, nat and filter; a flush of every table removes it with the rules,
// Intact says so, and the full resync the node proxy then runs brings back
// exactly the rules before the flush. Cleanup removes the canaries too.
func TestCanaryRepairsFlush(t *testing.T) {
	ctx := context.Background()
	p, fake := newFakeProxier(t)
	if ok, err := p.Intact(ctx); err != nil || ok {
		t.Fatalf("Intact before any sync = %v, %v; want false", ok, err)
	}
	st := makeState(manyServices(3, 2)...)
	mustSync(t, p, st)
	for _, table := range iptrestore.CanaryTables {
		if !slices.Contains(fake.Chains(table), iptrestore.CanaryChain) {
			t.Errorf("no %s in %s after a full sync: %v", iptrestore.CanaryChain, table, fake.Chains(table))
		}
	}
	if ok, err := p.Intact(ctx); err != nil || !ok {
		t.Fatalf("Intact after a sync = %v, %v; want true", ok, err)
	}
	before := fake.Dump()

	fake.Flush()
	if ok, err := p.Intact(ctx); err != nil || ok {
		t.Fatalf("Intact after a flush = %v, %v; want false", ok, err)
	}
	if !modes.ForceFullSync(p) {
		t.Fatal("iptables is not a FullSyncer")
	}
	mustSync(t, p, st)
	if ls := p.LastSync(); !ls.Full {
		t.Errorf("repair sync %+v, want a full one", ls)
	}
	if got := fake.Dump(); got != before {
		t.Errorf("rules after the repair differ from before the flush:\n%s\nwant\n%s", got, before)
	}
	if ok, err := p.Intact(ctx); err != nil || !ok {
		t.Errorf("Intact after the repair = %v, %v; want true", ok, err)
	}

	if err := p.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, table := range iptrestore.CanaryTables {
		if c := fake.Chains(table); len(c) != 0 {
			t.Errorf("chains left in %s after Cleanup: %v", table, c)
		}
	}
}
