package iptables_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/modes/conntrack"
	"github.com/svcsim/svcsim/modes/iptables"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/sim/state"
)

// Real traffic through the mode's rules, in three namespaces made here:
//
//	client 10.244.1.2 --veth-- 10.244.1.1 node 10.244.2.1 --veth-- 10.244.2.2 server
//
// The node namespace holds the rules and forwards; the server answers every
// TCP connection with the address it sees the client as.
func TestKernelTraffic(t *testing.T) {
	privtest.HostUntouched(t)
	forEachBackend(t, func(t *testing.T, b iptrestore.Backend) {
		ctx := context.Background()
		node, client, server := privtest.NS(t, "node"), privtest.NS(t, "client"), privtest.NS(t, "server")
		link(t, node, client, "nc0", "10.244.1.1/24", "10.244.1.2/24")
		link(t, node, server, "ns0", "10.244.2.1/24", "10.244.2.2/24")
		must(t, node.Do(func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
		}))
		// Like a real node, this one has a default route: without it a
		// packet to a ClusterIP that is not translated fails routing
		// (network unreachable) before the filter REJECT sees it.
		defaultRoute(t, node, "ns0", "10.244.2.2")
		serveRemoteAddr(t, server, "10.244.2.2:8080")

		p, err := iptables.New(iptables.Config{Backend: b, Node: "node1"})
		must(t, err)
		st := makeState(
			makeService("default", "web", "10.96.0.20", 80, withNodePort(30080), withEndpoints("10.244.2.2:8080@node1")),
			makeService("default", "empty", "10.96.0.50", 80),
		)
		st.NodeIPs = []netip.Addr{netip.MustParseAddr("10.244.1.1")}
		must(t, node.Do(func() error { return p.Sync(ctx, st) }))
		t.Cleanup(func() {
			if err := node.Do(func() error { return p.Cleanup(ctx) }); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})

		// ClusterIP from a pod: DNAT, source kept.
		if got, err := dial(client, "10.96.0.20:80"); err != nil || got != "10.244.1.2" {
			t.Errorf("pod -> ClusterIP: server saw %q, %v; want 10.244.1.2", got, err)
		}
		// NodePort: DNAT and masquerade to the node's address.
		if got, err := dial(client, "10.244.1.1:30080"); err != nil || got != "10.244.2.1" {
			t.Errorf("NodePort: server saw %q, %v; want the node's 10.244.2.1", got, err)
		}
		// No endpoints: rejected at once.
		if _, err := dial(client, "10.96.0.50:80"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("service without endpoints: %v, want connection refused", err)
		}
		// A partial sync that removes the endpoint turns the service into
		// a reject; one that adds it back restores traffic.
		st2 := makeState(
			makeService("default", "web", "10.96.0.20", 80, withNodePort(30080)),
			makeService("default", "empty", "10.96.0.50", 80),
		)
		must(t, node.Do(func() error { return p.Sync(ctx, st2) }))
		if _, err := dial(client, "10.96.0.20:80"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("after endpoint removal: %v, want connection refused", err)
		}
		must(t, node.Do(func() error { return p.Sync(ctx, st) }))
		if p.LastSync().Full {
			t.Errorf("endpoint re-add did a full sync")
		}
		if got, err := dial(client, "10.96.0.20:80"); err != nil || got != "10.244.1.2" {
			t.Errorf("after endpoint re-add: server saw %q, %v", got, err)
		}
	})
}

// link connects namespaces a and b with a veth pair (aName in a, eth0 in b)
// and gives b a default route through a.
func link(t *testing.T, a, b *netns.NS, aName, aAddr, bAddr string) {
	t.Helper()
	ha, err := netlink.NewHandleAt(a.Handle())
	must(t, err)
	defer ha.Close()
	hb, err := netlink.NewHandleAt(b.Handle())
	must(t, err)
	defer hb.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(b.Handle()))}
	must(t, ha.LinkAdd(veth))
	for _, side := range []struct {
		h    *netlink.Handle
		name string
		addr string
	}{{ha, aName, aAddr}, {hb, "eth0", bAddr}} {
		l, err := side.h.LinkByName(side.name)
		must(t, err)
		ad, err := netlink.ParseAddr(side.addr)
		must(t, err)
		must(t, side.h.AddrAdd(l, ad))
		must(t, side.h.LinkSetUp(l))
	}
	gw, _, _ := net.ParseCIDR(aAddr)
	eth0, err := hb.LinkByName("eth0")
	must(t, err)
	must(t, hb.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw}))
}

