package iptables

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/svcsim/svcsim/sim/state"
)

// Conntrack removes connection-tracking entries. UDP has no connection end,
// so an entry that DNATs a client to an endpoint outlives the endpoint;
// kube-proxy deletes such entries after each sync, and so does this mode.
type Conntrack interface {
	// DeleteUDP deletes the UDP entries for which stale(original
	// destination, reply source) is true and returns how many it deleted.
	// The reply source of a DNATed entry is the endpoint.
	DeleteUDP(ctx context.Context, stale func(origDst, replySrc netip.AddrPort) bool) (int, error)
}

// NetlinkConntrack is Conntrack over ctnetlink in the calling thread's
// network namespace (`conntrack -D -p udp ...`).
type NetlinkConntrack struct{}

// DeleteUDP dumps the IPv4 conntrack table and deletes the stale UDP entries.
func (NetlinkConntrack) DeleteUDP(ctx context.Context, stale func(origDst, replySrc netip.AddrPort) bool) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.FAMILY_V4, udpFilter(stale))
	if err != nil {
		return int(n), fmt.Errorf("delete stale UDP conntrack entries: %w", err)
	}
	return int(n), nil
}

type udpFilter func(origDst, replySrc netip.AddrPort) bool

func (f udpFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	return f(addrPort(flow.Forward.DstIP, flow.Forward.DstPort), addrPort(flow.Reverse.SrcIP, flow.Reverse.SrcPort))
}

func addrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}

// udpStaleness returns the predicate of UDP conntrack entries that st makes
// stale: entries to a UDP service's cluster IP, external IP or NodePort (on a
// node address) whose reply does not come from one of the service's
// endpoints, i.e. DNATed to a removed endpoint, or not DNATed at all before
// the service had endpoints; and every entry to the VIPs of UDP service ports
// in prev that st no longer has. It returns nil if there is nothing to check.
func udpStaleness(st *state.NodeState, prev map[string]*state.ServicePort) func(origDst, replySrc netip.AddrPort) bool {
	byVIP := map[netip.AddrPort]map[netip.AddrPort]bool{}
	current := make(map[string]bool, len(st.Services))
	for i := range st.Services {
		current[st.Services[i].Key()] = true
	}
	// A removed service's VIPs map to no endpoints at all.
	for k, s := range prev {
		if s.Protocol == state.UDP && !current[k] {
			byVIP[netip.AddrPortFrom(s.ClusterIP, uint16(s.Port))] = nil
			for _, ip := range s.ExternalIPs {
				byVIP[netip.AddrPortFrom(ip, uint16(s.Port))] = nil
			}
		}
	}
	byNodePort := map[uint16]map[netip.AddrPort]bool{}
	for i := range st.Services {
		s := &st.Services[i]
		if s.Protocol != state.UDP {
			continue
		}
		eps := make(map[netip.AddrPort]bool, len(s.Endpoints))
		for _, e := range s.Endpoints {
			eps[netip.AddrPortFrom(e.IP, uint16(e.Port))] = true
		}
		byVIP[netip.AddrPortFrom(s.ClusterIP, uint16(s.Port))] = eps
		for _, ip := range s.ExternalIPs {
			byVIP[netip.AddrPortFrom(ip, uint16(s.Port))] = eps
		}
		if s.NodePort != 0 {
			byNodePort[uint16(s.NodePort)] = eps
		}
	}
	if len(byVIP) == 0 && len(byNodePort) == 0 {
		return nil
	}
	nodeIPs := map[netip.Addr]bool{}
	for _, ip := range st.NodeIPs {
		nodeIPs[ip] = true
	}
	return func(orig, reply netip.AddrPort) bool {
		eps, ok := byVIP[orig]
		if !ok && nodeIPs[orig.Addr()] {
			eps, ok = byNodePort[orig.Port()]
		}
		return ok && !eps[reply]
	}
}
