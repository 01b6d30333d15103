package ipvs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/modes/ipvs/ipvsutil"
	"github.com/svcsim/svcsim/sim/state"
)

// kernelView is everything the proxier programs on the fakes: the IPVS
// table, the addresses of kube-ipvs0 and every ipset's entries.
func kernelView(t *testing.T, f *fakes) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(table(t, f))
	addrs, err := f.links.Addrs(DummyDevice)
	require.NoError(t, err)
	fmt.Fprintf(&b, "kube-ipvs0 %v\n", addrs)
	for _, s := range ourSets {
		fmt.Fprintf(&b, "%s %v\n", s.Name, entries(t, f, s.Name))
	}
	return b.String()
}

// randomState is node1's state with up to 12 service ports of random kinds
// (NodePort, external and load-balancer IPs, affinity, Local policy, UDP,
// two services sharing an external IP) and endpoints on both nodes.
func randomState(r *rand.Rand) *state.NodeState {
	var svcs []state.ServicePort
	for i := range 12 {
		if r.IntN(4) == 0 {
			continue
		}
		s := makeSvc(fmt.Sprintf("svc%02d", i), fmt.Sprintf("10.96.0.%d", 10+i), 80)
		for j := range r.IntN(4) {
			node := "node1"
			if r.IntN(2) == 0 {
				node = "node2"
			}
			s.Endpoints = append(s.Endpoints, ep(fmt.Sprintf("10.244.%d.%d", 1+r.IntN(2), 10+i*4+j), 8080, node))
		}
		if r.IntN(2) == 0 {
			s.NodePort = int32(30000 + i)
		}
		if r.IntN(3) == 0 {
			s.ExternalIPs = []netip.Addr{addr(fmt.Sprintf("198.51.100.%d", 1+r.IntN(3)))}
		}
		if r.IntN(4) == 0 {
			s.LoadBalancerIPs = []netip.Addr{addr(fmt.Sprintf("198.18.1.%d", 1+i))}
			s.Type = "LoadBalancer"
			if r.IntN(2) == 0 {
				s.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}
			}
		}
		if r.IntN(4) == 0 {
			s.SessionAffinity, s.AffinityTimeout = true, int32(60*(1+r.IntN(2)))
		}
		if r.IntN(4) == 0 && (s.NodePort > 0 || len(s.ExternalIPs) > 0 || len(s.LoadBalancerIPs) > 0) {
			s.ExternalTrafficPolicy = state.PolicyLocal
		}
		if r.IntN(5) == 0 {
			s.Protocol = state.UDP
		}
		svcs = append(svcs, s)
	}
	return makeState(svcs...)
}

// TestIncrementalSyncEqualsFullSync: after each of a random walk of states,
// what incremental syncs programmed equals what one full sync of the same
// state programs on fresh fakes, and no incremental sync dumps the virtual
// servers or the addresses.
func TestIncrementalSyncEqualsFullSync(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 5000))
	p, f := newTestProxier(t)
	for step := range 200 {
		st := randomState(r)
		if err := st.Validate(); err != nil {
			continue // an invalid combination; the walk goes on
		}
		lists := f.links.Lists
		f.ipvs.ResetOps()
		mustSync(t, p, st)
		if step > 0 {
			require.False(t, p.LastSync().Full, "step %d: an incremental sync", step)
			assert.Zero(t, f.ipvs.Ops()[ipvsutil.OpListServices], "step %d: no virtual server dump", step)
			assert.Equal(t, lists, f.links.Lists, "step %d: no address dump", step)
		}
		fresh, ff := newTestProxier(t)
		mustSync(t, fresh, st)
		require.Equal(t, kernelView(t, ff), kernelView(t, f), "step %d", step)
	}
}

