package userspace_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/conntrack/conntracktest"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/userspace"
	"github.com/svcsim/svcsim/sim/state"
)

const (
	webKey = "default/web:p/TCP"
	dnsKey = "default/dns:p/UDP"
)

var ctx = context.Background()

func TestRegistered(t *testing.T) {
	require.Contains(t, modes.Names(), userspace.Name)
	p, err := modes.New(userspace.Name, modes.Options{Node: "node1"})
	require.NoError(t, err)
	require.Equal(t, "userspace", p.Name())
}

func TestGoldenRestoreText(t *testing.T) {
	p, nat := newLoopbackProxier(t)
	st := makeState(
		makeService("web", state.TCP, webIP, 80, func(sp *state.ServicePort) {
			sp.NodePort = 30080
			sp.ExternalIPs = []netip.Addr{netip.MustParseAddr("203.0.113.7")}
			sp.Endpoints = []state.Endpoint{{IP: netip.MustParseAddr("10.244.1.2"), Port: 8080}}
		}),
		makeService("dns", state.UDP, dnsIP, 53), // no endpoints: still a portal
	)
	require.NoError(t, p.Sync(ctx, st))
	web, _ := p.ProxyPort(webKey)
	dns, _ := p.ProxyPort(dnsKey)
	want := fmt.Sprintf(`*nat
:KUBE-NODEPORT-CONTAINER - [0:0]
:KUBE-NODEPORT-HOST - [0:0]
:KUBE-PORTALS-CONTAINER - [0:0]
:KUBE-PORTALS-HOST - [0:0]
-I PREROUTING 1 -m comment --comment "svcsim userspace: service portals" -j KUBE-PORTALS-CONTAINER
-I OUTPUT 1 -m comment --comment "svcsim userspace: service portals" -j KUBE-PORTALS-HOST
-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment "svcsim userspace: service nodeports" -j KUBE-NODEPORT-CONTAINER
-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment "svcsim userspace: service nodeports" -j KUBE-NODEPORT-HOST
-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p udp -m comment --comment "default/dns:p" -m udp --dport 53 -j REDIRECT --to-ports %[2]d
-A KUBE-PORTALS-HOST -d 10.96.0.10/32 -p udp -m comment --comment "default/dns:p" -m udp --dport 53 -j DNAT --to-destination 198.18.0.11:%[2]d
-A KUBE-PORTALS-CONTAINER -d 10.96.0.20/32 -p tcp -m comment --comment "default/web:p" -m tcp --dport 80 -j REDIRECT --to-ports %[1]d
-A KUBE-PORTALS-HOST -d 10.96.0.20/32 -p tcp -m comment --comment "default/web:p" -m tcp --dport 80 -j DNAT --to-destination 198.18.0.11:%[1]d
-A KUBE-PORTALS-CONTAINER -d 203.0.113.7/32 -p tcp -m comment --comment "default/web:p" -m tcp --dport 80 -j REDIRECT --to-ports %[1]d
-A KUBE-PORTALS-HOST -d 203.0.113.7/32 -p tcp -m comment --comment "default/web:p" -m tcp --dport 80 -j DNAT --to-destination 198.18.0.11:%[1]d
-A KUBE-NODEPORT-CONTAINER -p tcp -m comment --comment "default/web:p" -m tcp --dport 30080 -j REDIRECT --to-ports %[1]d
-A KUBE-NODEPORT-HOST -p tcp -m comment --comment "default/web:p" -m tcp --dport 30080 -j DNAT --to-destination 198.18.0.11:%[1]d
COMMIT
`, web, dns)
	restores := ruleRestores(nat)
	require.Len(t, restores, 1)
	require.Equal(t, want, string(restores[0].Data))

	// A second, identical Sync writes the same rules but no second set of
	// jumps, and keeps both listeners.
	require.NoError(t, p.Sync(ctx, st))
	restores = ruleRestores(nat)
	require.Len(t, restores, 2)
	require.NotContains(t, string(restores[1].Data), "PREROUTING")
	web2, _ := p.ProxyPort(webKey)
	require.Equal(t, web, web2)
	require.Len(t, nat.Rules("nat", "PREROUTING"), 2)
	require.Len(t, nat.Rules("nat", "KUBE-PORTALS-CONTAINER"), 3)

	// Without a node IP, host traffic is REDIRECTed.
	st2 := makeState(st.Services...)
	st2.NodeIPs = nil
	require.NoError(t, p.Sync(ctx, st2))
	require.Contains(t, nat.Rules("nat", "KUBE-PORTALS-HOST"),
		fmt.Sprintf(`-A KUBE-PORTALS-HOST -d 10.96.0.20/32 -p tcp -m comment --comment "default/web:p" -m tcp --dport 80 -j REDIRECT --to-ports %d`, web))
}

