// Package userspace is the userspace proxy mode (kube-proxy's
// pkg/proxy/userspace, shipped until Kubernetes 1.26): for every Service port
// the node's proxy process listens on a random local port, iptables nat rules
// redirect the Service's ClusterIP, external IPs and NodePort to that port,
// and the proxy copies each connection (TCP) or datagram session (UDP) to a
// backend chosen round-robin. Backends therefore see the node's address as
// the source, never the client's.
//
// The nat chains are kube-proxy's: KUBE-PORTALS-CONTAINER and
// KUBE-NODEPORT-CONTAINER from PREROUTING (traffic from pods and other
// hosts, REDIRECTed to the proxy port), KUBE-PORTALS-HOST and
// KUBE-NODEPORT-HOST from OUTPUT (traffic of the node itself, DNATed to the
// node's IP and the proxy port). Every Sync rewrites those chains in one
// iptables-restore --noflush transaction; listeners of unchanged Service ports
// are kept, so connections survive endpoint changes.
package userspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/conntrack"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/sim/state"
)

// Name is the mode's registry and datapath name.
const Name = "userspace"

// DefaultUDPIdleTimeout ends a UDP session after this long without a
// datagram in either direction: kube-proxy's --udp-timeout default (250ms).
// Each session holds a socket and a goroutine, so it is kept short; a client
// that pauses longer simply gets a new session (and, without affinity, the
// next backend).
const DefaultUDPIdleTimeout = 250 * time.Millisecond

// DefaultDialTimeouts are the backend dial timeouts of successive attempts
// for one connection (kube-proxy's endpointDialTimeout). Attempts beyond the
// list reuse its last value.
var DefaultDialTimeouts = []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}

func init() {
	modes.Register(modes.Datapath{
		Name: Name,
		Start: modes.Start{Factory: func(o modes.Options) (modes.Proxier, error) {
			ipt, err := iptrestore.NewNode(o.IPTablesBackend)
			if err != nil {
				return nil, err
			}
			return New(Config{Node: o.Node, IPTables: ipt}), nil
		}},
		Needs:  []modes.Feature{modes.Tool("iptables-restore")},
		Kernel: modes.KernelUserspace,
		Dump:   []string{"iptables-save", "-t", "nat"},
		Flush:  modes.IPTablesFlush("iptables"),
		// Round-robin over endpoints, affinity by the client's last use,
		// connections relayed by the proxy (which retries refused backends);
		// a NodePort's socket listens on every address, 127.0.0.1 too, as
		// the userspace proxier of kube-proxy 1.25 and before did.
		Traits: modes.Traits{Choice: modes.RoundRobin, Affinity: modes.AffinityIdle, Relay: true, LocalhostNodePorts: true},
		Report: modes.Report{Order: 10},
	})
}

// Config configures a Proxier. Zero fields take the real kernel and the
// defaults.
type Config struct {
	// Node is the node's name, for messages.
	Node string
	// IPTables runs iptables-restore/iptables-save (an iptrestore.Exec of
	// the host's default backend by default; the registered datapath gives
	// the node's).
	IPTables iptrestore.Interface
	// Network makes listeners and dials backends (HostNetwork by default).
	Network Network
	// Conntrack deletes stale UDP flows after each sync
	// (conntrack.Netlink by default).
	Conntrack conntrack.Interface
	// Clock times session affinity (the real clock by default).
	Clock Clock
	// UDPIdleTimeout defaults to DefaultUDPIdleTimeout.
	UDPIdleTimeout time.Duration
	// DialTimeouts defaults to DefaultDialTimeouts.
	DialTimeouts []time.Duration
}

// Proxier is the userspace proxy of one node.
type Proxier struct {
	cfg Config

	mu       sync.Mutex
	services map[string]*service // by ServicePort.Key
	hostIP   netip.Addr          // node IP the host chains DNAT to
	nodeIPs  []netip.Addr        // of the last Sync, for Cleanup's flows
	ct       conntrack.Cleaner
	// canary: the canary chains were created since the last Cleanup or
	// ForceFullSync.
	canary bool
}

var (
	_ modes.Proxier    = (*Proxier)(nil)
	_ modes.Dumper     = (*Proxier)(nil)
	_ modes.Canary     = (*Proxier)(nil)
	_ modes.FullSyncer = (*Proxier)(nil)
)

