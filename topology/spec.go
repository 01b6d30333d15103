package topology

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/svcsim/svcsim/internal/rundir"
)

// NodeSpec is one node: its underlay address and its pod CIDR (the bridge
// cni0 gets the CIDR's first address as the pods' gateway).
type NodeSpec struct {
	Name    string
	IP      netip.Addr
	PodCIDR netip.Prefix
	// UserNS makes the node's network namespace one owned by a user
	// namespace of its own (netns.NewInUserNS), for a proxy that must run
	// inside a user namespace and still administer the node's network
	// (kube-proxy-1.25/userspace where RLIMIT_NOFILE cannot be raised).
	// Everything else configures it from outside, as any node.
	UserNS bool
}

// Spec describes a topology to build.
//
// Default address plan (DefaultSpec):
//
//	underlay     198.18.0.0/24 (bridge br0 in namespace <run>-underlay)
//	node i       198.18.0.(10+i) on eth0, pods 10.244.i.0/24, cni0 10.244.i.1
//	external     198.18.0.100 on eth0 (reaches node IPs only)
//	control      198.18.0.2 on eth0 when ControlPlaneIP is set
//	plane        (DefaultControlPlaneIP; routes pod CIDRs via their nodes)
//	services     10.96.0.0/12, routed from each node onto its eth0
//	cloud LB     198.18.0.3 on eth0 when LoadBalancerIP is set; the
//	             external namespace routes the pool 198.18.1.0/24 via it
type Spec struct {
	Run      *rundir.Run
	Nodes    []NodeSpec
	Underlay netip.Prefix
	// ExternalIP is the external client namespace's address on the underlay.
	ExternalIP netip.Addr
	// ServiceCIDR gets a route onto eth0 in every node namespace, as a real
	// node's default route would give it, so that traffic a node itself sends
	// to a ClusterIP reaches the OUTPUT hook where a proxy rewrites it.
	ServiceCIDR netip.Prefix
	// ControlPlaneIP, when valid, adds the namespace "<run>-control-plane"
	// with eth0 on the underlay at this address and routes to every pod
	// CIDR via its node: a control-plane machine for genuine Kubernetes
	// components (an API server must advertise a non-loopback address, and
	// pods reach it through the kubernetes Service). Zero: no such namespace.
	ControlPlaneIP netip.Addr
	// LoadBalancerIP, when valid, adds the namespace "<run>-cloud-lb" with
	// eth0 on the underlay at this address, forwarding (a router: the
	// simulated cloud load balancer programs its routes), with routes to
	// every pod CIDR via its node; the external namespace routes
	// LoadBalancerPool via it. Zero: no such namespace.
	LoadBalancerIP netip.Addr
	// LoadBalancerPool is the range load-balancer addresses come from
	// (DefaultLoadBalancerPool when LoadBalancerIP is set and this is not).
	LoadBalancerPool netip.Prefix
}

// WithDefaults fills zero fields from the default plan: Underlay,
// ExternalIP and ServiceCIDR.
func (s Spec) WithDefaults() Spec {
	if !s.Underlay.IsValid() {
		s.Underlay = DefaultUnderlay
	}
	if !s.ExternalIP.IsValid() {
		s.ExternalIP = DefaultExternalIP
	}
	if !s.ServiceCIDR.IsValid() {
		s.ServiceCIDR = DefaultServiceCIDR
	}
	if s.LoadBalancerIP.IsValid() && !s.LoadBalancerPool.IsValid() {
		s.LoadBalancerPool = DefaultLoadBalancerPool
	}
	return s
}

// Default address plan.
var (
	DefaultUnderlay   = netip.MustParsePrefix("198.18.0.0/24")
	DefaultExternalIP = netip.MustParseAddr("198.18.0.100")
	// DefaultControlPlaneIP is the conventional ControlPlaneIP (not set by
	// WithDefaults: the embedded control plane needs no namespace).
	DefaultControlPlaneIP = netip.MustParseAddr("198.18.0.2")
	DefaultClusterCIDR    = netip.MustParsePrefix("10.244.0.0/16")
	DefaultServiceCIDR    = netip.MustParsePrefix("10.96.0.0/12")
	// DefaultLoadBalancerIP is the conventional LoadBalancerIP (not set by
	// WithDefaults: a cluster without LoadBalancer Services needs none).
	DefaultLoadBalancerIP = netip.MustParseAddr("198.18.0.3")
	// DefaultLoadBalancerPool is the cloud's address pool (RFC 2544's
	// benchmarking range, beside the underlay).
	DefaultLoadBalancerPool = netip.MustParsePrefix("198.18.1.0/24")
)

// DefaultSpec is the default plan with nodes node1..nodeN.
func DefaultSpec(run *rundir.Run, nodes int) Spec {
	s := Spec{Run: run, Underlay: DefaultUnderlay, ExternalIP: DefaultExternalIP, ServiceCIDR: DefaultServiceCIDR}
	for i := 1; i <= nodes; i++ {
		s.Nodes = append(s.Nodes, NodeSpec{
			Name:    fmt.Sprintf("node%d", i),
			IP:      netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}),
			PodCIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24),
		})
	}
	return s
}

