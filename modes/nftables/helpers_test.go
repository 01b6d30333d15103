package nftables

import (
	"context"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/svcsim/svcsim/modes/modetest"
	"github.com/svcsim/svcsim/sim/state"
)

// Address plan of the unit tests (svcsim's default plan, seen from node1):
//
//	node1 eth0           198.18.0.11   (underlay 198.18.0.0/24)
//	node1 cni0           10.244.1.1    pod CIDR 10.244.1.0/24
//	node2 pods                         pod CIDR 10.244.2.0/24
//	cluster CIDR         10.244.0.0/16
//	service CIDR         10.96.0.0/12  (kube-dns 10.96.0.10)
//	external client      198.18.0.100
//	selectorless backend 172.188.2.89:3307 (the seed's external-service)
//
// Services (makeServices):
//
//	default/getip-service        10.96.0.20:80/TCP  -> 10.244.1.3, 10.244.2.3, 10.244.2.4 :8080
//	default/myhttp-v2-service    10.96.0.30:8800/TCP nodePort 30080 -> 10.244.1.4, 10.244.2.5 :80
//	default/sticky               10.96.0.40:80/TCP ClientIP 600s -> 10.244.1.6, 10.244.2.6 :80
//	default/empty                10.96.0.50:80/TCP nodePort 30081, no endpoints
//	default/multi:http|https     10.96.0.60:80|443/TCP -> 10.244.1.7, 10.244.2.7 :9376|:9377
//	kube-system/kube-dns:dns     10.96.0.10:53/UDP  -> 10.244.1.2, 10.244.2.2 :53
//	default/external-service     10.96.0.70:3307/TCP -> 172.188.2.89:3307 (no selector)
const (
	node1IP      = "198.18.0.11"
	node1Cni0    = "10.244.1.1"
	externalHost = "198.18.0.100"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// ep builds an endpoint; node is "" for addresses outside the cluster.
func ep(ip string, port int32, node string) state.Endpoint {
	return state.Endpoint{IP: addr(ip), Port: port, Node: node}
}

// makeService builds a TCP ClusterIP service port in namespace ns and applies
// the mutators.
func makeService(ns, name, clusterIP string, port int32, mutate ...func(*state.ServicePort)) state.ServicePort {
	sp := state.ServicePort{Namespace: ns, Name: name, Protocol: state.TCP, ClusterIP: addr(clusterIP), Port: port}
	for _, m := range mutate {
		m(&sp)
	}
	return sp
}

func withEndpoints(eps ...state.Endpoint) func(*state.ServicePort) {
	return func(sp *state.ServicePort) { sp.Endpoints = eps }
}

func withNodePort(np int32) func(*state.ServicePort) {
	return func(sp *state.ServicePort) { sp.NodePort = np }
}

func withPortName(n string) func(*state.ServicePort) {
	return func(sp *state.ServicePort) { sp.PortName = n }
}

func withUDP() func(*state.ServicePort) {
	return func(sp *state.ServicePort) { sp.Protocol = state.UDP }
}

func withAffinity(timeout int32) func(*state.ServicePort) {
	return func(sp *state.ServicePort) { sp.SessionAffinity, sp.AffinityTimeout = true, timeout }
}

// Named services of the address plan.
func getipService() state.ServicePort {
	return makeService("default", "getip-service", "10.96.0.20", 80, withEndpoints(
		ep("10.244.1.3", 8080, "node1"), ep("10.244.2.3", 8080, "node2"), ep("10.244.2.4", 8080, "node2")))
}

func myhttpV2Service() state.ServicePort {
	return makeService("default", "myhttp-v2-service", "10.96.0.30", 8800, withNodePort(30080), withEndpoints(
		ep("10.244.1.4", 80, "node1"), ep("10.244.2.5", 80, "node2")))
}

func stickyService() state.ServicePort {
	return makeService("default", "sticky", "10.96.0.40", 80, withAffinity(600), withEndpoints(
		ep("10.244.1.6", 80, "node1"), ep("10.244.2.6", 80, "node2")))
}

func emptyService() state.ServicePort {
	return makeService("default", "empty", "10.96.0.50", 80, withNodePort(30081))
}

func multiServices() []state.ServicePort {
	return []state.ServicePort{
		makeService("default", "multi", "10.96.0.60", 80, withPortName("http"), withEndpoints(
			ep("10.244.1.7", 9376, "node1"), ep("10.244.2.7", 9376, "node2"))),
		makeService("default", "multi", "10.96.0.60", 443, withPortName("https"), withEndpoints(
			ep("10.244.1.7", 9377, "node1"), ep("10.244.2.7", 9377, "node2"))),
	}
}

func dnsService() state.ServicePort {
	return makeService("kube-system", "kube-dns", "10.96.0.10", 53, withPortName("dns"), withUDP(), withEndpoints(
		ep("10.244.1.2", 53, "node1"), ep("10.244.2.2", 53, "node2")))
}

func externalService() state.ServicePort {
	return makeService("default", "external-service", "10.96.0.70", 3307, withEndpoints(ep("172.188.2.89", 3307, "")))
}

func allServices() []state.ServicePort {
	svcs := []state.ServicePort{getipService(), myhttpV2Service(), stickyService(), emptyService(), dnsService(), externalService()}
	return append(svcs, multiServices()...)
}

// makeState builds node1's state with the given service ports.
func makeState(svcs ...state.ServicePort) *state.NodeState { return modetest.NodeState(svcs...) }

// newFakeProxier returns a Proxier on a fresh fake.
func newFakeProxier(cfg Config) (*Proxier, *knftables.Fake) {
	fake := knftables.NewFake(knftables.IPv4Family, tableName)
	if cfg.Node == "" {
		cfg.Node = "node1"
	}
	return New(fake, cfg), fake
}

// syncOK syncs st and fails the test on error.
func syncOK(t *testing.T, p *Proxier, st *state.NodeState) SyncStats {
	t.Helper()
	if err := p.Sync(context.Background(), st); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return p.LastSync()
}

// fullDump returns the dump a fresh proxier produces for st in one full sync.
func fullDump(t *testing.T, st *state.NodeState) string {
	t.Helper()
	p, fake := newFakeProxier(Config{})
	syncOK(t, p, st)
	return canonical(fake.Dump())
}

// canonical sorts the element lines of a fake dump: the fake keeps elements in
// insertion order, which differs between a full and a partial sync although
// the kernel's sets are unordered. Rule order is kept: it matters.
func canonical(dump string) string {
	var other, elems []string
	for _, l := range strings.Split(strings.TrimSpace(dump), "\n") {
		if strings.HasPrefix(l, "add element ") {
			elems = append(elems, l)
		} else {
			other = append(other, l)
		}
	}
	sort.Strings(elems)
	return strings.Join(append(other, elems...), "\n") + "\n"
}
