// Package ipvs is the IPVS proxy mode, after kube-proxy's: every ClusterIP and
// external IP is bound to the dummy interface kube-ipvs0 (so it is local and
// IPVS, hooked at LOCAL_IN/LOCAL_OUT, sees packets to it), each
// ClusterIP:port, external IP:port and node IP:NodePort is an IPVS virtual
// server whose real servers are the endpoints (masquerading forward, weight
// 1), and the masquerading IPVS cannot do itself is done by a few fixed
// iptables rules matching ipsets.
//
// Sync is incremental and keeps what it programmed: it compares each
// service port with the one of the last sync and writes only the virtual
// servers, real servers, kube-ipvs0 addresses and ipset entries of those
// that changed, reading back from the kernel only the real servers of the
// virtual servers it changes (their connection counters). One endpoint
// change therefore costs the same few netlink requests however many
// Services exist, and nothing is dumped. A full check reads everything back
// (every virtual server, real server and address) and repairs what drifted:
// on the first sync, after an error, after ForceFullSync, when the node's
// addresses or CIDRs change, and on the first sync at least FullCheckPeriod
// after the last full one. kube-proxy's IPVS proxier instead lists every
// virtual server and real server on every sync; keeping the programmed
// state between syncs is an intentional difference (drift is repaired at
// the next full check, not at the next sync).
//
// Removed real servers terminate gracefully, like kube-proxy: a TCP real
// server with connections is set to weight 0 (no new connections, existing
// ones continue) and deleted once its connection counters reach zero, checked
// on every sync and by a background reaper; UDP real servers and TCP ones
// without connections are deleted at once.
package ipvs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/conntrack"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/ipvs/ipset"
	"github.com/svcsim/svcsim/modes/ipvs/ipvsutil"
	"github.com/svcsim/svcsim/modes/ipvs/netdev"
	"github.com/svcsim/svcsim/sim/state"
)

// Name is the mode's registry and datapath name.
const Name = "ipvs"

// DummyDevice holds the service addresses.
const DummyDevice = "kube-ipvs0"

// DefaultScheduler is used when neither the Service nor the options name one.
const DefaultScheduler = "rr"

func init() {
	modes.Register(modes.Datapath{
		Name:  Name,
		Start: modes.Start{Factory: func(o modes.Options) (modes.Proxier, error) { return NewReal(o) }},
		Needs: []modes.Feature{modes.KernelModule("IP_VS", "ip_vs", "/proc/net/ip_vs"),
			modes.Tool("ipset"), modes.Tool("iptables-restore")},
		Kernel: modes.KernelIPVS,
		Dump:   []string{"ipvsadm", "-Ln"},
		// The virtual servers first, then the glue rules with the canary.
		Flush: append([][]string{{"ipvsadm", "-C"}}, modes.IPTablesFlush("iptables")...),
		// rr rotates exactly; ClientIP affinity is IPVS persistence. A
		// forced full sync is a read-back check of the whole kernel state
		// (ForceFullSync), not what the benchmark's full resync compares.
		Traits: modes.Traits{Choice: modes.RoundRobin, Affinity: modes.AffinityTemplate},
		Report: modes.Report{Order: 30, Claim: modes.ClaimIncremental},
	})
}

// Sysctl sets kernel parameters of the calling namespace.
type Sysctl interface {
	// Set writes value to the parameter ("net.ipv4.vs.conntrack").
	Set(name, value string) error
}

// ProcSysctl implements Sysctl through /proc/sys of the calling thread's
// network namespace (netns.WriteSysctl).
type ProcSysctl struct{}

// Set implements Sysctl.
func (ProcSysctl) Set(name, value string) error { return netns.WriteSysctl(name, value) }

// sysctls IPVS mode needs in the node's namespace: conntrack for IPVS
// connections (so iptables can masquerade them), expiry of connections to
// deleted real servers and of persistence templates of weight-0 ones.
var sysctls = [][2]string{
	{"net.ipv4.vs.conntrack", "1"},
	{"net.ipv4.vs.expire_nodest_conn", "1"},
	{"net.ipv4.vs.expire_quiescent_template", "1"},
}

