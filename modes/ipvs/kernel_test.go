package ipvs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/ipvs/ipset"
	"github.com/svcsim/svcsim/modes/ipvs/ipvsutil"
	"github.com/svcsim/svcsim/modes/ipvs/netdev"
)

// requireIPVS skips unless the kernel has IP_VS (loading the module first).
func requireIPVS(t *testing.T) {
	t.Helper()
	privtest.RequireRoot(t)
	_ = exec.Command("modprobe", "ip_vs").Run()
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		t.Skip("kernel lacks IP_VS (/proc/net/ip_vs missing): run `make vm-test` to run it in the qemu kernel lane")
	}
}

func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// TestKernelIPVS programs a fresh namespace's real IPVS, reads it back with
// ipvsadm, syncs again (nothing to write) and cleans up.
func TestKernelIPVS(t *testing.T) {
	requireIPVS(t)
	ns := privtest.NS(t, "node")
	ctx := context.Background()
	var p modes.Proxier
	require.NoError(t, ns.Do(func() error {
		var err error
		p, err = modes.New(Name, modes.Options{Node: "node1"})
		return err
	}))
	t.Cleanup(func() {
		assert.NoError(t, ns.Do(func() error { return p.Cleanup(ctx) }))
		assert.NoError(t, p.(*Proxier).Close())
	})
	st := twoServices()
	st.Services[1].SessionAffinity, st.Services[1].AffinityTimeout = true, 600

	var ipvsadm, addrs string
	require.NoError(t, ns.Do(func() error {
		if err := p.Sync(ctx, st); err != nil {
			return err
		}
		var err error
		if ipvsadm, err = run("ipvsadm", "-Ln"); err != nil {
			return err
		}
		addrs, err = run("ip", "-4", "-o", "addr", "show", "dev", DummyDevice)
		return err
	}))
	t.Logf("ipvsadm -Ln:\n%s", ipvsadm)
	for _, want := range []string{
		"UDP  10.96.0.10:53 rr\n  -> 10.244.1.9:5353              Masq    1      0          0",
		"TCP  10.96.0.20:80 rr persistent 600\n  -> 10.244.1.5:8080              Masq    1      0          0         \n  -> 10.244.2.7:8080              Masq    1",
		"TCP  198.18.0.11:30080 rr persistent 600\n",
		"TCP  198.51.100.1:80 rr persistent 600\n",
	} {
		assert.Contains(t, ipvsadm, want)
	}
	for _, want := range []string{"10.96.0.10/32", "10.96.0.20/32", "198.51.100.1/32"} {
		assert.Contains(t, addrs, want)
	}

	// Second sync: nothing to write; then one endpoint change.
	var second, change SyncStats
	st2 := twoServices()
	st2.Services[1].SessionAffinity, st2.Services[1].AffinityTimeout = true, 600
	st2.Services[1].Endpoints = st2.Services[1].Endpoints[1:]
	require.NoError(t, ns.Do(func() error {
		if err := p.Sync(ctx, st); err != nil {
			return err
		}
		second = p.(*Proxier).LastSync()
		if err := p.Sync(ctx, st2); err != nil {
			return err
		}
		change = p.(*Proxier).LastSync()
		var err error
		ipvsadm, err = run("ipvsadm", "-Ln")
		return err
	}))
	assert.Equal(t, 0, second.IPVSOps(), "second sync: nothing dumped, nothing written (%v)", second.Ops)
	assert.Equal(t, 3, change.Ops[ipvsutil.OpDeleteDest], "%v", change.Ops)
	assert.NotContains(t, ipvsadm, "10.244.1.5:8080")

	// Drift: a virtual server deleted behind the proxier's back stays gone
	// through an incremental sync and comes back with a full check.
	var drifted, repaired string
	require.NoError(t, ns.Do(func() error {
		if _, err := run("ipvsadm", "-D", "-u", "10.96.0.10:53"); err != nil {
			return err
		}
		if err := p.Sync(ctx, st2); err != nil {
			return err
		}
		var err error
		if drifted, err = run("ipvsadm", "-Ln"); err != nil {
			return err
		}
		p.(*Proxier).ForceFullSync()
		if err := p.Sync(ctx, st2); err != nil {
			return err
		}
		repaired, err = run("ipvsadm", "-Ln")
		return err
	}))
	assert.NotContains(t, drifted, "UDP  10.96.0.10:53", "an incremental sync does not read the kernel back")
	assert.Contains(t, repaired, "UDP  10.96.0.10:53 rr\n  -> 10.244.1.9:5353", "the full check repaired it")

	var dump, after, links string
	require.NoError(t, ns.Do(func() error {
		var err error
		if dump, err = p.(modes.Dumper).Dump(ctx); err != nil {
			return err
		}
		if err := p.Cleanup(ctx); err != nil {
			return err
		}
		if err := p.Cleanup(ctx); err != nil {
			return fmt.Errorf("second cleanup: %w", err)
		}
		if after, err = run("ipvsadm", "-Ln"); err != nil {
			return err
		}
		links, err = run("ip", "-o", "link")
		return err
	}))
	assert.Contains(t, dump, "KUBE-CLUSTER-IP")
	assert.Equal(t, 3, strings.Count(strings.TrimSpace(after), "\n")+1, "only ipvsadm's three header lines remain:\n%s", after)
	assert.NotContains(t, links, DummyDevice)
}