func TestTCPRoundRobinExact(t *testing.T) {
	p, _ := newLoopbackProxier(t)
	const k, n = 3, 30
	var bs []*tcpBackend
	var eps []netip.AddrPort
	for i := range k {
		b := startTCPBackend(t, fmt.Sprintf("b%d", i))
		bs = append(bs, b)
		eps = append(eps, b.AddrPort())
	}
	st := makeState(makeService("web", state.TCP, webIP, 80, withEndpoints(eps...)))
	require.NoError(t, p.Sync(ctx, st))
	// Rotation order is NodeState's endpoint order (sorted by address/port).
	var order []string
	for _, e := range st.Services[0].Endpoints {
		for _, b := range bs {
			if b.AddrPort() == netip.AddrPortFrom(e.IP, uint16(e.Port)) {
				order = append(order, b.name)
			}
		}
	}
	addr := proxyAddr(t, p, webKey)
	counts := map[string]int{}
	for i := range n {
		name, peer := hello(t, addr)
		require.Equal(t, order[i%k], name, "request %d", i)
		counts[name]++
		// The backend sees the proxy as its client.
		require.Equal(t, "127.0.0.1", strings.Split(peer, ":")[0])
	}
	for _, b := range bs {
		require.Equal(t, n/k, counts[b.name], "backend %s", b.name)
	}
	info := p.ServicePorts()
	require.Len(t, info, 1)
	for _, bst := range info[0].Backends {
		require.EqualValues(t, n/k, bst.Connections, "backend %v", bst.Endpoint)
	}
}

func TestTCPHalfClose(t *testing.T) {
	p, _ := newLoopbackProxier(t)
	b := startTCPBackend(t, "b0")
	require.NoError(t, p.Sync(ctx, makeState(makeService("web", state.TCP, webIP, 80, withEndpoints(b.AddrPort())))))
	c, err := net.Dial("tcp4", proxyAddr(t, p, webKey))
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	payload := strings.Repeat("x", 100_000)
	go func() {
		_, _ = io.WriteString(c, payload)
		// Half-close: the backend must see EOF and still be able to answer.
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	all, err := io.ReadAll(c)
	require.NoError(t, err)
	lines := strings.SplitN(string(all), "\n", 2)
	require.True(t, strings.HasPrefix(lines[0], "b0 "))
	require.Equal(t, payload+"echoed 100000\n", lines[1])
	eventually(t, "byte counters", func() bool {
		bst := p.ServicePorts()[0].Backends[0]
		return bst.BytesToBackend == 100_000 && bst.BytesFromBackend == uint64(len(all))
	})
}

func TestTCPRefusedBackendIsSkipped(t *testing.T) {
	p, _ := newLoopbackProxier(t)
	dead := refusingAddr(t)
	b1, b2 := startTCPBackend(t, "b1"), startTCPBackend(t, "b2")
	st := makeState(makeService("web", state.TCP, webIP, 80, withEndpoints(dead, b1.AddrPort(), b2.AddrPort())))
	require.NoError(t, p.Sync(ctx, st))
	// Expected: walk the rotation, a request landing on the dead endpoint
	// moves on to the next one.
	var rotation []netip.AddrPort
	for _, e := range st.Services[0].Endpoints {
		rotation = append(rotation, netip.AddrPortFrom(e.IP, uint16(e.Port)))
	}
	names := map[netip.AddrPort]string{b1.AddrPort(): "b1", b2.AddrPort(): "b2"}
	var want []string
	wantFailures := 0
	for pos := 0; len(want) < 12; pos++ {
		ep := rotation[pos%3]
		if ep == dead {
			wantFailures++
			continue
		}
		want = append(want, names[ep])
	}
	addr := proxyAddr(t, p, webKey)
	var got []string
	for range 12 {
		name, _ := hello(t, addr) // never fails
		got = append(got, name)
	}
	require.Equal(t, want, got)
	var deadStats userspace.BackendStats
	for _, bst := range p.ServicePorts()[0].Backends {
		if bst.Endpoint == dead {
			deadStats = bst
		}
	}
	require.Zero(t, deadStats.Connections)
	require.EqualValues(t, wantFailures, deadStats.DialFailures, "the dead backend is tried once per rotation")
}

func TestTCPClientSeesCloseWhenNoBackendWorks(t *testing.T) {
	for _, tc := range []struct {
		name string
		eps  []netip.AddrPort
	}{
		{"all refused", []netip.AddrPort{refusingAddr(t), refusingAddr(t)}},
		{"no endpoints", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newLoopbackProxier(t)
			require.NoError(t, p.Sync(ctx, makeState(makeService("web", state.TCP, webIP, 80, withEndpoints(tc.eps...)))))
			c, err := net.Dial("tcp4", proxyAddr(t, p, webKey))
			require.NoError(t, err, "the portal accepts even without a backend")
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
			n, err := c.Read(make([]byte, 10))
			require.Zero(t, n)
			require.Error(t, err)
			var ne net.Error
			require.False(t, errors.As(err, &ne) && ne.Timeout(), "expected close, got timeout")
			for _, bst := range p.ServicePorts()[0].Backends {
				require.EqualValues(t, 1, bst.DialFailures)
			}
		})
	}
}