// Config wires a Proxier to its kernel interfaces.
type Config struct {
	// Node is the node's name, for messages.
	Node string
	// Scheduler is the default IPVS scheduler ("rr" when empty).
	Scheduler string
	IPVS      ipvsutil.Interface
	Links     netdev.Interface
	IPSet     ipset.Interface
	IPTables  iptrestore.Interface
	// Sysctl, when set, gets the IPVS sysctls on the first sync.
	Sysctl Sysctl
	// Conntrack deletes stale UDP conntrack entries after each sync
	// (NewReal: conntrack.Netlink; nil deletes none).
	Conntrack conntrack.Interface
	// IPVSAdm is the ipvsadm binary Dump runs; empty renders the table
	// from IPVS instead.
	IPVSAdm string
	// ReapInterval is how often a background goroutine deletes terminated
	// real servers whose connections are gone; 0 reaps only during Sync.
	ReapInterval time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// FullCheckPeriod: a sync at least this long after the last full one
	// reads the whole kernel state back and repairs drift (0:
	// DefaultFullCheckPeriod; negative: only when forced or after an
	// error).
	FullCheckPeriod time.Duration
}

// DefaultFullCheckPeriod is shorter than the node proxy's periodic resync
// (agent.ResyncPeriod, 30 s, kube-proxy's --ipvs-sync-period), so that every
// periodic resync is a full check: drift is repaired within about 30 s.
const DefaultFullCheckPeriod = 25 * time.Second

// Proxier is the IPVS mode bound to one node's kernel.
type Proxier struct {
	cfg Config

	mu sync.Mutex // serialises Sync, Cleanup, Dump and the reaper
	// programmed is every virtual server we programmed, as we programmed
	// it (attributes, real servers' fingerprint).
	programmed map[ipvsutil.Key]*desiredVS
	// bound is the addresses we know on kube-ipvs0.
	bound map[netip.Addr]bool
	// idx is the last synced state's contributions; globals the node-wide
	// inputs it was computed with.
	idx     *index
	order   []*contrib // idx's contributions in the last state's order
	globals string
	// full makes the next sync a full check: read everything back and
	// rewrite sets and rules (fresh proxier, after an error, after Cleanup,
	// ForceFullSync).
	full        bool
	lastFull    time.Time
	seq         uint64 // syncs, to mark the service ports a state still has
	terminating map[ipvsutil.Key]*terminatingVS
	nodeIPs     map[netip.Addr]bool        // every node IP synced: NodePort VS addresses are ours
	setsApplied map[string]map[string]bool // ipset entries written; nil = unknown
	rulesText   []byte                     // iptables text written; nil = unknown
	sysctlsDone bool
	last        SyncStats
	ct          conntrack.Cleaner

	reapStop chan struct{}
	reapDone chan struct{}
}

var (
	_ modes.Proxier    = (*Proxier)(nil)
	_ modes.Dumper     = (*Proxier)(nil)
	_ modes.Canary     = (*Proxier)(nil)
	_ modes.FullSyncer = (*Proxier)(nil)
)

