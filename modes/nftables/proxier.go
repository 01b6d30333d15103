// Package nftables is svcsim's nftables proxy mode: kube-proxy's nftables
// datapath (table "ip kube-proxy", verdict maps keyed by address . protocol .
// port, one chain per service port and per endpoint) programmed through
// sigs.k8s.io/knftables.
//
// Every Sync is one knftables transaction. Like kube-proxy's partial sync, a
// Sync after a successful one rewrites only the chains and map elements of
// the service ports that changed, and deletes those of removed ones; the
// first Sync, the one after an error, and any requested one rebuild the whole
// table (keeping the dynamic contents of the affinity sets).
//
// The Proxier reaches the kernel only through knftables.Interface, so it runs
// unchanged on knftables.NewFake in unit tests. The real interface execs
// `nft`, which acts in the network namespace of the calling thread.
package nftables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/conntrack"
	"github.com/svcsim/svcsim/sim/state"
)

// ModeName is the name the mode is registered under.
const ModeName = "nftables"

func init() {
	modes.Register(modes.Datapath{
		Name: ModeName,
		Start: modes.Start{Factory: func(o modes.Options) (modes.Proxier, error) {
			return NewKernel(Config{Node: o.Node})
		}},
		Needs:  []modes.Feature{modes.Tool("nft"), modes.NfTables},
		Kernel: modes.KernelNftables,
		Dump:   []string{"nft", "list", "table", "ip", tableName},
		Flush:  [][]string{{"nft", "flush", "ruleset"}},
		// numgen random per connection; affinity through a timed set of
		// client addresses; partial transactions unless a full one is asked.
		Traits: modes.Traits{Choice: modes.Random, Affinity: modes.AffinityIdle,
			FullResync: modes.ForceFullSync},
		Report: modes.Report{Order: 40},
	})
}

// Config configures a Proxier.
type Config struct {
	// Node is the node's name, for error messages.
	Node string
	// AlwaysFullSync turns partial syncs off: every Sync rebuilds the whole
	// table (to compare the two, or to rule the partial sync out).
	AlwaysFullSync bool
	// Conntrack deletes stale UDP conntrack entries after each sync;
	// NewKernel sets conntrack.Netlink, nil (tests on a fake) deletes none.
	Conntrack conntrack.Interface
}

// SyncStats describes the last Sync that ran a transaction (or found there
// was nothing to do).
type SyncStats struct {
	// Full is true when the whole table was rebuilt.
	Full bool
	// Ops is the number of operations (nft commands) in the transaction;
	// 0 means the kernel was already up to date and nothing was run.
	Ops int
	// Changed is the number of service ports whose chains were (re)written.
	Changed int
	// Removed is the number of stale chains deleted.
	Removed int
	// ConntrackDeleted is the number of stale UDP conntrack entries deleted.
	ConntrackDeleted int
	// Duration is the wall time of Sync, building included.
	Duration time.Duration
}

// Proxier programs one node's kernel with nftables.
type Proxier struct {
	nft  knftables.Interface
	cfg  Config
	list func(ctx context.Context) (string, error)

	mu sync.Mutex
	// needFull forces the next Sync to rebuild everything.
	needFull bool
	// baseRecreated is set once the base chains were deleted and re-added,
	// which a first sync does so that a leftover table with other hook
	// priorities cannot make the transaction fail.
	baseRecreated bool
	// The state the kernel holds after the last successful Sync.
	global  globals
	applied map[string]*servicePlan // by ServicePort.Key
	elems   map[elemID]elemState
	// owners lists, for each element, the service ports whose plans list
	// it, by key: the first one's value is the element's.
	owners map[elemID][]elemOwner
	last   SyncStats
	ct     conntrack.Cleaner
}

var (
	_ modes.Proxier = (*Proxier)(nil)
	_ modes.Dumper  = (*Proxier)(nil)
	_ modes.Canary  = (*Proxier)(nil)
)

// New returns a Proxier that programs nft. With a *knftables.Fake, Dump
// returns the fake's dump; otherwise it runs `nft list table ip kube-proxy`.
func New(nft knftables.Interface, cfg Config) *Proxier {
	p := &Proxier{nft: nft, cfg: cfg, needFull: true, ct: conntrack.Cleaner{CT: cfg.Conntrack}}
	if f, ok := nft.(*knftables.Fake); ok {
		p.list = func(context.Context) (string, error) { return f.Dump(), nil }
	} else {
		p.list = listTable
	}
	return p
}