func TestTCPSessionAffinity(t *testing.T) {
	clk := &testClock{now: time.Unix(1_000_000, 0)}
	p, _ := newLoopbackProxier(t, func(c *userspace.Config) { c.Clock = clk })
	b1, b2 := startTCPBackend(t, "b1"), startTCPBackend(t, "b2")
	eps := []netip.AddrPort{b1.AddrPort(), b2.AddrPort()}
	st := makeState(makeService("web", state.TCP, webIP, 80, withEndpoints(eps...), func(sp *state.ServicePort) {
		sp.SessionAffinity = true
		sp.AffinityTimeout = 30
	}))
	require.NoError(t, p.Sync(ctx, st))
	addr := proxyAddr(t, p, webKey)
	first, _ := hello(t, addr)
	for range 5 {
		clk.Advance(29 * time.Second)
		name, _ := hello(t, addr)
		require.Equal(t, first, name, "pinned while used within the timeout")
	}
	clk.Advance(30 * time.Second)
	name, _ := hello(t, addr)
	require.NotEqual(t, first, name, "pin expires after 30s idle; the rotation moves on")
	name2, _ := hello(t, addr)
	require.Equal(t, name, name2, "and the client is pinned to the new backend")
}

// testClock is a settable Clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestUDPSessionsReplyToTheRightClient(t *testing.T) {
	cts := &conntracktest.Fake{}
	p, _ := newLoopbackProxier(t, func(c *userspace.Config) {
		c.UDPIdleTimeout = 5 * time.Second
		c.Conntrack = cts
	})
	b1, b2 := startUDPBackend(t, "u1"), startUDPBackend(t, "u2")
	st := makeState(makeService("dns", state.UDP, dnsIP, 53, withEndpoints(b1.AddrPort(), b2.AddrPort())))
	// A flow to the VIP from before the Service existed was never
	// translated: it is stale once the Service has its listener.
	untranslated := conntracktest.Flow{Proto: "udp", OrigDst: netip.AddrPortFrom(dnsIP, 53), ReplySrc: netip.AddrPortFrom(dnsIP, 53)}
	cts.Add(untranslated)
	require.NoError(t, p.Sync(ctx, st))
	require.Empty(t, cts.Flows(), "stale UDP flows to a new VIP are cleared")
	addr := proxyAddr(t, p, dnsKey)
	first := st.Services[0].Endpoints[0]
	wantFirst := "u1"
	if b2.AddrPort() == netip.AddrPortFrom(first.IP, uint16(first.Port)) {
		wantFirst = "u2"
	}
	var clients []net.Conn
	for range 4 {
		c, err := net.Dial("udp4", addr)
		require.NoError(t, err)
		defer c.Close()
		clients = append(clients, c)
	}
	// Interleave datagrams of four clients: each gets only its own replies,
	// and all datagrams of a session go to the same backend.
	backendOf := map[int]string{}
	for round := range 5 {
		for i, c := range clients {
			payload := fmt.Sprintf("client%d-round%d", i, round)
			name, echoed := udpAsk(t, c, payload)
			require.Equal(t, payload, echoed)
			if round == 0 {
				backendOf[i] = name
			}
			require.Equal(t, backendOf[i], name, "client %d switched backend within a session", i)
		}
	}
	require.Equal(t, wantFirst, backendOf[0])
	require.NotEqual(t, backendOf[0], backendOf[1], "sessions are balanced round-robin")
	require.Equal(t, backendOf[0], backendOf[2])
	require.Equal(t, 4, p.ServicePorts()[0].UDPSessions)
	// Each backend saw two distinct source ports: one proxy socket per session.
	require.Len(t, b1.Peers(), 2)
	require.Len(t, b2.Peers(), 2)
}

