// Package topology builds a simulated cluster's network out of network
// namespaces and veths, and tears it down again.
//
// Nothing is created in the host's root namespace. Every namespace is named
// "<run id>-<role>" (see NSName):
//
//	<run>-underlay   bridge br0: the nodes' L2 segment
//	<run>-external   eth0 on br0: a client outside the cluster
//	<run>-control-plane eth0 on br0 (only with Spec.ControlPlaneIP): where
//	                 genuine control-plane components run
//	<run>-cloud-lb   eth0 on br0 (only with Spec.LoadBalancerIP): the
//	                 simulated cloud load balancer, a router
//	<run>-nodeN      eth0 on br0 with the node IP; bridge cni0 with the pod
//	                 gateway; routes to the other nodes' pod CIDRs via their
//	                 node IPs (host-gw); ip_forward, bridge-nf-call-iptables
//	<run>-pod-<name> eth0 (veth, the other end "veth<hash>" on the node's
//	                 cni0 in hairpin mode); default route via the gateway
//	<run>-host-<name> an extra machine on the underlay (an external database)
//
// Pods and hosts run the built-in servers of package podserver inside their
// namespace. Close removes everything in reverse order; GC removes what runs
// killed before they could.
package topology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/rundir"
)

// Interface names inside the namespaces.
const (
	UnderlayBridge = "br0"
	NodeBridge     = "cni0"
	PodIface       = "eth0"
)

// StateFile is the name, inside the run directory, of the JSON description
// of a topology (State), rewritten on every change: for a person looking at
// a running (or killed) run; no code reads it back.
const StateFile = "topology.json"

// Node is a built node.
type Node struct {
	Name    string
	IP      netip.Addr
	PodCIDR netip.Prefix
	// Gateway is cni0's address, the pods' default gateway.
	Gateway netip.Addr
	// MAC is eth0's address.
	MAC net.HardwareAddr
	NS  *netns.NS
}

// Topology is a built cluster network. Its methods are safe for concurrent
// use.
type Topology struct {
	spec     Spec
	run      *rundir.Run
	underlay *netns.NS
	external *netns.NS
	control  *netns.NS // nil unless Spec.ControlPlaneIP
	cloudLB  *netns.NS // nil unless Spec.LoadBalancerIP
	nodes    []*Node
	byName   map[string]*Node

	// ops is held shared by AddPod/RemovePod/AddHost while they work and
	// exclusively by Close, so Close never races a half-made pod.
	ops sync.RWMutex

	mu      sync.Mutex
	closed  bool
	pods    map[string]*Pod
	hosts   map[string]*Pod
	pending map[string]bool       // pod and host names being added
	ips     map[netip.Addr]string // addresses in use and by whom
	undo    []undoStep            // Build's steps, undone in reverse

	stateMu sync.Mutex // serializes writes of the state file
}

type undoStep struct {
	what string
	f    func() error
}

