package userspace

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Conntrack forgets UDP flows. When a UDP Service port goes away, flows to
// its VIP still carry the NAT to the old proxy port; without clearing them a
// client that keeps sending (same source port) never reaches a Service
// recreated on a new proxy port until the entry times out. kube-proxy cleared
// them the same way (conntrack -D -p udp --orig-dst <vip>).
type Conntrack interface {
	ClearUDP(vip netip.Addr) error
}

// NetlinkConntrack clears entries through netlink in the calling thread's
// network namespace (Sync runs there).
type NetlinkConntrack struct{}

// ClearUDP implements Conntrack.
func (NetlinkConntrack) ClearUDP(vip netip.Addr) error {
	f := &netlink.ConntrackFilter{}
	if err := f.AddIP(netlink.ConntrackOrigDstIP, net.IP(vip.AsSlice())); err != nil {
		return fmt.Errorf("conntrack filter dst %s: %w", vip, err)
	}
	if err := f.AddProtocol(unix.IPPROTO_UDP); err != nil {
		return fmt.Errorf("conntrack filter udp: %w", err)
	}
	if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
		return fmt.Errorf("delete udp conntrack entries to %s: %w", vip, err)
	}
	return nil
}

type noConntrack struct{}

func (noConntrack) ClearUDP(netip.Addr) error { return nil }
