// Package netdev manages the dummy interface on which the IPVS proxy mode
// binds its service addresses (kube-proxy's kube-ipvs0): a ClusterIP must be a
// local address of the node for IPVS, which hooks LOCAL_IN, to see packets to
// it. It has a netlink implementation and an in-memory Fake.
package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ErrNoDevice is wrapped when the named device does not exist.
var ErrNoDevice = errors.New("no such device")

// Interface is what the proxier needs from the link layer.
type Interface interface {
	// EnsureDummy creates the dummy device if missing
	// (`ip link add name type dummy`). Like kube-proxy's it stays down: its
	// addresses are local either way, and it never answers on a wire.
	EnsureDummy(name string) error
	// DeleteDevice removes the device (`ip link del name`); a missing device
	// is not an error.
	DeleteDevice(name string) error
	// Addrs lists the IPv4 addresses on the device (`ip -4 addr show dev
	// name`); ErrNoDevice when it does not exist.
	Addrs(name string) ([]netip.Addr, error)
	// AddAddr adds addr/32 (`ip addr add addr/32 dev name`).
	AddAddr(name string, addr netip.Addr) error
	// DelAddr removes addr/32 (`ip addr del addr/32 dev name`).
	DelAddr(name string, addr netip.Addr) error
	// LocalAddrs lists the IPv4 addresses of every device of the namespace
	// (`ip -4 addr show`): a one-shot cleanup that never synced learns the
	// node's addresses, and with them its NodePort virtual servers, here.
	LocalAddrs() ([]netip.Addr, error)
}

// Netlink implements Interface with a netlink handle bound to a namespace.
type Netlink struct {
	h *netlink.Handle
}

var _ Interface = (*Netlink)(nil)

// New returns a handle in the calling thread's namespace.
func New() (*Netlink, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	return &Netlink{h: h}, nil
}

// NewAt returns a handle in the namespace ns.
func NewAt(ns netns.NsHandle) (*Netlink, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("open netlink handle in netns: %w", err)
	}
	return &Netlink{h: h}, nil
}

// Close releases the handle.
func (n *Netlink) Close() { n.h.Close() }

// EnsureDummy implements Interface.
func (n *Netlink) EnsureDummy(name string) error {
	l, err := n.h.LinkByName(name)
	if err == nil {
		if l.Type() != "dummy" {
			return fmt.Errorf("device %s exists with type %s, want dummy", name, l.Type())
		}
		return nil
	}
	var nf netlink.LinkNotFoundError
	if !errors.As(err, &nf) {
		return fmt.Errorf("look up device %s: %w", name, err)
	}
	if err := n.h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		return fmt.Errorf("create dummy device %s (kernel without CONFIG_DUMMY?): %w", name, err)
	}
	return nil
}

// DeleteDevice implements Interface.
func (n *Netlink) DeleteDevice(name string) error {
	l, err := n.h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up device %s: %w", name, err)
	}
	if err := n.h.LinkDel(l); err != nil {
		return fmt.Errorf("delete device %s: %w", name, err)
	}
	return nil
}

// Addrs implements Interface.
func (n *Netlink) Addrs(name string) ([]netip.Addr, error) {
	l, err := n.link(name)
	if err != nil {
		return nil, err
	}
	out, err := n.v4Addrs(l)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	return out, nil
}

// LocalAddrs implements Interface.
func (n *Netlink) LocalAddrs() ([]netip.Addr, error) {
	out, err := n.v4Addrs(nil)
	if err != nil {
		return nil, fmt.Errorf("list the namespace's addresses: %w", err)
	}
	return out, nil
}

// v4Addrs lists the IPv4 addresses of l (nil: of every device); dumps
// interrupted by a concurrent change are retried a bounded number of times.
func (n *Netlink) v4Addrs(l netlink.Link) ([]netip.Addr, error) {
	var addrs []netlink.Addr
	var err error
	for try := 0; ; try++ {
		addrs, err = n.h.AddrList(l, netlink.FAMILY_V4)
		if errors.Is(err, netlink.ErrDumpInterrupted) && try < 5 {
			continue
		}
		break
	}
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

// AddAddr implements Interface.
func (n *Netlink) AddAddr(name string, addr netip.Addr) error {
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if err := n.h.AddrAdd(l, nlAddr(addr)); err != nil {
		return fmt.Errorf("add %s to %s: %w", addr, name, err)
	}
	return nil
}

// DelAddr implements Interface.
func (n *Netlink) DelAddr(name string, addr netip.Addr) error {
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if err := n.h.AddrDel(l, nlAddr(addr)); err != nil {
		return fmt.Errorf("delete %s from %s: %w", addr, name, err)
	}
	return nil
}

func (n *Netlink) link(name string) (netlink.Link, error) {
	l, err := n.h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, fmt.Errorf("device %s: %w", name, ErrNoDevice)
	}
	if err != nil {
		return nil, fmt.Errorf("look up device %s: %w", name, err)
	}
	return l, nil
}

func nlAddr(a netip.Addr) *netlink.Addr {
	bits := 32
	if a.Is6() {
		bits = 128
	}
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
}

// Fake is an in-memory Interface that counts address operations.
type Fake struct {
	mu    sync.Mutex
	devs  map[string]map[netip.Addr]bool
	Adds  int // AddAddr calls
	Dels  int // DelAddr calls
	Lists int // Addrs calls
}

var _ Interface = (*Fake)(nil)

// NewFake returns a Fake without devices.
func NewFake() *Fake { return &Fake{devs: map[string]map[netip.Addr]bool{}} }

// Has reports whether the device exists.
func (f *Fake) Has(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.devs[name]
	return ok
}

// EnsureDummy implements Interface.
func (f *Fake) EnsureDummy(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.devs[name]; !ok {
		f.devs[name] = map[netip.Addr]bool{}
	}
	return nil
}

// DeleteDevice implements Interface.
func (f *Fake) DeleteDevice(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.devs, name)
	return nil
}

// Addrs implements Interface; the result is sorted.
func (f *Fake) Addrs(name string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Lists++
	d, ok := f.devs[name]
	if !ok {
		return nil, fmt.Errorf("device %s: %w", name, ErrNoDevice)
	}
	out := make([]netip.Addr, 0, len(d))
	for a := range d {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out, nil
}

// LocalAddrs implements Interface: the addresses of every device, sorted.
func (f *Fake) LocalAddrs() ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Addr
	for _, d := range f.devs {
		for a := range d {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out, nil
}

// AddDevice adds a device holding addrs (a node's eth0 in tests).
func (f *Fake) AddDevice(name string, addrs ...netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := map[netip.Addr]bool{}
	for _, a := range addrs {
		d[a] = true
	}
	f.devs[name] = d
}

// AddAddr implements Interface; a duplicate fails like EEXIST.
func (f *Fake) AddAddr(name string, addr netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Adds++
	d, ok := f.devs[name]
	if !ok {
		return fmt.Errorf("device %s: %w", name, ErrNoDevice)
	}
	if d[addr] {
		return fmt.Errorf("add %s to %s: file exists", addr, name)
	}
	d[addr] = true
	return nil
}

// DelAddr implements Interface; a missing address fails like EADDRNOTAVAIL.
func (f *Fake) DelAddr(name string, addr netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Dels++
	d, ok := f.devs[name]
	if !ok {
		return fmt.Errorf("device %s: %w", name, ErrNoDevice)
	}
	if !d[addr] {
		return fmt.Errorf("delete %s from %s: cannot assign requested address", addr, name)
	}
	delete(d, addr)
	return nil
}
