package userspace_test

// Address plan of the privileged tests (namespaces built per test, names
// carry the run prefix):
//
//	node   cni0 bridge 10.244.1.1/24, eth0 198.18.0.11/24 (veth to ext),
//	       route 10.96.0.0/12 dev eth0 (so node-local clients have a route
//	       to ClusterIPs; the OUTPUT rules DNAT before it is used)
//	client pod  eth0 10.244.1.10/24, default via 10.244.1.1 (bridged on cni0)
//	backend pod eth0 10.244.1.20/24 + .21 + .22, default via 10.244.1.1;
//	            one server per address: tcp 8080 and udp 5353
//	ext    eth0 198.18.0.100/24 (an outside client for NodePorts)
//	Service web  10.96.0.20:80/TCP  nodePort 30080 -> backends :8080
//	Service dns  10.96.0.10:53/UDP                  -> backends :5353

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/modes/userspace"
	"github.com/svcsim/svcsim/sim/state"
)

type topo struct {
	node, client, backend, ext *netns.NS
	backendIPs                 []netip.Addr
}

var (
	cniIP      = netip.MustParseAddr("10.244.1.1")
	clientIP   = netip.MustParseAddr("10.244.1.10")
	extIP      = netip.MustParseAddr("198.18.0.100")
	backendIPs = []netip.Addr{netip.MustParseAddr("10.244.1.20"), netip.MustParseAddr("10.244.1.21"), netip.MustParseAddr("10.244.1.22")}
)

// newTopo builds the namespaces of the address plan and removes them (and
// everything in them) in t.Cleanup.
func newTopo(t testing.TB) *topo {
	t.Helper()
	tp := &topo{backendIPs: backendIPs}
	tp.node, tp.client, tp.backend, tp.ext = privtest.NS(t, "node"), privtest.NS(t, "client"), privtest.NS(t, "backend"), privtest.NS(t, "ext")

	h := func(ns *netns.NS) *netlink.Handle {
		hd, err := netlink.NewHandleAt(ns.Handle())
		require.NoError(t, err)
		t.Cleanup(hd.Close)
		return hd
	}
	nodeH, clientH, backendH, extH := h(tp.node), h(tp.client), h(tp.backend), h(tp.ext)

	// ip link add cni0 type bridge (in node)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "cni0"}}
	require.NoError(t, nodeH.LinkAdd(br))
	addAddr(t, nodeH, "cni0", "10.244.1.1/24")
	up(t, nodeH, "cni0")

	// veth pairs created in the node namespace, peer straight into the
	// other namespace: nothing ever appears in the root namespace.
	veth := func(local string, peer *netns.NS) {
		require.NoError(t, nodeH.LinkAdd(&netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: local}, PeerName: "eth0",
			PeerNamespace: netlink.NsFd(int(peer.Handle())),
		}))
	}
	veth("vclient", tp.client)
	veth("vbackend", tp.backend)
	veth("eth0", tp.ext)
	for _, port := range []string{"vclient", "vbackend"} {
		l, err := nodeH.LinkByName(port)
		require.NoError(t, err)
		require.NoError(t, nodeH.LinkSetMaster(l, br))
		up(t, nodeH, port)
	}
	addAddr(t, nodeH, "eth0", "198.18.0.11/24")
	up(t, nodeH, "eth0")
	eth0, err := nodeH.LinkByName("eth0")
	require.NoError(t, err)
	_, svcCIDR, _ := net.ParseCIDR("10.96.0.0/12")
	require.NoError(t, nodeH.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: svcCIDR})) // ip route add 10.96.0.0/12 dev eth0

	addAddr(t, clientH, "eth0", "10.244.1.10/24")
	up(t, clientH, "eth0")
	defaultVia(t, clientH, "10.244.1.1")
	for _, ip := range backendIPs {
		addAddr(t, backendH, "eth0", ip.String()+"/24")
	}
	up(t, backendH, "eth0")
	defaultVia(t, backendH, "10.244.1.1")
	addAddr(t, extH, "eth0", "198.18.0.100/24")
	up(t, extH, "eth0")
	return tp
}