// TestFullCheckRepairsDrift: what someone else changes behind the proxier's
// back (a real server and a virtual server deleted, an address and an ipset
// entry removed) stays until the periodic full check, which repairs it.
func TestFullCheckRepairsDrift(t *testing.T) {
	now := time.Date(2026, 12, 2, 16, 0, 0, 0, time.UTC)
	p, f := newTestProxier(t, func(c *Config) { c.Now = func() time.Time { return now } })
	st := twoServices()
	mustSync(t, p, st)
	assert.True(t, p.LastSync().Full, "the first sync is a full one")
	want := kernelView(t, f)

	web := &ipvsutil.VirtualServer{Address: addr("10.96.0.20"), Protocol: ipvsutil.TCP, Port: 80}
	require.NoError(t, f.ipvs.DeleteDestination(web, &ipvsutil.RealServer{Address: addr("10.244.1.5"), Port: 8080}))
	require.NoError(t, f.ipvs.DeleteService(&ipvsutil.VirtualServer{Address: addr("10.96.0.10"), Protocol: ipvsutil.UDP, Port: 53}))
	require.NoError(t, f.links.DelAddr(DummyDevice, addr("198.51.100.1")))
	require.NoError(t, f.sets.Restore(context.Background(), []byte("del "+setClusterIP+" 10.96.0.20,tcp:80\n")))
	drifted := kernelView(t, f)
	require.NotEqual(t, want, drifted)

	now = now.Add(DefaultFullCheckPeriod - time.Second)
	mustSync(t, p, st)
	assert.False(t, p.LastSync().Full)
	assert.Equal(t, drifted, kernelView(t, f), "an unchanged state before the full check touches nothing")

	now = now.Add(time.Second)
	mustSync(t, p, st)
	assert.True(t, p.LastSync().Full, "a sync DefaultFullCheckPeriod after the last full one is a full check")
	assert.Equal(t, want, kernelView(t, f), "the full check repaired every drift")

	now = now.Add(time.Second)
	mustSync(t, p, st)
	assert.False(t, p.LastSync().Full, "and the next one is incremental again")

	p.ForceFullSync()
	mustSync(t, p, st)
	assert.True(t, p.LastSync().Full, "ForceFullSync makes the next sync a full check")
}

// TestStateChangedInPlaceIsSeen: the proxier compares with its own copy of
// each service port, so a caller reusing its state's slices cannot hide a
// change.
func TestStateChangedInPlaceIsSeen(t *testing.T) {
	p, f := newTestProxier(t)
	st := twoServices()
	mustSync(t, p, st)
	st.Services[1].Endpoints[0] = ep("10.244.1.6", 8080, "node1")
	mustSync(t, p, st)
	assert.Contains(t, table(t, f), "10.244.1.6:8080")
	assert.NotContains(t, table(t, f), "10.244.1.5:8080")
}

// TestIncrementalSyncRefusesInvalidState: an incremental sync validates the
// ports it finds changed and the duplicates, and refuses an invalid state
// before writing anything, as a full one does.
func TestIncrementalSyncRefusesInvalidState(t *testing.T) {
	p, f := newTestProxier(t)
	mustSync(t, p, twoServices())
	for name, mutate := range map[string]func(st *state.NodeState){
		"a port listed twice": func(st *state.NodeState) { st.Services = append(st.Services, st.Services[0]) },
		"a new port listed twice": func(st *state.NodeState) {
			s := makeSvc("extra", "10.96.0.99", 80)
			st.Services = append(st.Services, s, s)
		},
		"a changed port's endpoint on port 0": func(st *state.NodeState) { st.Services[1].Endpoints[0].Port = 0 },
		"a new port with a name no DNS label": func(st *state.NodeState) {
			st.Services = append(st.Services, makeSvc("Bad_Name", "10.96.0.98", 80))
		},
	} {
		st := twoServices()
		mutate(st)
		f.ipvs.ResetOps()
		require.Error(t, p.Sync(context.Background(), st), name)
		assert.Empty(t, f.ipvs.Ops(), "%s: nothing written", name)
	}
	f.ipvs.ResetOps()
	mustSync(t, p, twoServices())
	assert.False(t, p.LastSync().Full, "a refused state leaves the proxier's memory as it was")
	assert.Empty(t, f.ipvs.Ops())
}
