package sim

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// bitmap is an allocation bitmap over the offsets [0, size) of a range, as
// the API server's ClusterIP and NodePort allocators keep one per range.
// Its 64-bit words are stored sparsely: a large service range costs
// nothing until it is used.
type bitmap struct {
	size  uint64
	words map[uint64]uint64
}

func newBitmap(size uint64) *bitmap { return &bitmap{size: size, words: map[uint64]uint64{}} }

func (b *bitmap) has(o uint64) bool { return o < b.size && b.words[o/64]&(1<<(o%64)) != 0 }

func (b *bitmap) set(o uint64) {
	if o < b.size {
		b.words[o/64] |= 1 << (o % 64)
	}
}

func (b *bitmap) clear(o uint64) {
	w, ok := b.words[o/64]
	if !ok {
		return
	}
	if w &^= 1 << (o % 64); w == 0 {
		delete(b.words, o/64)
	} else {
		b.words[o/64] = w
	}
}

// allocations is one change's view of the allocated ClusterIPs and
// NodePorts: built from the stored Services when the change first
// allocates, then kept in step as the change stores Services, so creating
// n Services costs O(n), not O(n²).
type allocations struct {
	cfg   *Config
	ips   *bitmap // offsets from the service CIDR's network address
	ports *bitmap // offsets from NodePortMin
}

func newAllocations(cfg *Config, svcs map[string]*corev1.Service) *allocations {
	a := &allocations{
		cfg:   cfg,
		ips:   newBitmap(uint64(1) << (32 - cfg.ServiceCIDR.Bits())),
		ports: newBitmap(uint64(cfg.NodePortMax - cfg.NodePortMin + 1)),
	}
	// The first address belongs to the kubernetes Service of a genuine
	// cluster, which the model does not have: it is never handed out.
	a.ips.set(1)
	for _, s := range svcs {
		a.add(s)
	}
	return a
}

// ipOffset is ip's offset in the service CIDR; ok is false outside it.
func (a *allocations) ipOffset(s string) (uint64, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is4() || !a.cfg.ServiceCIDR.Contains(ip) {
		return 0, false
	}
	return uint64(addrToU32(ip) - addrToU32(a.cfg.ServiceCIDR.Addr())), true
}

func (a *allocations) portOffset(p int32) (uint64, bool) {
	if p < a.cfg.NodePortMin || p > a.cfg.NodePortMax {
		return 0, false
	}
	return uint64(p - a.cfg.NodePortMin), true
}

func (a *allocations) ipTaken(s string) bool {
	o, ok := a.ipOffset(s)
	return ok && a.ips.has(o)
}

func (a *allocations) portTaken(p int32) bool {
	o, ok := a.portOffset(p)
	return ok && a.ports.has(o)
}

func (a *allocations) add(s *corev1.Service) { a.mark(s, true) }

func (a *allocations) remove(s *corev1.Service) { a.mark(s, false) }

func (a *allocations) mark(s *corev1.Service, on bool) {
	if s == nil {
		return
	}
	if o, ok := a.ipOffset(s.Spec.ClusterIP); ok {
		if on {
			a.ips.set(o)
		} else {
			a.ips.clear(o)
		}
	}
	ports := make([]int32, 0, len(s.Spec.Ports)+1)
	for _, p := range s.Spec.Ports {
		ports = append(ports, p.NodePort)
	}
	for _, p := range append(ports, s.Spec.HealthCheckNodePort) {
		if o, ok := a.portOffset(p); ok {
			if on {
				a.ports.set(o)
			} else {
				a.ports.clear(o)
			}
		}
	}
}

// allocs returns the change's allocations, building them on first use.
func (t *txn) allocs() *allocations {
	if t.alloc == nil {
		t.alloc = newAllocations(t.cfg, t.s.Services)
	}
	return t.alloc
}

// storeService puts svc in the state (replacing old, nil on create) and
// keeps the allocations in step.
func (t *txn) storeService(old, svc *corev1.Service) {
	t.s.Services[key(svc.Namespace, svc.Name)] = svc
	if t.alloc != nil {
		t.alloc.remove(old)
		t.alloc.add(svc)
	}
}

// servicesChanged drops the allocations after Services were removed or
// put back other than by storeService; the next allocation rebuilds them.
func (t *txn) servicesChanged() { t.alloc = nil }

