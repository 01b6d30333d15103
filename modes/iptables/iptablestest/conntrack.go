package iptablestest

import (
	"context"
	"net/netip"
	"slices"
	"sync"
)

// Flow is a conntrack entry as FakeConntrack models it.
type Flow struct {
	Proto    string // "udp" or "tcp"
	OrigDst  netip.AddrPort
	ReplySrc netip.AddrPort
}

// FakeConntrack is an in-memory conntrack table implementing the mode's
// Conntrack interface.
type FakeConntrack struct {
	mu    sync.Mutex
	flows []Flow
	calls int
}

// Add puts flows into the table.
func (f *FakeConntrack) Add(flows ...Flow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flows = append(f.flows, flows...)
}

// DeleteUDP deletes the UDP flows stale reports as stale.
func (f *FakeConntrack) DeleteUDP(ctx context.Context, stale func(origDst, replySrc netip.AddrPort) bool) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	n := len(f.flows)
	f.flows = slices.DeleteFunc(f.flows, func(fl Flow) bool { return fl.Proto == "udp" && stale(fl.OrigDst, fl.ReplySrc) })
	return n - len(f.flows), nil
}

// Flows returns the table.
func (f *FakeConntrack) Flows() []Flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.flows)
}

// Calls counts DeleteUDP calls.
func (f *FakeConntrack) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}
