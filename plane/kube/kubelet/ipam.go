package kubelet

import (
	"fmt"
	"net/netip"
	"sync"
)

// ipam hands out pod addresses from the node's pod CIDR the way the CNI
// host-local plugin does: the gateway (.1), the network and the broadcast
// address are never used; each allocation takes the next free address after
// the last one handed out, wrapping around, so a freed address is reused
// only after the rest of the range.
type ipam struct {
	cidr netip.Prefix
	mu   sync.Mutex
	used map[netip.Addr]string
	last netip.Addr
}

func newIPAM(cidr netip.Prefix) *ipam {
	return &ipam{cidr: cidr.Masked(), used: map[netip.Addr]string{}}
}

// allocate returns an address for owner; want, if free and usable, is taken
// (a pod that already has a status.podIP keeps it).
func (a *ipam) allocate(owner string, want netip.Addr) (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ip, o := range a.used {
		if o == owner {
			return ip, nil
		}
	}
	first := a.cidr.Addr().Next().Next()
	if want.IsValid() && a.usable(want) && a.used[want] == "" {
		a.used[want] = owner
		return want, nil
	}
	start := first
	if a.last.IsValid() && a.usable(a.last.Next()) {
		start = a.last.Next()
	}
	ip := start
	for {
		if a.used[ip] == "" {
			a.used[ip] = owner
			a.last = ip
			return ip, nil
		}
		ip = ip.Next()
		if !a.usable(ip) {
			ip = first
		}
		if ip == start {
			return netip.Addr{}, fmt.Errorf("no free address in %v", a.cidr)
		}
	}
}

// usable: inside the CIDR, above the gateway, below the broadcast address.
func (a *ipam) usable(ip netip.Addr) bool {
	if !a.cidr.Contains(ip) || ip == a.cidr.Addr() || ip == a.cidr.Addr().Next() {
		return false
	}
	return a.cidr.Contains(ip.Next()) // the broadcast address has no successor inside
}

func (a *ipam) release(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.used, ip)
}
