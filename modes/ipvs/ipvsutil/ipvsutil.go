// Package ipvsutil is the narrow interface through which the IPVS proxy mode
// reaches the kernel's IP Virtual Server tables, with a real implementation on
// top of github.com/moby/ipvs (generic netlink) and an in-memory Fake.
//
// Its types are small value types of our own (netip addresses, a protocol
// name, the persistence flag) so that the proxier's diffing logic never sees
// netlink structures and can be unit-tested on the Fake without root.
package ipvsutil

import (
	"errors"
	"fmt"
	"net/netip"
)

// Protocol is the transport protocol of a virtual server.
type Protocol string

// The protocols the proxier programs.
const (
	TCP Protocol = "TCP"
	UDP Protocol = "UDP"
)

// Flags are IPVS virtual service flags (IP_VS_SVC_F_*). Only the ones the
// proxier sets are named; the kernel's internal "hashed" bit is stripped on
// read.
type Flags uint32

const (
	// FlagPersistent makes the service persistent (ipvsadm -p): a client
	// keeps its real server for Timeout seconds (sessionAffinity: ClientIP).
	FlagPersistent Flags = 0x1
	// flagHashed is set by the kernel on every service in its table.
	flagHashed Flags = 0x2
)

// VirtualServer is one IPVS service: address, protocol and port, with its
// scheduler and persistence (`ipvsadm -A -t addr:port -s sched [-p timeout]`).
type VirtualServer struct {
	Address   netip.Addr
	Protocol  Protocol
	Port      uint16
	Scheduler string
	Flags     Flags
	// Timeout is the persistence timeout in seconds (used with FlagPersistent).
	Timeout uint32
}

// Key identifies a virtual server in the kernel's table.
type Key struct {
	Address  netip.Addr
	Protocol Protocol
	Port     uint16
}

// Key returns the identity of vs.
func (vs *VirtualServer) Key() Key { return Key{vs.Address, vs.Protocol, vs.Port} }

// String renders the key like ipvsadm does: "TCP 10.96.0.1:80".
func (k Key) String() string {
	return string(k.Protocol) + " " + netip.AddrPortFrom(k.Address, k.Port).String()
}

// String renders vs like ipvsadm: "TCP 10.96.0.1:80 rr persistent 10800".
func (vs *VirtualServer) String() string {
	s := vs.Key().String() + " " + vs.Scheduler
	if vs.Flags&FlagPersistent != 0 {
		s += fmt.Sprintf(" persistent %d", vs.Timeout)
	}
	return s
}

// RealServer is one destination of a virtual server. The proxier always uses
// masquerading forward (ipvsadm -m).
type RealServer struct {
	Address netip.Addr
	Port    uint16
	Weight  int
	// ActiveConn and InactiveConn are the kernel's connection counters; they
	// are read back only (ignored by Add/Update).
	ActiveConn   int
	InactiveConn int
}

// Key identifies a real server within its virtual server.
func (rs *RealServer) Key() netip.AddrPort { return netip.AddrPortFrom(rs.Address, rs.Port) }

// String renders rs as "10.244.1.5:8080 weight 1".
func (rs *RealServer) String() string {
	return fmt.Sprintf("%s weight %d", rs.Key(), rs.Weight)
}

// Interface is what the proxier needs from IPVS. Each method is one netlink
// request (the listing ones one dump).
type Interface interface {
	// Services lists the virtual servers (`ipvsadm -Ln`, services only).
	// Firewall-mark services are not listed.
	Services() ([]*VirtualServer, error)
	// AddService creates vs (`ipvsadm -A`); ErrExists if it is there.
	AddService(vs *VirtualServer) error
	// UpdateService changes the scheduler, flags and timeout (`ipvsadm -E`).
	UpdateService(vs *VirtualServer) error
	// DeleteService removes vs and its real servers (`ipvsadm -D`).
	DeleteService(vs *VirtualServer) error
	// Destinations lists the real servers of vs, with connection counters.
	Destinations(vs *VirtualServer) ([]*RealServer, error)
	// AddDestination adds rs to vs (`ipvsadm -a -m -w weight`).
	AddDestination(vs *VirtualServer, rs *RealServer) error
	// UpdateDestination changes rs's weight (`ipvsadm -e`).
	UpdateDestination(vs *VirtualServer, rs *RealServer) error
	// DeleteDestination removes rs from vs (`ipvsadm -d`).
	DeleteDestination(vs *VirtualServer, rs *RealServer) error
	// Flush removes every virtual server of the namespace (`ipvsadm -C`).
	Flush() error
}

// Errors the implementations wrap, tested with IsNotFound and IsExists.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// IsNotFound reports whether err says the service or destination is missing.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsExists reports whether err says the service or destination exists.
func IsExists(err error) bool { return errors.Is(err, ErrExists) }

// KnownSchedulers are the schedulers of mainline Linux (ip_vs_*.ko); the Fake
// rejects others like a kernel without the module does.
var KnownSchedulers = map[string]bool{
	"rr": true, "wrr": true, "lc": true, "wlc": true, "lblc": true, "lblcr": true,
	"dh": true, "sh": true, "sed": true, "nq": true, "fo": true, "ovf": true,
	"mh": true, "twos": true,
}

// validate checks what the kernel would reject in a service we program.
func (vs *VirtualServer) validate() error {
	if !vs.Address.IsValid() {
		return errors.New("virtual server without address")
	}
	if vs.Protocol != TCP && vs.Protocol != UDP {
		return fmt.Errorf("virtual server %s: unsupported protocol %q", vs.Key(), vs.Protocol)
	}
	if vs.Port == 0 {
		return fmt.Errorf("virtual server %s: port 0", vs.Key())
	}
	return nil
}