// Build creates the namespaces, links, addresses and routes of spec. On any
// error (or panic) it removes whatever it had made before returning.
func Build(ctx context.Context, spec Spec) (_ *Topology, err error) {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	spec.Underlay = spec.Underlay.Masked()
	spec.ServiceCIDR = spec.ServiceCIDR.Masked()
	t := &Topology{
		spec:    spec,
		run:     spec.Run,
		byName:  map[string]*Node{},
		pods:    map[string]*Pod{},
		hosts:   map[string]*Pod{},
		pending: map[string]bool{},
		ips:     map[netip.Addr]string{spec.ExternalIP: "external"},
	}
	defer func() {
		if r := recover(); r != nil {
			_ = t.Close()
			panic(r)
		}
		if err != nil {
			err = errors.Join(err, t.Close())
		}
	}()
	if err := t.buildUnderlay(ctx); err != nil {
		return nil, err
	}
	ul, err := handle(t.underlay)
	if err != nil {
		return nil, err
	}
	defer ul.Close()
	br0, err := ul.LinkByName(UnderlayBridge)
	if err != nil {
		return nil, fmt.Errorf("find %s in %s: %w", UnderlayBridge, t.underlay.Name(), err)
	}

	ext, err := t.newNS(ctx, RoleExternal, baseSysctls)
	if err != nil {
		return nil, err
	}
	t.external = ext
	if _, err := t.plug(ext, ul, br0, underlayVethName("x", RoleExternal), StableMAC(RoleExternal),
		netip.PrefixFrom(spec.ExternalIP, spec.Underlay.Bits())); err != nil {
		return nil, err
	}

	if spec.ControlPlaneIP.IsValid() {
		cp, err := t.newNS(ctx, RoleControlPlane, baseSysctls)
		if err != nil {
			return nil, err
		}
		t.control = cp
		t.ips[spec.ControlPlaneIP] = "control plane"
		if _, err := t.plug(cp, ul, br0, underlayVethName("c", RoleControlPlane), StableMAC(RoleControlPlane),
			netip.PrefixFrom(spec.ControlPlaneIP, spec.Underlay.Bits())); err != nil {
			return nil, err
		}
	}

	if spec.LoadBalancerIP.IsValid() {
		lb, err := t.newNS(ctx, RoleCloudLB, append(slices.Clone(baseSysctls), cloudLBSysctls...))
		if err != nil {
			return nil, err
		}
		t.cloudLB = lb
		t.ips[spec.LoadBalancerIP] = "cloud load balancer"
		if _, err := t.plug(lb, ul, br0, underlayVethName("l", RoleCloudLB), StableMAC(RoleCloudLB),
			netip.PrefixFrom(spec.LoadBalancerIP, spec.Underlay.Bits())); err != nil {
			return nil, err
		}
		if err := setSysctls(lb, []sysctl{{"net.ipv4.conf." + PodIface + ".send_redirects", "0", false}}); err != nil {
			return nil, err
		}
		if err := t.routeVia(t.external, spec.LoadBalancerPool, spec.LoadBalancerIP); err != nil {
			return nil, err
		}
	}

	for _, ns := range spec.Nodes {
		n, err := t.buildNode(ctx, ns, ul, br0)
		if err != nil {
			return nil, err
		}
		t.nodes = append(t.nodes, n)
		t.byName[n.Name] = n
		t.ips[n.IP] = "node " + n.Name
	}
	// host-gw: every node reaches the other nodes' pods through their node IP.
	for _, n := range t.nodes {
		if err := t.routeNode(n); err != nil {
			return nil, err
		}
	}
	if t.control != nil {
		if err := t.routeControlPlane(); err != nil {
			return nil, err
		}
	}
	if t.cloudLB != nil {
		for _, n := range t.spec.Nodes {
			if err := t.routeVia(t.cloudLB, n.PodCIDR, n.IP); err != nil {
				return nil, err
			}
		}
	}
	if err := t.writeState(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Topology) buildUnderlay(ctx context.Context) error {
	ns, err := t.newNS(ctx, RoleUnderlay, append(slices.Clone(baseSysctls), underlaySysctls...))
	if err != nil {
		return err
	}
	t.underlay = ns
	h, err := handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	_, err = addBridge(h, ns, UnderlayBridge, StableMAC(t.run.ID+"/"+UnderlayBridge))
	return err
}

// newNS creates "<run>-<role>" with settings and registers its removal.
func (t *Topology) newNS(ctx context.Context, role string, settings []sysctl) (*netns.NS, error) {
	return t.newNSOf(ctx, role, settings, netns.New)
}

// newNSOf is newNS with the namespace made by create (netns.New, or
// netns.NewInUserNS).
func (t *Topology) newNSOf(ctx context.Context, role string, settings []sysctl, create func(string) (*netns.NS, error)) (*netns.NS, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name := NSName(t.run.ID, role)
	ns, err := create(name)
	if err != nil {
		return nil, err
	}
	t.undo = append(t.undo, undoStep{"namespace " + name, ns.Delete})
	if err := setSysctls(ns, settings); err != nil {
		return nil, err
	}
	return ns, nil
}

// plug gives ns an eth0 on the underlay bridge with addr, and returns eth0.
func (t *Topology) plug(ns *netns.NS, ul *netlink.Handle, br0 netlink.Link, ulName string, mac net.HardwareAddr, addr netip.Prefix) (netlink.Link, error) {
	h, err := handle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	ulEnd, eth0, err := addVeth(ul, t.underlay, ulName, h, ns, PodIface, mac)
	if ulEnd != nil {
		t.undo = append(t.undo, undoStep{"link " + ulName + " in " + t.underlay.Name(), func() error { return deleteLink(t.underlay, ulName) }})
	}
	if err != nil {
		return nil, err
	}
	if err := enslave(ul, t.underlay, ulEnd, br0, false); err != nil {
		return nil, err
	}
	if err := addrUp(h, ns, eth0, addr); err != nil {
		return nil, err
	}
	return eth0, nil
}

func (t *Topology) buildNode(ctx context.Context, spec NodeSpec, ul *netlink.Handle, br0 netlink.Link) (*Node, error) {
	create := netns.New
	if spec.UserNS {
		create = netns.NewInUserNS
	}
	ns, err := t.newNSOf(ctx, spec.Name, append(slices.Clone(baseSysctls), nodeSysctls...), create)
	if err != nil {
		return nil, err
	}
	n := &Node{Name: spec.Name, IP: spec.IP, PodCIDR: spec.PodCIDR, Gateway: gatewayOf(spec.PodCIDR), NS: ns}
	eth0, err := t.plug(ns, ul, br0, underlayVethName("n", spec.Name), StableMAC("node/"+spec.Name),
		netip.PrefixFrom(spec.IP, t.spec.Underlay.Bits()))
	if err != nil {
		return nil, err
	}
	n.MAC = eth0.Attrs().HardwareAddr
	h, err := handle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	cni0, err := addBridge(h, ns, NodeBridge, StableMAC("cni0/"+spec.Name))
	if err != nil {
		return nil, err
	}
	if err := addrUp(h, ns, cni0, netip.PrefixFrom(n.Gateway, spec.PodCIDR.Bits())); err != nil {
		return nil, err
	}
	if err := setSysctls(ns, []sysctl{
		{"net.ipv4.conf." + PodIface + ".send_redirects", "0", false},
		{"net.ipv4.conf." + NodeBridge + ".send_redirects", "0", false},
	}); err != nil {
		return nil, err
	}
	return n, nil
}

// routeNode adds n's routes: other nodes' pod CIDRs via their node IPs, and
// the service CIDR on-link on eth0.
func (t *Topology) routeNode(n *Node) error {
	h, err := handle(n.NS)
	if err != nil {
		return err
	}
	defer h.Close()
	eth0, err := h.LinkByName(PodIface)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", PodIface, n.NS.Name(), err)
	}
	for _, r := range nodeRoutes(t.spec, n.Name) {
		if err := addRoute(h, n.NS, eth0, r.Dst, r.Via); err != nil {
			return err
		}
	}
	return nil
}