// New returns a Proxier that has programmed nothing yet.
func New(cfg Config) *Proxier {
	if cfg.IPTables == nil {
		cfg.IPTables = &iptrestore.Exec{Backend: hostBackend()}
	}
	if cfg.Network == nil {
		cfg.Network = NewHostNetwork()
	}
	if cfg.Conntrack == nil {
		cfg.Conntrack = conntrack.Netlink{}
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.UDPIdleTimeout <= 0 {
		cfg.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if len(cfg.DialTimeouts) == 0 {
		cfg.DialTimeouts = DefaultDialTimeouts
	}
	p := &Proxier{cfg: cfg, services: map[string]*service{}}
	p.ct = conntrack.Cleaner{CT: cfg.Conntrack, Live: p.live}
	return p
}

// hostBackend is the backend of the host's `iptables` command, legacy when
// it cannot be told.
func hostBackend() iptrestore.Backend {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if b, err := iptrestore.DetectBackend(ctx); err == nil {
		return b
	}
	return iptrestore.Legacy
}

// live reports whether a UDP flow to one of s's frontends ends in its
// listener: the portal rules translate the destination to the proxy port
// (on whichever local address), so the reply comes from that port. The
// caller holds p.mu.
func (p *Proxier) live(s *state.ServicePort, reply netip.AddrPort) bool {
	for _, key := range []string{s.Key(), s.Key() + ExternalSuffix} {
		if svc := p.services[key]; svc != nil && reply.Port() == uint16(svc.port) {
			return true
		}
	}
	return false
}

// Name implements modes.Proxier.
func (p *Proxier) Name() string { return Name }

// Sync implements modes.Proxier. It must run in the node's network namespace:
// new listeners, iptables rules and conntrack changes are made there.
//
// Order matters for traffic in flight: listeners of new Service ports open
// before the rules that point at them, and listeners of removed ones close
// only after the rules are gone. If writing the rules fails, removed Service
// ports keep running and the next Sync retries.
func (p *Proxier) Sync(ctx context.Context, st *state.NodeState) error {
	if err := st.Validate(); err != nil {
		return fmt.Errorf("userspace sync of node %s: %w", st.Node, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()

	var errs []error
	want := make(map[string]bool, len(st.Services))
	ensure := func(key string, sp *state.ServicePort, eps []state.Endpoint, fe frontends) {
		want[key] = true
		svc := p.services[key]
		if svc == nil {
			var err error
			if svc, err = p.startService(ctx, key, sp); err != nil {
				errs = append(errs, err)
				want[key] = false
				return
			}
			p.services[key] = svc
		}
		svc.update(sp, eps, fe)
	}
	for i := range st.Services {
		sp := &st.Services[i]
		// When a traffic policy makes internal and external traffic pick
		// from different endpoints, the external addresses get a listener
		// of their own.
		split := sp.External() && (sp.InternalLocal() || sp.ExternalLocal())
		internal := frontends{vips: []netip.Addr{sp.ClusterIP}}
		external := frontends{vips: sp.ExternalIPs, lbIPs: sp.LoadBalancerIPs, ranges: sp.LoadBalancerSourceRanges, nodePort: sp.NodePort}
		if !split {
			internal.vips = append(internal.vips, external.vips...)
			internal.lbIPs, internal.ranges, internal.nodePort = external.lbIPs, external.ranges, external.nodePort
		}
		ensure(sp.Key(), sp, sp.InternalEndpoints(st.Node), internal)
		if split {
			ensure(sp.Key()+ExternalSuffix, sp, sp.ExternalEndpoints(st.Node), external)
		}
	}

	p.hostIP = netip.Addr{}
	for _, ip := range st.NodeIPs {
		if ip.Is4() {
			p.hostIP = ip
			break
		}
	}
	if err := p.writeRules(ctx, want); err != nil {
		return errors.Join(append(errs, fmt.Errorf("userspace sync of node %s: %w", st.Node, err))...)
	}

	for key, svc := range p.services {
		if want[key] {
			svc.lb.ExpirePins()
			continue
		}
		if err := svc.stop(); err != nil {
			errs = append(errs, err)
		}
		delete(p.services, key)
	}
	p.nodeIPs = st.NodeIPs
	if _, err := p.ct.Synced(ctx, st); err != nil {
		errs = append(errs, fmt.Errorf("userspace sync of node %s: %w", st.Node, err))
	}
	return errors.Join(errs...)
}

// ExternalSuffix marks the listener of a Service port's external addresses
// in keys ("ns/name:port/TCP (external)"), when a traffic policy gives them
// other endpoints than the ClusterIP's.
const ExternalSuffix = " (external)"

func (p *Proxier) startService(ctx context.Context, key string, sp *state.ServicePort) (*service, error) {
	sctx, cancel := context.WithCancel(context.Background())
	svc := &service{
		key:      key,
		proto:    sp.Protocol,
		lb:       NewRoundRobin(p.cfg.Clock),
		net:      p.cfg.Network,
		dialT:    p.cfg.DialTimeouts,
		idle:     p.cfg.UDPIdleTimeout,
		ctx:      sctx,
		cancel:   cancel,
		open:     map[io.Closer]struct{}{},
		stats:    map[netip.AddrPort]*backendCounters{},
		sessions: map[netip.AddrPort]*udpSession{},
	}
	switch sp.Protocol {
	case state.TCP:
		l, err := p.cfg.Network.ListenTCP(ctx)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("proxy listener for %s: %w", sp.Key(), err)
		}
		svc.tcp = l
		svc.port = int(l.Addr().(*net.TCPAddr).AddrPort().Port())
		svc.wg.Add(1)
		go svc.serveTCP()
	case state.UDP:
		c, err := p.cfg.Network.ListenUDP(ctx)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("proxy socket for %s: %w", sp.Key(), err)
		}
		svc.udp = c
		svc.port = int(c.LocalAddr().(*net.UDPAddr).AddrPort().Port())
		svc.wg.Add(1)
		go svc.serveUDP()
	default:
		cancel()
		return nil, fmt.Errorf("service port %s: unsupported protocol %q", sp.Key(), sp.Protocol)
	}
	return svc, nil
}

// portalRules lists the rules of the services in want, sorted by key so the
// restore text is deterministic.
func (p *Proxier) portalRules(want map[string]bool) []portalRule {
	keys := make([]string, 0, len(p.services))
	for k := range p.services {
		if want[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	rules := make([]portalRule, 0, len(keys))
	for _, k := range keys {
		svc := p.services[k]
		svc.mu.Lock()
		sp, fe := svc.spec, svc.fe
		svc.mu.Unlock()
		rules = append(rules, portalRule{
			comment:   sp.ID(),
			proto:     strings.ToLower(string(sp.Protocol)),
			vips:      fe.vips,
			lbIPs:     fe.lbIPs,
			ranges:    fe.ranges,
			port:      sp.Port,
			nodePort:  fe.nodePort,
			proxyPort: svc.port,
		})
	}
	return rules
}

func (p *Proxier) writeRules(ctx context.Context, want map[string]bool) error {
	if !p.canary {
		if err := iptrestore.EnsureCanary(ctx, p.cfg.IPTables); err != nil {
			return err
		}
		p.canary = true
	}
	have, err := saveNAT(ctx, p.cfg.IPTables)
	if err != nil {
		return err
	}
	data := buildRestore(p.portalRules(want), p.hostIP, have)
	if err := p.cfg.IPTables.Restore(ctx, data, true, false); err != nil {
		return fmt.Errorf("write portal rules: %w", err)
	}
	return nil
}

// Intact implements modes.Canary: the iptables canary chain
// (iptrestore.CanaryChain) is still in mangle. Every Sync rewrites the
// portal rules from what iptables-save shows, so a Sync after a flush
// repairs them; the listeners are not in the kernel's rules and survive it.
func (p *Proxier) Intact(ctx context.Context) (bool, error) {
	ok, err := iptrestore.CanaryIntact(ctx, p.cfg.IPTables)
	if err != nil {
		return false, fmt.Errorf("userspace on node %s: %w", p.cfg.Node, err)
	}
	return ok, nil
}

// ForceFullSync implements modes.FullSyncer: the next Sync creates the
// canary chains again (it rewrites the portal rules anyway).
func (p *Proxier) ForceFullSync() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.canary = false
}

// Cleanup implements modes.Proxier: it closes every listener, connection and
// session, waits for all proxy goroutines to end, and removes the jump rules
// and owned chains. Like Sync it must run in the node's namespace.
func (p *Proxier) Cleanup(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for key, svc := range p.services {
		if err := svc.stop(); err != nil {
			errs = append(errs, err)
		}
		delete(p.services, key)
	}
	// With no Service left, every flow to a frontend of the last Sync is
	// stale.
	if _, err := p.ct.Synced(ctx, &state.NodeState{Node: p.cfg.Node, NodeIPs: p.nodeIPs}); err != nil {
		errs = append(errs, err)
	}
	p.ct.Reset()
	if c, ok := p.cfg.Network.(io.Closer); ok {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close proxy network: %w", err))
		}
	}
	p.canary = false
	owns := func(chain string) bool { return owned(chain) || chain == iptrestore.CanaryChain }
	if saved, err := iptrestore.SaveTables(ctx, p.cfg.IPTables, iptrestore.CanaryTables...); err != nil {
		errs = append(errs, err)
	} else if data := iptrestore.CleanupInput(saved, owns); data != nil {
		if err := p.cfg.IPTables.Restore(ctx, data, true, false); err != nil {
			errs = append(errs, fmt.Errorf("remove userspace chains: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("userspace cleanup of node %s: %w", p.cfg.Node, err)
	}
	return nil
}

// ServicePortInfo describes one proxied Service port.
type ServicePortInfo struct {
	Key       string
	Protocol  state.Protocol
	ProxyPort int
	// Portals are the VIP:port pairs redirected to ProxyPort (ClusterIP
	// first, then external IPs, then load-balancer IPs); NodePort is 0 when
	// there is none.
	Portals  []netip.AddrPort
	NodePort int32
	// Endpoints is the current rotation, in order.
	Endpoints []netip.AddrPort
	// Backends counts traffic per backend, current endpoints first.
	Backends []BackendStats
	// UDPSessions is the number of live UDP client sessions.
	UDPSessions int
}

// ServicePorts describes every proxied Service port, sorted by key.
func (p *Proxier) ServicePorts() []ServicePortInfo {
	p.mu.Lock()
	svcs := make([]*service, 0, len(p.services))
	for _, s := range p.services {
		svcs = append(svcs, s)
	}
	p.mu.Unlock()
	slices.SortFunc(svcs, func(a, b *service) int { return strings.Compare(a.key, b.key) })
	out := make([]ServicePortInfo, 0, len(svcs))
	for _, s := range svcs {
		s.mu.Lock()
		sp, fe := s.spec, s.fe
		s.mu.Unlock()
		info := ServicePortInfo{
			Key:         s.key,
			Protocol:    s.proto,
			ProxyPort:   s.port,
			NodePort:    fe.nodePort,
			Endpoints:   s.lb.Endpoints(),
			Backends:    s.backendStats(),
			UDPSessions: s.activeSessions(),
		}
		for _, vip := range append(slices.Clone(fe.vips), fe.lbIPs...) {
			info.Portals = append(info.Portals, netip.AddrPortFrom(vip, uint16(sp.Port)))
		}
		out = append(out, info)
	}
	return out
}

// ProxyPort returns the local port proxying the Service port with the given
// key ("ns/name:port/TCP").
func (p *Proxier) ProxyPort(key string) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.services[key]; s != nil {
		return s.port, true
	}
	return 0, false
}

// Dump implements modes.Dumper: the mode's nat rules as iptables-save prints
// them, then a table of Service port -> proxy port -> endpoints.
func (p *Proxier) Dump(ctx context.Context) (string, error) {
	nat, err := saveNAT(ctx, p.cfg.IPTables)
	if err != nil {
		return "", fmt.Errorf("userspace dump of node %s: %w", p.cfg.Node, err)
	}
	var b bytes.Buffer
	b.WriteString("# iptables-save -t nat (userspace chains and jumps)\n*nat\n")
	for _, l := range ownedLines(nat) {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n\n# userspace proxy: service port -> proxy port -> endpoints (connections/dial failures)\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE PORT\tPORTALS\tPROXY PORT\tENDPOINTS")
	for _, s := range p.ServicePorts() {
		portals := make([]string, 0, len(s.Portals)+1)
		for _, pt := range s.Portals {
			portals = append(portals, pt.String())
		}
		if s.NodePort != 0 {
			portals = append(portals, fmt.Sprintf("nodePort %d", s.NodePort))
		}
		eps := make([]string, 0, len(s.Backends))
		for _, bs := range s.Backends {
			mark := ""
			if !slices.Contains(s.Endpoints, bs.Endpoint) {
				mark = " (removed)"
			}
			eps = append(eps, fmt.Sprintf("%s(%d/%d)%s", bs.Endpoint, bs.Connections, bs.DialFailures, mark))
		}
		if len(eps) == 0 {
			eps = append(eps, "<none: connections closed, datagrams dropped>")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.Key, strings.Join(portals, ","), s.ProxyPort, strings.Join(eps, " "))
	}
	if err := tw.Flush(); err != nil {
		return "", fmt.Errorf("render dump: %w", err)
	}
	return b.String(), nil
}
