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

	"k8s.io/client-go/kubernetes"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/addons/clusterdns"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/modes/agent"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/sim/kubeview"
	"github.com/svcsim/svcsim/sim/state"
	"github.com/svcsim/svcsim/topology"
)

// Config describes a simulated cluster.
type Config struct {
	// Mode is the proxy mode every node runs ("iptables", "nftables", ...).
	Mode string
	// Scheduler is the IPVS scheduler, when Mode is ipvs.
	Scheduler string
	// IPTablesBackend is every node's iptables backend ("legacy", "nft";
	// empty: the host's), for every datapath that writes iptables rules.
	IPTablesBackend string
	// Sim configures the model; its Nodes decide the topology's nodes.
	Sim sim.Config
	// ExternalIP is the outside client's address on the underlay.
	ExternalIP netip.Addr
	// Underlay is the node network.
	Underlay netip.Prefix
	// Log receives progress lines and the node proxies' output (nil: discard).
	Log io.Writer
	// DNS runs the cluster DNS add-on (package addons/clusterdns): a
	// kube-system/coredns pod behind the kube-dns Service (ClusterIP
	// DNSServiceIP), reading the cluster through its list/watch view.
	DNS bool
	// AddOns are further add-ons: their objects are applied when the
	// cluster starts and their workloads run in pods of their images.
	AddOns []addons.AddOn
}

// DNSServiceIP is the kube-dns Service's ClusterIP, kubeadm's default.
const DNSServiceIP = clusterdns.ServiceIP

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

	// view is the model through client-go, kept in step after every change;
	// workloads read the cluster through its client.
	view     *kubeview.View
	registry *addons.Registry

	mu      sync.Mutex // serialises changes
	proxies map[string]*agent.Process
	// workloads are the running workloads with a Start of their own, by
	// pod key.
	workloads map[string][]addons.Instance
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
	made := &ControlPlane{cfg: cfg, run: run, cluster: cl, log: logw, view: kubeview.New(), registry: addons.NewRegistry(),
		proxies: map[string]*agent.Process{}, lastSync: map[string]agent.SyncReply{}, workloads: map[string][]addons.Instance{}}
	cp = made
	defer func() {
		// Not cp: a return statement has set it to nil by now.
		if err != nil {
			err = errors.Join(err, made.Close())
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
	addOns := cfg.AddOns
	if cfg.DNS {
		addOns = append([]addons.AddOn{clusterdns.AddOn(cfg.Sim.DNSDomain)}, addOns...)
	}
	if err := cp.registry.RegisterAddOns(addOns...); err != nil {
		return nil, err
	}
	for _, a := range addOns {
		objs, err := sim.Decode(a.Manifests, a.Name+"-addon")
		if err != nil {
			return nil, fmt.Errorf("add-on %s: %w", a.Name, err)
		}
		if _, err := cl.Apply(objs); err != nil {
			return nil, fmt.Errorf("add-on %s: %w", a.Name, err)
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
		Node: node, Mode: cp.cfg.Mode, Scheduler: cp.cfg.Scheduler, IPTablesBackend: cp.cfg.IPTablesBackend,
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

// Client is the cluster through client-go: the model's list/watch view,
// in step with every change the ControlPlane's methods make (read-only for
// the kinds the model owns).
func (cp *ControlPlane) Client() kubernetes.Interface { return cp.view.Client() }

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
	// Workloads see the change before the proxies program it, as they
	// would on a real cluster, where watches fire as soon as it is stored.
	if err := cp.view.Sync(cp.cluster); err != nil {
		return fmt.Errorf("list/watch view: %w", err)
	}
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
		if ok && p.IP == have.IP && p.Node == have.Node && samePorts(have.Ports, cp.registry.Plan(p).ServerPorts) {
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
		plan := cp.registry.Plan(p)
		spec := topology.PodSpec{Name: name, Node: p.Node, IP: p.IP, MAC: p.MAC, HostNetwork: p.HostNetwork, Ports: plan.ServerPorts}
		pod, err := cp.topo.AddPod(ctx, spec)
		if err != nil {
			return fmt.Errorf("create pod %s on %s: %w", name, p.Node, err)
		}
		for _, st := range plan.Starts {
			env := addons.Env{Pod: p, Container: st.Container, NS: pod.NS, Client: cp.view.Client(), Log: cp.log}
			inst, err := st.Workload.Start(ctx, env)
			if err != nil {
				// Take the pod down again so that the next change retries it
				// whole rather than leaving it without its workload.
				err = fmt.Errorf("start %s in pod %s (container %s): %w", st.Workload.Name, name, p.Containers[st.Container].Name, err)
				return errors.Join(err, cp.removePod(ctx, name))
			}
			cp.workloads[name] = append(cp.workloads[name], inst)
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
	if err := cp.stopWorkloads(name); err != nil {
		return err
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

// stopWorkloads stops the workloads running in pod name.
func (cp *ControlPlane) stopWorkloads(name string) error {
	var errs []error
	for _, inst := range cp.workloads[name] {
		if err := inst.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", name, err))
		}
	}
	delete(cp.workloads, name)
	return errors.Join(errs...)
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
	for name := range cp.workloads {
		errs = append(errs, cp.stopWorkloads(name))
	}
	if cp.view != nil {
		cp.view.Close()
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