// addAddr: ip addr add cidr dev name
func addAddr(t testing.TB, h *netlink.Handle, name, cidr string) {
	t.Helper()
	l, err := h.LinkByName(name)
	require.NoError(t, err)
	a, err := netlink.ParseAddr(cidr)
	require.NoError(t, err)
	require.NoError(t, h.AddrAdd(l, a), "addr %s on %s", cidr, name)
}

// up: ip link set name up
func up(t testing.TB, h *netlink.Handle, name string) {
	t.Helper()
	l, err := h.LinkByName(name)
	require.NoError(t, err)
	require.NoError(t, h.LinkSetUp(l))
}

// defaultVia: ip route add default via gw
func defaultVia(t testing.TB, h *netlink.Handle, gw string) {
	t.Helper()
	require.NoError(t, h.RouteAdd(&netlink.Route{Gw: net.ParseIP(gw)}))
}

func in(t testing.TB, ns *netns.NS, f func() error) {
	t.Helper()
	require.NoError(t, ns.Do(f))
}

// dialIn opens a client socket inside ns.
func dialIn(t testing.TB, ns *netns.NS, network, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	in(t, ns, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, 3*time.Second)
		return err
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// helloIn is hello from a client in ns.
func helloIn(t testing.TB, ns *netns.NS, addr string) (name, peer string) {
	t.Helper()
	c := dialIn(t, ns, "tcp4", addr)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err, "no answer from %s", addr)
	f := strings.Fields(line)
	require.Len(t, f, 2)
	return f[0], f[1]
}

func natRules(t testing.TB, ns *netns.NS) string {
	var out []byte
	in(t, ns, func() error {
		var err error
		out, err = exec.Command("iptables-save", "-t", "nat").Output()
		return err
	})
	return string(out)
}

// startProxier runs a real userspace proxier in the node namespace and
// cleans it up (checking nothing is left) before the namespaces go.
func startProxier(t testing.TB, tp *topo) *userspace.Proxier {
	p := userspace.New(userspace.Config{Node: "node1"})
	t.Cleanup(func() {
		in(t, tp.node, func() error { return p.Cleanup(ctx) })
		requireNoProxyGoroutines(t)
		require.NotContains(t, natRules(t, tp.node), "KUBE-")
	})
	return p
}

func privState() *state.NodeState {
	var tcpEPs, udpEPs []netip.AddrPort
	for _, ip := range backendIPs {
		tcpEPs = append(tcpEPs, netip.AddrPortFrom(ip, 8080))
		udpEPs = append(udpEPs, netip.AddrPortFrom(ip, 5353))
	}
	return makeState(
		makeService("web", state.TCP, webIP, 80, withEndpoints(tcpEPs...), func(sp *state.ServicePort) { sp.NodePort = 30080 }),
		makeService("dns", state.UDP, dnsIP, 53, withEndpoints(udpEPs...), func(sp *state.ServicePort) { sp.NodePort = 30053 }),
	)
}

