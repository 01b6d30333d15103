// Package conntrack deletes stale connection-tracking entries after a
// datapath's sync. UDP has no connection end, so an entry that DNATs a
// client to an endpoint outlives the endpoint, and an entry made while a
// Service had no endpoints keeps its packets from ever being translated:
// kube-proxy deletes such entries after each sync, and so does every svcsim
// kernel datapath, through this one package.
package conntrack

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/svcsim/svcsim/sim/state"
)

// Interface removes connection-tracking entries of the calling thread's
// network namespace. Netlink is the kernel's; conntracktest.Fake is an
// in-memory table.
type Interface interface {
	// DeleteUDP deletes the UDP entries for which stale(original
	// destination, reply source) is true and returns how many it deleted.
	// The reply source of a DNATed entry is the endpoint.
	DeleteUDP(ctx context.Context, stale func(origDst, replySrc netip.AddrPort) bool) (int, error)
}

// Netlink is Interface over ctnetlink in the calling thread's network
// namespace (`conntrack -D -p udp ...`).
type Netlink struct{}

var _ Interface = Netlink{}

// DeleteUDP dumps the IPv4 conntrack table and deletes the stale UDP entries.
func (Netlink) DeleteUDP(ctx context.Context, stale func(origDst, replySrc netip.AddrPort) bool) (int, error) {
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

// Cleaner deletes a datapath's stale UDP entries after each sync, as
// kube-proxy's conntrack cleanup does: entries to a Service frontend (a UDP
// Service port's cluster IP, external IP, load-balancer IP, or NodePort on
// a node address)
// whose reply does not come from one of the port's current targets, that is
// DNATed to a removed endpoint, or not translated at all while the port had
// no endpoints (so that the port's first endpoint gets the client's next
// packet); and every entry to a frontend that is gone. It remembers the UDP
// ports of the last call, and dumps the table only when one of them changed.
//
// A Cleaner is not safe for concurrent use; datapaths call it under their
// sync lock.
type Cleaner struct {
	// CT reaches the conntrack table (nil: Synced does nothing, for
	// datapaths built on fakes).
	CT Interface
	// Live reports whether replySrc, the reply source of an entry to one
	// of s's frontends, is a current target of s. Nil means "one of s's
	// endpoints", which is right for every datapath that DNATs; the
	// userspace proxy's target is its own listener.
	Live func(s *state.ServicePort, replySrc netip.AddrPort) bool

	prev   map[string]frontend // UDP ports of the last call, by Key
	primed bool
}

// frontend is what makes one UDP service port's entries stale or not.
type frontend struct {
	port *state.ServicePort
	sig  string
}

func signature(s *state.ServicePort) string {
	return fmt.Sprint(s.ClusterIP, s.Port, s.NodePort, s.ExternalIPs, s.LoadBalancerIPs, s.Endpoints)
}

// Reset makes the next Synced check the whole table (after a datapath's
// Cleanup or a failed sync).
func (c *Cleaner) Reset() { c.primed = false }

// Synced deletes the entries that st, just programmed, makes stale and
// returns how many it deleted. It does nothing when no UDP service port
// changed since the last call.
func (c *Cleaner) Synced(ctx context.Context, st *state.NodeState) (int, error) {
	cur := map[string]frontend{}
	for i := range st.Services {
		s := &st.Services[i]
		if s.Protocol == state.UDP {
			cp := *s
			cur[s.Key()] = frontend{port: &cp, sig: signature(s)}
		}
	}
	changed := !c.primed || len(cur) != len(c.prev)
	for k, f := range cur {
		if old, ok := c.prev[k]; !ok || old.sig != f.sig {
			changed = true
		}
	}
	if c.CT == nil || !changed {
		c.prev, c.primed = cur, true
		return 0, nil
	}
	stale := c.staleness(st, cur)
	if stale == nil {
		c.prev, c.primed = cur, true
		return 0, nil
	}
	n, err := c.CT.DeleteUDP(ctx, stale)
	if err != nil {
		return n, err // prev unchanged: the next call tries again
	}
	c.prev, c.primed = cur, true
	return n, nil
}

// staleness returns the predicate of the UDP entries st makes stale, or nil
// when there is no frontend to check.
func (c *Cleaner) staleness(st *state.NodeState, cur map[string]frontend) func(origDst, replySrc netip.AddrPort) bool {
	live := c.Live
	if live == nil {
		live = isEndpoint
	}
	// A removed port's frontends have no targets at all (nil port).
	byVIP := map[netip.AddrPort]*state.ServicePort{}
	byNodePort := map[uint16]*state.ServicePort{}
	for k, f := range c.prev {
		if _, ok := cur[k]; !ok {
			byVIP[netip.AddrPortFrom(f.port.ClusterIP, uint16(f.port.Port))] = nil
			for _, ip := range append(append([]netip.Addr(nil), f.port.ExternalIPs...), f.port.LoadBalancerIPs...) {
				byVIP[netip.AddrPortFrom(ip, uint16(f.port.Port))] = nil
			}
			if f.port.NodePort != 0 {
				byNodePort[uint16(f.port.NodePort)] = nil
			}
		}
	}
	for _, f := range cur {
		s := f.port
		byVIP[netip.AddrPortFrom(s.ClusterIP, uint16(s.Port))] = s
		for _, ip := range append(append([]netip.Addr(nil), s.ExternalIPs...), s.LoadBalancerIPs...) {
			byVIP[netip.AddrPortFrom(ip, uint16(s.Port))] = s
		}
		if s.NodePort != 0 {
			byNodePort[uint16(s.NodePort)] = s
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
		s, ok := byVIP[orig]
		if !ok && nodeIPs[orig.Addr()] {
			s, ok = byNodePort[orig.Port()]
		}
		return ok && (s == nil || !live(s, reply))
	}
}

func isEndpoint(s *state.ServicePort, reply netip.AddrPort) bool {
	for _, e := range s.Endpoints {
		if e.IP == reply.Addr() && uint16(e.Port) == reply.Port() {
			return true
		}
	}
	return false
}
