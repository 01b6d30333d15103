package iptables_test

import (
	"context"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/modes/iptables"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/iptrestore/ruleset"
	"github.com/svcsim/svcsim/sim/state"
)

// Tests in this file program the real kernel, in namespaces they create.

// forEachBackend runs f for both backends, skipping one whose tools are not
// installed.
func forEachBackend(t *testing.T, f func(t *testing.T, b iptrestore.Backend)) {
	for _, b := range []iptrestore.Backend{iptrestore.Legacy, iptrestore.NFT} {
		t.Run(string(b), func(t *testing.T) {
			ipt, restore, save := b.Binaries()
			for _, bin := range []string{ipt, restore, save} {
				if _, err := exec.LookPath(bin); err != nil {
					t.Skipf("backend %s: %s not installed", b, bin)
				}
			}
			f(t, b)
		})
	}
}

var saveNoise = regexp.MustCompile(`(?m)^#.*\n|\[\d+:\d+\]`)

// kernelTables returns nat and filter of the namespace as iptables-save
// prints them, without comments and counters.
func kernelTables(t testing.TB, ns *netns.NS, b iptrestore.Backend) string {
	t.Helper()
	r, err := iptrestore.NewExec(b)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	err = ns.Do(func() error {
		for _, table := range []string{"nat", "filter"} {
			data, err := r.Save(context.Background(), table)
			if err != nil {
				return err
			}
			out = append(out, data...)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("save in %s: %v", ns.Name(), err)
	}
	return string(saveNoise.ReplaceAll(out, nil))
}

// representativeState is every kind of service the golden tests cover.
func representativeState() *state.NodeState {
	return makeState(
		makeService("default", "getip-service", "10.96.0.20", 80,
			withEndpoints("10.244.1.5:8080@node1", "10.244.1.6:8080@node1", "10.244.2.5:8080@node2")),
		makeService("default", "myhttp-v2-service", "10.96.0.30", 8800, withNodePort(30080),
			withEndpoints("10.244.1.7:80@node1", "10.244.2.7:80@node2")),
		makeService("default", "sticky", "10.96.0.40", 80, withAffinity(10800),
			withEndpoints("10.244.1.8:8080@node1", "10.244.2.8:8080@node2")),
		makeService("default", "sticky-short", "10.96.0.41", 80, withAffinity(5),
			withEndpoints("10.244.1.9:8080@node1")),
		makeService("default", "empty", "10.96.0.50", 80, withNodePort(30050), withExternalIPs("198.18.0.200")),
		makeService("kube-system", "kube-dns", "10.96.0.10", 53, withPortName("dns"), withProtocol(state.UDP),
			withEndpoints("10.244.1.10:53@node1", "10.244.2.10:53@node2")),
		makeService("kube-system", "kube-dns", "10.96.0.10", 53, withPortName("dns-tcp"),
			withEndpoints("10.244.1.10:53@node1", "10.244.2.10:53@node2")),
		makeService("default", "external-db", "10.96.0.60", 5432, withExternalIPs("198.18.0.201"),
			withEndpoints(externalIP+":5432")),
	)
}

func TestKernelSyncIdempotentAndCleanup(t *testing.T) {
	privtest.HostUntouched(t)
	forEachBackend(t, func(t *testing.T, b iptrestore.Backend) {
		ctx := context.Background()
		ns := privtest.NS(t, "node")
		p, err := iptables.New(iptables.Config{Backend: b, Node: "node1"})
		if err != nil {
			t.Fatal(err)
		}
		if p.Name() != "iptables/"+string(b) {
			t.Errorf("Name() = %q", p.Name())
		}
		empty := kernelTables(t, ns, b)
		// Someone else's rules, which Sync and Cleanup must leave alone and
		// Dump must not show.
		runner, err := iptrestore.NewExec(b)
		must(t, err)
		foreign := "*nat\n:CNI-HOSTPORT - [0:0]\n-A POSTROUTING -s 192.0.2.0/24 ! -d 10.244.0.0/16 -j MASQUERADE\n-A CNI-HOSTPORT -j RETURN\nCOMMIT\n"
		must(t, ns.Do(func() error { return runner.Restore(ctx, []byte(foreign), true, false) }))
		withForeign := kernelTables(t, ns, b)
		st := representativeState()
		sync := func() {
			t.Helper()
			if err := ns.Do(func() error { return p.Sync(ctx, st) }); err != nil {
				t.Fatalf("sync: %v", err)
			}
		}

		sync()
		if !p.LastSync().Full {
			t.Errorf("first sync was not full: %+v", p.LastSync())
		}
		first := kernelTables(t, ns, b)
		for _, want := range []string{
			"-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
			"-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
			"-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
			"-j DNAT --to-destination 10.244.2.5:8080",
			"--dport 30080 -j " + iptables.ExternalChain(st.Service("default/myhttp-v2-service/TCP")),
			"-j REJECT",
		} {
			if !strings.Contains(first, want) {
				t.Errorf("kernel rules lack %q:\n%s", want, first)
			}
		}
		// The kernel's own dump must parse, and must hold exactly the
		// chains of the fake after the same sync.
		rs, err := ruleset.Parse([]byte(first))
		if err != nil {
			t.Fatalf("parse kernel dump: %v", err)
		}
		// The tracer reads the kernel's canonical form (-d 10.96.0.20/32,
		// --set-xmark, --probability 0.33333333349, ...) to the same flows.
		checkFlows(t, rs, representativeFlows)
		fp, fake := newFakeProxier(t)
		must(t, fake.Restore(ctx, []byte(foreign), true, false))
		mustSync(t, fp, st)
		if got, want := chainSet(rs), chainSet(fake.Ruleset()); got != want {
			t.Errorf("kernel chains differ from the fake's:\nkernel: %s\nfake:   %s", got, want)
		}

		sync() // partial, nothing changed
		if p.LastSync().Full {
			t.Errorf("second sync was full")
		}
		if again := kernelTables(t, ns, b); again != first {
			t.Errorf("second (partial) sync changed the kernel:\nfirst:\n%s\nagain:\n%s", first, again)
		}
		p.ForceFullSync()
		sync()
		if again := kernelTables(t, ns, b); again != first {
			t.Errorf("forced full sync changed the kernel:\nfirst:\n%s\nagain:\n%s", first, again)
		}

		// A new proxier (a restarted node proxy) adopts what is there.
		p2, err := iptables.New(iptables.Config{Backend: b, Node: "node1"})
		if err != nil {
			t.Fatal(err)
		}
		if err := ns.Do(func() error { return p2.Sync(ctx, st) }); err != nil {
			t.Fatalf("sync of a new proxier: %v", err)
		}
		if again := kernelTables(t, ns, b); again != first {
			t.Errorf("restarted proxier changed the kernel:\nfirst:\n%s\nagain:\n%s", first, again)
		}

		// One endpoint changes: a partial sync swaps exactly its chain.
		st2 := representativeState()
		getip, getip2 := st.Service("default/getip-service/TCP"), st2.Service("default/getip-service/TCP")
		getip2.Endpoints[2].IP = netip.MustParseAddr("10.244.2.6")
		old := iptables.EndpointChain(getip, getip.Endpoints[2])
		neu := iptables.EndpointChain(getip2, getip2.Endpoints[2])
		if err := ns.Do(func() error { return p.Sync(ctx, st2) }); err != nil {
			t.Fatalf("sync after endpoint change: %v", err)
		}
		if ls := p.LastSync(); ls.Full || ls.Rewritten != 1 || ls.StaleChains != 1 {
			t.Errorf("endpoint change: want partial sync rewriting 1 port and deleting 1 chain, got %+v", ls)
		}
		changed := kernelTables(t, ns, b)
		if strings.Contains(changed, old) || !strings.Contains(changed, neu) {
			t.Errorf("after endpoint change want %s gone and %s present:\n%s", old, neu, changed)
		}

		var dump string
		must(t, ns.Do(func() (err error) { dump, err = p.Dump(ctx); return err }))
		if strings.Contains(dump, "CNI-HOSTPORT") || strings.Contains(dump, "-j MASQUERADE\n") ||
			!strings.Contains(dump, ":KUBE-SERVICES - [0:0]") || !strings.Contains(dump, "-A PREROUTING -m comment") {
			t.Errorf("Dump shows foreign rules or lacks ours:\n%s", dump)
		}

		for range 2 { // idempotent
			if err := ns.Do(func() error { return p.Cleanup(ctx) }); err != nil {
				t.Fatalf("cleanup: %v", err)
			}
			if got := kernelTables(t, ns, b); got != withForeign {
				t.Errorf("after cleanup:\n%s\nwant the tables as they were before the sync:\n%s", got, withForeign)
			}
		}
		// Without the foreign rules, only the empty built-in chains remain.
		must(t, ns.Do(func() error {
			return runner.Restore(ctx, []byte("*nat\n:CNI-HOSTPORT - [0:0]\n-D POSTROUTING -s 192.0.2.0/24 ! -d 10.244.0.0/16 -j MASQUERADE\n-X CNI-HOSTPORT\nCOMMIT\n"), true, false)
		}))
		if got := kernelTables(t, ns, b); got != empty || strings.Contains(got, "-A ") {
			t.Errorf("tables not back to empty built-in chains:\n%s", got)
		}
	})
}

// chainSet lists the nat and filter chains of rs with their rule counts.
func chainSet(rs *ruleset.Ruleset) string {
	var b strings.Builder
	for _, table := range []string{"nat", "filter"} {
		t := rs.Table(table)
		for _, n := range t.ChainNames() {
			b.WriteString(table + "/" + n + "=" + strconv.Itoa(len(t.Chains[n].Rules)) + " ")
		}
	}
	return b.String()
}
