package ipvs

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/modes/iptrestore/iptrestoretest"
	"github.com/svcsim/svcsim/modes/ipvs/ipset"
	"github.com/svcsim/svcsim/modes/ipvs/ipvsutil"
	"github.com/svcsim/svcsim/modes/ipvs/netdev"
	"github.com/svcsim/svcsim/modes/modetest"
	"github.com/svcsim/svcsim/sim/state"
)

// Address plan of these tests (the project's default plan):
//
//	node1            198.18.0.11 (underlay eth0), second node IP 198.18.1.11
//	node1 pods       10.244.1.0/24     node2 pods 10.244.2.0/24
//	cluster CIDR     10.244.0.0/16     service CIDR 10.96.0.0/12
//	ClusterIPs       10.96.0.x         external IPs 198.51.100.x
//	foreign IPVS     192.0.2.1 (a virtual server svcsim does not own)

type fakes struct {
	ipvs  *ipvsutil.Fake
	links *netdev.Fake
	sets  *ipset.Fake
	ipt   *iptrestoretest.Fake
}

// newTestProxier returns a Proxier on fresh fakes, with cfg mutators applied.
func newTestProxier(t *testing.T, muts ...func(*Config)) (*Proxier, *fakes) {
	t.Helper()
	f := &fakes{ipvs: ipvsutil.NewFake(), links: netdev.NewFake(), sets: ipset.NewFake(), ipt: iptrestoretest.NewFake("")}
	cfg := Config{Node: "node1", IPVS: f.ipvs, Links: f.links, IPSet: f.sets, IPTables: f.ipt}
	for _, m := range muts {
		m(&cfg)
	}
	p, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p, f
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// makeState returns node1's state with the given services.
func makeState(svcs ...state.ServicePort) *state.NodeState { return modetest.NodeState(svcs...) }

// makeSvc builds a TCP service port ns/name on ip:port, then applies muts.
func makeSvc(name, ip string, port int32, muts ...func(*state.ServicePort)) state.ServicePort {
	s := state.ServicePort{Namespace: "default", Name: name, Protocol: state.TCP, ClusterIP: addr(ip), Port: port}
	for _, m := range muts {
		m(&s)
	}
	return s
}

// withEps sets endpoints "ip:port@node".
func withEps(eps ...state.Endpoint) func(*state.ServicePort) {
	return func(s *state.ServicePort) { s.Endpoints = append([]state.Endpoint(nil), eps...) }
}

func ep(ip string, port int32, node string) state.Endpoint {
	return state.Endpoint{IP: addr(ip), Port: port, Node: node}
}

// table renders the fake IPVS table like ipvsadm -Ln, without its header.
func table(t *testing.T, f *fakes) string {
	t.Helper()
	out, err := renderIPVS(f.ipvs)
	require.NoError(t, err)
	// Drop the three header lines.
	for i := 0; i < 3; i++ {
		_, out, _ = strings.Cut(out, "\n")
	}
	return out
}

func mustSync(t *testing.T, p *Proxier, st *state.NodeState) {
	t.Helper()
	require.NoError(t, p.Sync(context.Background(), st))
}

func entries(t *testing.T, f *fakes, set string) []string {
	t.Helper()
	e, err := f.sets.Entries(context.Background(), set)
	require.NoError(t, err)
	return e
}
