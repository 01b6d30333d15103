// Package iptables is kube-proxy's iptables mode for svcsim: it programs one
// node's nat and filter tables with kube-proxy's chain layout and semantics
// (KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-*, KUBE-EXT-*, KUBE-NODEPORTS,
// KUBE-MARK-MASQ, KUBE-POSTROUTING, filter REJECT rules for services without
// endpoints), writing the whole ruleset with one iptables-restore --noflush
// per sync, on either iptables backend (legacy or nft).
//
// After a successful full sync, later syncs are partial like kube-proxy's
// MinimizeIPTablesRestore (KEP-3453): the top-level chains are always
// rewritten, but only the per-service chains of services that changed are.
// The first sync, a sync after an error or after Cleanup, a change of the
// cluster CIDR, and ForceFullSync make the next sync full.
//
// The kernel is reached only through iptrestore.Interface (the seam every
// datapath that writes iptables rules shares); iptrestore.Exec runs the real
// tools in the calling thread's network namespace, iptrestoretest.Fake is in
// memory. Stale UDP conntrack entries go through conntrack.Cleaner.
package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/conntrack"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/iptrestore/ruleset"
	"github.com/svcsim/svcsim/sim/state"
)

// Chains and constants shared with kube-proxy.
const (
	kubeServices         = "KUBE-SERVICES"
	kubeExternalServices = "KUBE-EXTERNAL-SERVICES"
	kubeForward          = "KUBE-FORWARD"
	kubeNodePorts        = "KUBE-NODEPORTS"
	kubePostrouting      = "KUBE-POSTROUTING"
	kubeMarkMasq         = "KUBE-MARK-MASQ"
	kubeMarkDrop         = "KUBE-MARK-DROP"
	// kubeFirewall is the kubelet's chain that kube-proxy fills too: the
	// rule that keeps localhost NodePorts from opening loopback to the
	// network.
	kubeFirewall = "KUBE-FIREWALL"

	// routeLocalnet lets packets to and from 127.0.0.0/8 be routed, so a
	// NodePort on 127.0.0.1 reaches a pod (kube-proxy's iptables mode sets it,
	// --iptables-localhost-nodeports, on by default).
	routeLocalnet = "net.ipv4.conf.all.route_localnet"

	// masqMark is kube-proxy's default --iptables-masquerade-bit 14.
	masqMark = "0x4000"
	// dropMark is kube-proxy's KUBE-MARK-DROP bit (0x8000): packets to a
	// load-balancer IP from outside its loadBalancerSourceRanges.
	dropMark = "0x8000"

	// largeClusterEndpoints is kube-proxy's threshold above which it drops
	// the per-endpoint comments to keep the ruleset small.
	largeClusterEndpoints = 1000
)

var ctNew = []string{"-m", "conntrack", "--ctstate", "NEW"}

// jumpRules are kube-proxy's jump rules (minus the load-balancer firewall and
// health-check ones, which svcsim's state never needs), in the order
// kube-proxy prepends them.
var jumpRules = []iptrestore.Jump{
	{Table: "filter", From: "INPUT", To: kubeExternalServices, Comment: "kubernetes externally-visible service portals", Match: ctNew},
	{Table: "filter", From: "FORWARD", To: kubeExternalServices, Comment: "kubernetes externally-visible service portals", Match: ctNew},
	{Table: "filter", From: "FORWARD", To: kubeServices, Comment: "kubernetes service portals", Match: ctNew},
	{Table: "filter", From: "OUTPUT", To: kubeServices, Comment: "kubernetes service portals", Match: ctNew},
	{Table: "filter", From: "FORWARD", To: kubeForward, Comment: "kubernetes forwarding rules"},
	{Table: "nat", From: "OUTPUT", To: kubeServices, Comment: "kubernetes service portals"},
	{Table: "nat", From: "PREROUTING", To: kubeServices, Comment: "kubernetes service portals"},
	{Table: "nat", From: "POSTROUTING", To: kubePostrouting, Comment: "kubernetes postrouting rules"},
	// The kubelet's firewall, first in INPUT and OUTPUT, as kube-proxy
	// ensures it for localhost NodePorts.
	{Table: "filter", From: "INPUT", To: kubeFirewall},
	{Table: "filter", From: "OUTPUT", To: kubeFirewall},
}