// NewKernel returns a Proxier for the real kernel of the calling thread's
// network namespace (knftables.New execs `nft`, which must be 1.0.1+).
func NewKernel(cfg Config) (*Proxier, error) {
	nft, err := knftables.New(knftables.IPv4Family, tableName)
	if err != nil {
		return nil, fmt.Errorf("nftables on node %s: %w", cfg.Node, err)
	}
	if cfg.Conntrack == nil {
		cfg.Conntrack = conntrack.Netlink{}
	}
	return New(nft, cfg), nil
}

// Name implements modes.Proxier.
func (p *Proxier) Name() string { return ModeName }

// LastSync returns the statistics of the last successful Sync.
func (p *Proxier) LastSync() SyncStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// ForceFullSync implements modes.FullSyncer: the next Sync rebuilds the
// whole table.
func (p *Proxier) ForceFullSync() {
	p.mu.Lock()
	p.needFull = true
	p.mu.Unlock()
}

// Sync implements modes.Proxier: after it returns nil, the table implements
// st. On error the next Sync is a full one.
func (p *Proxier) Sync(ctx context.Context, st *state.NodeState) error {
	if st == nil {
		return fmt.Errorf("nftables sync on node %s: nil state", p.cfg.Node)
	}
	if err := st.Validate(); err != nil {
		return fmt.Errorf("nftables sync on node %s: %w", p.cfg.Node, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()

	start := time.Now()
	g := globalsOf(st)
	full := p.needFull || p.cfg.AlwaysFullSync || g != p.global
	b := &txBuilder{tx: p.nft.NewTransaction()}

	// Plan every service port; reuse the applied plan of an unchanged one.
	desired := make(map[string]*servicePlan, len(st.Services))
	order := make([]*servicePlan, 0, len(st.Services))
	var changed []*servicePlan
	for i := range st.Services {
		sp := &st.Services[i]
		key := sp.Key()
		old := p.applied[key]
		plan := old
		if full || old == nil || !old.sp.Equal(sp) {
			plan = buildPlan(sp, g)
			changed = append(changed, plan)
		}
		desired[key] = plan
		order = append(order, plan)
	}

	// Chains and affinity sets to remove, and sets to recreate.
	var staleChains, staleSets []string
	if full {
		var err error
		staleChains, staleSets, err = p.leftovers(ctx, desired)
		if err != nil {
			p.needFull = true
			return fmt.Errorf("nftables sync on node %s: %w", p.cfg.Node, err)
		}
	} else {
		for key, old := range p.applied {
			plan := desired[key]
			if plan == old {
				continue
			}
			for _, c := range old.chains {
				if plan == nil || !plan.hasChain(c.name) {
					staleChains = append(staleChains, c.name)
				}
			}
			for _, s := range old.sets {
				// A set whose timeout changed is deleted and added again
				// (an nft "add" of an existing set keeps its properties).
				if ns := plan.findSet(s.name); ns == nil || ns.timeout != s.timeout {
					staleSets = append(staleSets, s.name)
				}
			}
		}
		sort.Strings(staleChains)
		sort.Strings(staleSets)
	}

	// Elements wanted in the fixed maps and sets; the first service port
	// listing a key wins (keys are unique in a valid cluster, except the
	// ClusterIP shared by the ports of one service). A full sync computes
	// them all; a partial one only those of the changed and removed service
	// ports, from who claims each element (owners).
	var addElems []*elemPlan
	var dropElems []elemID   // elements to delete from the kernel
	var replaced []*elemPlan // elements whose value changes: deleted, then added
	var setElems []*elemPlan // partial: p.elems updates once the transaction ran
	if full {
		p.owners = make(map[elemID][]elemOwner, len(p.elems)+8)
		for _, plan := range order {
			p.claimElems(plan)
		}
		for _, plan := range order {
			for i := range plan.elems {
				e := &plan.elems[i]
				if w := p.owners[e.id()]; w[0].e == e {
					addElems = append(addElems, e) // setup flushed the maps
				}
			}
		}
	} else {
		touched := map[elemID]bool{}
		var ids []elemID // touched, in plan order: the transaction's order
		mark := func(plan *servicePlan) {
			for i := range plan.elems {
				if id := plan.elems[i].id(); !touched[id] {
					touched[id] = true
					ids = append(ids, id)
				}
			}
		}
		for key, old := range p.applied {
			if desired[key] != old {
				p.releaseElems(old)
			}
		}
		for _, plan := range changed {
			p.claimElems(plan)
			mark(plan)
		}
		var others []elemID
		for key, old := range p.applied {
			if desired[key] != old {
				for i := range old.elems {
					if id := old.elems[i].id(); !touched[id] {
						touched[id] = true
						others = append(others, id)
					}
				}
			}
		}
		sort.Slice(others, func(i, j int) bool {
			return others[i].container < others[j].container ||
				others[i].container == others[j].container && others[i].key < others[j].key
		})
		ids = append(ids, others...)
		for _, id := range ids {
			old, had := p.elems[id]
			w := p.owners[id]
			switch {
			case len(w) == 0 && had:
				dropElems = append(dropElems, id)
			case len(w) == 0:
			case !had:
				addElems = append(addElems, w[0].e)
			case old != w[0].e.state():
				replaced = append(replaced, w[0].e)
				addElems = append(addElems, w[0].e)
			default:
				continue
			}
			if len(w) > 0 {
				setElems = append(setElems, w[0].e)
			}
		}
		sort.Slice(dropElems, func(i, j int) bool {
			return dropElems[i].container < dropElems[j].container ||
				dropElems[i].container == dropElems[j].container && dropElems[i].key < dropElems[j].key
		})
	}

	// The transaction, ordered so that every reference is valid at each step.
	if full {
		b.setup(g, !p.baseRecreated)
	}
	// 1. Create (or empty) the chains of changed service ports.
	for _, plan := range changed {
		for _, c := range plan.chains {
			b.ensureChain(c.name)
		}
	}
	// 2. Empty stale chains, so nothing they reference stays referenced.
	for _, c := range staleChains {
		b.tx.Flush(&knftables.Chain{Name: c})
	}
	// 3. Drop elements no longer wanted, or whose verdict changes.
	for _, id := range dropElems {
		b.tx.Delete(id.object())
	}
	for _, e := range replaced {
		b.tx.Delete(e.object(false))
	}
	// 4. Delete affinity sets no longer used (their chains are empty now).
	for _, s := range staleSets {
		b.tx.Delete(&knftables.Set{Name: s})
	}
	// 5. Affinity sets, rules and elements of the changed service ports.
	for _, plan := range changed {
		for _, s := range plan.sets {
			b.tx.Add(&knftables.Set{
				Name: s.name,
				Type: "ipv4_addr",
				// "dynamic" because the packet path adds to the set.
				Flags:   []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag},
				Timeout: knftables.PtrTo(time.Duration(s.timeout) * time.Second),
			})
		}
		for _, c := range plan.chains {
			for _, r := range c.rules {
				b.tx.Add(&knftables.Rule{Chain: c.name, Rule: r})
			}
		}
	}
	for _, e := range addElems {
		b.tx.Add(e.object(true))
	}
	// 6. Delete the stale chains, unreferenced by now. (Kernels before 6.2
	// needed a delay between dropping a map element and deleting its
	// chain; kube-proxy defers the delete by a second for them. svcsim
	// targets newer kernels and deletes in the same transaction.)
	for _, c := range staleChains {
		b.tx.Delete(&knftables.Chain{Name: c})
	}

	ops := b.tx.NumOperations()
	if ops > 0 {
		if err := p.nft.Run(ctx, b.tx); err != nil {
			p.needFull = true
			return fmt.Errorf("nftables sync on node %s (%s, %d operations): %w",
				p.cfg.Node, syncKind(full), ops, err)
		}
	}
	p.applied = desired
	if full {
		p.elems = make(map[elemID]elemState, len(addElems))
		for _, e := range addElems {
			p.elems[e.id()] = e.state()
		}
	} else {
		for _, id := range dropElems {
			delete(p.elems, id)
		}
		for _, e := range setElems {
			p.elems[e.id()] = e.state()
		}
	}
	p.global = g
	p.needFull = false
	if full {
		p.baseRecreated = true
	}
	deleted, err := p.ct.Synced(ctx, st)
	p.last = SyncStats{Full: full, Ops: ops, Changed: len(changed), Removed: len(staleChains),
		ConntrackDeleted: deleted, Duration: time.Since(start)}
	if err != nil {
		return fmt.Errorf("nftables sync on node %s: table written, but: %w", p.cfg.Node, err)
	}
	return nil
}

// elemOwner is one service port's claim on an element.
type elemOwner struct {
	key string // the service port's Key
	e   *elemPlan
}

// claimElems records plan's claims on its elements (the first listing of an
// element in a plan counts).
func (p *Proxier) claimElems(plan *servicePlan) {
	key := plan.sp.Key()
	for i := range plan.elems {
		e := &plan.elems[i]
		id := e.id()
		owners := p.owners[id]
		j, found := slices.BinarySearchFunc(owners, key, func(o elemOwner, k string) int { return strings.Compare(o.key, k) })
		if found {
			continue
		}
		p.owners[id] = slices.Insert(owners, j, elemOwner{key: key, e: e})
	}
}

// releaseElems withdraws plan's claims.
func (p *Proxier) releaseElems(plan *servicePlan) {
	key := plan.sp.Key()
	for i := range plan.elems {
		id := plan.elems[i].id()
		owners := p.owners[id]
		j, found := slices.BinarySearchFunc(owners, key, func(o elemOwner, k string) int { return strings.Compare(o.key, k) })
		if !found || owners[j].e != &plan.elems[i] {
			continue
		}
		if owners = slices.Delete(owners, j, j+1); len(owners) == 0 {
			delete(p.owners, id)
		} else {
			p.owners[id] = owners
		}
	}
}

func syncKind(full bool) string {
	if full {
		return "full sync"
	}
	return "partial sync"
}

// findSet is set on a possibly nil plan.
func (p *servicePlan) findSet(name string) *setPlan {
	if p == nil {
		return nil
	}
	return p.set(name)
}

// object is a key-only element for a Delete.
func (id elemID) object() *knftables.Element {
	el := &knftables.Element{Key: strings.Split(id.key, " . ")}
	kind, name, _ := strings.Cut(id.container, " ")
	if kind == "set" {
		el.Set = name
	} else {
		el.Map = name
	}
	return el
}

// leftovers lists the per-service chains and affinity sets present in the
// table but not wanted by desired (left by an earlier sync that failed half
// way, or by an earlier process).
func (p *Proxier) leftovers(ctx context.Context, desired map[string]*servicePlan) (chains, sets []string, err error) {
	wantChains := map[string]bool{}
	wantSets := map[string]bool{}
	for _, plan := range desired {
		for _, c := range plan.chains {
			wantChains[c.name] = true
		}
		for _, s := range plan.sets {
			wantSets[s.name] = true
		}
	}
	have, err := p.nft.List(ctx, "chains")
	if err != nil && !knftables.IsNotFound(err) {
		return nil, nil, fmt.Errorf("list chains: %w", err)
	}
	for _, c := range have {
		if isServiceChain(c) && !wantChains[c] {
			chains = append(chains, c)
		}
	}
	have, err = p.nft.List(ctx, "sets")
	if err != nil && !knftables.IsNotFound(err) {
		return nil, nil, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range have {
		if isAffinitySet(s) && !wantSets[s] {
			sets = append(sets, s)
		}
	}
	sort.Strings(chains)
	sort.Strings(sets)
	return chains, sets, nil
}

// Intact implements modes.Canary. The table itself is the canary: `nft
// flush ruleset` (a firewall reload) or `nft delete table ip kube-proxy`
// takes it with every chain, set and map, and `nft list chains` finds no
// table then. Upstream's nftables proxier (v1.37) keeps no canary: it learns
// of a lost table when a later sync's transaction fails (retried after
// --sync-period, 30 s) or at its hourly full sync; svcsim looks every
// agent.CanaryPeriod instead. Rules flushed out of chains that stay are
// not seen here.
func (p *Proxier) Intact(ctx context.Context) (bool, error) {
	_, err := p.nft.List(ctx, "chains")
	switch {
	case knftables.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("nftables on node %s: look for table ip %s: %w", p.cfg.Node, tableName, err)
	}
	return true, nil
}

// Cleanup implements modes.Proxier: it deletes the whole table. A missing
// table is not an error.
func (p *Proxier) Cleanup(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	tx := p.nft.NewTransaction()
	tx.Delete(&knftables.Table{})
	if err := p.nft.Run(ctx, tx); err != nil && !knftables.IsNotFound(err) {
		return fmt.Errorf("delete table ip %s on node %s: %w", tableName, p.cfg.Node, err)
	}
	p.needFull = true
	p.baseRecreated = false
	p.applied = nil
	p.elems = nil
	p.owners = nil
	p.ct.Reset()
	return nil
}

// Dump implements modes.Dumper: the table as `nft list table ip kube-proxy`
// prints it (empty when there is no table).
func (p *Proxier) Dump(ctx context.Context) (string, error) {
	out, err := p.list(ctx)
	if err != nil {
		return "", fmt.Errorf("dump nftables of node %s: %w", p.cfg.Node, err)
	}
	return out, nil
}

// listTable runs `nft list table ip kube-proxy` in the calling thread's
// network namespace.
func listTable(ctx context.Context) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "nft", "list", "table", "ip", tableName)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && strings.Contains(stderr.String(), "No such file or directory") {
			return "", nil
		}
		return "", fmt.Errorf("nft list table ip %s: %w: %s", tableName, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// txBuilder adds the fixed part of the table to a transaction.
type txBuilder struct {
	tx *knftables.Transaction
}

// ensureChain makes chain exist and be empty.
func (b *txBuilder) ensureChain(name string) {
	b.tx.Add(&knftables.Chain{Name: name})
	b.tx.Flush(&knftables.Chain{Name: name})
}

type baseChain struct {
	name     string
	typ      knftables.BaseChainType
	hook     knftables.BaseChainHook
	priority knftables.BaseChainPriority
}

// baseChains are hooked into netfilter. The filter chains run just before
// DNAT (so they see service addresses), except filter-output-post-dnat,
// which checks locally sent packets after DNAT.
var baseChains = []baseChain{
	{filterPreroutingChain, knftables.FilterType, knftables.PreroutingHook, knftables.DNATPriority + "-10"},
	{filterInputChain, knftables.FilterType, knftables.InputHook, knftables.DNATPriority + "-10"},
	{filterForwardChain, knftables.FilterType, knftables.ForwardHook, knftables.DNATPriority + "-10"},
	{filterOutputChain, knftables.FilterType, knftables.OutputHook, knftables.DNATPriority + "-10"},
	{filterOutputPostDNATChain, knftables.FilterType, knftables.OutputHook, knftables.DNATPriority + "+10"},
	{natPreroutingChain, knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority},
	{natOutputChain, knftables.NATType, knftables.OutputHook, knftables.DNATPriority},
	{natPostroutingChain, knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority},
}

// jumps connect base chains to the fixed regular chains. Rejects happen in
// input/forward/output because older kernels refuse "reject" in prerouting.
var jumps = []struct{ from, match, to string }{
	{filterInputChain, "ct state new", nodePortEndpointsCheckChain},
	{filterInputChain, "ct state new", serviceEndpointsCheckChain},
	{filterForwardChain, "ct state new", serviceEndpointsCheckChain},
	{filterOutputChain, "ct state new", serviceEndpointsCheckChain},
	{filterPreroutingChain, "ct state new", firewallCheckChain},
	{natOutputChain, "", servicesChain},
	{natPreroutingChain, "", servicesChain},
	{natPostroutingChain, "", masqueradingChain},
	{filterForwardChain, "ct state new", clusterIPsCheckChain},
	{filterOutputPostDNATChain, "ct state new", clusterIPsCheckChain},
}

// setup (re)writes the fixed part of the table and empties the shared maps,
// for a full sync. recreateBase first deletes the base chains, so that base
// chains left with other properties by an earlier process are replaced.
func (b *txBuilder) setup(g globals, recreateBase bool) {
	tx := b.tx
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("rules for kube-proxy")})
	if recreateBase {
		for _, bc := range baseChains {
			tx.Add(&knftables.Chain{Name: bc.name})
			tx.Delete(&knftables.Chain{Name: bc.name})
		}
	}
	for _, bc := range baseChains {
		c := &knftables.Chain{Name: bc.name, Type: knftables.PtrTo(bc.typ), Hook: knftables.PtrTo(bc.hook), Priority: knftables.PtrTo(bc.priority)}
		tx.Add(c)
		tx.Flush(c)
	}

	// Shared maps and sets, emptied: a full sync adds all elements again.
	const dest = "ipv4_addr . inet_proto . inet_service : verdict"
	const port = "inet_proto . inet_service : verdict"
	tx.Add(&knftables.Set{Name: clusterIPsSet, Type: "ipv4_addr", Comment: knftables.PtrTo("Active ClusterIPs")})
	tx.Flush(&knftables.Set{Name: clusterIPsSet})
	tx.Add(&knftables.Set{Name: nodePortIPsSet, Type: "ipv4_addr", Comment: knftables.PtrTo("IPs that accept NodePort traffic")})
	tx.Flush(&knftables.Set{Name: nodePortIPsSet})
	if g.nodeIPs != "" {
		for _, ip := range strings.Split(g.nodeIPs, ",") {
			tx.Add(&knftables.Element{Set: nodePortIPsSet, Key: []string{ip}})
		}
	}
	for _, m := range []*knftables.Map{
		{Name: serviceIPsMap, Type: dest, Comment: knftables.PtrTo("ClusterIP, ExternalIP and LoadBalancer IP traffic")},
		{Name: serviceNodePortsMap, Type: port, Comment: knftables.PtrTo("NodePort traffic")},
		{Name: noEndpointServicesMap, Type: dest, Comment: knftables.PtrTo("vmap to drop or reject packets to services with no endpoints")},
		{Name: noEndpointNodePortsMap, Type: port, Comment: knftables.PtrTo("vmap to drop or reject packets to service nodeports with no endpoints")},
		{Name: firewallIPsMap, Type: dest, Comment: knftables.PtrTo("destinations that are subject to LoadBalancerSourceRanges")},
	} {
		tx.Add(m)
		tx.Flush(&knftables.Map{Name: m.Name})
	}

	var fixed []string
	for _, j := range jumps {
		if !slices.Contains(fixed, j.to) {
			fixed = append(fixed, j.to)
		}
	}
	fixed = append(fixed, markMasqChain)
	for _, c := range fixed {
		b.ensureChain(c)
	}
	// kube-proxy's comment on its reject helper, so the tables read alike.
	tx.Add(&knftables.Chain{Name: rejectChain, Comment: knftables.PtrTo("helper for @no-endpoint-services / @no-endpoint-nodeports")})
	tx.Flush(&knftables.Chain{Name: rejectChain})
	for _, j := range jumps {
		tx.Add(&knftables.Rule{Chain: j.from, Rule: knftables.Concat(j.match, "jump", j.to)})
	}

	// Masquerading: mark-for-masquerade sets the bit, masquerading (in
	// postrouting) clears it and SNATs to the outgoing interface address.
	tx.Add(&knftables.Rule{Chain: markMasqChain, Rule: "mark set mark or " + masqMark})
	tx.Add(&knftables.Rule{Chain: masqueradingChain, Rule: "mark and " + masqMark + " == 0 return"})
	tx.Add(&knftables.Rule{Chain: masqueradingChain, Rule: "mark set mark xor " + masqMark})
	tx.Add(&knftables.Rule{Chain: masqueradingChain, Rule: "masquerade fully-random"})

	// Service dispatch: service addresses first, then NodePorts on the
	// node's own addresses (kube-proxy's --nodeport-addresses=primary).
	tx.Add(&knftables.Rule{Chain: servicesChain, Rule: "ip daddr . meta l4proto . th dport vmap @" + serviceIPsMap})
	tx.Add(&knftables.Rule{Chain: servicesChain,
		Rule: "ip daddr @" + nodePortIPsSet + " meta l4proto . th dport vmap @" + serviceNodePortsMap})

	// Load-balancer source ranges, checked before DNAT.
	tx.Add(&knftables.Rule{Chain: firewallCheckChain,
		Rule: "ip daddr . meta l4proto . th dport vmap @" + firewallIPsMap})

	// No endpoints: reject.
	tx.Add(&knftables.Rule{Chain: rejectChain, Rule: "reject"})
	tx.Add(&knftables.Rule{Chain: serviceEndpointsCheckChain,
		Rule: "ip daddr . meta l4proto . th dport vmap @" + noEndpointServicesMap})
	tx.Add(&knftables.Rule{Chain: nodePortEndpointsCheckChain,
		Rule: "ip daddr @" + nodePortIPsSet + " meta l4proto . th dport vmap @" + noEndpointNodePortsMap})

	// Traffic to a ClusterIP that was not DNATed: a port the service does
	// not have (reject), or an address no service has (drop).
	tx.Add(&knftables.Rule{Chain: clusterIPsCheckChain, Rule: "ip daddr @" + clusterIPsSet + " reject",
		Comment: knftables.PtrTo("Reject traffic to invalid ports of ClusterIPs")})
	if g.serviceCIDR.IsValid() {
		tx.Add(&knftables.Rule{Chain: clusterIPsCheckChain,
			Rule:    knftables.Concat("ip daddr {", g.serviceCIDR.Masked().String(), "} drop"),
			Comment: knftables.PtrTo("Drop traffic to unallocated ClusterIPs")})
	}
}
