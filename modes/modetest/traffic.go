package modetest

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
)

// The address plan of a Rig: a client and a server on either side of one
// node, each on a /24 of its own.
//
//	client 10.244.1.2 --veth-- 10.244.1.1 node 10.244.2.1 --veth-- 10.244.2.2 server
const (
	ClientIP           = "10.244.1.2"
	NodeClientSideIP   = "10.244.1.1"
	NodeServerSideIP   = "10.244.2.1"
	ServerIP           = "10.244.2.2"
	nodeToClientDevice = "vclient"
	nodeToServerDevice = "vserver"
)

// Rig is three namespaces for real traffic through one node's rules, made
// with privtest.NS (root only; deleted when the test ends).
type Rig struct {
	Node, Client, Server *netns.NS
}

// NewRig links the namespaces after the Rig address plan. The node forwards,
// and, like a real node, has a default route (towards the server): without
// one a packet to a ClusterIP the rules do not translate fails routing
// (network unreachable) before a reject rule sees it. Not towards the
// client: forwarding back out the arrival interface sends an ICMP redirect,
// which rate-limits the reject's ICMP error away.
func NewRig(tb testing.TB) *Rig {
	tb.Helper()
	r := &Rig{Node: privtest.NS(tb, "node"), Client: privtest.NS(tb, "client"), Server: privtest.NS(tb, "server")}
	Link(tb, r.Node, r.Client, nodeToClientDevice, NodeClientSideIP+"/24", ClientIP+"/24")
	Link(tb, r.Node, r.Server, nodeToServerDevice, NodeServerSideIP+"/24", ServerIP+"/24")
	if err := r.Node.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
		tb.Fatal(err)
	}
	defaultRoute(tb, r.Node, nodeToServerDevice, ServerIP)
	return r
}

// Link joins namespaces a and b with a veth pair, gives both ends an
// address and sets them up, and routes b's traffic through a:
//
//	ip -n a link add aName type veth peer name eth0 netns b
//	ip -n a addr add aCIDR dev aName; ip -n b addr add bCIDR dev eth0
//	ip -n b route add default via <aCIDR's address>
func Link(tb testing.TB, a, b *netns.NS, aName, aCIDR, bCIDR string) {
	tb.Helper()
	ha := handle(tb, a)
	defer ha.Close()
	hb := handle(tb, b)
	defer hb.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(b.Handle()))}
	if err := ha.LinkAdd(veth); err != nil {
		tb.Fatalf("create veth %s: %v", aName, err)
	}
	for _, side := range []struct {
		h          *netlink.Handle
		name, cidr string
	}{{ha, aName, aCIDR}, {hb, "eth0", bCIDR}} {
		l, err := side.h.LinkByName(side.name)
		if err != nil {
			tb.Fatalf("find %s: %v", side.name, err)
		}
		ad, err := netlink.ParseAddr(side.cidr)
		if err != nil {
			tb.Fatal(err)
		}
		if err := side.h.AddrAdd(l, ad); err != nil {
			tb.Fatalf("address %s on %s: %v", side.cidr, side.name, err)
		}
		if err := side.h.LinkSetUp(l); err != nil {
			tb.Fatalf("up %s: %v", side.name, err)
		}
	}
	gw, _, err := net.ParseCIDR(aCIDR)
	if err != nil {
		tb.Fatal(err)
	}
	defaultRoute(tb, b, "eth0", gw.String())
}

// defaultRoute: ip -n ns route add default via gw dev dev.
func defaultRoute(tb testing.TB, ns *netns.NS, dev, gw string) {
	tb.Helper()
	h := handle(tb, ns)
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		tb.Fatalf("find %s: %v", dev, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
		tb.Fatalf("default route via %s: %v", gw, err)
	}
}

func handle(tb testing.TB, ns *netns.NS) *netlink.Handle {
	tb.Helper()
	h, err := netlink.NewHandleAt(ns.Handle())
	if err != nil {
		tb.Fatalf("netlink handle in %s: %v", ns.Name(), err)
	}
	return h
}

// ServeRemoteAddr answers each TCP connection to addr (listening in ns)
// with the IP address it sees the client as, until the test ends.
func ServeRemoteAddr(tb testing.TB, ns *netns.NS, addr string) {
	tb.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		tb.Fatalf("listen on %s: %v", addr, err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			_, _ = io.WriteString(c, host)
			_ = c.Close()
		}
	}()
}

// AskRemoteAddr connects from ns to addr and returns what the server wrote
// (from ServeRemoteAddr: the address it saw the connection come from).
func AskRemoteAddr(ns *netns.NS, addr string) (string, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}
