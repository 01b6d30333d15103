// Package controlplane ties the pieces of a simulated cluster together: the
// cluster model (package sim), the kernel topology (package topology) and one
// node proxy process per node (package modes/agent). It is what `svcsim up`
// runs in the background and what every scenario drives in-process.
//
// Every change goes the same way: the model validates and applies it (all or
// nothing), pods that appeared or vanished are created or removed in the
// topology, then each node's proxy is sent its new desired state and the call
// returns once every node has programmed it.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/svcsim/svcsim/internal/clusterdns"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/modes/agent"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/sim/state"
	"github.com/svcsim/svcsim/topology"
)

// Config describes a simulated cluster.
type Config struct {
	// Mode is the proxy mode every node runs ("iptables", "nftables", ...).
	Mode string
	// Scheduler is the IPVS scheduler, when Mode is ipvs.
	Scheduler string
	// Sim configures the model; its Nodes decide the topology's nodes.
	Sim sim.Config
	// ExternalIP is the outside client's address on the underlay.
	ExternalIP netip.Addr
	// Underlay is the node network.
	Underlay netip.Prefix
	// Log receives progress lines and the node proxies' output (nil: discard).
	Log io.Writer
	// DNS runs the cluster DNS: a kube-system/coredns pod serving the
	// model's records behind the kube-dns Service (ClusterIP DNSServiceIP).
	DNS bool
}

// DNSServiceIP is the kube-dns Service's ClusterIP, kubeadm's default.
const DNSServiceIP = "10.96.0.10"

// dnsManifests are the cluster add-on objects created when Config.DNS is set.
const dnsManifests = `apiVersion: v1
kind: Namespace
metadata:
  name: kube-system
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
spec:
  replicas: 1
  selector:
    matchLabels:
      k8s-app: kube-dns
  template:
    metadata:
      labels:
        k8s-app: kube-dns
    spec:
      containers:
        - name: coredns
          image: svcsim/clusterdns
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
spec:
  selector:
    k8s-app: kube-dns
  clusterIP: ` + DNSServiceIP + `
  ports:
    - name: dns
      protocol: UDP
      port: 53
      targetPort: 53
    - name: dns-tcp
      protocol: TCP
      port: 53
      targetPort: 53
`

// isDNSPod says whether p is the cluster DNS pod, which runs the DNS server
// instead of the built-in getip/echo servers.
func isDNSPod(p sim.Pod) bool {
	return p.Namespace == "kube-system" && p.Labels["k8s-app"] == "kube-dns"
}

// DefaultConfig is a two-node cluster on the default address plan running mode.
func DefaultConfig(mode string, nodes int) Config {
	return Config{
		Mode:       mode,
		Sim:        sim.DefaultConfig(nodes),
		DNS:        true,
		ExternalIP: netip.MustParseAddr("198.18.0.100"),
		Underlay:   netip.MustParsePrefix("198.18.0.0/24"),
	}
}

// ControlPlane is a running simulated cluster.
type ControlPlane struct {
	cfg     Config
	run     *rundir.Run
	cluster *sim.Cluster
	topo    *topology.Topology
	log     io.Writer

	mu      sync.Mutex // serialises changes
	proxies map[string]*agent.Process
	dns     map[string]*clusterdns.Server // by DNS pod key
	// LastSync holds each node's reply to the most recent push.
	lastSync map[string]agent.SyncReply
}