// New returns a Proxier on the given interfaces.
func New(cfg Config) (*Proxier, error) {
	if cfg.IPVS == nil || cfg.Links == nil || cfg.IPSet == nil || cfg.IPTables == nil {
		return nil, errors.New("ipvs proxier: IPVS, Links, IPSet and IPTables are required")
	}
	if cfg.Scheduler == "" {
		cfg.Scheduler = DefaultScheduler
	}
	if !ipvsutil.KnownSchedulers[cfg.Scheduler] {
		return nil, fmt.Errorf("ipvs proxier: unknown scheduler %q", cfg.Scheduler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.FullCheckPeriod == 0 {
		cfg.FullCheckPeriod = DefaultFullCheckPeriod
	}
	return &Proxier{
		cfg:         cfg,
		programmed:  map[ipvsutil.Key]*desiredVS{},
		bound:       map[netip.Addr]bool{},
		full:        true,
		terminating: map[ipvsutil.Key]*terminatingVS{},
		nodeIPs:     map[netip.Addr]bool{},
		ct:          conntrack.Cleaner{CT: cfg.Conntrack},
	}, nil
}

// NewReal returns a Proxier programming the calling thread's namespace: its
// IPVS and netlink sockets are bound to it now, and ipset/iptables run in
// the namespace of the thread calling Sync, so build and use it in the same
// namespace.
func NewReal(o modes.Options) (*Proxier, error) {
	iv, err := ipvsutil.New("")
	if err != nil {
		return nil, err
	}
	nd, err := netdev.New()
	if err != nil {
		iv.Close()
		return nil, err
	}
	ipt, err := iptrestore.NewNode(o.IPTablesBackend)
	if err != nil {
		iv.Close()
		nd.Close()
		return nil, err
	}
	p, err := New(Config{
		Node: o.Node, Scheduler: o.Scheduler,
		IPVS: iv, Links: nd, IPSet: &ipset.Exec{}, IPTables: ipt,
		Sysctl: ProcSysctl{}, IPVSAdm: "ipvsadm", ReapInterval: 5 * time.Second,
		Conntrack: conntrack.Netlink{},
	})
	if err != nil {
		iv.Close()
		nd.Close()
		return nil, err
	}
	return p, nil
}

// Name implements modes.Proxier.
func (p *Proxier) Name() string { return Name }

// LastSync returns the statistics of the last Sync.
func (p *Proxier) LastSync() SyncStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.last
	s.Ops = make(map[string]int, len(p.last.Ops))
	for k, v := range p.last.Ops {
		s.Ops[k] = v
	}
	return s
}

// Sync implements modes.Proxier.
func (p *Proxier) Sync(ctx context.Context, st *state.NodeState) error {
	if st == nil {
		return fmt.Errorf("ipvs sync on %s: nil state", p.cfg.Node)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	start := time.Now()
	ops := map[string]int{}
	g := globalsOf(st)
	full := p.full || p.idx == nil || g != p.globals ||
		p.cfg.FullCheckPeriod > 0 && p.cfg.Now().Sub(p.lastFull) >= p.cfg.FullCheckPeriod
	// An invalid state is refused before anything is written. An
	// incremental sync validates only the service ports that changed.
	var diff *stateDiff
	var verr error
	if full {
		verr = st.Validate()
	} else {
		diff, verr = p.diff(st)
	}
	if verr != nil {
		return fmt.Errorf("ipvs sync on %s: %w", p.cfg.Node, verr)
	}
	var err error
	if full {
		err = p.sync(ctx, st, counting{p.cfg.IPVS, ops}, ops)
	} else {
		err = p.syncChanges(ctx, st, diff, counting{p.cfg.IPVS, ops}, ops)
	}
	if err != nil {
		// Trust nothing remembered: read and rewrite everything next time.
		p.full, p.setsApplied, p.rulesText, p.idx, p.order = true, nil, nil, nil, nil
		err = fmt.Errorf("ipvs sync on %s: %w", p.cfg.Node, err)
	} else {
		p.globals = g
		if full {
			p.lastFull = p.cfg.Now()
		}
	}
	if err == nil {
		var n int
		if n, err = p.ct.Synced(ctx, st); err != nil {
			err = fmt.Errorf("ipvs sync on %s: rules written, but: %w", p.cfg.Node, err)
		}
		if n > 0 {
			ops[OpConntrackDelete] = n
		}
	}
	p.last = SyncStats{Duration: time.Since(start), Ops: ops, Full: full}
	if err == nil && p.cfg.ReapInterval > 0 && p.reapStop == nil {
		p.startReaper()
	}
	return err
}

// sync is the full check: it reads every address, virtual server and real
// server back and makes the kernel match st.
func (p *Proxier) sync(ctx context.Context, st *state.NodeState, iv ipvsutil.Interface, ops map[string]int) error {
	idx := indexOf(st, p.cfg.Scheduler)
	d := idx.desired()
	if p.cfg.Sysctl != nil && !p.sysctlsDone {
		for _, s := range sysctls {
			if err := p.cfg.Sysctl.Set(s[0], s[1]); err != nil {
				return err
			}
		}
		p.sysctlsDone = true
	}
	for _, ip := range st.NodeIPs {
		p.nodeIPs[ip] = true
	}

	// 1. The service addresses on kube-ipvs0.
	ops[OpLinkEnsure]++
	if err := p.cfg.Links.EnsureDummy(DummyDevice); err != nil {
		return err
	}
	ops[OpAddrList]++
	bound, err := p.cfg.Links.Addrs(DummyDevice)
	if err != nil {
		return err
	}
	owned := map[netip.Addr]bool{}
	for ip := range p.nodeIPs {
		owned[ip] = true
	}
	for _, ip := range bound {
		owned[ip] = true
	}
	isBound := map[netip.Addr]bool{}
	for _, ip := range bound {
		isBound[ip] = true
	}
	for _, ip := range sortedAddrs(d.vips) {
		owned[ip] = true
		if !isBound[ip] {
			ops[OpAddrAdd]++
			if err := p.cfg.Links.AddAddr(DummyDevice, ip); err != nil {
				return err
			}
		}
	}

	// 2. Virtual and real servers.
	kernel, err := iv.Services()
	if err != nil {
		return err
	}
	current := make(map[ipvsutil.Key]*ipvsutil.VirtualServer, len(kernel))
	for _, vs := range kernel {
		current[vs.Key()] = vs
		if _, want := d.vss[vs.Key()]; want || !owned[vs.Address] {
			continue
		}
		if err := iv.DeleteService(vs); err != nil && !ipvsutil.IsNotFound(err) {
			return err
		}
		delete(p.programmed, vs.Key())
		delete(p.terminating, vs.Key())
	}
	for k := range p.programmed {
		if _, want := d.vss[k]; !want {
			delete(p.programmed, k)
		}
	}
	for k := range p.terminating {
		if _, want := d.vss[k]; !want {
			delete(p.terminating, k)
		}
	}
	for _, k := range d.order {
		want := d.vss[k]
		cur, exists := current[k]
		if !exists {
			if err := p.addVS(iv, want); err != nil {
				return err
			}
			continue
		}
		if cur.Scheduler != want.vs.Scheduler || cur.Flags != want.vs.Flags || cur.Timeout != want.vs.Timeout {
			vs := want.vs
			if err := iv.UpdateService(&vs); err != nil {
				return err
			}
		}
		if err := p.syncRealServers(iv, want); err != nil {
			return err
		}
		p.programmed[k] = want
	}

	// 3. Addresses no longer used (after their virtual servers are gone).
	for _, ip := range bound {
		if !d.vips[ip] {
			ops[OpAddrDel]++
			if err := p.cfg.Links.DelAddr(DummyDevice, ip); err != nil {
				return err
			}
		}
	}

	// 4. ipsets, then the iptables rules that reference them.
	if err := p.syncSets(ctx, d, ops); err != nil {
		return err
	}
	if err := p.syncRules(ctx, st.ClusterCIDR, ops, true); err != nil {
		return err
	}
	p.bound = d.vips
	p.idx = idx
	p.order = orderOf(st, idx)
	p.full = false
	return nil
}

// orderOf lists the contributions of x in st's order.
func orderOf(st *state.NodeState, x *index) []*contrib {
	out := make([]*contrib, len(st.Services))
	for i := range st.Services {
		out[i] = x.svcs[st.Services[i].PortKey()]
	}
	return out
}

// addVS creates a virtual server with its real servers.
func (p *Proxier) addVS(iv ipvsutil.Interface, want *desiredVS) error {
	vs := want.vs
	if err := iv.AddService(&vs); err != nil {
		return err
	}
	for _, ep := range want.eps {
		if err := iv.AddDestination(&vs, realServer(ep, 1)); err != nil {
			return err
		}
	}
	p.programmed[vs.Key()] = want
	return nil
}

// globalsOf is the node-wide input of the contributions and the rules: a
// change of it makes the next sync a full one.
func globalsOf(st *state.NodeState) string {
	var b strings.Builder
	b.WriteString(st.Node)
	for _, ip := range st.NodeIPs {
		b.WriteString(" " + ip.String())
	}
	b.WriteString(" " + st.ClusterCIDR.String())
	return b.String()
}

// stateDiff is what a state changes against the last synced one.
type stateDiff struct {
	changed []int // indexes into the state's Services: new or changed ports
	removed []state.PortKey
	// inPlace: the state lists the same ports in the same order as the
	// last one, so the changed ones take their predecessors' places.
	inPlace bool
}

// samePort reports whether c is the contribution of the port sp names.
func samePort(c *contrib, sp *state.ServicePort) bool {
	return c.sp.Name == sp.Name && c.sp.Namespace == sp.Namespace && c.sp.PortName == sp.PortName &&
		c.sp.Protocol == sp.Protocol
}

// diff compares st with the last synced state port by port (by position
// first: states are sorted, so unchanged ports line up without a lookup),
// and validates the new and changed ports and the duplicates, as
// NodeState.Validate would; nothing is modified.
func (p *Proxier) diff(st *state.NodeState) (*stateDiff, error) {
	if err := st.ValidateVersion(); err != nil {
		return nil, err
	}
	p.seq++
	d := &stateDiff{inPlace: len(st.Services) == len(p.order)}
	matched := 0
	var fresh map[state.PortKey]bool // new ports, for duplicates among them
	for i := range st.Services {
		sp := &st.Services[i]
		// Equal compares the port's identity too: an unchanged port in
		// its place costs one comparison.
		var old *contrib
		unchanged := false
		if i < len(p.order) && p.order[i].sp.Equal(sp) {
			old, unchanged = p.order[i], true
		} else if i < len(p.order) && samePort(p.order[i], sp) {
			old = p.order[i]
		} else {
			d.inPlace = false
			old = p.idx.svcs[sp.PortKey()]
		}
		if old != nil {
			if old.seen == p.seq {
				return nil, fmt.Errorf("service port %s listed twice", sp.Key())
			}
			old.seen = p.seq
			matched++
			if unchanged || old.sp.Equal(sp) {
				continue
			}
		} else {
			if fresh == nil {
				fresh = map[state.PortKey]bool{}
			}
			if fresh[sp.PortKey()] {
				return nil, fmt.Errorf("service port %s listed twice", sp.Key())
			}
			fresh[sp.PortKey()] = true
		}
		if err := sp.Validate(st.Version); err != nil {
			return nil, err
		}
		d.changed = append(d.changed, i)
	}
	if matched < len(p.idx.svcs) {
		for pk, c := range p.idx.svcs {
			if c.seen != p.seq {
				d.removed = append(d.removed, pk)
			}
		}
	}
	return d, nil
}

// syncChanges is the incremental sync: only the service ports that differ
// from the last synced state are translated again, and only what their
// contributions change is written, from what the proxier programmed (the
// kernel is read back only for the real servers of changed virtual servers).
func (p *Proxier) syncChanges(ctx context.Context, st *state.NodeState, d *stateDiff, iv ipvsutil.Interface, ops map[string]int) error {
	for _, ip := range st.NodeIPs {
		p.nodeIPs[ip] = true
	}
	t := newTouched()
	for _, pk := range d.removed {
		p.idx.release(pk, t)
	}
	for _, i := range d.changed {
		sp := &st.Services[i]
		p.idx.release(sp.PortKey(), t)
		c := contribOf(sp, st.Node, st.NodeIPs, p.cfg.Scheduler)
		c.seen = p.seq
		p.idx.claim(c, t)
		if d.inPlace {
			p.order[i] = c
		}
	}
	if !d.inPlace {
		p.order = orderOf(st, p.idx)
	}

	// 1. New addresses on kube-ipvs0.
	vips := sortedAddrs(t.vips)
	for _, ip := range vips {
		if p.idx.vipRef[ip] > 0 && !p.bound[ip] {
			ops[OpAddrAdd]++
			if err := p.cfg.Links.AddAddr(DummyDevice, ip); err != nil {
				return err
			}
			p.bound[ip] = true
			t.entries[setEntry{setIPVSIPs, ip.String()}] = true
		}
	}
	// 2. Virtual and real servers.
	keys := make([]ipvsutil.Key, 0, len(t.vss))
	for k := range t.vss {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keyLess(keys[i], keys[j]) })
	for _, k := range keys {
		want, have := p.idx.want(k), p.programmed[k]
		switch {
		case want == nil && have == nil:
		case want == nil:
			vs := have.vs
			if err := iv.DeleteService(&vs); err != nil && !ipvsutil.IsNotFound(err) {
				return err
			}
			delete(p.programmed, k)
			delete(p.terminating, k)
		case have == nil:
			if err := p.addVS(iv, want); err != nil {
				return err
			}
		default:
			if have.vs != want.vs {
				vs := want.vs
				if err := iv.UpdateService(&vs); err != nil {
					return err
				}
			}
			if have.fp != want.fp || p.terminating[k] != nil {
				if err := p.syncRealServers(iv, want); err != nil {
					return err
				}
			}
			p.programmed[k] = want
		}
	}
	// 3. Addresses no longer used.
	for _, ip := range vips {
		if p.idx.vipRef[ip] == 0 && p.bound[ip] {
			ops[OpAddrDel]++
			if err := p.cfg.Links.DelAddr(DummyDevice, ip); err != nil {
				return err
			}
			delete(p.bound, ip)
			t.entries[setEntry{setIPVSIPs, ip.String()}] = true
		}
	}
	// 4. ipset entries (the rules depend on the globals only).
	return p.syncEntries(ctx, t, ops)
}

// syncEntries writes the changes of the touched ipset entries in one
// `ipset restore`.
func (p *Proxier) syncEntries(ctx context.Context, t *touched, ops map[string]int) error {
	es := make([]setEntry, 0, len(t.entries))
	for e := range t.entries {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool {
		return es[i].set < es[j].set || es[i].set == es[j].set && es[i].entry < es[j].entry
	})
	var b strings.Builder
	var adds, dels []setEntry
	for _, e := range es {
		want := p.idx.setRef[e] > 0
		if e.set == setIPVSIPs {
			ip, err := netip.ParseAddr(e.entry)
			want = err == nil && p.bound[ip]
		}
		have := p.setsApplied[e.set][e.entry]
		switch {
		case want && !have:
			b.WriteString("add " + e.set + " " + e.entry + "\n")
			ops[OpIPSetAdd]++
			adds = append(adds, e)
		case !want && have:
			b.WriteString("del " + e.set + " " + e.entry + "\n")
			ops[OpIPSetDel]++
			dels = append(dels, e)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	ops[OpIPSetRestore]++
	if err := p.cfg.IPSet.Restore(ctx, []byte(b.String())); err != nil {
		return err
	}
	for _, e := range adds {
		p.setsApplied[e.set][e.entry] = true
	}
	for _, e := range dels {
		delete(p.setsApplied[e.set], e.entry)
	}
	return nil
}

func realServer(ap netip.AddrPort, weight int) *ipvsutil.RealServer {
	return &ipvsutil.RealServer{Address: ap.Addr(), Port: ap.Port(), Weight: weight}
}

// syncRealServers makes the kernel's real servers of one virtual server match
// want: missing ones are added, terminating ones that are wanted again get
// weight 1 back, unwanted ones are retired.
func (p *Proxier) syncRealServers(iv ipvsutil.Interface, want *desiredVS) error {
	vs := want.vs
	cur, err := iv.Destinations(&vs)
	if err != nil {
		return err
	}
	wanted := make(map[netip.AddrPort]bool, len(want.eps))
	for _, ep := range want.eps {
		wanted[ep] = true
	}
	present := make(map[netip.AddrPort]bool, len(cur))
	for _, rs := range cur {
		present[rs.Key()] = true
		if wanted[rs.Key()] {
			if rs.Weight != 1 {
				if err := iv.UpdateDestination(&vs, realServer(rs.Key(), 1)); err != nil {
					return err
				}
			}
			p.untrack(vs.Key(), rs.Key())
			continue
		}
		if err := p.retire(iv, &vs, rs); err != nil {
			return err
		}
	}
	for _, ep := range want.eps {
		if !present[ep] {
			if err := iv.AddDestination(&vs, realServer(ep, 1)); err != nil {
				return err
			}
		}
	}
	// Forget terminating entries the kernel no longer has.
	if t := p.terminating[vs.Key()]; t != nil {
		for ap := range t.since {
			if !present[ap] {
				p.untrack(vs.Key(), ap)
			}
		}
	}
	return nil
}

// syncSets writes the ipsets of a full check in one `ipset restore`: when
// nothing is known (a first sync, after an error or ForceFullSync) it
// creates and flushes every set and adds every entry; otherwise it creates
// the sets that may be missing and adds every wanted entry again (present
// ones are no error), and deletes the entries written before that are no
// longer wanted, without emptying a set in between.
func (p *Proxier) syncSets(ctx context.Context, d *desired, ops map[string]int) error {
	var b strings.Builder
	for _, s := range ourSets {
		want := d.sets[s.Name]
		b.WriteString(s.CreateLine() + "\n")
		if p.setsApplied == nil {
			b.WriteString("flush " + s.Name + "\n")
		} else {
			for _, e := range sortedKeys(p.setsApplied[s.Name]) {
				if !want[e] {
					b.WriteString("del " + s.Name + " " + e + "\n")
					ops[OpIPSetDel]++
				}
			}
		}
		for _, e := range sortedKeys(want) {
			b.WriteString("add " + s.Name + " " + e + "\n")
			ops[OpIPSetAdd]++
		}
	}
	ops[OpIPSetRestore]++
	if err := p.cfg.IPSet.Restore(ctx, []byte(b.String())); err != nil {
		return err
	}
	p.setsApplied = d.sets
	return nil
}

// syncRules writes the iptables rules when their text changed, nothing is
// known or repair is set (a full check), adding the jumps from built-in
// chains that are missing.
func (p *Proxier) syncRules(ctx context.Context, clusterCIDR netip.Prefix, ops map[string]int, repair bool) error {
	text := buildRules(clusterCIDR, nil)
	if !repair && p.rulesText != nil && string(text) == string(p.rulesText) {
		return nil
	}
	if p.rulesText == nil {
		// Nothing known (a first or full sync): the canary with the rules.
		ops[OpIPTablesRestor]++
		if err := iptrestore.EnsureCanary(ctx, p.cfg.IPTables); err != nil {
			return err
		}
	}
	ops[OpIPTablesSave] += 2
	saved, err := iptrestore.SaveTables(ctx, p.cfg.IPTables, "nat", "filter")
	if err != nil {
		return err
	}
	ops[OpIPTablesRestor]++
	if err := p.cfg.IPTables.Restore(ctx, buildRules(clusterCIDR, saved), true, false); err != nil {
		return err
	}
	p.rulesText = text
	return nil
}

// ForceFullSync implements modes.FullSyncer: the next Sync is a full check:
// it reads every address, virtual server and real server back and rewrites
// the ipsets and iptables rules as a first sync does.
func (p *Proxier) ForceFullSync() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.full, p.setsApplied, p.rulesText, p.idx, p.order = true, nil, nil, nil, nil
}

// Intact implements modes.Canary: the iptables canary chain
// (iptrestore.CanaryChain) a full sync creates beside the glue rules is
// still in mangle. Upstream's IPVS proxier (v1.37) keeps no canary; it
// repairs at its periodic sync, every --ipvs-sync-period (30 s), which the
// node proxy's agent.ResyncPeriod matches: virtual servers flushed alone
// (ipvsadm -C) come back then.
func (p *Proxier) Intact(ctx context.Context) (bool, error) {
	ok, err := iptrestore.CanaryIntact(ctx, p.cfg.IPTables)
	if err != nil {
		return false, fmt.Errorf("ipvs on %s: %w", p.cfg.Node, err)
	}
	return ok, nil
}

// Cleanup implements modes.Proxier: it removes the virtual servers we own
// (on kube-ipvs0 addresses or any address of the node), our iptables chains and jumps, our
// ipsets and kube-ipvs0. It is idempotent.
func (p *Proxier) Cleanup(ctx context.Context) error {
	p.stopReaper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ct.Reset()
	var errs []error
	owned := map[netip.Addr]bool{}
	for ip := range p.nodeIPs {
		owned[ip] = true
	}
	for k := range p.programmed {
		owned[k.Address] = true
	}
	bound, err := p.cfg.Links.Addrs(DummyDevice)
	if err != nil && !errors.Is(err, netdev.ErrNoDevice) {
		errs = append(errs, err)
	}
	for _, ip := range bound {
		owned[ip] = true
	}
	// A one-shot cleanup (after a killed proxy) never synced: the node's
	// own addresses name its NodePort virtual servers.
	local, err := p.cfg.Links.LocalAddrs()
	if err != nil {
		errs = append(errs, err)
	}
	for _, ip := range local {
		owned[ip] = true
	}
	if svcs, err := p.cfg.IPVS.Services(); err != nil {
		errs = append(errs, err)
	} else {
		for _, vs := range svcs {
			if owned[vs.Address] {
				if err := p.cfg.IPVS.DeleteService(vs); err != nil && !ipvsutil.IsNotFound(err) {
					errs = append(errs, err)
				}
			}
		}
	}
	// Rules before sets: a set referenced by a rule cannot be destroyed.
	owns := func(chain string) bool { return ownsChain(chain) || chain == iptrestore.CanaryChain }
	if saved, err := iptrestore.SaveTables(ctx, p.cfg.IPTables, iptrestore.CanaryTables...); err != nil {
		errs = append(errs, err)
	} else if text := iptrestore.CleanupInput(saved, owns); text != nil {
		if err := p.cfg.IPTables.Restore(ctx, text, true, false); err != nil {
			errs = append(errs, err)
		}
	}
	if names, err := p.cfg.IPSet.ListSets(ctx); err != nil {
		errs = append(errs, err)
	} else {
		exists := map[string]bool{}
		for _, n := range names {
			exists[n] = true
		}
		// One `ipset restore` destroys them all: a process per set made
		// cleanup outlast its deadline on a slow kernel lane.
		var script strings.Builder
		for _, s := range ourSets {
			if exists[s.Name] {
				script.WriteString("destroy " + s.Name + "\n")
			}
		}
		if script.Len() > 0 {
			if err := p.cfg.IPSet.Restore(ctx, []byte(script.String())); err != nil {
				errs = append(errs, fmt.Errorf("destroy ipsets: %w", err))
			}
		}
	}
	if err := p.cfg.Links.DeleteDevice(DummyDevice); err != nil {
		errs = append(errs, err)
	}
	p.programmed = map[ipvsutil.Key]*desiredVS{}
	p.bound = map[netip.Addr]bool{}
	p.terminating = map[ipvsutil.Key]*terminatingVS{}
	p.full, p.setsApplied, p.rulesText, p.idx, p.order = true, nil, nil, nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ipvs cleanup on %s: %w", p.cfg.Node, err)
	}
	return nil
}

// Close stops the reaper and releases the kernel handles that can be closed.
// It does not clean up (see Cleanup).
func (p *Proxier) Close() error {
	p.stopReaper()
	for _, h := range []any{p.cfg.IPVS, p.cfg.Links} {
		switch c := h.(type) {
		case interface{ Close() }:
			c.Close()
		case io.Closer:
			if err := c.Close(); err != nil {
				return err
			}
		}
	}
	return nil
}

func sortedAddrs(m map[netip.Addr]bool) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
