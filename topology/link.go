package topology

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/svcsim/svcsim/internal/netns"
)

// The kernel work of the topology, one netlink call per step. Each helper's
// comment gives the iproute2 command it equals.

// handle opens a netlink handle bound to ns; no thread switching is needed
// for the calls made through it.
func handle(ns *netns.NS) (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(ns.Handle())
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", ns.Name(), err)
	}
	return h, nil
}

// addBridge: ip -n NS link add NAME address MAC type bridge && ip link set NAME up.
// The fixed MAC keeps the bridge's address from following its lowest port.
func addBridge(h *netlink.Handle, ns *netns.NS, name string, mac net.HardwareAddr) (netlink.Link, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac}}
	if err := h.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("create bridge %s in %s: %w", name, ns.Name(), err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find bridge %s in %s: %w", name, ns.Name(), err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("set bridge %s up in %s: %w", name, ns.Name(), err)
	}
	return l, nil
}

// addVeth creates a veth pair with name in h's namespace and peer in peerNS
// (ip -n NS link add NAME type veth peer name PEER address MAC netns PEERNS),
// and returns both ends.
func addVeth(h *netlink.Handle, ns *netns.NS, name string, peerH *netlink.Handle, peerNS *netns.NS, peer string, peerMAC net.HardwareAddr) (netlink.Link, netlink.Link, error) {
	v := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: name},
		PeerName:         peer,
		PeerHardwareAddr: peerMAC,
		PeerNamespace:    netlink.NsFd(int(peerNS.Handle())),
	}
	if err := h.LinkAdd(v); err != nil {
		return nil, nil, fmt.Errorf("create veth %s in %s with peer %s in %s: %w", name, ns.Name(), peer, peerNS.Name(), err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, nil, fmt.Errorf("find veth %s in %s: %w", name, ns.Name(), err)
	}
	p, err := peerH.LinkByName(peer)
	if err != nil {
		return l, nil, fmt.Errorf("find veth %s in %s: %w", peer, peerNS.Name(), err)
	}
	return l, p, nil
}

// enslave: ip -n NS link set PORT master BR [&& bridge link set dev PORT hairpin on] && ip link set PORT up.
func enslave(h *netlink.Handle, ns *netns.NS, port, br netlink.Link, hairpin bool) error {
	if err := h.LinkSetMaster(port, br); err != nil {
		return fmt.Errorf("attach %s to %s in %s: %w", port.Attrs().Name, br.Attrs().Name, ns.Name(), err)
	}
	if hairpin {
		if err := h.LinkSetHairpin(port, true); err != nil {
			return fmt.Errorf("hairpin on %s in %s: %w", port.Attrs().Name, ns.Name(), err)
		}
	}
	if err := h.LinkSetUp(port); err != nil {
		return fmt.Errorf("set %s up in %s: %w", port.Attrs().Name, ns.Name(), err)
	}
	return nil
}

// addrUp: ip -n NS addr add PREFIX dev LINK && ip link set LINK up.
func addrUp(h *netlink.Handle, ns *netns.NS, l netlink.Link, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: ipNet(p)}
	if err := h.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add address %v to %s in %s: %w", p, l.Attrs().Name, ns.Name(), err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up in %s: %w", l.Attrs().Name, ns.Name(), err)
	}
	return nil
}

// addRoute: ip -n NS route add DST [via GW] dev LINK [scope link]. A zero
// gw makes an on-link route.
func addRoute(h *netlink.Handle, ns *netns.NS, l netlink.Link, dst netip.Prefix, gw netip.Addr) error {
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(dst)}
	if gw.IsValid() {
		r.Gw = net.IP(gw.AsSlice())
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	if err := h.RouteAdd(r); err != nil {
		via := "on-link"
		if gw.IsValid() {
			via = "via " + gw.String()
		}
		return fmt.Errorf("add route %v %s dev %s in %s: %w", dst, via, l.Attrs().Name, ns.Name(), err)
	}
	return nil
}