// checkAllocation refuses what the API server's allocators refuse. They
// run before validation, so their first error hides every validation
// error: IP families, then the ClusterIP, then explicit NodePorts (taken,
// outside the range, or given twice for one protocol).
func (t *txn) checkAllocation(svc, old *corev1.Service) error {
	ki := kinds["Service"]
	s := &svc.Spec
	if s.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	if el := validateIPFamilies(svc); len(el) > 0 {
		return ki.invalid(svc.Name, el)
	}
	keep := old != nil && old.Spec.ClusterIP != "" && old.Spec.Type != corev1.ServiceTypeExternalName
	if ip, err := netip.ParseAddr(s.ClusterIP); err == nil && ip.Is4() && !keep {
		if err := t.claimClusterIP(ip, old); err != nil {
			return ki.invalid(svc.Name, field.ErrorList{field.Invalid(specPath.Child("clusterIPs"), []string{s.ClusterIP},
				fmt.Sprintf("failed to allocate IP %v: %v", s.ClusterIP, err))})
		}
	}
	if !needsNodePorts(s.Type) {
		return nil
	}
	oldPorts := map[int32]bool{}
	if old != nil {
		for _, p := range old.Spec.Ports {
			oldPorts[p.NodePort] = true
		}
	}
	a := t.allocs()
	seen := map[int32]map[corev1.Protocol]bool{}
	for i, p := range s.Ports {
		if p.NodePort <= 0 {
			continue // validation's
		}
		fld := portsPath.Index(i).Child("nodePort")
		switch protos := seen[p.NodePort]; {
		case protos[p.Protocol]:
			return ki.invalid(svc.Name, field.ErrorList{field.Invalid(fld, p.NodePort, "provided port is already allocated")})
		case protos != nil, oldPorts[p.NodePort]:
		case p.NodePort < t.cfg.NodePortMin || p.NodePort > t.cfg.NodePortMax:
			return ki.invalid(svc.Name, field.ErrorList{field.Invalid(fld, p.NodePort,
				fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", t.cfg.NodePortMin, t.cfg.NodePortMax))})
		case a.portTaken(p.NodePort):
			return ki.invalid(svc.Name, field.ErrorList{field.Invalid(fld, p.NodePort, "provided port is already allocated")})
		}
		if seen[p.NodePort] == nil {
			seen[p.NodePort] = map[corev1.Protocol]bool{}
		}
		seen[p.NodePort][p.Protocol] = true
	}
	return nil
}

// allocateService allocates the ClusterIP and NodePorts like the API
// server's allocators, with the same error messages.
func (t *txn) allocateService(svc, old *corev1.Service) error {
	ki := kinds["Service"]
	s := &svc.Spec
	if s.Type == corev1.ServiceTypeExternalName {
		s.ClusterIP, s.ClusterIPs, s.IPFamilies, s.IPFamilyPolicy = "", nil, nil, nil
	} else {
		if s.IPFamilyPolicy == nil {
			single := corev1.IPFamilyPolicySingleStack
			s.IPFamilyPolicy = &single
		}
		s.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
		switch {
		case s.ClusterIP == corev1.ClusterIPNone:
			s.ClusterIPs = []string{corev1.ClusterIPNone}
		case old != nil && old.Spec.ClusterIP != "" && s.ClusterIP == old.Spec.ClusterIP:
			s.ClusterIPs = []string{s.ClusterIP}
		case s.ClusterIP != "":
			ip := netip.MustParseAddr(s.ClusterIP)
			if err := t.claimClusterIP(ip, old); err != nil {
				return ki.invalid(svc.Name, field.ErrorList{field.Invalid(specPath.Child("clusterIPs"), []string{s.ClusterIP},
					fmt.Sprintf("failed to allocate IP %v: %v", s.ClusterIP, err))})
			}
			s.ClusterIPs = []string{s.ClusterIP}
		default:
			ip, err := t.nextClusterIP()
			if err != nil {
				return fmt.Errorf("Internal error occurred: failed to allocate a serviceIP: %w", err)
			}
			s.ClusterIP = ip.String()
			s.ClusterIPs = []string{s.ClusterIP}
		}
	}
	if !needsNodePorts(s.Type) {
		return nil
	}
	oldPorts := map[int32]bool{}
	if old != nil {
		for _, p := range old.Spec.Ports {
			if p.NodePort != 0 {
				oldPorts[p.NodePort] = true
			}
		}
		if old.Spec.HealthCheckNodePort != 0 {
			oldPorts[old.Spec.HealthCheckNodePort] = true
		}
	}
	// A port this Service held before is free to it; others' are taken.
	a := t.allocs()
	used := func(p int32) bool { return a.portTaken(p) && !oldPorts[p] }
	mine := map[int32]bool{}
	byPort := map[int32]int32{} // service port -> node port, shared across protocols
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.NodePort == 0 {
			if np, ok := byPort[p.Port]; ok {
				p.NodePort = np
				continue
			}
			if s.Type == corev1.ServiceTypeLoadBalancer && s.AllocateLoadBalancerNodePorts != nil && !*s.AllocateLoadBalancerNodePorts {
				continue
			}
			np, err := t.nextNodePort(used, mine)
			if err != nil {
				return fmt.Errorf("Internal error occurred: failed to allocate a nodePort: %w", err)
			}
			p.NodePort = np
		} else if !oldPorts[p.NodePort] && !mine[p.NodePort] {
			if p.NodePort < t.cfg.NodePortMin || p.NodePort > t.cfg.NodePortMax {
				return ki.invalid(svc.Name, field.ErrorList{field.Invalid(portsPath.Index(i).Child("nodePort"), p.NodePort,
					fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", t.cfg.NodePortMin, t.cfg.NodePortMax))})
			}
			if used(p.NodePort) {
				return ki.invalid(svc.Name, field.ErrorList{field.Invalid(portsPath.Index(i).Child("nodePort"), p.NodePort,
					"provided port is already allocated")})
			}
		}
		mine[p.NodePort] = true
		byPort[p.Port] = p.NodePort
	}
	if !needsHealthCheck(svc) {
		return nil
	}
	if hc := s.HealthCheckNodePort; hc == 0 && old != nil && old.Spec.HealthCheckNodePort != 0 {
		s.HealthCheckNodePort = old.Spec.HealthCheckNodePort
	} else if hc == 0 {
		np, err := t.nextNodePort(used, mine)
		if err != nil {
			return fmt.Errorf("Internal error occurred: failed to allocate a nodePort: %w", err)
		}
		s.HealthCheckNodePort = np
	} else if (old == nil || hc != old.Spec.HealthCheckNodePort) && (hc < t.cfg.NodePortMin || hc > t.cfg.NodePortMax || used(hc) || mine[hc]) {
		return ki.invalid(svc.Name, field.ErrorList{field.Invalid(specPath.Child("healthCheckNodePort"), hc,
			fmt.Sprintf("failed to allocate requested HealthCheck NodePort %d: provided port is already allocated", hc))})
	}
	return nil
}

// claimClusterIP checks that ip may be given to a Service (old is its
// previous version, nil on create: its own address is not taken).
func (t *txn) claimClusterIP(ip netip.Addr, old *corev1.Service) error {
	cidr := t.cfg.ServiceCIDR
	if !cidr.Contains(ip) || ip == cidr.Addr() || ip == lastAddr(cidr) {
		return fmt.Errorf("the provided network does not match the current range")
	}
	if t.allocs().ipTaken(ip.String()) && (old == nil || old.Spec.ClusterIP != ip.String()) {
		return fmt.Errorf("provided IP is already allocated")
	}
	return nil
}

// nextClusterIP picks a free address at random, preferring the upper part
// of the range (the lower part is kept for static addresses, KEP-3070).
func (t *txn) nextClusterIP() (netip.Addr, error) {
	cidr := t.cfg.ServiceCIDR
	size := uint64(1) << (32 - cidr.Bits())
	base := addrToU32(cidr.Addr())
	ips := t.allocs().ips
	// Offsets 1..size-2: neither the network nor the broadcast address.
	lo, hi := uint64(1), size-2
	off, ok := pickFree(t.s, lo, hi, bandOffset(size, 16, 256), func(o uint64) bool { return !ips.has(o) })
	if !ok {
		return netip.Addr{}, fmt.Errorf("range is full")
	}
	return u32ToAddr(base + uint32(off)), nil
}

func (t *txn) nextNodePort(used func(int32) bool, mine map[int32]bool) (int32, error) {
	lo, hi := uint64(t.cfg.NodePortMin), uint64(t.cfg.NodePortMax)
	size := hi - lo + 1
	p, ok := pickFree(t.s, lo, hi, bandOffset(size, 32, 128), func(v uint64) bool {
		return !used(int32(v)) && !mine[int32(v)]
	})
	if !ok {
		return 0, fmt.Errorf("range is full")
	}
	return int32(p), nil
}

// bandOffset is the size of the lower band reserved for static allocation:
// min(max(16, size/div), max).
func bandOffset(size, div, max uint64) uint64 {
	b := size / div
	if b < 16 {
		b = 16
	}
	if b > max {
		b = max
	}
	if b >= size {
		return 0
	}
	return b
}

// pickFree returns a random free value in [lo+band, hi], scanning forward
// from a random start, then in [lo, lo+band).
func pickFree(s *store, lo, hi, band uint64, free func(uint64) bool) (uint64, bool) {
	if hi < lo {
		return 0, false
	}
	scan := func(a, b uint64) (uint64, bool) {
		if b < a {
			return 0, false
		}
		n := b - a + 1
		start := s.rand() % n
		for i := uint64(0); i < n; i++ {
			v := a + (start+i)%n
			if free(v) {
				return v, true
			}
		}
		return 0, false
	}
	if v, ok := scan(lo+band, hi); ok {
		return v, true
	}
	if band == 0 {
		return 0, false
	}
	return scan(lo, lo+band-1)
}

func addrToU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func u32ToAddr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func lastAddr(p netip.Prefix) netip.Addr {
	return u32ToAddr(addrToU32(p.Masked().Addr()) | (uint32(1)<<(32-p.Bits()) - 1))
}
