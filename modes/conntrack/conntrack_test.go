package conntrack_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/svcsim/svcsim/modes/conntrack"
	"github.com/svcsim/svcsim/modes/conntrack/conntracktest"
	"github.com/svcsim/svcsim/sim/state"
)

// Address plan: node1 198.18.0.11; kube-dns 10.96.0.10:53/UDP (NodePort
// 30053) with endpoints 10.244.1.10:53 and 10.244.2.10:53; web
// 10.96.0.20:80/TCP.

func flowTo(proto, orig, reply string) conntracktest.Flow {
	return conntracktest.Flow{Proto: proto, OrigDst: netip.MustParseAddrPort(orig), ReplySrc: netip.MustParseAddrPort(reply)}
}

func port(ns, name, ip string, p int32, proto state.Protocol, nodePort int32, eps ...string) state.ServicePort {
	s := state.ServicePort{Namespace: ns, Name: name, PortName: "p", Protocol: proto,
		ClusterIP: netip.MustParseAddr(ip), Port: p, NodePort: nodePort}
	for _, e := range eps {
		ap := netip.MustParseAddrPort(e)
		s.Endpoints = append(s.Endpoints, state.Endpoint{IP: ap.Addr(), Port: int32(ap.Port())})
	}
	return s
}

func nodeState(svcs ...state.ServicePort) *state.NodeState {
	return &state.NodeState{Node: "node1", NodeIPs: []netip.Addr{netip.MustParseAddr("198.18.0.11")}, Services: svcs}
}

func TestCleanerDeletesStaleUDPEntries(t *testing.T) {
	ctx := context.Background()
	ct := &conntracktest.Fake{}
	c := conntrack.Cleaner{CT: ct}
	synced := func(st *state.NodeState) int {
		t.Helper()
		n, err := c.Synced(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	dns := func(eps ...string) state.ServicePort {
		return port("kube-system", "kube-dns", "10.96.0.10", 53, state.UDP, 30053, eps...)
	}
	web := func(eps ...string) state.ServicePort {
		return port("default", "web", "10.96.0.20", 80, state.TCP, 0, eps...)
	}
	synced(nodeState(dns("10.244.1.10:53", "10.244.2.10:53"), web("10.244.1.5:8080")))

	toGone := flowTo("udp", "10.96.0.10:53", "10.244.2.10:53")
	viaNodePort := flowTo("udp", "198.18.0.11:30053", "10.244.2.10:53")
	toKept := flowTo("udp", "10.96.0.10:53", "10.244.1.10:53")
	tcpSame := flowTo("tcp", "10.96.0.10:53", "10.244.2.10:53")
	other := flowTo("udp", "198.18.0.100:53", "198.18.0.100:53")
	ct.Add(toGone, viaNodePort, toKept, tcpSame, other)

	// A TCP-only change does not look at conntrack.
	calls := ct.Calls()
	synced(nodeState(dns("10.244.1.10:53", "10.244.2.10:53"), web("10.244.1.6:8080")))
	if ct.Calls() != calls {
		t.Errorf("TCP-only change scanned conntrack")
	}

	// One DNS endpoint goes: its entries go (ClusterIP and NodePort),
	// nothing else.
	if n := synced(nodeState(dns("10.244.1.10:53"), web("10.244.1.6:8080"))); n != 2 {
		t.Errorf("deleted %d entries, want 2", n)
	}
	if got, want := ct.Flows(), []conntracktest.Flow{toKept, tcpSame, other}; !slices.Equal(got, want) {
		t.Errorf("after endpoint removal flows = %v, want %v", got, want)
	}

	// An entry that bypassed DNAT while the service had no endpoints is
	// stale once it has one.
	synced(nodeState(dns(), web("10.244.1.6:8080")))
	undnatted := flowTo("udp", "10.96.0.10:53", "10.96.0.10:53")
	ct.Add(undnatted)
	synced(nodeState(dns("10.244.1.10:53"), web("10.244.1.6:8080")))
	if slices.Contains(ct.Flows(), undnatted) {
		t.Errorf("un-DNATed entry survived the service getting endpoints")
	}

	// The service goes: every UDP entry to its frontends goes.
	ct.Add(toKept, viaNodePort)
	synced(nodeState(web("10.244.1.6:8080")))
	if got, want := ct.Flows(), []conntracktest.Flow{tcpSame, other}; !slices.Equal(got, want) {
		t.Errorf("after service removal flows = %v, want %v", got, want)
	}
}

func TestCleanerLiveAndReset(t *testing.T) {
	ctx := context.Background()
	ct := &conntracktest.Fake{}
	// A relay datapath: the live target is its listener on port 40000.
	c := conntrack.Cleaner{CT: ct, Live: func(_ *state.ServicePort, reply netip.AddrPort) bool { return reply.Port() == 40000 }}
	toListener := flowTo("udp", "10.96.0.10:53", "10.244.1.1:40000")
	toOldListener := flowTo("udp", "10.96.0.10:53", "10.244.1.1:39999")
	ct.Add(toListener, toOldListener)
	st := nodeState(port("kube-system", "kube-dns", "10.96.0.10", 53, state.UDP, 0, "10.244.1.10:53"))
	if _, err := c.Synced(ctx, st); err != nil {
		t.Fatal(err)
	}
	if got, want := ct.Flows(), []conntracktest.Flow{toListener}; !slices.Equal(got, want) {
		t.Errorf("flows = %v, want %v", got, want)
	}
	calls := ct.Calls()
	if _, err := c.Synced(ctx, st); err != nil || ct.Calls() != calls {
		t.Errorf("an unchanged state scanned conntrack (err %v)", err)
	}
	c.Reset()
	if _, err := c.Synced(ctx, st); err != nil || ct.Calls() != calls+1 {
		t.Errorf("after Reset the table was not scanned (err %v)", err)
	}
	// Without CT nothing happens.
	if n, err := (&conntrack.Cleaner{}).Synced(ctx, st); n != 0 || err != nil {
		t.Errorf("Cleaner without CT: %d, %v", n, err)
	}
}

// A load-balancer address is a frontend too: its entries to a removed
// endpoint go when the endpoint does.
func TestCleanerLoadBalancerIPs(t *testing.T) {
	ctx := context.Background()
	ct := &conntracktest.Fake{}
	c := conntrack.Cleaner{CT: ct}
	lb := func(eps ...string) state.ServicePort {
		s := port("default", "cycle", "10.96.0.30", 80, state.UDP, 30080, eps...)
		s.LoadBalancerIPs = []netip.Addr{netip.MustParseAddr("198.18.1.1")}
		return s
	}
	if _, err := c.Synced(ctx, nodeState(lb("10.244.1.7:5353"))); err != nil {
		t.Fatal(err)
	}
	old := flowTo("udp", "198.18.1.1:80", "10.244.1.7:5353")
	ct.Add(old)
	n, err := c.Synced(ctx, nodeState(lb("10.244.2.8:5353")))
	if err != nil || n != 1 || len(ct.Flows()) != 0 {
		t.Errorf("endpoint replaced: deleted %d (err %v), left %v; want the load-balancer entry gone", n, err, ct.Flows())
	}
}