// deleteLink: ip -n NS link del NAME. A missing link or namespace is not an
// error (deleting one end of a veth removes the other).
func deleteLink(ns *netns.NS, name string) error {
	if !netns.Exists(ns.Name()) {
		return nil
	}
	h, err := handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find %s in %s: %w", name, ns.Name(), err)
	}
	if err := h.LinkDel(l); err != nil {
		return fmt.Errorf("delete %s in %s: %w", name, ns.Name(), err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// sysctl is one setting; optional ones may be missing from the kernel.
type sysctl struct {
	key, value string
	optional   bool
}

// setSysctls writes settings in one visit to ns.
func setSysctls(ns *netns.NS, settings []sysctl) error {
	return ns.Do(func() error {
		for _, s := range settings {
			if err := netns.WriteSysctl(s.key, s.value); err != nil {
				if s.optional && errors.Is(err, errNotExist) {
					continue
				}
				if strings.HasPrefix(s.key, "net.bridge.") && errors.Is(err, errNotExist) {
					return fmt.Errorf("in %s: %w (is br_netfilter loaded? modprobe br_netfilter)", ns.Name(), err)
				}
				return fmt.Errorf("in %s: %w", ns.Name(), err)
			}
		}
		return nil
	})
}

// baseSysctls apply to every namespace: IPv6 off, so that no router
// solicitations, DAD or MLD packets add noise to the simulated links.
var baseSysctls = []sysctl{
	{"net.ipv6.conf.all.disable_ipv6", "1", true},
	{"net.ipv6.conf.default.disable_ipv6", "1", true},
}

// nodeSysctls make a namespace a Kubernetes node: a router for its pods,
// bridged pod traffic seen by iptables (kube-proxy needs it for pod-to-pod
// traffic through a Service on one node), no ICMP redirects (in host-gw
// routing a node forwards packets back out of the interface they came in
// on, which would otherwise make it advertise shortcuts) and reverse-path
// filtering off.
var nodeSysctls = []sysctl{
	{"net.ipv4.ip_forward", "1", false},
	{"net.ipv4.conf.all.send_redirects", "0", false},
	{"net.ipv4.conf.default.send_redirects", "0", false},
	{"net.bridge.bridge-nf-call-iptables", "1", false},
	// Pinned rather than inherited (devconf_inherit_init_net may copy a
	// host's strict setting): proxies' own checks decide, as on a node.
	{"net.ipv4.conf.all.rp_filter", "0", false},
	{"net.ipv4.conf.default.rp_filter", "0", false},
}

// cloudLBSysctls make the cloud load balancer a router that spreads flows
// over the nodes of a multipath route by their ports (L4 hash), sends no
// ICMP redirects (it forwards out of the interface packets came in on, and
// a redirect would teach the client to skip it) and does not filter by
// reverse path.
var cloudLBSysctls = []sysctl{
	{"net.ipv4.ip_forward", "1", false},
	{"net.ipv4.conf.all.send_redirects", "0", false},
	{"net.ipv4.conf.default.send_redirects", "0", false},
	{"net.ipv4.fib_multipath_hash_policy", "1", false},
	{"net.ipv4.conf.all.rp_filter", "0", false},
	{"net.ipv4.conf.default.rp_filter", "0", false},
}

// underlaySysctls: the underlay is a plain switch; bridged frames there need
// no netfilter.
var underlaySysctls = []sysctl{
	{"net.bridge.bridge-nf-call-iptables", "0", true},
	{"net.bridge.bridge-nf-call-ip6tables", "0", true},
	{"net.bridge.bridge-nf-call-arptables", "0", true},
}

// deleteRoute: ip -n NS route del DST dev LINK. Missing routes, links or
// namespaces are not errors.
func deleteRoute(ns *netns.NS, link string, dst netip.Prefix) error {
	if !netns.Exists(ns.Name()) {
		return nil
	}
	h, err := handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(link)
	if err != nil {
		return nil // the link, and its routes, are gone
	}
	// Delete the routes the kernel lists for dst on the link, as listed (a
	// request without their scope can match nothing, which the kernel
	// answers with ESRCH, and the route would stay).
	filter := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(dst)}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("list routes to %v dev %s in %s: %w", dst, link, ns.Name(), err)
	}
	for i := range routes {
		if err := h.RouteDel(&routes[i]); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("delete route %v dev %s in %s: %w", dst, link, ns.Name(), err)
		}
	}
	return nil
}
