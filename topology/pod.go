package topology

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/topology/podserver"
)

// Port is a container port the pod's servers listen on.
type Port = podserver.Port

// PodSpec describes a pod to add.
type PodSpec struct {
	// Name is "namespace/name", unique in the topology.
	Name string
	// Node is the node the pod runs on.
	Node string
	// IP is the pod's address inside the node's pod CIDR. For HostNetwork
	// pods it must be the node IP or zero.
	IP netip.Addr
	// MAC of the pod's eth0; nil means StableMAC(Name).
	MAC net.HardwareAddr
	// HostNetwork pods share the node's namespace (and address).
	HostNetwork bool
	Ports       []Port
}

// Pod is a running pod (or, for AddHost, an underlay host).
type Pod struct {
	Name        string
	Node        string // empty for hosts
	IP          netip.Addr
	MAC         net.HardwareAddr // eth0's MAC as the kernel reports it
	HostNetwork bool
	Ports       []Port
	// NS is the pod's namespace; the node's for HostNetwork pods.
	NS *netns.NS
	// HostVeth is the node-side end of the pod's veth, on cni0.
	HostVeth string

	ownNS    bool
	cleanup  []func() error // extra kernel state to remove (hosts' routes), in order
	counters podserver.Counters

	mu     sync.Mutex
	server *podserver.Server
}

// Stats counts what the pod's servers have served since the pod was added.
func (p *Pod) Stats() podserver.Stats { return p.counters.Snapshot() }

// ServersRunning reports whether the pod's servers are up.
func (p *Pod) ServersRunning() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.server != nil
}

// StopServers kills the pod's backend: listeners and open connections are
// closed, and afterwards connections are refused (RST) and datagrams get
// ICMP port unreachable. The pod's network stays. Idempotent.
func (p *Pod) StopServers() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server == nil {
		return nil
	}
	err := p.server.Stop()
	p.server = nil
	if err != nil {
		return fmt.Errorf("stop servers of %s: %w", p.Name, err)
	}
	return nil
}

// StartServers brings the pod's servers (back) up. Idempotent.
func (p *Pod) StartServers() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server != nil {
		return nil
	}
	s, err := podserver.Start(podserver.Config{
		Name: p.Name, IP: p.IP, MAC: p.MAC, Ports: p.Ports, Counters: &p.counters,
	}, p.NS)
	if err != nil {
		return fmt.Errorf("start servers of %s: %w", p.Name, err)
	}
	p.server = s
	return nil
}

func (p *Pod) state() PodState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PodState{Name: p.Name, Node: p.Node, NS: p.NS.Name(), IP: p.IP, MAC: p.MAC.String(),
		HostNetwork: p.HostNetwork, Ports: slices.Clone(p.Ports)}
}

// remove stops the servers and removes the pod's kernel state: its eth0
// (taking the node-side veth with it) and its namespace, or a host's routes.
func (p *Pod) remove() error {
	errs := []error{p.StopServers()}
	for _, f := range p.cleanup {
		errs = append(errs, f())
	}
	if p.ownNS {
		errs = append(errs, deleteLink(p.NS, PodIface), p.NS.Delete())
	}
	return errors.Join(errs...)
}

// reserve claims a pod or host name and address before the kernel work.
func (t *Topology) reserve(name string, ip netip.Addr, who string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("topology is closed")
	}
	if t.pods[name] != nil || t.hosts[name] != nil || t.pending[name] {
		return fmt.Errorf("%s: name already in use", who)
	}
	if ip.IsValid() {
		if by, ok := t.ips[ip]; ok {
			return fmt.Errorf("%s: address %v already used by %s", who, ip, by)
		}
		t.ips[ip] = who
	}
	t.pending[name] = true
	return nil
}

func (t *Topology) release(name string, ip netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pending, name)
	if ip.IsValid() {
		delete(t.ips, ip)
	}
}