// Config configures a Proxier.
type Config struct {
	// Backend selects the iptables implementation; required unless Runner
	// is set, and part of Name.
	Backend iptrestore.Backend
	// Runner reaches the kernel; nil means an iptrestore.Exec for Backend.
	Runner iptrestore.Interface
	// Node is the node's name, for error messages.
	Node string
	// AlwaysFullSync turns partial syncs off (kube-proxy with
	// MinimizeIPTablesRestore disabled).
	AlwaysFullSync bool
	// Conntrack deletes stale UDP conntrack entries after a sync. When nil
	// it is conntrack.Netlink if Runner is nil too, and nothing (no
	// conntrack cleanup) when a Runner is given, so that tests on a fake
	// never touch the conntrack table of the namespace they run in.
	Conntrack conntrack.Interface
	// SetSysctl writes a kernel parameter of the node's namespace
	// (route_localnet, for NodePorts on 127.0.0.1). When nil it is
	// netns.WriteSysctl if Runner is nil too, and nothing when a Runner is
	// given, for the same reason as Conntrack.
	SetSysctl func(name, value string) error
}

// SyncStats describes the last Sync, for benchmarks and reports.
type SyncStats struct {
	// Full is true for a full sync, false for a partial one.
	Full bool `json:"full"`
	// Fallback is true when a partial sync failed and was redone in full.
	Fallback bool `json:"fallback,omitempty"`
	// Services is the number of service ports in the state.
	Services int `json:"services"`
	// Rewritten is the number of service ports whose chains were written.
	Rewritten int `json:"rewritten"`
	// StaleChains is the number of per-service chains deleted.
	StaleChains int `json:"staleChains"`
	// ConntrackDeleted is the number of stale UDP conntrack entries deleted.
	ConntrackDeleted int `json:"conntrackDeleted,omitempty"`
	// Lines and Bytes measure the iptables-restore input.
	Lines int `json:"lines"`
	Bytes int `json:"bytes"`
	// Duration is the whole Sync; RestoreDuration the iptables-restore run
	// (SaveDuration the iptables-save runs of a full sync).
	Duration        time.Duration `json:"duration"`
	RestoreDuration time.Duration `json:"restoreDuration"`
	SaveDuration    time.Duration `json:"saveDuration,omitempty"`
}

// Proxier is the iptables mode bound to the kernel its Runner reaches.
type Proxier struct {
	cfg Config
	run iptrestore.Interface
	ct  conntrack.Cleaner

	mu sync.Mutex
	// localnet is true once route_localnet=1 was written.
	localnet bool
	// needFull forces the next sync to be full.
	needFull bool
	// prev holds the service ports of the last successful sync, by Key.
	prev map[string]*state.ServicePort
	// prevCIDR is the cluster CIDR of the last successful sync.
	prevCIDR string
	// chains are the per-service chains in the kernel after the last
	// successful sync.
	chains map[string]bool
	// largeCluster is kube-proxy's large cluster mode of the last sync.
	largeCluster bool
	stats        SyncStats

	filterChains, filterRules, natChains, natRules iptrestore.LineBuffer
	data                                           bytes.Buffer
	probs                                          []string
}

var (
	_ modes.Proxier = (*Proxier)(nil)
	_ modes.Dumper  = (*Proxier)(nil)
	_ modes.Canary  = (*Proxier)(nil)
)

// New returns a Proxier. With a nil cfg.Runner it checks that the backend's
// binaries are installed.
func New(cfg Config) (*Proxier, error) {
	run, ct := cfg.Runner, cfg.Conntrack
	if run == nil {
		r, err := iptrestore.NewExec(cfg.Backend)
		if err != nil {
			return nil, err
		}
		run = r
		if ct == nil {
			ct = conntrack.Netlink{}
		}
		if cfg.SetSysctl == nil {
			cfg.SetSysctl = netns.WriteSysctl
		}
	}
	if cfg.Backend != "" && cfg.Backend != iptrestore.Legacy && cfg.Backend != iptrestore.NFT {
		return nil, fmt.Errorf("unknown iptables backend %q", cfg.Backend)
	}
	return &Proxier{cfg: cfg, run: run, ct: conntrack.Cleaner{CT: ct}, needFull: true}, nil
}