// Start builds the topology, starts a proxy on every node and programs the
// empty cluster. On error everything made so far is removed.
func Start(ctx context.Context, cfg Config) (cp *ControlPlane, err error) {
	logw := cfg.Log
	if logw == nil {
		logw = io.Discard
	}
	cl, err := sim.New(cfg.Sim)
	if err != nil {
		return nil, fmt.Errorf("cluster model: %w", err)
	}
	run, err := rundir.New()
	if err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	cp = &ControlPlane{cfg: cfg, run: run, cluster: cl, log: logw,
		proxies: map[string]*agent.Process{}, lastSync: map[string]agent.SyncReply{}, dns: map[string]*clusterdns.Server{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, cp.Close())
			cp = nil
		}
	}()
	spec := topology.Spec{Run: run, Underlay: cfg.Underlay, ExternalIP: cfg.ExternalIP, ServiceCIDR: cfg.Sim.ServiceCIDR}
	for _, n := range cfg.Sim.Nodes {
		spec.Nodes = append(spec.Nodes, topology.NodeSpec{Name: n.Name, IP: n.IP, PodCIDR: n.PodCIDR})
	}
	fmt.Fprintf(logw, "run %s: building %d nodes\n", run.ID, len(spec.Nodes))
	if cp.topo, err = topology.Build(ctx, spec); err != nil {
		return nil, fmt.Errorf("build topology: %w", err)
	}
	for _, n := range cfg.Sim.Nodes {
		if err := cp.startProxy(ctx, n.Name); err != nil {
			return nil, err
		}
	}
	if cfg.DNS {
		objs, err := sim.Decode([]byte(dnsManifests), "cluster-dns-addon")
		if err != nil {
			return nil, err
		}
		if _, err := cl.Apply(objs); err != nil {
			return nil, fmt.Errorf("cluster DNS add-on: %w", err)
		}
	}
	if err := cp.reconcile(ctx); err != nil {
		return nil, err
	}
	return cp, nil
}

func (cp *ControlPlane) startProxy(ctx context.Context, node string) error {
	n := cp.topo.Node(node)
	if n == nil {
		return fmt.Errorf("no node %q in topology", node)
	}
	fmt.Fprintf(cp.log, "run %s: starting %s proxy on %s\n", cp.run.ID, cp.cfg.Mode, node)
	p, err := agent.Start(ctx, n.NS, agent.StartOptions{
		Node: node, Mode: cp.cfg.Mode, Scheduler: cp.cfg.Scheduler,
		Socket:  filepath.Join(cp.run.Dir, "proxy-"+node+".sock"),
		Log:     cp.log,
		OnStart: cp.run.RecordPID,
	})
	if err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	cp.proxies[node] = p
	return nil
}

// Run is the run's identity and state directory.
func (cp *ControlPlane) Run() *rundir.Run { return cp.run }

// Topology is the kernel side of the cluster.
func (cp *ControlPlane) Topology() *topology.Topology { return cp.topo }

// Cluster is the model. Change it only through the ControlPlane's methods,
// which also program the kernel.
func (cp *ControlPlane) Cluster() *sim.Cluster { return cp.cluster }

// Mode is the proxy mode's name as the proxies report it ("iptables/nft").
func (cp *ControlPlane) Mode() string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, r := range cp.lastSync {
		return r.Mode
	}
	return cp.cfg.Mode
}

// Apply applies manifests all-or-nothing and programs the result.
func (cp *ControlPlane) Apply(ctx context.Context, objs []sim.Object) ([]string, error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	out, err := cp.cluster.Apply(objs)
	if err != nil {
		return nil, err
	}
	return out, cp.reconcile(ctx)
}

// Patch applies a strategic merge patch to one object and programs the result.
func (cp *ControlPlane) Patch(ctx context.Context, kind, namespace, name string, patch []byte) error {
	return cp.change(ctx, func() error { return cp.cluster.Patch(kind, namespace, name, patch) })
}

// Scale sets a Deployment's replicas and programs the result.
func (cp *ControlPlane) Scale(ctx context.Context, kind, namespace, name string, replicas int32) error {
	return cp.change(ctx, func() error { return cp.cluster.Scale(kind, namespace, name, replicas) })
}

// Delete removes an object and programs the result.
func (cp *ControlPlane) Delete(ctx context.Context, kind, namespace, name string) error {
	return cp.change(ctx, func() error { return cp.cluster.Delete(kind, namespace, name) })
}