// udpDNSClient starts a proxier with the given UDP idle timeout, a UDP
// Service "dns" on backends u1 and u2, and a client socket to its proxy
// port (closed at the test's end).
func udpDNSClient(t *testing.T, idle time.Duration) (*userspace.Proxier, net.Conn, *udpBackend, *udpBackend) {
	t.Helper()
	p, _ := newLoopbackProxier(t, func(c *userspace.Config) { c.UDPIdleTimeout = idle })
	b1, b2 := startUDPBackend(t, "u1"), startUDPBackend(t, "u2")
	require.NoError(t, p.Sync(ctx, makeState(makeService("dns", state.UDP, dnsIP, 53, withEndpoints(b1.AddrPort(), b2.AddrPort())))))
	c, err := net.Dial("udp4", proxyAddr(t, p, dnsKey))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return p, c, b1, b2
}

func TestUDPSessionIdleTimeout(t *testing.T) {
	p, c, _, _ := udpDNSClient(t, 100*time.Millisecond)
	n1, _ := udpAsk(t, c, "a")
	require.Equal(t, 1, p.ServicePorts()[0].UDPSessions)
	eventually(t, "session to expire", func() bool { return p.ServicePorts()[0].UDPSessions == 0 })
	n2, _ := udpAsk(t, c, "b")
	require.NotEqual(t, n1, n2, "a new session takes the next backend")
}

// A UDP session to an endpoint that is removed ends with the sync: the
// same client socket's next datagram reaches a remaining endpoint.
func TestUDPSessionToRemovedEndpointEnds(t *testing.T) {
	p, c, b1, b2 := udpDNSClient(t, time.Minute)
	first, _ := udpAsk(t, c, "a")
	keep := b2
	if first == "u2" {
		keep = b1
	}
	require.NoError(t, p.Sync(ctx, makeState(makeService("dns", state.UDP, dnsIP, 53, withEndpoints(keep.AddrPort())))))
	second, echoed := udpAsk(t, c, "b")
	require.Equal(t, "b", echoed)
	require.NotEqual(t, first, second, "the session to the removed endpoint %s still carries datagrams", first)
}