// routeControlPlane routes every pod CIDR via its node from the control-plane
// namespace, so pods reach the API server without NAT (as hosts do).
func (t *Topology) routeControlPlane() error {
	h, err := handle(t.control)
	if err != nil {
		return err
	}
	defer h.Close()
	eth0, err := h.LinkByName(PodIface)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", PodIface, t.control.Name(), err)
	}
	for _, n := range t.spec.Nodes {
		if err := addRoute(h, t.control, eth0, n.PodCIDR, n.IP); err != nil {
			return err
		}
	}
	return nil
}

// routeVia adds dst via gw on ns's eth0.
func (t *Topology) routeVia(ns *netns.NS, dst netip.Prefix, gw netip.Addr) error {
	h, err := handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	eth0, err := h.LinkByName(PodIface)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", PodIface, ns.Name(), err)
	}
	return addRoute(h, ns, eth0, dst, gw)
}

// route is a route in a namespace's main table.
type route struct {
	Dst netip.Prefix
	Via netip.Addr // zero: on-link
}

// nodeRoutes is the routing plan of node (beyond connected routes).
func nodeRoutes(spec Spec, node string) []route {
	var rs []route
	for _, o := range spec.Nodes {
		if o.Name != node {
			rs = append(rs, route{Dst: o.PodCIDR, Via: o.IP})
		}
	}
	if spec.ServiceCIDR.IsValid() {
		rs = append(rs, route{Dst: spec.ServiceCIDR})
	}
	return rs
}