// Label sets or removes labels ("key-") on an object and programs the result.
func (cp *ControlPlane) Label(ctx context.Context, kind, namespace, name string, labels map[string]string) error {
	return cp.change(ctx, func() error { return cp.cluster.Label(kind, namespace, name, labels) })
}

// SetPodReady flips a pod's readiness (its endpoints follow) and programs it.
func (cp *ControlPlane) SetPodReady(ctx context.Context, namespace, name string, ready bool) error {
	return cp.change(ctx, func() error { return cp.cluster.SetPodReady(namespace, name, ready) })
}

func (cp *ControlPlane) change(ctx context.Context, f func() error) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if err := f(); err != nil {
		return err
	}
	return cp.reconcile(ctx)
}

// Resync pushes every node's state again (after a proxy restart, say).
func (cp *ControlPlane) Resync(ctx context.Context) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.reconcile(ctx)
}

// reconcile makes the topology's pods match the model's and pushes every
// node's desired state to its proxy. Order matters, as on a real cluster: new
// pods are running before any proxy sends them traffic, and departed pods
// are removed only after every proxy has stopped sending them any. Called
// with mu held.
func (cp *ControlPlane) reconcile(ctx context.Context) error {
	want := map[string]sim.Pod{}
	takenIPs := map[netip.Addr]string{}
	for _, p := range cp.cluster.Pods() {
		want[p.Key()] = p
		if !p.HostNetwork {
			takenIPs[p.IP] = p.Key()
		}
	}
	var gone []string
	for _, have := range cp.topo.Pods() {
		p, ok := want[have.Name]
		if ok && p.IP == have.IP && p.Node == have.Node && samePorts(have.Ports, cp.podPorts(p)) {
			continue
		}
		// A pod that changed, or whose address a new pod takes, goes first.
		if ok || takenIPs[have.IP] != "" {
			if err := cp.removePod(ctx, have.Name); err != nil {
				return err
			}
			continue
		}
		gone = append(gone, have.Name)
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if cp.topo.Pod(name) != nil {
			continue
		}
		p := want[name]
		spec := topology.PodSpec{Name: name, Node: p.Node, IP: p.IP, MAC: p.MAC, HostNetwork: p.HostNetwork, Ports: cp.podPorts(p)}
		pod, err := cp.topo.AddPod(ctx, spec)
		if err != nil {
			return fmt.Errorf("create pod %s on %s: %w", name, p.Node, err)
		}
		if isDNSPod(p) {
			srv, err := clusterdns.Start(pod.NS, cp.cluster.DNS)
			if err != nil {
				return fmt.Errorf("start DNS server in %s: %w", name, err)
			}
			cp.dns[name] = srv
		}
	}
	if err := cp.push(ctx); err != nil {
		return err
	}
	for _, name := range gone {
		if err := cp.removePod(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

func (cp *ControlPlane) removePod(ctx context.Context, name string) error {
	if srv := cp.dns[name]; srv != nil {
		delete(cp.dns, name)
		if err := srv.Close(); err != nil {
			return fmt.Errorf("stop DNS server of %s: %w", name, err)
		}
	}
	if err := cp.topo.RemovePod(ctx, name); err != nil {
		return fmt.Errorf("remove pod %s: %w", name, err)
	}
	return nil
}

func samePorts(a, b []topology.Port) bool {
	if len(a) != len(b) {
		return false
	}
	set := map[topology.Port]bool{}
	for _, p := range a {
		set[normPort(p)] = true
	}
	for _, p := range b {
		if !set[normPort(p)] {
			return false
		}
	}
	return true
}

func normPort(p topology.Port) topology.Port {
	if p.Protocol == "" {
		p.Protocol = "TCP"
	}
	return p
}

// podPorts decides where a pod's servers listen: its declared container
// ports, plus every numeric targetPort of a Service selecting it, so that
// manifests that omit containerPort (as the seed's do) still answer.
func (cp *ControlPlane) podPorts(p sim.Pod) []topology.Port {
	if isDNSPod(p) {
		return nil // the DNS server owns port 53
	}
	seen := map[topology.Port]bool{}
	var out []topology.Port
	add := func(port int32, proto string) {
		k := topology.Port{Port: port, Protocol: proto}
		if port > 0 && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, c := range p.Ports {
		add(c.Port, string(c.Protocol))
	}
	if len(cp.cfg.Sim.Nodes) > 0 {
		// Every node sees the same endpoints; the first node's view will do.
		st := cp.cluster.NodeState(cp.cfg.Sim.Nodes[0].Name)
		for _, sp := range st.Services {
			for _, ep := range sp.Endpoints {
				if ep.IP == p.IP && (ep.Pod == p.Name || ep.Pod == p.Key()) {
					add(ep.Port, string(sp.Protocol))
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Port != out[j].Port {
			return out[i].Port < out[j].Port
		}
		return out[i].Protocol < out[j].Protocol
	})
	return out
}

func (cp *ControlPlane) push(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for node, p := range cp.proxies {
		st := cp.cluster.NodeState(node)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := p.Push(ctx, st)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("program node %s: %w", node, err))
				return
			}
			cp.lastSync[node] = r
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// NodeState is what node was last told (a fresh copy from the model).
func (cp *ControlPlane) NodeState(node string) *state.NodeState {
	return cp.cluster.NodeState(node)
}

// LastSync returns each node's reply to the latest push.
func (cp *ControlPlane) LastSync() map[string]agent.SyncReply {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	out := make(map[string]agent.SyncReply, len(cp.lastSync))
	for k, v := range cp.lastSync {
		out[k] = v
	}
	return out
}

// Proxy returns node's proxy process.
func (cp *ControlPlane) Proxy(node string) *agent.Process {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.proxies[node]
}

// Dump returns node's kernel state as the mode's real tool prints it.
func (cp *ControlPlane) Dump(ctx context.Context, node string) (string, error) {
	p := cp.Proxy(node)
	if p == nil {
		return "", fmt.Errorf("no proxy on node %q", node)
	}
	return p.Dump(ctx)
}

// KillProxy kills node's proxy with SIGKILL, as a crash would, leaving its
// kernel state in place.
func (cp *ControlPlane) KillProxy(node string) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	p := cp.proxies[node]
	if p == nil {
		return fmt.Errorf("no proxy on node %q", node)
	}
	delete(cp.proxies, node)
	return p.Kill()
}

// RestartProxy starts a new proxy on node (after KillProxy) and programs it.
func (cp *ControlPlane) RestartProxy(ctx context.Context, node string) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if p := cp.proxies[node]; p != nil {
		_ = p.Stop(10 * time.Second)
		delete(cp.proxies, node)
	}
	if err := cp.startProxy(ctx, node); err != nil {
		return err
	}
	return cp.push(ctx)
}

// Close stops every proxy (each cleans up its rules), removes the topology
// and the run directory. It is safe to call more than once.
func (cp *ControlPlane) Close() error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var errs []error
	for name, srv := range cp.dns {
		if err := srv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stop DNS server of %s: %w", name, err))
		}
		delete(cp.dns, name)
	}
	for node, p := range cp.proxies {
		if err := p.Stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
		delete(cp.proxies, node)
	}
	if cp.topo != nil {
		if err := cp.topo.Close(); err != nil {
			errs = append(errs, fmt.Errorf("remove topology: %w", err))
		}
		cp.topo = nil
	}
	if cp.run != nil {
		if err := cp.run.Remove(); err != nil {
			errs = append(errs, fmt.Errorf("remove run directory: %w", err))
		}
		cp.run = nil
	}
	return errors.Join(errs...)
}