// AddPod creates a pod: its namespace, a veth from the node's cni0 (hairpin
// on) to its eth0 with IP and MAC, a default route via the node's gateway,
// and its servers. On error nothing of the pod remains.
func (t *Topology) AddPod(ctx context.Context, spec PodSpec) (_ *Pod, err error) {
	t.ops.RLock()
	defer t.ops.RUnlock()
	who := fmt.Sprintf("pod %q", spec.Name)
	if spec.Name == "" {
		return nil, errors.New("add pod: empty name")
	}
	node := t.Node(spec.Node)
	if node == nil {
		return nil, fmt.Errorf("add %s: unknown node %q", who, spec.Node)
	}
	if spec.HostNetwork {
		if spec.IP.IsValid() && spec.IP != node.IP {
			return nil, fmt.Errorf("add %s: hostNetwork pod IP %v is not node %s's IP %v", who, spec.IP, node.Name, node.IP)
		}
		return t.addHostNetworkPod(spec, node)
	}
	if !spec.IP.IsValid() || !spec.IP.Is4() || !podAddrOK(node.PodCIDR, spec.IP) {
		return nil, fmt.Errorf("add %s: IP %v is not a pod address of node %s (%v, gateway %v)", who, spec.IP, node.Name, node.PodCIDR, node.Gateway)
	}
	mac := spec.MAC
	if mac == nil {
		mac = StableMAC(spec.Name)
	}
	if len(mac) != 6 || mac[0]&1 != 0 {
		return nil, fmt.Errorf("add %s: MAC %v is not a unicast Ethernet address", who, mac)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("add %s: %w", who, err)
	}
	if err := t.reserve(spec.Name, spec.IP, who); err != nil {
		return nil, fmt.Errorf("add %s: %w", who, err)
	}
	p := &Pod{Name: spec.Name, Node: node.Name, IP: spec.IP, Ports: slices.Clone(spec.Ports),
		HostVeth: hostVethName(spec.Name), ownNS: true}
	defer func() {
		if r := recover(); r != nil {
			_ = p.remove()
			t.release(spec.Name, spec.IP)
			panic(r)
		}
		if err != nil {
			err = errors.Join(fmt.Errorf("add %s: %w", who, err), p.remove())
			t.release(spec.Name, spec.IP)
		}
	}()
	if err := t.plumbPod(p, node, mac); err != nil {
		return nil, err
	}
	if err := p.StartServers(); err != nil {
		return nil, err
	}
	if err := t.commit(p, false); err != nil {
		return nil, err
	}
	return p, nil
}

// plumbPod makes the pod's namespace and veth.
func (t *Topology) plumbPod(p *Pod, node *Node, mac net.HardwareAddr) error {
	ns, err := p.newNS(PodNSName(t.run.ID, p.Name))
	if err != nil {
		return err
	}
	nh, err := handle(node.NS)
	if err != nil {
		return err
	}
	defer nh.Close()
	ph, err := handle(ns)
	if err != nil {
		return err
	}
	defer ph.Close()
	hostEnd, eth0, err := addVeth(nh, node.NS, p.HostVeth, ph, ns, PodIface, mac)
	if hostEnd != nil && eth0 == nil {
		// The pod end could not be found: remove the pair from the node side.
		_ = nh.LinkDel(hostEnd)
	}
	if err != nil {
		return err
	}
	cni0, err := nh.LinkByName(NodeBridge)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", NodeBridge, node.NS.Name(), err)
	}
	if err := enslave(nh, node.NS, hostEnd, cni0, true); err != nil {
		return err
	}
	if err := addrUp(ph, ns, eth0, netip.PrefixFrom(p.IP, node.PodCIDR.Bits())); err != nil {
		return err
	}
	if err := addRoute(ph, ns, eth0, netip.PrefixFrom(netip.IPv4Unspecified(), 0), node.Gateway); err != nil {
		return err
	}
	// Report the MAC the kernel has, not the one asked for.
	l, err := ph.LinkByIndex(eth0.Attrs().Index)
	if err != nil {
		return fmt.Errorf("read %s of %s: %w", PodIface, ns.Name(), err)
	}
	p.MAC = l.Attrs().HardwareAddr
	return nil
}