func TestSyncIsIncremental(t *testing.T) {
	cts := &conntracktest.Fake{}
	p, nat := newLoopbackProxier(t, func(c *userspace.Config) { c.Conntrack = cts })
	b1, b2, b3 := startTCPBackend(t, "b1"), startTCPBackend(t, "b2"), startTCPBackend(t, "b3")
	u1 := startUDPBackend(t, "u1")
	web := func(eps ...netip.AddrPort) state.ServicePort {
		return makeService("web", state.TCP, webIP, 80, withEndpoints(eps...))
	}
	dns := makeService("dns", state.UDP, dnsIP, 53, withEndpoints(u1.AddrPort()))
	require.NoError(t, p.Sync(ctx, makeState(web(b1.AddrPort()), dns)))
	webPort, _ := p.ProxyPort(webKey)
	dnsPort, _ := p.ProxyPort(dnsKey)
	// A flow through the portal ends in the listener: it is not stale.
	toListener := conntracktest.Flow{Proto: "udp", OrigDst: netip.AddrPortFrom(dnsIP, 53), ReplySrc: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.11"), uint16(dnsPort))}
	cts.Add(toListener)

	// A long-lived connection to b1.
	c, err := net.Dial("tcp4", proxyAddr(t, p, webKey))
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "b1 "))

	require.NoError(t, p.Sync(ctx, makeState(web(b1.AddrPort()), dns)))
	require.Equal(t, []conntracktest.Flow{toListener}, cts.Flows(), "a flow to the listener stays")

	// Replace b1 by b2 and b3: same listener, the connection to b1 keeps
	// working, new connections only go to b2 and b3.
	require.NoError(t, p.Sync(ctx, makeState(web(b2.AddrPort(), b3.AddrPort()), dns)))
	port, _ := p.ProxyPort(webKey)
	require.Equal(t, webPort, port)
	for range 6 {
		name, _ := hello(t, proxyAddr(t, p, webKey))
		require.Contains(t, []string{"b2", "b3"}, name)
	}
	_, err = io.WriteString(c, "still here")
	require.NoError(t, err)
	buf := make([]byte, len("still here"))
	_, err = io.ReadFull(r, buf)
	require.NoError(t, err)
	require.Equal(t, "still here", string(buf))

	// Remove the UDP Service: its socket closes, its rules go, its
	// conntrack flows are cleared; the TCP one is untouched.
	require.NoError(t, p.Sync(ctx, makeState(web(b2.AddrPort(), b3.AddrPort()))))
	_, ok := p.ProxyPort(dnsKey)
	require.False(t, ok)
	pc, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", dnsPort))
	require.NoError(t, err, "the removed Service's port is free again")
	require.NoError(t, pc.Close())
	for _, r := range nat.Rules("nat", "KUBE-PORTALS-CONTAINER") {
		require.NotContains(t, r, "udp")
	}
	require.Empty(t, cts.Flows(), "the removed Service's flows are cleared")
	port, _ = p.ProxyPort(webKey)
	require.Equal(t, webPort, port)

	// Remove the TCP Service: its listener closes and so does the
	// connection in flight.
	require.NoError(t, p.Sync(ctx, makeState()))
	_, err = net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", webPort), time.Second)
	require.Error(t, err)
	_, err = io.ReadAll(r)
	require.NoError(t, err, "the connection ends with EOF")
	require.Empty(t, nat.Rules("nat", "KUBE-PORTALS-CONTAINER"))
	require.Empty(t, p.ServicePorts())
	requireNoProxyGoroutines(t)
}

func TestFailedRuleWriteKeepsRemovedServiceRunning(t *testing.T) {
	p, nat := newLoopbackProxier(t)
	b := startTCPBackend(t, "b1")
	st := makeState(makeService("web", state.TCP, webIP, 80, withEndpoints(b.AddrPort())))
	require.NoError(t, p.Sync(ctx, st))
	nat.FailNextRestore(errors.New("xtables lock held"))
	err := p.Sync(ctx, makeState())
	require.ErrorContains(t, err, "xtables lock held")
	name, _ := hello(t, proxyAddr(t, p, webKey))
	require.Equal(t, "b1", name, "rules still point at the listener, so it stays")
	require.NoError(t, p.Sync(ctx, makeState()))
	_, ok := p.ProxyPort(webKey)
	require.False(t, ok)
}

