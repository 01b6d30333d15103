package ipvsutil

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	libipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// Runner implements Interface with a moby/ipvs netlink handle. The handle's
// socket is bound to a network namespace when the Runner is created, so later
// calls may come from any goroutine.
type Runner struct {
	mu sync.Mutex // one request at a time on the shared socket
	h  *libipvs.Handle
}

var _ Interface = (*Runner)(nil)

// New opens an IPVS handle in the namespace mounted at nsPath, or in the
// calling thread's namespace when nsPath is "". It fails (rather than
// returning a handle that fails later) when the kernel has no IPVS.
func New(nsPath string) (*Runner, error) {
	h, err := libipvs.New(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open IPVS netlink handle (netns %q): %w", nsPath, err)
	}
	r := &Runner{h: h}
	// moby/ipvs resolves the IPVS generic netlink family once and only logs
	// when that fails; a first dump tells us whether IPVS really answers.
	if _, err := h.GetServices(); err != nil {
		h.Close()
		return nil, fmt.Errorf("IPVS not usable (kernel without IP_VS? /proc/net/ip_vs): %w", err)
	}
	return r, nil
}

// Close releases the netlink socket.
func (r *Runner) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Close()
}

// Services implements Interface.
func (r *Runner) Services() ([]*VirtualServer, error) {
	r.mu.Lock()
	svcs, err := r.h.GetServices()
	r.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("list IPVS services: %w", mapErr(err))
	}
	out := make([]*VirtualServer, 0, len(svcs))
	for _, s := range svcs {
		if s.FWMark != 0 || s.Address == nil {
			continue
		}
		vs, err := fromService(s)
		if err != nil {
			return nil, err
		}
		out = append(out, vs)
	}
	return out, nil
}

// AddService implements Interface.
func (r *Runner) AddService(vs *VirtualServer) error {
	return r.svcCmd("add", vs, r.h.NewService)
}

// UpdateService implements Interface.
func (r *Runner) UpdateService(vs *VirtualServer) error {
	return r.svcCmd("update", vs, r.h.UpdateService)
}

// DeleteService implements Interface.
func (r *Runner) DeleteService(vs *VirtualServer) error {
	return r.svcCmd("delete", vs, r.h.DelService)
}

func (r *Runner) svcCmd(what string, vs *VirtualServer, f func(*libipvs.Service) error) error {
	if err := vs.validate(); err != nil {
		return err
	}
	r.mu.Lock()
	err := f(toService(vs))
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s IPVS service %s: %w", what, vs.Key(), mapErr(err))
	}
	return nil
}

// Destinations implements Interface.
func (r *Runner) Destinations(vs *VirtualServer) ([]*RealServer, error) {
	r.mu.Lock()
	dsts, err := r.h.GetDestinations(toService(vs))
	r.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("list real servers of %s: %w", vs.Key(), mapErr(err))
	}
	out := make([]*RealServer, 0, len(dsts))
	for _, d := range dsts {
		a, ok := addrFromIP(d.Address)
		if !ok {
			return nil, fmt.Errorf("real server of %s: bad address %v", vs.Key(), d.Address)
		}
		out = append(out, &RealServer{
			Address: a, Port: d.Port, Weight: d.Weight,
			ActiveConn: d.ActiveConnections, InactiveConn: d.InactiveConnections,
		})
	}
	return out, nil
}

// AddDestination implements Interface.
func (r *Runner) AddDestination(vs *VirtualServer, rs *RealServer) error {
	return r.dstCmd("add", vs, rs, r.h.NewDestination)
}

// UpdateDestination implements Interface.
func (r *Runner) UpdateDestination(vs *VirtualServer, rs *RealServer) error {
	return r.dstCmd("update", vs, rs, r.h.UpdateDestination)
}

// DeleteDestination implements Interface.
func (r *Runner) DeleteDestination(vs *VirtualServer, rs *RealServer) error {
	return r.dstCmd("delete", vs, rs, r.h.DelDestination)
}

func (r *Runner) dstCmd(what string, vs *VirtualServer, rs *RealServer, f func(*libipvs.Service, *libipvs.Destination) error) error {
	r.mu.Lock()
	err := f(toService(vs), toDestination(rs))
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s real server %s of %s: %w", what, rs.Key(), vs.Key(), mapErr(err))
	}
	return nil
}

// Flush implements Interface.
func (r *Runner) Flush() error {
	r.mu.Lock()
	err := r.h.Flush()
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("flush IPVS: %w", mapErr(err))
	}
	return nil
}

// mapErr adds our sentinel errors to the kernel's errnos: IPVS answers ESRCH
// for a missing service, ENOENT for a missing destination (or scheduler) and
// EEXIST for duplicates.
func mapErr(err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	switch errno {
	case unix.ESRCH, unix.ENOENT:
		return fmt.Errorf("%w (%w)", ErrNotFound, err)
	case unix.EEXIST:
		return fmt.Errorf("%w (%w)", ErrExists, err)
	}
	return err
}

func protoNum(p Protocol) uint16 {
	switch p {
	case TCP:
		return unix.IPPROTO_TCP
	case UDP:
		return unix.IPPROTO_UDP
	}
	return 0
}

func protoName(n uint16) Protocol {
	switch n {
	case unix.IPPROTO_TCP:
		return TCP
	case unix.IPPROTO_UDP:
		return UDP
	}
	return Protocol(fmt.Sprintf("proto-%d", n))
}

func toService(vs *VirtualServer) *libipvs.Service {
	s := &libipvs.Service{
		Address:   net.IP(vs.Address.AsSlice()),
		Protocol:  protoNum(vs.Protocol),
		Port:      vs.Port,
		SchedName: vs.Scheduler,
		Flags:     uint32(vs.Flags),
		Timeout:   vs.Timeout,
	}
	if vs.Address.Is4() {
		// The netmask is the persistence granularity: /32 = per client.
		s.AddressFamily, s.Netmask = unix.AF_INET, 0xffffffff
	} else {
		s.AddressFamily, s.Netmask = unix.AF_INET6, 128
	}
	return s
}

func fromService(s *libipvs.Service) (*VirtualServer, error) {
	a, ok := addrFromIP(s.Address)
	if !ok {
		return nil, fmt.Errorf("IPVS service with bad address %v", s.Address)
	}
	return &VirtualServer{
		Address:   a,
		Protocol:  protoName(s.Protocol),
		Port:      s.Port,
		Scheduler: s.SchedName,
		Flags:     Flags(s.Flags) &^ flagHashed,
		Timeout:   s.Timeout,
	}, nil
}

func toDestination(rs *RealServer) *libipvs.Destination {
	d := &libipvs.Destination{
		Address:         net.IP(rs.Address.AsSlice()),
		Port:            rs.Port,
		Weight:          rs.Weight,
		ConnectionFlags: libipvs.ConnectionFlagMasq,
		AddressFamily:   unix.AF_INET,
	}
	if rs.Address.Is6() {
		d.AddressFamily = unix.AF_INET6
	}
	return d
}

func addrFromIP(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}