// TestKernelSetsAndRules runs the ipset and iptables part against the real
// tools and kernel in a fresh namespace (IPVS and the dummy device on fakes,
// so it runs on kernels without them).
func TestKernelSetsAndRules(t *testing.T) {
	ns := privtest.NS(t, "node")
	ctx := context.Background()
	ipt, err := iptrestore.NewNode("")
	require.NoError(t, err)
	p, err := New(Config{Node: "node1", IPVS: ipvsutil.NewFake(), Links: netdev.NewFake(),
		IPSet: &ipset.Exec{}, IPTables: ipt})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, ns.Do(func() error { return p.Cleanup(ctx) })) })

	var nat, filter, loop, np string
	st := twoServices()
	require.NoError(t, ns.Do(func() error {
		if err := p.Sync(ctx, st); err != nil {
			return err
		}
		st.Services[1].Endpoints[0] = ep("10.244.1.6", 8080, "node1")
		if err := p.Sync(ctx, st); err != nil {
			return fmt.Errorf("incremental sync: %w", err)
		}
		var err error
		if nat, err = run("iptables-save", "-t", "nat"); err != nil {
			return err
		}
		if filter, err = run("iptables-save", "-t", "filter"); err != nil {
			return err
		}
		if loop, err = run("ipset", "list", setLoopBack); err != nil {
			return err
		}
		np, err = run("ipset", "list", setNodePortTCP)
		return err
	}))
	assert.Contains(t, nat, "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES")
	assert.Contains(t, nat, "--match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ")
	assert.Contains(t, nat, "--match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE")
	assert.Contains(t, filter, "-A INPUT -m comment --comment \"kubernetes ipvs access filter\" -j KUBE-IPVS-FILTER")
	assert.Contains(t, loop, "10.244.1.6,tcp:8080,10.244.1.6")
	assert.NotContains(t, loop, "10.244.1.5,tcp:8080")
	assert.Contains(t, np, "30080")

	var sets, after string
	require.NoError(t, ns.Do(func() error {
		if err := p.Cleanup(ctx); err != nil {
			return err
		}
		if err := p.Cleanup(ctx); err != nil {
			return fmt.Errorf("second cleanup: %w", err)
		}
		var err error
		if sets, err = run("ipset", "list", "-n"); err != nil {
			return err
		}
		after, err = run("iptables-save")
		return err
	}))
	assert.Empty(t, strings.TrimSpace(sets))
	assert.NotContains(t, after, "KUBE-")
}
