package iptables_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/modes/iptables/tracer"
	"github.com/svcsim/svcsim/modes/iptrestore/ruleset"
)

// node1 as the tracer sees it: its underlay address and its cni0 gateway.
var node1 = tracer.Node{LocalAddrs: []netip.Addr{
	netip.MustParseAddr(node1IP), netip.MustParseAddr("10.244.1.1"),
}}

// flow is a packet and what must become of it.
type flow struct {
	name   string
	pkt    tracer.Packet
	verdct string   // the only verdict
	eps    []string // every endpoint reachable ("" none)
	// masq lists the endpoints reached masqueraded; "*" means all.
	masq []string
}

func tcp(src, dst string, port uint16, local bool) tracer.Packet {
	return tracer.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: "tcp", DPort: port, Local: local}
}

// representativeFlows go with representativeState.
var representativeFlows = []flow{
	{name: "pod to ClusterIP: every endpoint, no masquerade",
		pkt:    tcp("10.244.1.20", "10.96.0.20", 80, false),
		verdct: "ACCEPT", eps: []string{"10.244.1.5:8080", "10.244.1.6:8080", "10.244.2.5:8080"}},
	{name: "hairpin: a pod reaching itself is masqueraded",
		pkt:    tcp("10.244.1.5", "10.96.0.20", 80, false),
		verdct: "ACCEPT", eps: []string{"10.244.1.5:8080", "10.244.1.6:8080", "10.244.2.5:8080"},
		masq: []string{"10.244.1.5:8080"}},
	{name: "pod of the other node to ClusterIP (routed here) is not masqueraded",
		pkt:    tcp("10.244.2.20", "10.96.0.20", 80, false),
		verdct: "ACCEPT", eps: []string{"10.244.1.5:8080", "10.244.1.6:8080", "10.244.2.5:8080"}},
	{name: "node to ClusterIP is masqueraded",
		pkt:    tcp(node1IP, "10.96.0.20", 80, true),
		verdct: "ACCEPT", eps: []string{"10.244.1.5:8080", "10.244.1.6:8080", "10.244.2.5:8080"}, masq: []string{"*"}},
	{name: "external to NodePort on the node address is masqueraded",
		pkt:    tcp(externalIP, node1IP, 30080, false),
		verdct: "ACCEPT", eps: []string{"10.244.1.7:80", "10.244.2.7:80"}, masq: []string{"*"}},
	{name: "pod to NodePort on the node address is masqueraded too",
		pkt:    tcp("10.244.1.20", node1IP, 30080, false),
		verdct: "ACCEPT", eps: []string{"10.244.1.7:80", "10.244.2.7:80"}, masq: []string{"*"}},
	{name: "node to its own NodePort",
		pkt:    tcp(node1IP, node1IP, 30080, true),
		verdct: "ACCEPT", eps: []string{"10.244.1.7:80", "10.244.2.7:80"}, masq: []string{"*"}},
	{name: "NodePort on localhost is served, masqueraded (route_localnet, kube-proxy's default)",
		pkt:    tcp("127.0.0.1", "127.0.0.1", 30080, true),
		verdct: "ACCEPT", eps: []string{"10.244.1.7:80", "10.244.2.7:80"}, masq: []string{"*"}},
	{name: "the network reaching the node's loopback is dropped (KUBE-FIREWALL)",
		pkt:    tcp(externalIP, "127.0.0.1", 22, false),
		verdct: "DROP"},
	{name: "NodePort of another node's address passes through untouched",
		pkt:    tcp(externalIP, "198.18.0.12", 30080, false),
		verdct: "ACCEPT"},
	{name: "ClusterIP on a port the service lacks is not translated",
		pkt:    tcp("10.244.1.20", "10.96.0.20", 81, false),
		verdct: "ACCEPT"},
	{name: "ClusterIP port of the NodePort service",
		pkt:    tcp("10.244.1.20", "10.96.0.30", 8800, false),
		verdct: "ACCEPT", eps: []string{"10.244.1.7:80", "10.244.2.7:80"}},
	{name: "ClientIP affinity, first packet: any endpoint",
		pkt:    tcp("10.244.1.20", "10.96.0.40", 80, false),
		verdct: "ACCEPT", eps: []string{"10.244.1.8:8080", "10.244.2.8:8080"}},
	{name: "no endpoints: ClusterIP rejected",
		pkt:    tcp("10.244.1.20", "10.96.0.50", 80, false),
		verdct: "REJECT"},
	{name: "no endpoints: ClusterIP rejected for the node too",
		pkt:    tcp(node1IP, "10.96.0.50", 80, true),
		verdct: "REJECT"},
	{name: "no endpoints: NodePort rejected",
		pkt:    tcp(externalIP, node1IP, 30050, false),
		verdct: "REJECT"},
	{name: "no endpoints: external IP rejected",
		pkt:    tcp(externalIP, "198.18.0.200", 80, false),
		verdct: "REJECT"},
	{name: "UDP DNS",
		pkt:    tracer.Packet{Src: netip.MustParseAddr("10.244.1.20"), Dst: netip.MustParseAddr("10.96.0.10"), Proto: "udp", DPort: 53},
		verdct: "ACCEPT", eps: []string{"10.244.1.10:53", "10.244.2.10:53"}},
	{name: "TCP DNS port",
		pkt:    tcp("10.244.1.20", "10.96.0.10", 53, false),
		verdct: "ACCEPT", eps: []string{"10.244.1.10:53", "10.244.2.10:53"}},
	{name: "UDP to a TCP-only service is not translated",
		pkt:    tracer.Packet{Src: netip.MustParseAddr("10.244.1.20"), Dst: netip.MustParseAddr("10.96.0.20"), Proto: "udp", DPort: 80},
		verdct: "ACCEPT"},
	{name: "selectorless service to an address outside the cluster",
		pkt:    tcp("10.244.1.20", "10.96.0.60", 5432, false),
		verdct: "ACCEPT", eps: []string{externalIP + ":5432"}},
	{name: "external IP is masqueraded",
		pkt:    tcp("10.244.1.20", "198.18.0.201", 5432, false),
		verdct: "ACCEPT", eps: []string{externalIP + ":5432"}, masq: []string{"*"}},
}