func defaultRoute(t *testing.T, ns *netns.NS, dev, gw string) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns.Handle())
	must(t, err)
	defer h.Close()
	l, err := h.LinkByName(dev)
	must(t, err)
	must(t, h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}))
}

// serveRemoteAddr answers each connection to addr (in ns) with the peer's IP.
func serveRemoteAddr(t *testing.T, ns *netns.NS, addr string) {
	t.Helper()
	var ln net.Listener
	must(t, ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			_, _ = io.WriteString(c, host)
			c.Close()
		}
	}()
}

// dial connects from ns to addr and returns what the server wrote.
func dial(ns *netns.NS, addr string) (string, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

// A UDP client keeps its socket (so its conntrack entry) while the
// service's endpoint changes: with conntrack cleanup it reaches the new
// endpoint, without (the control) it still reaches the old one.
func TestKernelUDPConntrackCleanup(t *testing.T) {
	privtest.HostUntouched(t)
	forEachBackend(t, func(t *testing.T, b iptrestore.Backend) {
		for _, tc := range []struct {
			name    string
			ct      conntrack.Interface
			wantNew string
		}{
			{"netlink", conntrack.Netlink{}, "B"},
			{"control-without-cleanup", noConntrack{}, "A"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx := context.Background()
				node, client, server := privtest.NS(t, "node"), privtest.NS(t, "client"), privtest.NS(t, "server")
				link(t, node, client, "nc0", "10.244.1.1/24", "10.244.1.2/24")
				link(t, node, server, "ns0", "10.244.2.1/24", "10.244.2.2/24")
				must(t, node.Do(func() error {
					return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
				}))
				serveUDP(t, server, "10.244.2.2:5353", "A")
				serveUDP(t, server, "10.244.2.2:5354", "B")
				runner, err := iptrestore.NewExec(b)
				must(t, err)
				p, err := iptables.New(iptables.Config{Backend: b, Runner: runner, Conntrack: tc.ct})
				must(t, err)
				svc := func(port string) *state.NodeState {
					return makeState(makeService("kube-system", "dns", "10.96.0.53", 53, withProtocol(state.UDP),
						withEndpoints("10.244.2.2:"+port+"@node1")))
				}
				must(t, node.Do(func() error { return p.Sync(ctx, svc("5353")) }))
				t.Cleanup(func() { _ = node.Do(func() error { return p.Cleanup(ctx) }) })

				var c net.Conn
				must(t, client.Do(func() (err error) {
					c, err = net.Dial("udp", "10.96.0.53:53")
					return err
				}))
				defer c.Close()
				if got := askUDP(t, c); got != "A" {
					t.Fatalf("first answer %q, want A", got)
				}
				must(t, node.Do(func() error { return p.Sync(ctx, svc("5354")) }))
				if got := askUDP(t, c); got != tc.wantNew {
					t.Errorf("after the endpoint change the same socket reached %q, want %q (deleted %d entries)",
						got, tc.wantNew, p.LastSync().ConntrackDeleted)
				}
			})
		}
	})
}

type noConntrack struct{}

func (noConntrack) DeleteUDP(context.Context, func(netip.AddrPort, netip.AddrPort) bool) (int, error) {
	return 0, nil
}

// serveUDP answers every datagram to addr (in ns) with reply, followed by
// the datagram.
func serveUDP(t *testing.T, ns *netns.NS, addr, reply string) {
	t.Helper()
	var pc net.PacketConn
	must(t, ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", addr)
		return err
	}))
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(reply+" "+string(buf[:n])), from)
		}
	}()
}

// askUDP sends one datagram on c and returns the answer ("" on timeout),
// retrying a few times since UDP may drop. Each try carries its own token,
// and answers to earlier ones (late after a neighbour lookup, say) are
// skipped, so they cannot pass for the answer to this one.
func askUDP(t *testing.T, c net.Conn) string {
	t.Helper()
	buf := make([]byte, 64)
	for range 3 {
		udpTries++
		token := "?" + strconv.Itoa(udpTries)
		if _, err := c.Write([]byte(token)); err != nil {
			t.Fatalf("udp write: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			if reply, got, _ := strings.Cut(string(buf[:n]), " "); got == token {
				return reply
			}
		}
	}
	return ""
}

// udpTries numbers askUDP's datagrams.
var udpTries int
