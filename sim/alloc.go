package sim

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
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
