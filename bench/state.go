package bench

import (
	"fmt"
	"net/netip"

	"github.com/svcsim/svcsim/sim/state"
	"github.com/svcsim/svcsim/topology"
)

// Synthetic address plan of the benchmark states (inside the default plan of
// package topology, see BRIEF "Address plan"):
//
//	node          node1, 198.18.0.11, pods 10.244.1.0/24
//	services      bench/svc-00000 .. svc-NNNNN, ClusterIP 10.100.0.0 + i + 1, port 80/TCP
//	endpoints     10.244.2.0 .. 10.244.255.255 (never on node1's pod CIDR), port 8080;
//	              they exist only as rules: no packet is ever sent to them
//	target        the last service (svc-<N-1>), last in iptables chain order,
//	              gets the real pods' addresses when traffic is measured
//
// Service names are zero-padded so that the modes' canonical order (by Key)
// is the index order, which puts the target at the end of KUBE-SERVICES.
const (
	svcNamespace = "bench"
	svcPort      = 80
	// TargetPort is the port the endpoints (and the real pods) listen on.
	TargetPort = 8080
	// MaxServices is the largest N the address plan supports.
	MaxServices = 30000
)

var (
	svcBase    = netip.MustParseAddr("10.100.0.0")
	nodeIP     = netip.MustParseAddr("198.18.0.11")
	podCIDR    = netip.MustParsePrefix("10.244.1.0/24")
	synthFirst = netip.MustParseAddr("10.244.2.0")
	// synthCount is the number of synthetic endpoint addresses (10.244.2.0 up
	// to 10.244.255.255); indexes beyond it wrap, so services share them,
	// which Kubernetes allows (two Services may select the same pods).
	synthCount = 254 * 256
)

// addrAdd returns a + n (IPv4).
func addrAdd(a netip.Addr, n int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ServiceName is the name of service i.
func ServiceName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// ClusterIP is the VIP of service i.
func ClusterIP(i int) netip.Addr { return addrAdd(svcBase, i+1) }

// SyntheticEndpoint is the j-th address of the synthetic endpoint pool.
func SyntheticEndpoint(j int) netip.Addr { return addrAdd(synthFirst, j%synthCount) }

// Synthetic returns a NodeState for node1 with n services of e endpoints
// each. Every call returns a fresh value (states are immutable once built).
func Synthetic(n, e int) (*state.NodeState, error) {
	if n < 1 || n > MaxServices {
		return nil, fmt.Errorf("services %d: want 1..%d", n, MaxServices)
	}
	if e < 1 || e > 64 {
		return nil, fmt.Errorf("endpoints %d: want 1..64", e)
	}
	if n*e >= synthCount {
		return nil, fmt.Errorf("%d services x %d endpoints: more than the %d synthetic endpoint addresses", n, e, synthCount-1)
	}
	st := &state.NodeState{
		Node:        "node1",
		Generation:  1,
		NodeIPs:     []netip.Addr{nodeIP},
		PodCIDR:     podCIDR,
		ClusterCIDR: topology.DefaultClusterCIDR,
		ServiceCIDR: topology.DefaultServiceCIDR,
		Services:    make([]state.ServicePort, n),
	}
	for i := range n {
		eps := make([]state.Endpoint, e)
		for j := range e {
			eps[j] = state.Endpoint{IP: SyntheticEndpoint(i*e + j), Port: TargetPort, Node: "node2"}
		}
		st.Services[i] = state.ServicePort{
			Namespace: svcNamespace, Name: ServiceName(i), Protocol: state.TCP,
			ClusterIP: ClusterIP(i), Port: svcPort, Endpoints: eps,
		}
	}
	st.Sort()
	return st, st.Validate()
}

// WithTargetEndpoints returns a copy of st whose last service has exactly
// eps as endpoints (the other services are shared, not copied: states are
// never modified once built).
func WithTargetEndpoints(st *state.NodeState, eps ...state.Endpoint) *state.NodeState {
	out := *st
	out.Generation++
	out.Services = append([]state.ServicePort(nil), st.Services...)
	last := &out.Services[len(out.Services)-1]
	last.Endpoints = append([]state.Endpoint(nil), eps...)
	out.Sort()
	return &out
}

// Target returns the last service of st: the one traffic is measured on.
func Target(st *state.NodeState) *state.ServicePort { return &st.Services[len(st.Services)-1] }

// extraEndpoint is the endpoint added by the one-change measurement: an
// address of the pool no service uses at this n and e.
func extraEndpoint(n, e int) state.Endpoint {
	return state.Endpoint{IP: SyntheticEndpoint(n * e), Port: TargetPort, Node: "node2"}
}