// Run is the run the topology belongs to.
func (t *Topology) Run() *rundir.Run { return t.run }

// Spec is the spec the topology was built from.
func (t *Topology) Spec() Spec { return t.spec }

// Node returns the named node, or nil.
func (t *Topology) Node(name string) *Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byName[name]
}

// Nodes returns the nodes in spec order.
func (t *Topology) Nodes() []*Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.nodes)
}

// External is the external client namespace (reaches node IPs only).
func (t *Topology) External() *netns.NS { return t.external }

// ControlPlane is the control-plane namespace (Spec.ControlPlaneIP), or nil
// when the spec has none.
func (t *Topology) ControlPlane() *netns.NS { return t.control }

// Underlay is the namespace holding the underlay bridge.
func (t *Topology) Underlay() *netns.NS { return t.underlay }

// CloudLB is the cloud load balancer's namespace (nil without
// Spec.LoadBalancerIP).
func (t *Topology) CloudLB() *netns.NS { return t.cloudLB }

// Pod returns the named pod, or nil.
func (t *Topology) Pod(name string) *Pod {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pods[name]
}

// Pods returns every pod, sorted by name.
func (t *Topology) Pods() []*Pod {
	t.mu.Lock()
	defer t.mu.Unlock()
	return sortedPods(t.pods)
}

// Host returns the named underlay host (AddHost), or nil.
func (t *Topology) Host(name string) *Pod {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.hosts[name]
}

func sortedPods(m map[string]*Pod) []*Pod {
	ps := make([]*Pod, 0, len(m))
	for _, p := range m {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	return ps
}

// Namespaces lists the names of every namespace of the topology.
func (t *Topology) Namespaces() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.namespacesLocked()
}

func (t *Topology) namespacesLocked() []string {
	var out []string
	if t.underlay != nil {
		out = append(out, t.underlay.Name())
	}
	if t.external != nil {
		out = append(out, t.external.Name())
	}
	if t.control != nil {
		out = append(out, t.control.Name())
	}
	if t.cloudLB != nil {
		out = append(out, t.cloudLB.Name())
	}
	for _, n := range t.nodes {
		out = append(out, n.NS.Name())
	}
	for _, m := range []map[string]*Pod{t.pods, t.hosts} {
		for _, p := range sortedPods(m) {
			if p.ownNS {
				out = append(out, p.NS.Name())
			}
		}
	}
	return out
}

