// Package conntracktest provides Fake, an in-memory conntrack table for
// tests of the datapaths' stale-entry cleanup.
package conntracktest

import (
	"context"
	"net/netip"
	"slices"
	"sync"
)

// Flow is a conntrack entry as Fake models it.
type Flow struct {
	Proto    string // "udp" or "tcp"
	OrigDst  netip.AddrPort
	ReplySrc netip.AddrPort
}

// Fake is an in-memory conntrack table implementing conntrack.Interface.
type Fake struct {
	mu    sync.Mutex
	flows []Flow
	calls int
}

// Add puts flows into the table.
func (f *Fake) Add(flows ...Flow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flows = append(f.flows, flows...)
}

// DeleteUDP deletes the UDP flows stale reports as stale.
func (f *Fake) DeleteUDP(ctx context.Context, stale func(origDst, replySrc netip.AddrPort) bool) (int, error) {
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
func (f *Fake) Flows() []Flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.flows)
}

// Calls counts DeleteUDP calls.
func (f *Fake) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}