// Name is "iptables/legacy" or "iptables/nft".
func (p *Proxier) Name() string {
	if p.cfg.Backend == "" {
		return "iptables"
	}
	return datapathName(p.cfg.Backend)
}

// Version returns the backend's `iptables --version` line, for reports.
func (p *Proxier) Version(ctx context.Context) (string, error) {
	v, err := p.run.Version(ctx)
	if err != nil {
		return "", fmt.Errorf("iptables version on node %s: %w", p.cfg.Node, err)
	}
	return strings.TrimSpace(v), nil
}

// LastSync returns the figures of the last Sync.
func (p *Proxier) LastSync() SyncStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// ForceFullSync implements modes.FullSyncer: the next Sync is a full one.
func (p *Proxier) ForceFullSync() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.needFull = true
}

// Sync makes the kernel's KUBE-* chains implement st. Rules of others in the
// nat and filter tables are left alone.
func (p *Proxier) Sync(ctx context.Context, st *state.NodeState) error {
	if st == nil {
		return errors.New("iptables sync: nil state")
	}
	if err := st.Validate(); err != nil {
		return fmt.Errorf("iptables sync on node %s: %w", p.cfg.Node, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	start := time.Now()
	if !p.localnet && p.cfg.SetSysctl != nil {
		// Once, as kube-proxy does at its start; a node's namespace is
		// svcsim's own, so the value goes with it.
		if err := p.cfg.SetSysctl(routeLocalnet, "1"); err != nil {
			return fmt.Errorf("iptables sync on node %s: NodePorts on localhost: %w", p.cfg.Node, err)
		}
		p.localnet = true
	}

	total := 0
	for i := range st.Services {
		total += len(st.Services[i].Endpoints)
	}
	large := total > largeClusterEndpoints
	cidr := prefixString(st.ClusterCIDR)
	full := p.needFull || p.cfg.AlwaysFullSync || p.prev == nil ||
		cidr != p.prevCIDR || large != p.largeCluster

	var changed map[string]bool
	if p.prev != nil {
		changed = changedServices(p.prev, st)
	}
	stats, err := p.syncLocked(ctx, st, full, large, changed)
	if err != nil && !full {
		// The partial input relied on chains being as we left them; start
		// over from what the kernel really holds.
		full = true
		stats, err = p.syncLocked(ctx, st, true, large, changed)
		stats.Fallback = true
	}
	if err != nil {
		stats.Duration = time.Since(start)
		p.stats = stats
		p.needFull = true
		return fmt.Errorf("iptables sync on node %s: %w", p.cfg.Node, err)
	}
	stats.ConntrackDeleted, err = p.ct.Synced(ctx, st)
	stats.Duration = time.Since(start)
	p.stats = stats
	p.needFull = false
	p.prevCIDR = cidr
	p.largeCluster = large
	p.prev = make(map[string]*state.ServicePort, len(st.Services))
	for i := range st.Services {
		s := cloneServicePort(&st.Services[i])
		p.prev[s.Key()] = s
	}
	if err != nil {
		return fmt.Errorf("iptables sync on node %s: rules written, but: %w", p.cfg.Node, err)
	}
	return nil
}

// syncLocked builds and restores one sync's input. On success it records the
// per-service chains now in the kernel.
func (p *Proxier) syncLocked(ctx context.Context, st *state.NodeState, full, large bool, changed map[string]bool) (SyncStats, error) {
	stats := SyncStats{Full: full, Services: len(st.Services)}

	var existing map[string]*ruleset.Table // full syncs only: the kernel's tables
	if full {
		t0 := time.Now()
		var err error
		if existing, err = iptrestore.SaveTables(ctx, p.run, "filter", "nat"); err != nil {
			return stats, err
		}
		stats.SaveDuration = time.Since(t0)
	}
	p.filterChains.Reset()
	p.filterRules.Reset()
	p.natChains.Reset()
	p.natRules.Reset()
	for _, c := range []string{kubeServices, kubeExternalServices, kubeForward, kubeFirewall} {
		p.filterChains.WriteChain(c)
	}
	// route_localnet would let the network reach the node's loopback
	// services; kube-proxy closes that hole with this rule (issue 90259).
	p.filterRules.Write("-A", kubeFirewall, "-m", "comment", "--comment", `"block incoming localnet connections"`,
		"-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP")
	for _, c := range []string{kubeServices, kubeNodePorts, kubePostrouting, kubeMarkMasq} {
		p.natChains.WriteChain(c)
	}
	if full {
		iptrestore.WriteJumps(&p.filterRules, "filter", existing["filter"], jumpRules)
		iptrestore.WriteJumps(&p.natRules, "nat", existing["nat"], jumpRules)
	}

	// Masquerade what leaves through KUBE-MARK-MASQ, once.
	p.natRules.Write("-A", kubePostrouting, "-m", "mark", "!", "--mark", masqMark+"/"+masqMark, "-j", "RETURN")
	p.natRules.Write("-A", kubePostrouting, "-j", "MARK", "--xor-mark", masqMark)
	p.natRules.Write("-A", kubePostrouting, "-m", "comment", "--comment", `"kubernetes service traffic requiring SNAT"`,
		"-j", "MASQUERADE", "--random-fully")
	p.natRules.Write("-A", kubeMarkMasq, "-j", "MARK", "--or-mark", masqMark)
	if needsFirewall(st) {
		// Written only while some Service has loadBalancerSourceRanges, so
		// the rules of every other node stay kube-proxy's usual set.
		p.natChains.WriteChain(kubeMarkDrop)
		p.natRules.Write("-A", kubeMarkDrop, "-j", "MARK", "--or-mark", dropMark)
		p.filterRules.Write("-A", kubeExternalServices, "-m", "comment", "--comment", `"load balancer source ranges"`,
			"-m", "mark", "--mark", dropMark+"/"+dropMark, "-j", "DROP")
	}

	active := make(map[string]bool, 2*len(st.Services))
	cidr := prefixString(st.ClusterCIDR)
	for i := range st.Services {
		s := &st.Services[i]
		write := full || changed[s.Namespace+"/"+s.Name]
		if write {
			stats.Rewritten++
		}
		p.writeService(s, st.Node, cidr, write, large, active)
	}

	// Delete per-service chains nothing uses any more: declaring a chain
	// flushes it, so nothing in it still jumps elsewhere when it goes.
	var stale []string
	if full {
		for name := range existing["nat"].Chains {
			if isServiceChain(name) && !active[name] {
				stale = append(stale, name)
			}
		}
	} else {
		for name := range p.chains {
			if !active[name] {
				stale = append(stale, name)
			}
		}
	}
	sort.Strings(stale)
	for _, name := range stale {
		p.natChains.WriteChain(name)
		p.natRules.Write("-X", name)
	}
	stats.StaleChains = len(stale)

	// NodePorts on every local address, 127.0.0.1 included (route_localnet,
	// as kube-proxy's --iptables-localhost-nodeports default); must stay the
	// last rule.
	p.natRules.Write("-A", kubeServices,
		"-m", "comment", "--comment", `"kubernetes service nodeports; NOTE: this must be the last rule in this chain"`,
		"-m", "addrtype", "--dst-type", "LOCAL", "-j", kubeNodePorts)

	p.filterRules.Write("-A", kubeForward, "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
	p.filterRules.Write("-A", kubeForward, "-m", "comment", "--comment", `"kubernetes forwarding rules"`,
		"-m", "mark", "--mark", masqMark+"/"+masqMark, "-j", "ACCEPT")
	p.filterRules.Write("-A", kubeForward, "-m", "comment", "--comment", `"kubernetes forwarding conntrack rule"`,
		"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")

	p.data.Reset()
	p.data.WriteString("*filter\n")
	p.data.Write(p.filterChains.Bytes())
	p.data.Write(p.filterRules.Bytes())
	p.data.WriteString("COMMIT\n*nat\n")
	p.data.Write(p.natChains.Bytes())
	p.data.Write(p.natRules.Bytes())
	p.data.WriteString("COMMIT\n")
	stats.Lines = 4 + p.filterChains.Lines() + p.filterRules.Lines() + p.natChains.Lines() + p.natRules.Lines()
	stats.Bytes = p.data.Len()

	t0 := time.Now()
	if full {
		// The canary goes first: should the rules fail, the next sync is a
		// full one again anyway.
		if err := iptrestore.EnsureCanary(ctx, p.run); err != nil {
			return stats, err
		}
	}
	err := p.run.Restore(ctx, p.data.Bytes(), true, true)
	stats.RestoreDuration = time.Since(t0)
	if err != nil {
		return stats, fmt.Errorf("restore %d lines (%s sync): %w", stats.Lines, syncKind(full), err)
	}
	p.chains = active
	return stats, nil
}

// needsFirewall reports whether any load-balancer IP has source ranges.
func needsFirewall(st *state.NodeState) bool {
	for i := range st.Services {
		if s := &st.Services[i]; len(s.LoadBalancerIPs) > 0 && len(s.LoadBalancerSourceRanges) > 0 {
			return true
		}
	}
	return false
}

func syncKind(full bool) string {
	if full {
		return "full"
	}
	return "partial"
}

// Intact implements modes.Canary: the canary chain a full sync creates
// (iptrestore.CanaryChain) is still in the mangle table.
func (p *Proxier) Intact(ctx context.Context) (bool, error) {
	ok, err := iptrestore.CanaryIntact(ctx, p.run)
	if err != nil {
		return false, fmt.Errorf("iptables on node %s: %w", p.cfg.Node, err)
	}
	return ok, nil
}

// Cleanup deletes every KUBE-* chain of the nat and filter tables (and the
// canary in mangle) and the rules elsewhere that jump to them. Running it
// again finds nothing to do.
func (p *Proxier) Cleanup(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.needFull = true
	p.prev = nil
	p.ct.Reset()
	p.chains = nil

	saved, err := iptrestore.SaveTables(ctx, p.run, "filter", "nat", "mangle")
	if err != nil {
		return fmt.Errorf("iptables cleanup on node %s: %w", p.cfg.Node, err)
	}
	in := iptrestore.CleanupInput(saved, func(chain string) bool { return strings.HasPrefix(chain, "KUBE-") })
	if in == nil {
		return nil
	}
	if err := p.run.Restore(ctx, in, true, false); err != nil {
		return fmt.Errorf("iptables cleanup on node %s: %w", p.cfg.Node, err)
	}
	return nil
}

// Dump prints the nat and filter tables as iptables-save does, keeping only
// the KUBE-* chains, their rules and the rules that jump to them.
func (p *Proxier) Dump(ctx context.Context) (string, error) {
	var b strings.Builder
	for _, table := range []string{"nat", "filter"} {
		data, err := p.run.Save(ctx, table)
		if err != nil {
			return "", fmt.Errorf("iptables dump on node %s: %w", p.cfg.Node, err)
		}
		for line := range strings.Lines(string(data)) {
			l := strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(l, "*"), l == "COMMIT",
				strings.HasPrefix(l, ":KUBE-"), strings.HasPrefix(l, "-A KUBE-"),
				strings.HasPrefix(l, "-A ") && strings.Contains(l, " -j KUBE-"):
				b.WriteString(l)
				b.WriteByte('\n')
			}
		}
	}
	return b.String(), nil
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// changedServices returns the "ns/name" of every service with a port added,
// removed or changed since prev (kube-proxy tracks changes per service too).
func changedServices(prev map[string]*state.ServicePort, st *state.NodeState) map[string]bool {
	changed := map[string]bool{}
	seen := make(map[string]bool, len(st.Services))
	for i := range st.Services {
		s := &st.Services[i]
		k := s.Key()
		seen[k] = true
		if old, ok := prev[k]; !ok || !old.Equal(s) {
			changed[s.Namespace+"/"+s.Name] = true
		}
	}
	for k, old := range prev {
		if !seen[k] {
			changed[old.Namespace+"/"+old.Name] = true
		}
	}
	return changed
}

func cloneServicePort(s *state.ServicePort) *state.ServicePort {
	c := *s
	c.ExternalIPs = slices.Clone(s.ExternalIPs)
	c.Endpoints = slices.Clone(s.Endpoints)
	c.NotReadyEndpoints = slices.Clone(s.NotReadyEndpoints)
	c.LoadBalancerIPs = slices.Clone(s.LoadBalancerIPs)
	c.LoadBalancerSourceRanges = slices.Clone(s.LoadBalancerSourceRanges)
	return &c
}