// Close stops every server, kills every other process inside the
// topology's namespaces, and removes pods, hosts, nodes, the external client
// and the underlay, in reverse order of creation. It is idempotent and
// reports every failure (errors.Join), carrying on past each.
func (t *Topology) Close() error {
	t.ops.Lock()
	defer t.ops.Unlock()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	pods := append(sortedPods(t.pods), sortedPods(t.hosts)...)
	nss := []*netns.NS{t.underlay, t.external, t.control, t.cloudLB}
	for _, n := range t.nodes {
		nss = append(nss, n.NS)
	}
	for _, p := range pods {
		nss = append(nss, p.NS)
	}
	t.pods, t.hosts = map[string]*Pod{}, map[string]*Pod{}
	undo := t.undo
	t.undo = nil
	t.mu.Unlock()

	var errs []error
	for _, p := range pods {
		errs = append(errs, p.StopServers())
	}
	// Processes inside (node proxies, commands run with exec) would keep
	// namespaces alive after their mounts are gone.
	errs = append(errs, killInside(nss...))
	for i := len(pods) - 1; i >= 0; i-- {
		errs = append(errs, pods[i].remove())
	}
	for i := len(undo) - 1; i >= 0; i-- {
		if err := undo[i].f(); err != nil {
			errs = append(errs, fmt.Errorf("undo %s: %w", undo[i].what, err))
		}
	}
	if t.run != nil {
		if err := os.Remove(t.run.Path(StateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove state file: %w", err))
		}
	}
	return errors.Join(errs...)
}

// killInside kills every process (but this one) that has a thread in one
// of nss.
func killInside(nss ...*netns.NS) error {
	inodes := map[uint64]bool{}
	for _, ns := range nss {
		if ns == nil {
			continue
		}
		if ino, err := ns.Inode(); err == nil {
			inodes[ino] = true
		}
	}
	ps, err := procsInNamespaces(inodes)
	if err != nil {
		return err
	}
	_, err = killProcs(ps, 5*time.Second)
	return err
}

// State is the JSON description of a topology kept in the run directory,
// for commands that work on a running simulation from another process.
type State struct {
	RunID      string     `json:"runID"`
	Underlay   string     `json:"underlayNS"`
	External   string     `json:"externalNS"`
	ExternalIP netip.Addr `json:"externalIP"`
	// ControlPlane and ControlPlaneIP are set with Spec.ControlPlaneIP.
	ControlPlane   string      `json:"controlPlaneNS,omitempty"`
	ControlPlaneIP netip.Addr  `json:"controlPlaneIP,omitzero"`
	Nodes          []NodeState `json:"nodes"`
	Pods           []PodState  `json:"pods"`
	Hosts          []PodState  `json:"hosts,omitempty"`
}

// NodeState describes a node in State.
type NodeState struct {
	Name    string       `json:"name"`
	NS      string       `json:"ns"`
	IP      netip.Addr   `json:"ip"`
	PodCIDR netip.Prefix `json:"podCIDR"`
	Gateway netip.Addr   `json:"gateway"`
	MAC     string       `json:"mac"`
}

// PodState describes a pod or host in State.
type PodState struct {
	Name        string     `json:"name"`
	Node        string     `json:"node,omitempty"`
	NS          string     `json:"ns"`
	IP          netip.Addr `json:"ip"`
	MAC         string     `json:"mac"`
	HostNetwork bool       `json:"hostNetwork,omitempty"`
	Ports       []Port     `json:"ports,omitempty"`
}

// State describes the topology now.
func (t *Topology) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stateLocked()
}

func (t *Topology) stateLocked() State {
	s := State{RunID: t.run.ID, Underlay: t.underlay.Name(), External: t.external.Name(), ExternalIP: t.spec.ExternalIP}
	if t.control != nil {
		s.ControlPlane, s.ControlPlaneIP = t.control.Name(), t.spec.ControlPlaneIP
	}
	for _, n := range t.nodes {
		s.Nodes = append(s.Nodes, NodeState{Name: n.Name, NS: n.NS.Name(), IP: n.IP, PodCIDR: n.PodCIDR, Gateway: n.Gateway, MAC: n.MAC.String()})
	}
	for _, p := range sortedPods(t.pods) {
		s.Pods = append(s.Pods, p.state())
	}
	for _, p := range sortedPods(t.hosts) {
		s.Hosts = append(s.Hosts, p.state())
	}
	return s
}

// writeState rewrites the state file atomically.
func (t *Topology) writeState() error {
	t.stateMu.Lock()
	defer t.stateMu.Unlock()
	t.mu.Lock()
	s := t.stateLocked()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return nil
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode topology state: %w", err)
	}
	p := t.run.Path(StateFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