// Validate checks the spec (after WithDefaults) for everything Build would
// otherwise find out half-way: names, address families, overlaps and
// collisions.
func (s Spec) Validate() error {
	s = s.WithDefaults()
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if s.Run == nil {
		bad("spec: no run")
	}
	if !s.Underlay.IsValid() || !s.Underlay.Addr().Is4() {
		bad("spec: underlay %v: want an IPv4 prefix", s.Underlay)
	} else if s.Underlay.Bits() > 30 {
		bad("spec: underlay %v is too small", s.Underlay)
	}
	s.Underlay = s.Underlay.Masked()
	if len(s.Nodes) == 0 {
		bad("spec: no nodes")
	}
	usedIP := map[netip.Addr]string{}
	useIP := func(ip netip.Addr, who string) {
		if prev, ok := usedIP[ip]; ok {
			bad("spec: %s: address %v already used by %s", who, ip, prev)
			return
		}
		usedIP[ip] = who
	}
	onUnderlay := func(ip netip.Addr, who string) {
		if !ip.IsValid() || !ip.Is4() {
			bad("spec: %s: address %v: want IPv4", who, ip)
			return
		}
		if s.Underlay.IsValid() && (!s.Underlay.Contains(ip) || ip == s.Underlay.Addr() || ip == lastAddr(s.Underlay)) {
			bad("spec: %s: address %v is not a host address of the underlay %v", who, ip, s.Underlay)
		}
		useIP(ip, who)
	}
	onUnderlay(s.ExternalIP, "external")
	if s.ControlPlaneIP.IsValid() {
		onUnderlay(s.ControlPlaneIP, "control plane")
	}
	if s.LoadBalancerIP.IsValid() {
		onUnderlay(s.LoadBalancerIP, "cloud load balancer")
		p := s.LoadBalancerPool
		switch {
		case !p.IsValid() || !p.Addr().Is4() || p.Bits() > 30:
			bad("spec: load-balancer pool %v: want an IPv4 prefix of /30 or larger", p)
		case s.Underlay.IsValid() && p.Overlaps(s.Underlay):
			bad("spec: load-balancer pool %v overlaps the underlay %v", p, s.Underlay)
		case s.ServiceCIDR.IsValid() && p.Overlaps(s.ServiceCIDR):
			bad("spec: load-balancer pool %v overlaps the service CIDR %v", p, s.ServiceCIDR)
		}
		for _, n := range s.Nodes {
			if p.IsValid() && n.PodCIDR.IsValid() && p.Overlaps(n.PodCIDR) {
				bad("spec: load-balancer pool %v overlaps node %q's pod CIDR %v", p, n.Name, n.PodCIDR)
			}
		}
	}
	names := map[string]bool{RoleUnderlay: true, RoleExternal: true, RoleControlPlane: true, RoleCloudLB: true}
	var cidrs []netip.Prefix
	for i, n := range s.Nodes {
		who := fmt.Sprintf("node %q", n.Name)
		if n.Name == "" {
			bad("spec: node %d has no name", i)
		} else if names[n.Name] {
			bad("spec: %s: duplicate or reserved name", who)
		} else if sanitize(n.Name) != n.Name || len(n.Name) > 40 {
			bad("spec: %s: want at most 40 characters of [A-Za-z0-9_.-]", who)
		} else if strings.HasPrefix(n.Name, "pod-") || strings.HasPrefix(n.Name, "host-") {
			bad("spec: %s: names starting with pod- or host- are reserved for pod and host namespaces", who)
		}
		names[n.Name] = true
		onUnderlay(n.IP, who)
		if !n.PodCIDR.IsValid() || !n.PodCIDR.Addr().Is4() || n.PodCIDR.Bits() > 30 {
			bad("spec: %s: pod CIDR %v: want an IPv4 prefix of /30 or larger", who, n.PodCIDR)
			continue
		}
		if n.PodCIDR.Masked() != n.PodCIDR {
			bad("spec: %s: pod CIDR %v has host bits set", who, n.PodCIDR)
		}
		for _, c := range cidrs {
			if c.Overlaps(n.PodCIDR) {
				bad("spec: %s: pod CIDR %v overlaps %v", who, n.PodCIDR, c)
			}
		}
		if s.Underlay.IsValid() && s.Underlay.Overlaps(n.PodCIDR) {
			bad("spec: %s: pod CIDR %v overlaps the underlay %v", who, n.PodCIDR, s.Underlay)
		}
		if s.ServiceCIDR.IsValid() && s.ServiceCIDR.Overlaps(n.PodCIDR) {
			bad("spec: %s: pod CIDR %v overlaps the service CIDR %v", who, n.PodCIDR, s.ServiceCIDR)
		}
		cidrs = append(cidrs, n.PodCIDR)
	}
	if !s.ServiceCIDR.Addr().Is4() {
		bad("spec: service CIDR %v: want IPv4", s.ServiceCIDR)
	} else if s.Underlay.IsValid() && s.ServiceCIDR.Overlaps(s.Underlay) {
		bad("spec: service CIDR %v overlaps the underlay %v", s.ServiceCIDR, s.Underlay)
	}
	return errors.Join(errs...)
}

// gatewayOf is the first host address of a pod CIDR (the cni0 address).
func gatewayOf(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// podAddrOK reports whether ip can be a pod address in cidr: inside it, and
// neither the network, the gateway nor the broadcast address.
func podAddrOK(cidr netip.Prefix, ip netip.Addr) bool {
	return cidr.Contains(ip) && ip != cidr.Masked().Addr() && ip != gatewayOf(cidr) && ip != lastAddr(cidr)
}