func (t *Topology) addHostNetworkPod(spec PodSpec, node *Node) (_ *Pod, err error) {
	who := fmt.Sprintf("pod %q", spec.Name)
	// The node's address is shared: reserve the name only.
	if err := t.reserve(spec.Name, netip.Addr{}, who); err != nil {
		return nil, fmt.Errorf("add %s: %w", who, err)
	}
	p := &Pod{Name: spec.Name, Node: node.Name, IP: node.IP, MAC: node.MAC, HostNetwork: true,
		Ports: slices.Clone(spec.Ports), NS: node.NS}
	if err := p.StartServers(); err != nil {
		t.release(spec.Name, netip.Addr{})
		return nil, fmt.Errorf("add %s: %w", who, err)
	}
	if err := t.commit(p, false); err != nil {
		t.release(spec.Name, netip.Addr{})
		return nil, errors.Join(fmt.Errorf("add %s: %w", who, err), p.remove())
	}
	return p, nil
}

// commit moves a made pod (or host) from pending into the topology.
func (t *Topology) commit(p *Pod, host bool) error {
	t.mu.Lock()
	delete(t.pending, p.Name)
	if t.closed {
		t.mu.Unlock()
		return errors.New("topology closed while adding")
	}
	if host {
		t.hosts[p.Name] = p
	} else {
		t.pods[p.Name] = p
	}
	t.mu.Unlock()
	return t.writeState()
}

// RemovePod stops the pod's servers, kills any process inside its namespace
// and removes its veth and namespace.
func (t *Topology) RemovePod(ctx context.Context, name string) error {
	t.ops.RLock()
	defer t.ops.RUnlock()
	t.mu.Lock()
	p := t.pods[name]
	if p == nil {
		t.mu.Unlock()
		return fmt.Errorf("remove pod %q: no such pod", name)
	}
	delete(t.pods, name)
	t.mu.Unlock()
	return t.dispose(p)
}

func (t *Topology) dispose(p *Pod) error {
	errs := []error{p.StopServers()}
	if p.ownNS {
		errs = append(errs, killInside(p.NS))
	}
	errs = append(errs, p.remove())
	if !p.HostNetwork {
		t.release(p.Name, p.IP)
	}
	errs = append(errs, t.writeState())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove %q: %w", p.Name, err)
	}
	return nil
}

// AddHost adds a machine on the underlay outside the cluster (the seed's
// external database at 172.188.2.89): its own namespace with eth0 on the
// underlay bridge, running the same servers as a pod, named name. An address
// outside the underlay prefix is configured as a /32 with an on-link route
// to the underlay, and every node gets an on-link /32 route to it. The host
// routes pod CIDRs via their nodes, so pods reach it without NAT.
func (t *Topology) AddHost(ctx context.Context, name string, ip netip.Addr, ports []Port) (_ *netns.NS, err error) {
	t.ops.RLock()
	defer t.ops.RUnlock()
	who := fmt.Sprintf("host %q", name)
	if name == "" || sanitize(name) != name {
		return nil, fmt.Errorf("add %s: want a name of [A-Za-z0-9_.-]", who)
	}
	if !ip.IsValid() || !ip.Is4() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
		return nil, fmt.Errorf("add %s: address %v: want an IPv4 unicast address", who, ip)
	}
	ul := t.spec.Underlay
	if ul.Contains(ip) && (ip == ul.Addr() || ip == lastAddr(ul)) {
		return nil, fmt.Errorf("add %s: %v is the underlay's network or broadcast address", who, ip)
	}
	for _, n := range t.Nodes() {
		if n.PodCIDR.Contains(ip) {
			return nil, fmt.Errorf("add %s: %v is inside node %s's pod CIDR %v", who, ip, n.Name, n.PodCIDR)
		}
	}
	if sc := t.spec.ServiceCIDR; sc.IsValid() && sc.Contains(ip) {
		return nil, fmt.Errorf("add %s: %v is inside the service CIDR %v", who, ip, sc)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("add %s: %w", who, err)
	}
	if err := t.reserve(name, ip, who); err != nil {
		return nil, fmt.Errorf("add %s: %w", who, err)
	}
	p := &Pod{Name: name, IP: ip, Ports: slices.Clone(ports), ownNS: true}
	defer func() {
		if r := recover(); r != nil {
			_ = p.remove()
			t.release(name, ip)
			panic(r)
		}
		if err != nil {
			err = errors.Join(fmt.Errorf("add %s: %w", who, err), p.remove())
			t.release(name, ip)
		}
	}()
	if err := t.plumbHost(p); err != nil {
		return nil, err
	}
	if err := p.StartServers(); err != nil {
		return nil, err
	}
	if err := t.commit(p, true); err != nil {
		return nil, err
	}
	return p.NS, nil
}

