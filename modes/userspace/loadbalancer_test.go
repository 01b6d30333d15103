package userspace

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var (
	epA = netip.MustParseAddrPort("10.244.1.2:8080")
	epB = netip.MustParseAddrPort("10.244.1.3:8080")
	epC = netip.MustParseAddrPort("10.244.2.2:8080")

	client1 = netip.MustParseAddr("10.244.1.10")
	client2 = netip.MustParseAddr("10.244.1.11")
)

func TestRoundRobinRotationOrder(t *testing.T) {
	rr := NewRoundRobin(nil)
	rr.Update([]netip.AddrPort{epA, epB, epC}, false, 0)
	var got []netip.AddrPort
	for range 7 {
		ep, err := rr.Next(client1, nil)
		require.NoError(t, err)
		got = append(got, ep)
	}
	require.Equal(t, []netip.AddrPort{epA, epB, epC, epA, epB, epC, epA}, got)
}

func TestRoundRobinNoEndpoints(t *testing.T) {
	rr := NewRoundRobin(nil)
	_, err := rr.Next(client1, nil)
	require.ErrorIs(t, err, ErrNoEndpoints)
	rr.Update([]netip.AddrPort{epA}, false, 0)
	rr.Update(nil, false, 0)
	_, err = rr.Next(client1, nil)
	require.ErrorIs(t, err, ErrNoEndpoints)
}

func TestRoundRobinSkipsTried(t *testing.T) {
	rr := NewRoundRobin(nil)
	rr.Update([]netip.AddrPort{epA, epB, epC}, false, 0)
	ep, err := rr.Next(client1, []netip.AddrPort{epA})
	require.NoError(t, err)
	require.Equal(t, epB, ep)
	ep, err = rr.Next(client1, []netip.AddrPort{epA, epB})
	require.NoError(t, err)
	require.Equal(t, epC, ep)
	_, err = rr.Next(client1, []netip.AddrPort{epA, epB, epC})
	require.ErrorIs(t, err, ErrNoEndpoints)
}

func TestRoundRobinUpdate(t *testing.T) {
	rr := NewRoundRobin(nil)
	rr.Update([]netip.AddrPort{epA, epB, epC}, false, 0)
	_, _ = rr.Next(client1, nil) // A
	// The same list again (a Sync that changed nothing) keeps the position.
	rr.Update([]netip.AddrPort{epA, epB, epC}, false, 0)
	ep, _ := rr.Next(client1, nil)
	require.Equal(t, epB, ep)
	// A changed list restarts the rotation; the removed endpoint is never
	// picked again.
	rr.Update([]netip.AddrPort{epA, epC}, false, 0)
	for i := range 6 {
		ep, _ := rr.Next(client1, nil)
		require.Equal(t, []netip.AddrPort{epA, epC}[i%2], ep)
	}
}

func TestRoundRobinAffinityPinsUntilIdle(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1_000_000, 0)}
	rr := NewRoundRobin(clk)
	rr.Update([]netip.AddrPort{epA, epB, epC}, true, 10*time.Second)

	ep1, _ := rr.Next(client1, nil)
	require.Equal(t, epA, ep1)
	ep2, _ := rr.Next(client2, nil)
	require.Equal(t, epB, ep2)
	// Used every 9s, the pin never expires although 45s pass.
	for range 5 {
		clk.Advance(9 * time.Second)
		ep, _ := rr.Next(client1, nil)
		require.Equal(t, epA, ep)
	}
	// client2 has been idle for 45s: its pin expired, it gets the next
	// endpoint in the rotation and is pinned to that.
	pinned, ok := rr.Pinned(client2)
	require.False(t, ok, "pin of client2 should have expired, got %v", pinned)
	ep, _ := rr.Next(client2, nil)
	require.Equal(t, epC, ep)
	ep, _ = rr.Next(client2, nil)
	require.Equal(t, epC, ep)

	// Exactly the timeout of idleness expires a pin.
	clk.Advance(10 * time.Second)
	_, ok = rr.Pinned(client1)
	require.False(t, ok)
	rr.ExpirePins()
	require.Empty(t, rr.pins)
}

func TestRoundRobinAffinityRepinsOnFailureAndRemoval(t *testing.T) {
	rr := NewRoundRobin(&fakeClock{now: time.Unix(1, 0)})
	rr.Update([]netip.AddrPort{epA, epB, epC}, true, time.Hour)
	ep, _ := rr.Next(client1, nil)
	require.Equal(t, epA, ep)
	// A failed first try re-pins to the endpoint tried next.
	ep, _ = rr.Next(client1, []netip.AddrPort{epA})
	require.Equal(t, epB, ep)
	ep, _ = rr.Next(client1, nil)
	require.Equal(t, epB, ep)
	// Removing the pinned endpoint drops the pin.
	rr.Update([]netip.AddrPort{epA, epC}, true, time.Hour)
	_, ok := rr.Pinned(client1)
	require.False(t, ok)
	ep, _ = rr.Next(client1, nil)
	require.Equal(t, epA, ep)
	// Turning affinity off forgets every pin.
	rr.Update([]netip.AddrPort{epA, epC}, false, time.Hour)
	ep, _ = rr.Next(client1, nil)
	require.Equal(t, epC, ep)
}