func TestCleanupRemovesEverything(t *testing.T) {
	p, nat := newLoopbackProxier(t)
	require.NoError(t, nat.AddRule("nat", "PREROUTING", "-m", "comment", "--comment", "someone else", "-j", "ACCEPT"))
	b := startTCPBackend(t, "b1")
	u := startUDPBackend(t, "u1")
	require.NoError(t, p.Sync(ctx, makeState(
		makeService("web", state.TCP, webIP, 80, withEndpoints(b.AddrPort()), func(sp *state.ServicePort) { sp.NodePort = 30080 }),
		makeService("dns", state.UDP, dnsIP, 53, withEndpoints(u.AddrPort())),
	)))
	// Traffic in flight during Cleanup: an open TCP connection and a UDP
	// session.
	c, err := net.Dial("tcp4", proxyAddr(t, p, webKey))
	require.NoError(t, err)
	defer c.Close()
	_, err = bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	uc, err := net.Dial("udp4", proxyAddr(t, p, dnsKey))
	require.NoError(t, err)
	defer uc.Close()
	udpAsk(t, uc, "x")
	require.NotEmpty(t, proxyGoroutines())

	require.NoError(t, p.Cleanup(ctx))
	requireNoProxyGoroutines(t)
	require.Empty(t, nat.Chains("nat"))
	require.Equal(t, []string{`-A PREROUTING -m comment --comment "someone else" -j ACCEPT`}, nat.Rules("nat", "PREROUTING"))
	require.Empty(t, nat.Rules("nat", "OUTPUT"))
	require.NoError(t, p.Cleanup(ctx), "Cleanup twice is fine")
	require.Len(t, ruleRestores(nat), 2, "the second Cleanup found nothing to remove")

	// The proxier can be used again after Cleanup.
	require.NoError(t, p.Sync(ctx, makeState(makeService("web", state.TCP, webIP, 80, withEndpoints(b.AddrPort())))))
	name, _ := hello(t, proxyAddr(t, p, webKey))
	require.Equal(t, "b1", name)
}

func TestDump(t *testing.T) {
	p, _ := newLoopbackProxier(t)
	b := startTCPBackend(t, "b1")
	require.NoError(t, p.Sync(ctx, makeState(
		makeService("web", state.TCP, webIP, 80, withEndpoints(b.AddrPort()), func(sp *state.ServicePort) { sp.NodePort = 30080 }),
		makeService("dns", state.UDP, dnsIP, 53),
	)))
	hello(t, proxyAddr(t, p, webKey))
	out, err := p.Dump(ctx)
	require.NoError(t, err)
	webPort, _ := p.ProxyPort(webKey)
	for _, want := range []string{
		"-A PREROUTING -m comment --comment \"svcsim userspace: service portals\" -j KUBE-PORTALS-CONTAINER",
		fmt.Sprintf("-A KUBE-NODEPORT-HOST -p tcp -m comment --comment \"default/web:p\" -m tcp --dport 30080 -j DNAT --to-destination 198.18.0.11:%d", webPort),
		fmt.Sprintf("default/web:p/TCP  10.96.0.20:80,nodePort 30080  %d", webPort),
		fmt.Sprintf("%v(1/0)", b.AddrPort()),
		"<none: connections closed, datagrams dropped>",
	} {
		require.Contains(t, out, want)
	}
	t.Log("\n" + out)
}

// TestCanaryRepairsFlush: the first Sync leaves the iptables canary; a flush
// of every table removes it with the portal rules, Intact says so, and the
// resync the node proxy then runs writes the same rules again, pointing at
// the same listeners (a flush does not close them). Cleanup removes the
// canary too.
func TestCanaryRepairsFlush(t *testing.T) {
	p, nat := newLoopbackProxier(t)
	ok, err := p.Intact(ctx)
	require.NoError(t, err)
	require.False(t, ok, "Intact before any sync")
	st := makeState(makeService("web", state.TCP, webIP, 80, func(sp *state.ServicePort) { sp.NodePort = 30080 }))
	require.NoError(t, p.Sync(ctx, st))
	ok, err = p.Intact(ctx)
	require.NoError(t, err)
	require.True(t, ok, "Intact after a sync")
	before := nat.Dump()

	nat.Flush()
	ok, err = p.Intact(ctx)
	require.NoError(t, err)
	require.False(t, ok, "Intact after the flush")
	require.True(t, modes.ForceFullSync(p))
	require.NoError(t, p.Sync(ctx, st))
	require.Equal(t, before, nat.Dump(), "portal rules after the repair")
	ok, err = p.Intact(ctx)
	require.NoError(t, err)
	require.True(t, ok, "Intact after the repair")

	require.NoError(t, p.Cleanup(ctx))
	for _, table := range iptrestore.CanaryTables {
		require.Empty(t, nat.Chains(table), "chains left in %s after Cleanup", table)
	}
}