func (t *Topology) plumbHost(p *Pod) error {
	ns, err := p.newNS(HostNSName(t.run.ID, p.Name))
	if err != nil {
		return err
	}
	ul, err := handle(t.underlay)
	if err != nil {
		return err
	}
	defer ul.Close()
	br0, err := ul.LinkByName(UnderlayBridge)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", UnderlayBridge, t.underlay.Name(), err)
	}
	h, err := handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	ulName := underlayVethName("h", p.Name)
	ulEnd, eth0, err := addVeth(ul, t.underlay, ulName, h, ns, PodIface, StableMAC("host/"+p.Name))
	if ulEnd != nil {
		p.cleanup = append(p.cleanup, func() error { return deleteLink(t.underlay, ulName) })
	}
	if err != nil {
		return err
	}
	if err := enslave(ul, t.underlay, ulEnd, br0, false); err != nil {
		return err
	}
	inUnderlay := t.spec.Underlay.Contains(p.IP)
	bits := 32
	if inUnderlay {
		bits = t.spec.Underlay.Bits()
	}
	if err := addrUp(h, ns, eth0, netip.PrefixFrom(p.IP, bits)); err != nil {
		return err
	}
	if !inUnderlay {
		if err := addRoute(h, ns, eth0, t.spec.Underlay, netip.Addr{}); err != nil {
			return err
		}
	}
	for _, n := range t.Nodes() {
		if err := addRoute(h, ns, eth0, n.PodCIDR, n.IP); err != nil {
			return err
		}
	}
	if l, err := h.LinkByIndex(eth0.Attrs().Index); err == nil {
		p.MAC = l.Attrs().HardwareAddr
	} else {
		return fmt.Errorf("read %s of %s: %w", PodIface, ns.Name(), err)
	}
	if inUnderlay {
		return nil
	}
	// Nodes reach an address outside the underlay on-link, through eth0.
	for _, n := range t.Nodes() {
		nh, err := handle(n.NS)
		if err != nil {
			return err
		}
		neth0, err := nh.LinkByName(PodIface)
		if err == nil {
			err = addRoute(nh, n.NS, neth0, netip.PrefixFrom(p.IP, 32), netip.Addr{})
		}
		nh.Close()
		if err != nil {
			return err
		}
		n := n
		dst := netip.PrefixFrom(p.IP, 32)
		p.cleanup = append(p.cleanup, func() error { return deleteRoute(n.NS, PodIface, dst) })
	}
	return nil
}

// RemoveHost removes a host added with AddHost.
func (t *Topology) RemoveHost(ctx context.Context, name string) error {
	t.ops.RLock()
	defer t.ops.RUnlock()
	t.mu.Lock()
	p := t.hosts[name]
	if p == nil {
		t.mu.Unlock()
		return fmt.Errorf("remove host %q: no such host", name)
	}
	delete(t.hosts, name)
	t.mu.Unlock()
	return t.dispose(p)
}

// newNS creates the pod's own namespace with the base sysctls and records it
// on p (so that dispose removes it even when later plumbing fails).
func (p *Pod) newNS(name string) (*netns.NS, error) {
	ns, err := netns.New(name)
	if err != nil {
		p.ownNS = false
		return nil, err
	}
	p.NS = ns
	if err := setSysctls(ns, baseSysctls); err != nil {
		return nil, err
	}
	return ns, nil
}
