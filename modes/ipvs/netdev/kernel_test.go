package netdev

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/internal/privtest"
)

// TestNetlinkAddrs (root): in a namespace of its own, addresses added to a
// device are listed by Addrs and by LocalAddrs, and gone from both once
// deleted. It uses the loopback device: this host's kernel has no dummy
// driver (the kernel lane's has).
func TestNetlinkAddrs(t *testing.T) {
	privtest.RequireRoot(t)
	ns := privtest.NS(t, "netdev")
	n, err := NewAt(ns.Handle())
	require.NoError(t, err)
	t.Cleanup(n.Close)
	vip, nodeIP := netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("198.18.0.11")
	for _, a := range []netip.Addr{vip, nodeIP} {
		require.NoError(t, n.AddAddr("lo", a))
	}
	own, err := n.Addrs("lo")
	require.NoError(t, err)
	assert.Subset(t, own, []netip.Addr{vip, nodeIP})
	all, err := n.LocalAddrs()
	require.NoError(t, err)
	assert.Subset(t, all, []netip.Addr{vip, nodeIP})

	require.NoError(t, n.DelAddr("lo", nodeIP))
	all, err = n.LocalAddrs()
	require.NoError(t, err)
	assert.Contains(t, all, vip)
	assert.NotContains(t, all, nodeIP, "a deleted address is gone")
	_, err = n.Addrs("nope0")
	assert.ErrorIs(t, err, ErrNoDevice)
}
