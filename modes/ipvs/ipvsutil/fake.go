package ipvsutil

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"
)

// Op names the Fake counts (one per Interface method).
const (
	OpListServices  = "list-services"
	OpAddService    = "add-service"
	OpUpdateService = "update-service"
	OpDeleteService = "delete-service"
	OpListDests     = "list-destinations"
	OpAddDest       = "add-destination"
	OpUpdateDest    = "update-destination"
	OpDeleteDest    = "delete-destination"
	OpFlush         = "flush"
)

// Fake is an in-memory IPVS table that enforces what the kernel enforces
// (services exist before their destinations, no duplicates, known
// schedulers) and counts every call. It is safe for concurrent use.
type Fake struct {
	mu   sync.Mutex
	svcs map[Key]*fakeService
	ops  map[string]int
}

type fakeService struct {
	vs    VirtualServer
	dests map[netip.AddrPort]*RealServer
}

var _ Interface = (*Fake)(nil)

// NewFake returns an empty table.
func NewFake() *Fake {
	return &Fake{svcs: map[Key]*fakeService{}, ops: map[string]int{}}
}

// Ops returns a copy of the call counters by op name.
func (f *Fake) Ops() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.ops))
	for k, v := range f.ops {
		out[k] = v
	}
	return out
}

// TotalOps is the number of calls since the last ResetOps.
func (f *Fake) TotalOps() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.ops {
		n += v
	}
	return n
}

// ResetOps zeroes the counters.
func (f *Fake) ResetOps() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = map[string]int{}
}

// SetConnections sets the connection counters of a real server, as traffic
// through the kernel would; tests use it for graceful termination.
func (f *Fake) SetConnections(k Key, rs netip.AddrPort, active, inactive int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.svcs[k]
	if !ok {
		return fmt.Errorf("service %s: %w", k, ErrNotFound)
	}
	d, ok := s.dests[rs]
	if !ok {
		return fmt.Errorf("real server %s of %s: %w", rs, k, ErrNotFound)
	}
	d.ActiveConn, d.InactiveConn = active, inactive
	return nil
}

// Services implements Interface; the result is sorted by key.
func (f *Fake) Services() ([]*VirtualServer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops[OpListServices]++
	out := make([]*VirtualServer, 0, len(f.svcs))
	for _, s := range f.svcs {
		vs := s.vs
		out = append(out, &vs)
	}
	sort.Slice(out, func(i, j int) bool { return lessKey(out[i].Key(), out[j].Key()) })
	return out, nil
}

// AddService implements Interface.
func (f *Fake) AddService(vs *VirtualServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops[OpAddService]++
	if err := checkService(vs); err != nil {
		return err
	}
	if _, ok := f.svcs[vs.Key()]; ok {
		return fmt.Errorf("add IPVS service %s: %w", vs.Key(), ErrExists)
	}
	f.svcs[vs.Key()] = &fakeService{vs: *vs, dests: map[netip.AddrPort]*RealServer{}}
	return nil
}

// UpdateService implements Interface.
func (f *Fake) UpdateService(vs *VirtualServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops[OpUpdateService]++
	if err := checkService(vs); err != nil {
		return err
	}
	s, ok := f.svcs[vs.Key()]
	if !ok {
		return fmt.Errorf("update IPVS service %s: %w", vs.Key(), ErrNotFound)
	}
	s.vs = *vs
	return nil
}

// DeleteService implements Interface.
func (f *Fake) DeleteService(vs *VirtualServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops[OpDeleteService]++
	if _, ok := f.svcs[vs.Key()]; !ok {
		return fmt.Errorf("delete IPVS service %s: %w", vs.Key(), ErrNotFound)
	}
	delete(f.svcs, vs.Key())
	return nil
}

// Destinations implements Interface; the result is sorted by address.
func (f *Fake) Destinations(vs *VirtualServer) ([]*RealServer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops[OpListDests]++
	s, ok := f.svcs[vs.Key()]
	if !ok {
		return nil, fmt.Errorf("list real servers of %s: %w", vs.Key(), ErrNotFound)
	}
	out := make([]*RealServer, 0, len(s.dests))
	for _, d := range s.dests {
		c := *d
		out = append(out, &c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key().Compare(out[j].Key()) < 0 })
	return out, nil
}

// AddDestination implements Interface.
func (f *Fake) AddDestination(vs *VirtualServer, rs *RealServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops[OpAddDest]++
	s, err := f.destTarget("add", vs, rs)
	if err != nil {
		return err
	}
	if _, ok := s.dests[rs.Key()]; ok {
		return fmt.Errorf("add real server %s of %s: %w", rs.Key(), vs.Key(), ErrExists)
	}
	s.dests[rs.Key()] = &RealServer{Address: rs.Address, Port: rs.Port, Weight: rs.Weight}
	return nil
}

// UpdateDestination implements Interface; connection counters are kept.
func (f *Fake) UpdateDestination(vs *VirtualServer, rs *RealServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops[OpUpdateDest]++
	s, err := f.destTarget("update", vs, rs)
	if err != nil {
		return err
	}
	d, ok := s.dests[rs.Key()]
	if !ok {
		return fmt.Errorf("update real server %s of %s: %w", rs.Key(), vs.Key(), ErrNotFound)
	}
	d.Weight = rs.Weight
	return nil
}

// DeleteDestination implements Interface.
func (f *Fake) DeleteDestination(vs *VirtualServer, rs *RealServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops[OpDeleteDest]++
	s, err := f.destTarget("delete", vs, rs)
	if err != nil {
		return err
	}
	if _, ok := s.dests[rs.Key()]; !ok {
		return fmt.Errorf("delete real server %s of %s: %w", rs.Key(), vs.Key(), ErrNotFound)
	}
	delete(s.dests, rs.Key())
	return nil
}

// Flush implements Interface.
func (f *Fake) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops[OpFlush]++
	f.svcs = map[Key]*fakeService{}
	return nil
}

func (f *Fake) destTarget(what string, vs *VirtualServer, rs *RealServer) (*fakeService, error) {
	s, ok := f.svcs[vs.Key()]
	if !ok {
		return nil, fmt.Errorf("%s real server %s: service %s: %w", what, rs.Key(), vs.Key(), ErrNotFound)
	}
	if !rs.Address.IsValid() || rs.Port == 0 {
		return nil, fmt.Errorf("%s real server %s of %s: invalid address", what, rs.Key(), vs.Key())
	}
	if rs.Address.Is4() != vs.Address.Is4() {
		return nil, fmt.Errorf("%s real server %s of %s: address family mismatch", what, rs.Key(), vs.Key())
	}
	if rs.Weight < 0 {
		return nil, fmt.Errorf("%s real server %s of %s: negative weight %d", what, rs.Key(), vs.Key(), rs.Weight)
	}
	return s, nil
}

func checkService(vs *VirtualServer) error {
	if err := vs.validate(); err != nil {
		return err
	}
	if !KnownSchedulers[vs.Scheduler] {
		// A kernel without ip_vs_<name>.ko answers ENOENT.
		return fmt.Errorf("IPVS service %s: scheduler %q: %w", vs.Key(), vs.Scheduler, ErrNotFound)
	}
	if vs.Flags&^FlagPersistent != 0 {
		return fmt.Errorf("IPVS service %s: unsupported flags %#x", vs.Key(), uint32(vs.Flags))
	}
	return nil
}

func lessKey(a, b Key) bool {
	if c := a.Address.Compare(b.Address); c != 0 {
		return c < 0
	}
	if a.Protocol != b.Protocol {
		return a.Protocol < b.Protocol
	}
	return a.Port < b.Port
}
