package iptables_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/svcsim/svcsim/modes/conntrack/conntracktest"
	"github.com/svcsim/svcsim/modes/iptables"
	"github.com/svcsim/svcsim/sim/state"
)

func flowTo(proto, orig, reply string) conntracktest.Flow {
	return conntracktest.Flow{Proto: proto, OrigDst: netip.MustParseAddrPort(orig), ReplySrc: netip.MustParseAddrPort(reply)}
}

func TestStaleUDPConntrackEntriesDeleted(t *testing.T) {
	ct := &conntracktest.Fake{}
	p, _ := newFakeProxier(t, func(c *iptables.Config) { c.Conntrack = ct })
	dns := func(eps ...string) state.ServicePort {
		return makeService("kube-system", "kube-dns", "10.96.0.10", 53, withPortName("dns"), withProtocol(state.UDP),
			withNodePort(30053), withEndpoints(eps...))
	}
	web := func(eps ...string) state.ServicePort {
		return makeService("default", "web", "10.96.0.20", 80, withEndpoints(eps...))
	}
	mustSync(t, p, makeState(dns("10.244.1.10:53", "10.244.2.10:53"), web("10.244.1.5:8080")))

	toGone := flowTo("udp", "10.96.0.10:53", "10.244.2.10:53")
	viaNodePort := flowTo("udp", node1IP+":30053", "10.244.2.10:53")
	toKept := flowTo("udp", "10.96.0.10:53", "10.244.1.10:53")
	tcpSame := flowTo("tcp", "10.96.0.10:53", "10.244.2.10:53")
	other := flowTo("udp", "198.18.0.100:53", "198.18.0.100:53")
	ct.Add(toGone, viaNodePort, toKept, tcpSame, other)

	// A TCP-only change does not look at conntrack.
	calls := ct.Calls()
	mustSync(t, p, makeState(dns("10.244.1.10:53", "10.244.2.10:53"), web("10.244.1.6:8080")))
	if ct.Calls() != calls {
		t.Errorf("TCP-only change scanned conntrack")
	}

	// One DNS endpoint goes: its entries go, nothing else.
	mustSync(t, p, makeState(dns("10.244.1.10:53"), web("10.244.1.6:8080")))
	if got, want := ct.Flows(), []conntracktest.Flow{toKept, tcpSame, other}; !slices.Equal(got, want) {
		t.Errorf("after endpoint removal flows = %v, want %v", got, want)
	}
	if n := p.LastSync().ConntrackDeleted; n != 2 {
		t.Errorf("ConntrackDeleted = %d, want 2", n)
	}

	// An entry that bypassed DNAT while the service had no endpoints is
	// stale once it has some.
	mustSync(t, p, makeState(dns(), web("10.244.1.6:8080")))
	undnatted := flowTo("udp", "10.96.0.10:53", "10.96.0.10:53")
	ct.Add(undnatted)
	mustSync(t, p, makeState(dns("10.244.1.10:53"), web("10.244.1.6:8080")))
	if slices.Contains(ct.Flows(), undnatted) {
		t.Errorf("un-DNATed entry survived the service getting endpoints")
	}

	// The service goes: every UDP entry to its VIP goes.
	ct.Add(toKept)
	mustSync(t, p, makeState(web("10.244.1.6:8080")))
	if got, want := ct.Flows(), []conntracktest.Flow{tcpSame, other}; !slices.Equal(got, want) {
		t.Errorf("after service removal flows = %v, want %v", got, want)
	}
}
