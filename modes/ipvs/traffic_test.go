package ipvs

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/modes"
)

// TestKernelTraffic sends one real TCP connection from a node namespace to a
// ClusterIP and checks that IPVS delivers it to the pod behind a veth and
// that it was masqueraded (the node's own traffic to a ClusterIP comes from
// the ClusterIP itself, outside the pod network).
//
//	node ns: veth "vpod" 10.244.1.1/24, kube-ipvs0 10.96.0.20
//	pod ns:  eth0 10.244.1.5/24, default via 10.244.1.1, listens on :8080
func TestKernelTraffic(t *testing.T) {
	requireIPVS(t)
	node, pod := privtest.NS(t, "node"), privtest.NS(t, "pod")
	ctx := context.Background()

	h, err := netlink.NewHandleAt(node.Handle())
	require.NoError(t, err)
	defer h.Close()
	hp, err := netlink.NewHandleAt(pod.Handle())
	require.NoError(t, err)
	defer hp.Close()
	require.NoError(t, h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vpod"}, PeerName: "eth0",
		PeerNamespace: netlink.NsFd(pod.Handle())}))
	setup := func(h *netlink.Handle, name, cidr string) {
		l, err := h.LinkByName(name)
		require.NoError(t, err)
		a, err := netlink.ParseAddr(cidr)
		require.NoError(t, err)
		require.NoError(t, h.AddrAdd(l, a))
		require.NoError(t, h.LinkSetUp(l))
	}
	setup(h, "vpod", "10.244.1.1/24")
	setup(hp, "eth0", "10.244.1.5/24")
	eth0, err := hp.LinkByName("eth0")
	require.NoError(t, err)
	require.NoError(t, hp.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP("10.244.1.1")}))

	// The backend: answers each connection with the address it came from.
	var ln net.Listener
	require.NoError(t, pod.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", "0.0.0.0:8080")
		return err
	}))
	defer ln.Close()
	go func() {
		for i := 0; i < 4; i++ { // bounded
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, c.RemoteAddr().String())
			c.Close()
		}
	}()

	var p modes.Proxier
	require.NoError(t, node.Do(func() error {
		var err error
		p, err = modes.New(Name, modes.Options{Node: "node1"})
		return err
	}))
	t.Cleanup(func() {
		assert.NoError(t, node.Do(func() error { return p.Cleanup(ctx) }))
		assert.NoError(t, p.(*Proxier).Close())
	})
	st := makeState(makeSvc("web", "10.96.0.20", 80, withEps(ep("10.244.1.5", 8080, "node1"))))

	var reply string
	require.NoError(t, node.Do(func() error {
		if err := p.Sync(ctx, st); err != nil {
			return err
		}
		c, err := net.DialTimeout("tcp4", "10.96.0.20:80", 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		reply = string(b)
		return nil
	}))
	from, err := netip.ParseAddrPort(reply)
	require.NoError(t, err, "reply %q", reply)
	assert.Equal(t, "10.244.1.1", from.Addr().String(), "masqueraded to the node's address on the pod network")
}