// checkFlows traces every flow through rs.
func checkFlows(t *testing.T, rs *ruleset.Ruleset, flows []flow) {
	t.Helper()
	for _, f := range flows {
		res, err := tracer.Trace(rs, node1, f.pkt)
		if err != nil {
			t.Errorf("%s: %v", f.name, err)
			continue
		}
		if got := res.Verdicts(); !slices.Equal(got, []string{f.verdct}) {
			t.Errorf("%s: verdicts %v, want [%s]", f.name, got, f.verdct)
		}
		if got := res.Endpoints(); !slices.Equal(got, f.eps) {
			t.Errorf("%s: endpoints %v, want %v", f.name, got, f.eps)
		}
		for _, o := range res.Outcomes {
			want := slices.Contains(f.masq, "*") || (o.Endpoint() != "" && slices.Contains(f.masq, o.Endpoint()))
			if o.Verdict == "ACCEPT" && o.Masquerade != want {
				t.Errorf("%s: to %q masquerade=%v, want %v (chains %s)", f.name, o.Endpoint(), o.Masquerade, want,
					strings.Join(o.Chains, " "))
			}
		}
	}
}

func TestFlows(t *testing.T) {
	p, fake := newFakeProxier(t)
	mustSync(t, p, representativeState())
	checkFlows(t, fake.Ruleset(), representativeFlows)
}

// Each of n endpoints is chosen by exactly one path, and the path
// probabilities kube-proxy's 1/(n-i) rules give are all 1/n.
func TestStatisticPathsAreUniform(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 10} {
		svc := manyServices(1, n)[0]
		p, fake := newFakeProxier(t)
		mustSync(t, p, makeState(svc))
		res, err := tracer.Trace(fake.Ruleset(), node1, tcp("10.244.1.20", svc.ClusterIP.String(), 80, false))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Outcomes) != n || len(res.Endpoints()) != n {
			t.Errorf("n=%d: %d paths to %d endpoints", n, len(res.Outcomes), len(res.Endpoints()))
		}
		in := fake.LastRestore()
		// Probability of path i: prod_{j<i}(1-1/(n-j)) * 1/(n-i) = 1/n.
		for i := range n - 1 {
			want := probString(n - i)
			if !strings.Contains(in, "--probability "+want+" ") {
				t.Errorf("n=%d: no rule with probability %s", n, want)
			}
		}
	}
}

func probString(k int) string {
	switch k {
	case 2:
		return "0.5000000000"
	case 3:
		return "0.3333333333"
	case 4:
		return "0.2500000000"
	case 5:
		return "0.2000000000"
	case 10:
		return "0.1000000000"
	}
	return map[int]string{6: "0.1666666667", 7: "0.1428571429", 8: "0.1250000000", 9: "0.1111111111"}[k]
}

// After a partial sync the tracer sees the same flows as after a full one.
func TestFlowsAfterPartialSync(t *testing.T) {
	p, fake := newFakeProxier(t)
	st := representativeState()
	getip := st.Service("default/getip-service/TCP")
	getip.Endpoints = getip.Endpoints[:1]
	mustSync(t, p, st)
	mustSync(t, p, representativeState())
	if p.LastSync().Full {
		t.Fatal("second sync was full")
	}
	checkFlows(t, fake.Ruleset(), representativeFlows)
}
