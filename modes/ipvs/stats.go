package ipvs

import (
	"time"

	"github.com/svcsim/svcsim/modes/ipvs/ipvsutil"
)

// Op kinds counted in SyncStats besides the ipvsutil.Op* names.
const (
	OpAddrList       = "addr-list"
	OpAddrAdd        = "addr-add"
	OpAddrDel        = "addr-del"
	OpLinkEnsure     = "link-ensure"
	OpIPSetRestore   = "ipset-restore"
	OpIPSetAdd       = "ipset-add-entry"
	OpIPSetDel       = "ipset-del-entry"
	OpIPTablesSave   = "iptables-save"
	OpIPTablesRestor = "iptables-restore"
	// OpConntrackDelete counts stale UDP conntrack entries deleted.
	OpConntrackDelete = "conntrack-delete"
)

// SyncStats describe one Sync.
type SyncStats struct {
	Duration time.Duration
	// Full is true for a full check (everything read back).
	Full bool
	// Ops counts kernel operations by kind (ipvsutil.Op* for IPVS netlink
	// requests, Op* of this package for the rest).
	Ops map[string]int
}

// IPVSOps is the number of IPVS netlink requests.
func (s SyncStats) IPVSOps() int {
	n := 0
	for _, k := range []string{ipvsutil.OpListServices, ipvsutil.OpAddService, ipvsutil.OpUpdateService,
		ipvsutil.OpDeleteService, ipvsutil.OpListDests, ipvsutil.OpAddDest, ipvsutil.OpUpdateDest,
		ipvsutil.OpDeleteDest, ipvsutil.OpFlush} {
		n += s.Ops[k]
	}
	return n
}

// NetlinkOps is IPVSOps plus link and address requests.
func (s SyncStats) NetlinkOps() int {
	return s.IPVSOps() + s.Ops[OpAddrList] + s.Ops[OpAddrAdd] + s.Ops[OpAddrDel] + s.Ops[OpLinkEnsure]
}

// counting wraps the IPVS interface and counts requests per kind.
type counting struct {
	ipvsutil.Interface
	ops map[string]int
}

func (c counting) Services() ([]*ipvsutil.VirtualServer, error) {
	c.ops[ipvsutil.OpListServices]++
	return c.Interface.Services()
}

func (c counting) AddService(vs *ipvsutil.VirtualServer) error {
	c.ops[ipvsutil.OpAddService]++
	return c.Interface.AddService(vs)
}

func (c counting) UpdateService(vs *ipvsutil.VirtualServer) error {
	c.ops[ipvsutil.OpUpdateService]++
	return c.Interface.UpdateService(vs)
}

func (c counting) DeleteService(vs *ipvsutil.VirtualServer) error {
	c.ops[ipvsutil.OpDeleteService]++
	return c.Interface.DeleteService(vs)
}

func (c counting) Destinations(vs *ipvsutil.VirtualServer) ([]*ipvsutil.RealServer, error) {
	c.ops[ipvsutil.OpListDests]++
	return c.Interface.Destinations(vs)
}

func (c counting) AddDestination(vs *ipvsutil.VirtualServer, rs *ipvsutil.RealServer) error {
	c.ops[ipvsutil.OpAddDest]++
	return c.Interface.AddDestination(vs, rs)
}

func (c counting) UpdateDestination(vs *ipvsutil.VirtualServer, rs *ipvsutil.RealServer) error {
	c.ops[ipvsutil.OpUpdateDest]++
	return c.Interface.UpdateDestination(vs, rs)
}

func (c counting) DeleteDestination(vs *ipvsutil.VirtualServer, rs *ipvsutil.RealServer) error {
	c.ops[ipvsutil.OpDeleteDest]++
	return c.Interface.DeleteDestination(vs, rs)
}
