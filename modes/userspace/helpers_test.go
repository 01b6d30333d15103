package userspace_test

// Address plan of the unprivileged tests (everything on loopback; the fake
// nat table only records rules, nothing is redirected):
//
//	node IP (host chains DNAT to it)   198.18.0.11
//	ClusterIPs                         10.96.0.0/12: web 10.96.0.20, dns 10.96.0.10
//	NodePort of web                    30080
//	backends                           127.0.0.1:<random port>, one server each
//	proxy listeners                    127.0.0.1:<random port>

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/modes/conntrack/conntracktest"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/iptrestore/iptrestoretest"
	"github.com/svcsim/svcsim/modes/modetest"
	"github.com/svcsim/svcsim/modes/userspace"
	"github.com/svcsim/svcsim/sim/state"
)

var (
	nodeIP = netip.MustParseAddr("198.18.0.11")
	webIP  = netip.MustParseAddr("10.96.0.20")
	dnsIP  = netip.MustParseAddr("10.96.0.10")
	lo     = netip.MustParseAddr("127.0.0.1")
)

// makeState builds a node state; mutators add Services.
func makeState(svcs ...state.ServicePort) *state.NodeState { return modetest.NodeState(svcs...) }

// makeService builds a Service port with its defaults and applies mutators.
func makeService(name string, proto state.Protocol, vip netip.Addr, port int32, mut ...func(*state.ServicePort)) state.ServicePort {
	sp := state.ServicePort{Namespace: "default", Name: name, PortName: "p", Protocol: proto, ClusterIP: vip, Port: port}
	for _, m := range mut {
		m(&sp)
	}
	return sp
}

func withEndpoints(eps ...netip.AddrPort) func(*state.ServicePort) {
	return func(sp *state.ServicePort) {
		sp.Endpoints = nil
		for _, e := range eps {
			sp.Endpoints = append(sp.Endpoints, state.Endpoint{IP: e.Addr(), Port: int32(e.Port())})
		}
	}
}

// newLoopbackProxier builds a Proxier on the fake nat table whose listeners
// are on 127.0.0.1, and registers its Cleanup.
func newLoopbackProxier(t *testing.T, mut ...func(*userspace.Config)) (*userspace.Proxier, *iptrestoretest.Fake) {
	t.Helper()
	nat := iptrestoretest.NewFake("")
	netw := userspace.NewHostNetwork()
	netw.ListenIP = lo
	cfg := userspace.Config{Node: "node1", IPTables: nat, Network: netw, Conntrack: &conntracktest.Fake{}}
	for _, m := range mut {
		m(&cfg)
	}
	p := userspace.New(cfg)
	t.Cleanup(func() {
		require.NoError(t, p.Cleanup(context.Background()))
		requireNoProxyGoroutines(t)
	})
	return p, nat
}

// proxyAddr is where a test client connects instead of the VIP (no
// iptables in unprivileged tests).
func proxyAddr(t *testing.T, p *userspace.Proxier, key string) string {
	t.Helper()
	port, ok := p.ProxyPort(key)
	require.True(t, ok, "no proxy port for %s", key)
	return netip.AddrPortFrom(lo, uint16(port)).String()
}

// tcpBackend answers every connection with "<name> <peer address>\n", then
// echoes until the client half-closes, then reports how many bytes it
// echoed and closes.
type tcpBackend struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup
}

func startTCPBackend(t testing.TB, name string) *tcpBackend {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	return serveTCPBackend(t, name, ln)
}

// serveTCPBackend serves ln (which may belong to another namespace) until
// the test ends.
func serveTCPBackend(t testing.TB, name string, ln net.Listener) *tcpBackend {
	b := &tcpBackend{name: name, ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				fmt.Fprintf(c, "%s %s\n", b.name, c.RemoteAddr())
				n, _ := io.Copy(c, c)
				fmt.Fprintf(c, "echoed %d\n", n)
			}()
		}
	}()
	t.Cleanup(b.Close)
	return b
}

func (b *tcpBackend) Close() { _ = b.ln.Close(); b.wg.Wait() }

func (b *tcpBackend) AddrPort() netip.AddrPort {
	return b.ln.Addr().(*net.TCPAddr).AddrPort()
}

// refusingAddr returns a loopback port nothing listens on.
func refusingAddr(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	require.NoError(t, ln.Close())
	return ap
}

// hello connects to addr and returns the backend's greeting line.
func hello(t testing.TB, addr string) (name, peer string) {
	t.Helper()
	c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	f := strings.Fields(line)
	require.Len(t, f, 2)
	return f[0], f[1]
}

// udpBackend replies to every datagram with "<name>|<payload>".
type udpBackend struct {
	name  string
	pc    net.PacketConn
	wg    sync.WaitGroup
	mu    sync.Mutex
	peers map[string]int
}

func startUDPBackend(t testing.TB, name string) *udpBackend {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	return serveUDPBackend(t, name, pc)
}

// serveUDPBackend serves pc (which may belong to another namespace) until
// the test ends.
func serveUDPBackend(t testing.TB, name string, pc net.PacketConn) *udpBackend {
	b := &udpBackend{name: name, pc: pc, peers: map[string]int{}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			b.mu.Lock()
			b.peers[from.String()]++
			b.mu.Unlock()
			_, _ = pc.WriteTo(append([]byte(b.name+"|"), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); b.wg.Wait() })
	return b
}

// Peers counts datagrams per source address.
func (b *udpBackend) Peers() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.peers)
}

func (b *udpBackend) AddrPort() netip.AddrPort {
	return b.pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// udpAsk sends payload from c and returns the reply split into backend name
// and echoed payload.
func udpAsk(t testing.TB, c net.Conn, payload string) (string, string) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(3*time.Second)))
	_, err := c.Write([]byte(payload))
	require.NoError(t, err)
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	require.NoError(t, err)
	name, echoed, ok := strings.Cut(string(buf[:n]), "|")
	require.True(t, ok, "reply %q", buf[:n])
	return name, echoed
}

// proxyGoroutines returns the stacks of goroutines running proxy code.
func proxyGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "modes/userspace.(*service)") ||
			strings.Contains(g, "modes/userspace.(*HostNetwork)") ||
			strings.Contains(g, "modes/userspace.copyHalf") {
			out = append(out, g)
		}
	}
	return out
}

// requireNoProxyGoroutines fails unless every proxy goroutine has ended
// (allowing them a moment to return after signalling completion).
func requireNoProxyGoroutines(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		g := proxyGoroutines()
		if len(g) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d proxy goroutines left after Cleanup:\n%s", len(g), strings.Join(g, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventually polls cond until it holds or 5s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// nopRunner accepts any rules and shows none (benchmarks on loopback).
type nopRunner struct{}

func (*nopRunner) Restore(context.Context, []byte, bool, bool) error { return nil }
func (*nopRunner) Save(context.Context, string) ([]byte, error)      { return nil, nil }
func (*nopRunner) Version(context.Context) (string, error)           { return "", nil }

// ruleRestores are the fake's restores other than the one creating the
// canary chains (iptrestore.EnsureCanary).
func ruleRestores(f *iptrestoretest.Fake) []iptrestoretest.Restore {
	var out []iptrestoretest.Restore
	for _, r := range f.Restores() {
		if !bytes.Equal(r.Data, iptrestore.CanaryInput()) {
			out = append(out, r)
		}
	}
	return out
}