func TestPrivilegedTCP(t *testing.T) {
	privtest.HostUntouched(t)
	tp := newTopo(t)
	var backends []*tcpBackend
	for _, ip := range backendIPs {
		in(t, tp.backend, func() error {
			ln, err := net.Listen("tcp4", netip.AddrPortFrom(ip, 8080).String())
			if err == nil {
				backends = append(backends, serveTCPBackend(t, ip.String(), ln))
			}
			return err
		})
	}
	p := startProxier(t, tp)
	in(t, tp.node, func() error { return p.Sync(ctx, privState()) })

	// Pod -> ClusterIP (PREROUTING REDIRECT): exact rotation, and the
	// backend sees the node (the proxy), not the pod.
	const n = 30
	counts := map[string]int{}
	for i := range n {
		name, peer := helloIn(t, tp.client, "10.96.0.20:80")
		require.Equal(t, backendIPs[i%3].String(), name, "request %d", i)
		counts[name]++
		ap := netip.MustParseAddrPort(peer)
		require.Equal(t, cniIP, ap.Addr(), "backend must see the proxy's address, not the client %v", clientIP)
	}
	for _, ip := range backendIPs {
		require.Equal(t, n/3, counts[ip.String()])
	}

	// Node-local client -> ClusterIP (OUTPUT DNAT to the node IP); the
	// rotation just continues.
	for i := range 3 {
		name, peer := helloIn(t, tp.node, "10.96.0.20:80")
		require.Equal(t, backendIPs[i%3].String(), name)
		require.Equal(t, cniIP, netip.MustParseAddrPort(peer).Addr())
	}
	// NodePort from outside (PREROUTING, addrtype LOCAL), from a pod to the
	// node's address, and from the node itself.
	seen := map[string]bool{}
	for _, ns := range []*netns.NS{tp.ext, tp.client, tp.node} {
		name, _ := helloIn(t, ns, "198.18.0.11:30080")
		seen[name] = true
	}
	require.Len(t, seen, 3, "three NodePort connections went round the three backends")

	// A backend dies: it refuses, the proxy skips it, no client fails.
	backends[1].Close()
	for range 9 {
		name, _ := helloIn(t, tp.client, "10.96.0.20:80")
		require.NotEqual(t, backendIPs[1].String(), name)
	}

	var dump string
	in(t, tp.node, func() error {
		var err error
		dump, err = p.Dump(ctx)
		return err
	})
	port, _ := p.ProxyPort(webKey)
	require.Contains(t, dump, fmt.Sprintf("-A KUBE-PORTALS-CONTAINER -d 10.96.0.20/32 -p tcp -m comment --comment \"default/web:p\" -m tcp --dport 80 -j REDIRECT --to-ports %d", port))
	t.Log("\n" + dump)

	// After Cleanup the portal is gone: the ClusterIP no longer answers
	// and nor does the proxy port.
	in(t, tp.node, func() error { return p.Cleanup(ctx) })
	requireNoProxyGoroutines(t)
	require.NotContains(t, natRules(t, tp.node), "KUBE-")
	in(t, tp.client, func() error {
		_, err := net.DialTimeout("tcp4", netip.AddrPortFrom(cniIP, uint16(port)).String(), time.Second)
		require.Error(t, err, "proxy port still listening after Cleanup")
		return nil
	})
}

func TestPrivilegedUDP(t *testing.T) {
	privtest.HostUntouched(t)
	tp := newTopo(t)
	var backends []*udpBackend
	for _, ip := range backendIPs {
		in(t, tp.backend, func() error {
			pc, err := net.ListenPacket("udp4", netip.AddrPortFrom(ip, 5353).String())
			if err == nil {
				backends = append(backends, serveUDPBackend(t, ip.String(), pc))
			}
			return err
		})
	}
	p := startProxier(t, tp)
	in(t, tp.node, func() error { return p.Sync(ctx, privState()) })

	// Six pod clients (six source ports): sessions go round-robin, each
	// client only ever gets its own replies.
	for i := range 6 {
		c := dialIn(t, tp.client, "udp4", "10.96.0.10:53")
		for r := range 3 {
			payload := fmt.Sprintf("c%d-r%d", i, r)
			name, echoed := udpAsk(t, c, payload)
			require.Equal(t, payload, echoed)
			require.Equal(t, backendIPs[i%3].String(), name, "client %d", i)
		}
	}
	// Backends see the node's address as the source.
	for _, b := range backends {
		peers := b.Peers()
		require.Len(t, peers, 2, "two sessions per backend")
		for peer := range peers {
			require.Equal(t, cniIP, netip.MustParseAddrPort(peer).Addr(), "backend %s saw the client's address", b.name)
		}
	}
	// Node-local client (OUTPUT DNAT to the node IP, so the reply's source
	// matches the flow), and NodePort from outside.
	for _, tc := range []struct {
		ns   *netns.NS
		addr string
	}{{tp.node, "10.96.0.10:53"}, {tp.ext, "198.18.0.11:30053"}, {tp.client, "198.18.0.11:30053"}} {
		c := dialIn(t, tc.ns, "udp4", tc.addr)
		_, echoed := udpAsk(t, c, "hello "+tc.addr)
		require.Equal(t, "hello "+tc.addr, echoed)
	}
}
