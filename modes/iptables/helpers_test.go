package iptables_test

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/modes/iptables"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/iptrestore/iptrestoretest"
	"github.com/svcsim/svcsim/modes/modetest"
	"github.com/svcsim/svcsim/sim/state"
)

// Address plan of every test in this package (svcsim's default plan):
//
//	node1       198.18.0.11 on the underlay 198.18.0.0/24 (the node under test)
//	node2       198.18.0.12
//	external    198.18.0.100 (a client outside the cluster)
//	pods        node1 10.244.1.0/24 (cni0 10.244.1.1), node2 10.244.2.0/24
//	cluster     10.244.0.0/16 (kube-proxy's --cluster-cidr)
//	services    10.96.0.0/12: getip 10.96.0.20, myhttp-v2 10.96.0.30, dns 10.96.0.10
//	NodePorts   30000-32767 (the seed's myhttp-v2-service uses 30080)
const (
	node1IP     = "198.18.0.11"
	externalIP  = "198.18.0.100"
	clusterCIDR = "10.244.0.0/16"
)

// makeState returns node1's state holding the given service ports.
func makeState(svcs ...state.ServicePort) *state.NodeState { return modetest.NodeState(svcs...) }

// makeService returns a TCP service port ns/name at ip:port, changed by the
// mutators (kube-proxy's makeTestService style).
func makeService(ns, name, ip string, port int32, mutators ...func(*state.ServicePort)) state.ServicePort {
	s := state.ServicePort{
		Namespace: ns, Name: name, Protocol: state.TCP,
		ClusterIP: netip.MustParseAddr(ip), Port: port,
	}
	for _, m := range mutators {
		m(&s)
	}
	return s
}

// withEndpoints adds endpoints written "ip:port" or "ip:port@node".
func withEndpoints(eps ...string) func(*state.ServicePort) {
	return func(s *state.ServicePort) {
		for _, e := range eps {
			addr, node, _ := strings.Cut(e, "@")
			ap := netip.MustParseAddrPort(addr)
			s.Endpoints = append(s.Endpoints, state.Endpoint{IP: ap.Addr(), Port: int32(ap.Port()), Node: node})
		}
	}
}

func withNodePort(n int32) func(*state.ServicePort) {
	return func(s *state.ServicePort) { s.NodePort = n }
}

func withAffinity(timeout int32) func(*state.ServicePort) {
	return func(s *state.ServicePort) { s.SessionAffinity, s.AffinityTimeout = true, timeout }
}

func withPortName(n string) func(*state.ServicePort) {
	return func(s *state.ServicePort) { s.PortName = n }
}

func withProtocol(p state.Protocol) func(*state.ServicePort) {
	return func(s *state.ServicePort) { s.Protocol = p }
}

func withExternalIPs(ips ...string) func(*state.ServicePort) {
	return func(s *state.ServicePort) {
		for _, ip := range ips {
			s.ExternalIPs = append(s.ExternalIPs, netip.MustParseAddr(ip))
		}
	}
}

// withLocalPolicies sets both traffic policies to Local.
func withLocalPolicies(s *state.ServicePort) {
	s.InternalTrafficPolicy, s.ExternalTrafficPolicy = state.PolicyLocal, state.PolicyLocal
}

// withLoadBalancer adds a load-balancer IP and source ranges.
func withLoadBalancer(ip string, ranges ...string) func(*state.ServicePort) {
	return func(s *state.ServicePort) {
		s.LoadBalancerIPs = append(s.LoadBalancerIPs, netip.MustParseAddr(ip))
		for _, r := range ranges {
			s.LoadBalancerSourceRanges = append(s.LoadBalancerSourceRanges, netip.MustParsePrefix(r))
		}
	}
}

// newFakeProxier returns a proxier on an empty in-memory iptables.
func newFakeProxier(t testing.TB, mutate ...func(*iptables.Config)) (*iptables.Proxier, *iptrestoretest.Fake) {
	t.Helper()
	fake := iptrestoretest.NewFake("")
	cfg := iptables.Config{Backend: iptrestore.NFT, Runner: fake, Node: "node1"}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := iptables.New(cfg)
	if err != nil {
		t.Fatalf("new proxier: %v", err)
	}
	return p, fake
}

func mustSync(t testing.TB, p *iptables.Proxier, st *state.NodeState) {
	t.Helper()
	if err := p.Sync(context.Background(), st); err != nil {
		t.Fatalf("sync: %v", err)
	}
}

// manyServices returns n ClusterIP services with eps endpoints each, spread
// over node1's and node2's pod ranges.
func manyServices(n, eps int) []state.ServicePort {
	svcs := make([]state.ServicePort, 0, n)
	for i := range n {
		ip := fmt.Sprintf("10.96.%d.%d", 1+i/250, 1+i%250)
		var list []string
		for j := range eps {
			k := i*eps + j
			list = append(list, fmt.Sprintf("10.244.%d.%d:8080", 1+k%2, 2+(k/2)%250))
		}
		// Different services may share a pod address; ports keep the
		// endpoint pairs distinct enough for the tests.
		svcs = append(svcs, makeService("bench", "svc-"+strconv.Itoa(i), ip, 80, withEndpoints(list...)))
	}
	return svcs
}
