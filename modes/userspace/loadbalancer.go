package userspace

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// ErrNoEndpoints is returned by RoundRobin.Next when the Service port has no
// endpoint left to try.
var ErrNoEndpoints = errors.New("no endpoints")

// Clock tells the time; tests inject a fake one to expire session affinity
// without sleeping.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// RoundRobin picks the backend for each new connection of one Service port,
// like kube-proxy's userspace LoadBalancerRR: it walks the endpoints in order
// and, with ClientIP session affinity, pins each client IP to the endpoint it
// got until the pin has been idle for the affinity timeout.
//
// Unlike kube-proxy, which shuffled the endpoint list on every change, the
// rotation order is the endpoint order given to Update (NodeState order), so
// tests and scenarios can predict it.
type RoundRobin struct {
	clock Clock

	mu        sync.Mutex
	endpoints []netip.AddrPort
	next      int // index of the endpoint the next unpinned pick returns
	affinity  bool
	ttl       time.Duration
	pins      map[netip.Addr]*pin
}

type pin struct {
	endpoint netip.AddrPort
	lastUsed time.Time
}

// NewRoundRobin returns a balancer with no endpoints. A nil clock means the
// real one.
func NewRoundRobin(clock Clock) *RoundRobin {
	if clock == nil {
		clock = realClock{}
	}
	return &RoundRobin{clock: clock, pins: map[netip.Addr]*pin{}}
}

// Update replaces the endpoints and the affinity policy in place. Connections
// already made are not affected. If the endpoint list changed, the rotation
// restarts at the first endpoint (as kube-proxy did) and pins to endpoints
// that are gone are dropped; an unchanged list keeps the rotation position, so
// a repeated Sync does not disturb the order. ttl <= 0 disables affinity.
func (rr *RoundRobin) Update(endpoints []netip.AddrPort, affinity bool, ttl time.Duration) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if !slices.Equal(rr.endpoints, endpoints) {
		rr.endpoints = slices.Clone(endpoints)
		rr.next = 0
		for ip, p := range rr.pins {
			if !slices.Contains(rr.endpoints, p.endpoint) {
				delete(rr.pins, ip)
			}
		}
	}
	if !affinity || ttl <= 0 {
		affinity = false
		clear(rr.pins)
	}
	rr.affinity, rr.ttl = affinity, ttl
}

// Endpoints returns a copy of the current rotation.
func (rr *RoundRobin) Endpoints() []netip.AddrPort {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return slices.Clone(rr.endpoints)
}

// Next returns the endpoint for a new connection from client. tried lists
// endpoints that already failed for this connection: they are skipped, and a
// pin is only honoured on the first try (a failed pinned backend re-pins the
// client to the endpoint that is tried next, like kube-proxy's
// sessionAffinityReset). It returns ErrNoEndpoints when every endpoint has been
// tried or there are none.
func (rr *RoundRobin) Next(client netip.Addr, tried []netip.AddrPort) (netip.AddrPort, error) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	n := len(rr.endpoints)
	if n == 0 {
		return netip.AddrPort{}, ErrNoEndpoints
	}
	now := rr.clock.Now()
	client = client.Unmap()
	if rr.affinity && len(tried) == 0 {
		if p, ok := rr.pins[client]; ok {
			if now.Sub(p.lastUsed) < rr.ttl {
				p.lastUsed = now
				return p.endpoint, nil
			}
			delete(rr.pins, client)
		}
	}
	for range n {
		ep := rr.endpoints[rr.next]
		rr.next = (rr.next + 1) % n
		if slices.Contains(tried, ep) {
			continue
		}
		if rr.affinity {
			rr.pins[client] = &pin{endpoint: ep, lastUsed: now}
		}
		return ep, nil
	}
	return netip.AddrPort{}, ErrNoEndpoints
}

// Pinned returns the endpoint client is pinned to, if an unexpired pin exists.
func (rr *RoundRobin) Pinned(client netip.Addr) (netip.AddrPort, bool) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	p, ok := rr.pins[client.Unmap()]
	if !ok || !rr.affinity || rr.clock.Now().Sub(p.lastUsed) >= rr.ttl {
		return netip.AddrPort{}, false
	}
	return p.endpoint, true
}

// ExpirePins drops pins idle for longer than the timeout, so that the map does
// not grow with every client ever seen (kube-proxy's
// CleanupStaleStickySessions). Sync calls it.
func (rr *RoundRobin) ExpirePins() {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	now := rr.clock.Now()
	for ip, p := range rr.pins {
		if now.Sub(p.lastUsed) >= rr.ttl {
			delete(rr.pins, ip)
		}
	}
}
