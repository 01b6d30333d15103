// Package embedded is svcsim's own control plane (the "embedded" plane of the
// results), a plane.Plane beside the kubernetes plane (package
// plane/kube/cluster). It ties the pieces of a simulated cluster together: the
// cluster model (package sim), the kernel topology (package topology) and one
// node proxy process per node (package modes/agent). It is what `svcsim up`
// runs in the background and what every scenario drives in-process.
//
// Every change goes the same way: the model validates and applies it (all or
// nothing) and the call returns (the change is accepted). A reconciler then
// creates the pods that appeared in the topology, sends each node's proxy its
// new desired state, and removes the pods that vanished once every proxy has
// programmed it. WaitProgrammed (package plane's barrier) waits for that.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/addons/clusterdns"
	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/modes/agent"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/sim/kubeview"
	"github.com/svcsim/svcsim/sim/printer"
	"github.com/svcsim/svcsim/sim/state"
	"github.com/svcsim/svcsim/topology"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
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

// DNSServiceIP is the kube-dns Service's ClusterIP, kubeadm's default
// (plane.DNSServiceIP, the same on every plane).
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

// ControlPlane is a running simulated cluster. It implements plane.Plane:
// changes return once the model has accepted them, and a background
// reconciler then makes the topology's pods match the model and pushes
// every node's state to its proxy; WaitProgrammed waits for the proxies'
// sync replies to carry the model's generation.
type ControlPlane struct {
	cfg     Config
	run     *rundir.Run
	runID   string
	cluster *sim.Cluster
	topo    *topology.Topology
	log     io.Writer

	mu sync.Mutex // serialises model changes (the API server)

	// view is the model through client-go, kept in step by the reconciler;
	// workloads read the cluster through its client.
	view     *kubeview.View
	registry *addons.Registry

	// recMu serialises reconciles and guards proxies and workloads (the
	// nodes).
	recMu   sync.Mutex
	proxies map[string]*agent.Process
	// workloads are the running workloads with a Start of their own, by
	// pod key.
	workloads map[string][]addons.Instance

	// progMu guards what the reconciler has programmed.
	progMu sync.Mutex
	// lastSync holds each node's reply to the most recent push.
	lastSync map[string]agent.SyncReply
	// programmed is the model generation every running proxy has
	// programmed (with the pods of that generation in place).
	programmed uint64
	// failed is the error of the last reconcile, for generation failedGen.
	failed    error
	failedGen uint64
	// progress is closed (and replaced) whenever programmed or failed change.
	progress chan struct{}

	kick       chan struct{} // wakes the reconciler (buffered 1)
	stopWorker context.CancelFunc
	workerDone chan struct{}
}

var _ plane.Plane = (*ControlPlane)(nil)

// Start builds the topology, starts a proxy on every node and programs the
// cluster's add-ons; it returns once every node has programmed them. On
// error everything made so far is removed.
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
	made := &ControlPlane{cfg: cfg, run: run, runID: run.ID, cluster: cl, log: logw, view: kubeview.New(), registry: addons.NewRegistry(),
		proxies: map[string]*agent.Process{}, lastSync: map[string]agent.SyncReply{}, workloads: map[string][]addons.Instance{},
		progress: make(chan struct{}), kick: make(chan struct{}, 1)}
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
	wctx, cancel := context.WithCancel(context.Background())
	cp.stopWorker, cp.workerDone = cancel, make(chan struct{})
	go cp.reconciler(wctx)
	if err := cp.WaitProgrammed(ctx); err != nil {
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
// kept in step with every accepted change by the reconciler (read-only for
// the kinds the model owns).
func (cp *ControlPlane) Client() kubernetes.Interface { return cp.view.Client() }

// Mode is the proxy mode's name as the proxies report it ("iptables/nft").
func (cp *ControlPlane) Mode() string {
	cp.progMu.Lock()
	defer cp.progMu.Unlock()
	for _, r := range cp.lastSync {
		return r.Mode
	}
	return cp.cfg.Mode
}

// Info implements plane.Plane.
func (cp *ControlPlane) Info() plane.Info {
	return plane.Info{ControlPlane: "embedded", Datapath: cp.Mode(), RunID: cp.runID,
		Versions: map[string]string{"svcsim": version()}}
}

// version is the main module's version as the Go toolchain stamped it.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// Apply applies manifests all-or-nothing (namespaced objects without a
// namespace go into namespace) and returns once the model has accepted
// them; WaitProgrammed waits for the kernel.
func (cp *ControlPlane) Apply(_ context.Context, namespace string, ms ...plane.Manifest) ([]string, error) {
	objs, err := Decode(namespace, ms...)
	if err != nil {
		return nil, err
	}
	return cp.ApplyObjects(objs)
}

// Decode decodes manifests into model objects, putting namespaced objects
// without a namespace into namespace ("" leaves them to "default").
func Decode(namespace string, ms ...plane.Manifest) ([]sim.Object, error) {
	var objs []sim.Object
	for _, m := range ms {
		o, err := sim.Decode(m.Data, m.Source)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	if namespace != "" {
		for _, o := range objs {
			switch o.Obj.(type) {
			case *corev1.Namespace, *corev1.Node:
				continue
			}
			if m, err := meta.Accessor(o.Obj); err == nil && m.GetNamespace() == "" {
				m.SetNamespace(namespace)
			}
		}
	}
	return objs, nil
}

// ApplyObjects applies decoded objects as Apply does.
func (cp *ControlPlane) ApplyObjects(objs []sim.Object) ([]string, error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	out, err := cp.cluster.Apply(objs)
	if err != nil {
		return nil, err
	}
	cp.wake()
	return out, nil
}

// Patch applies a strategic merge patch to one object.
func (cp *ControlPlane) Patch(_ context.Context, r plane.Ref, patch []byte) error {
	return cp.change(func() error { return cp.cluster.Patch(r.Kind, r.Namespace, r.Name, patch) })
}

// Scale sets a Deployment's replicas.
func (cp *ControlPlane) Scale(_ context.Context, r plane.Ref, replicas int32) error {
	return cp.change(func() error { return cp.cluster.Scale(r.Kind, r.Namespace, r.Name, replicas) })
}

// Delete removes an object.
func (cp *ControlPlane) Delete(_ context.Context, r plane.Ref) error {
	return cp.change(func() error { return cp.cluster.Delete(r.Kind, r.Namespace, r.Name) })
}

// Label sets or removes labels ("key-") on an object.
func (cp *ControlPlane) Label(_ context.Context, r plane.Ref, labels map[string]string) error {
	return cp.change(func() error { return cp.cluster.Label(r.Kind, r.Namespace, r.Name, labels) })
}

// SetPodReady flips a pod's readiness (its endpoints follow).
func (cp *ControlPlane) SetPodReady(_ context.Context, namespace, name string, ready bool) error {
	return cp.change(func() error { return cp.cluster.SetPodReady(namespace, name, ready) })
}

func (cp *ControlPlane) change(f func() error) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if err := f(); err != nil {
		return err
	}
	cp.wake()
	return nil
}

// wake asks the reconciler for another round.
func (cp *ControlPlane) wake() {
	select {
	case cp.kick <- struct{}{}:
	default:
	}
}

// reconciler runs reconcile whenever woken, until ctx ends, and records
// the generation every proxy replied with (or the error).
func (cp *ControlPlane) reconciler(ctx context.Context) {
	defer close(cp.workerDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-cp.kick:
		}
		gen := cp.cluster.Generation()
		cp.recMu.Lock()
		err := cp.reconcile(ctx)
		got := cp.programmedLocked(gen)
		cp.recMu.Unlock()
		if ctx.Err() != nil {
			return
		}
		cp.progMu.Lock()
		if err != nil {
			cp.failed, cp.failedGen = err, gen
			fmt.Fprintf(cp.log, "run %s: programming generation %d: %v\n", cp.run.ID, gen, err)
		} else {
			cp.failed = nil
			cp.programmed = max(cp.programmed, got)
		}
		close(cp.progress)
		cp.progress = make(chan struct{})
		cp.progMu.Unlock()
	}
}

// programmedLocked is what a reconcile that started at generation gen
// has put in place: the lowest generation the running proxies replied
// with, but no more than gen. A change accepted during the reconcile may
// be in the states pushed (they are read after the pods are made) without
// its pods, so only gen, read before the pods, is known to be complete.
// Called with recMu held.
func (cp *ControlPlane) programmedLocked(gen uint64) uint64 {
	cp.progMu.Lock()
	defer cp.progMu.Unlock()
	low := gen
	for node := range cp.proxies {
		low = min(low, cp.lastSync[node].Generation)
	}
	return low
}

// WaitProgrammed implements plane.Plane: it returns once the reconciler
// has made the pods of the model's current generation and every running
// proxy has replied to a push of that generation or a later one.
func (cp *ControlPlane) WaitProgrammed(ctx context.Context) error {
	want := cp.cluster.Generation()
	cp.wake()
	for {
		cp.progMu.Lock()
		done, failed, failedGen, progress := cp.programmed, cp.failed, cp.failedGen, cp.progress
		cp.progMu.Unlock()
		switch {
		case done >= want:
			return nil
		case failed != nil && failedGen >= want:
			return fmt.Errorf("program generation %d: %w", want, failed)
		}
		select {
		case <-progress:
		case <-cp.workerDone:
			return errors.New("the control plane is closed")
		case <-ctx.Done():
			return fmt.Errorf("wait for generation %d to be programmed (programmed: %d): %w", want, done, ctx.Err())
		}
	}
}

// reconcile makes the topology's pods match the model's and pushes every
// node's desired state to its proxy. Order matters, as on a real cluster: new
// pods are running before any proxy sends them traffic, and departed pods
// are removed only after every proxy has stopped sending them any. Called
// by the reconciler with recMu held.
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
			cp.progMu.Lock()
			cp.lastSync[node] = r
			cp.progMu.Unlock()
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
	cp.progMu.Lock()
	defer cp.progMu.Unlock()
	out := make(map[string]agent.SyncReply, len(cp.lastSync))
	for k, v := range cp.lastSync {
		out[k] = v
	}
	return out
}

// Proxy returns node's proxy process (nil when it is not running).
func (cp *ControlPlane) Proxy(node string) *agent.Process {
	cp.recMu.Lock()
	defer cp.recMu.Unlock()
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
func (cp *ControlPlane) KillProxy(_ context.Context, node string) error {
	cp.recMu.Lock()
	defer cp.recMu.Unlock()
	p := cp.proxies[node]
	if p == nil {
		return fmt.Errorf("no proxy on node %q", node)
	}
	delete(cp.proxies, node)
	return p.Kill()
}

// StopProxy stops node's proxy with SIGTERM; it removes everything it
// programmed before it exits.
func (cp *ControlPlane) StopProxy(_ context.Context, node string) error {
	cp.recMu.Lock()
	defer cp.recMu.Unlock()
	p := cp.proxies[node]
	if p == nil {
		return fmt.Errorf("no proxy on node %q", node)
	}
	delete(cp.proxies, node)
	return p.Stop(15 * time.Second)
}

// StartProxy starts a proxy on node (after KillProxy or StopProxy) and
// returns once it answers; the reconciler then programs it, and
// WaitProgrammed waits for that.
func (cp *ControlPlane) StartProxy(ctx context.Context, node string) error {
	cp.recMu.Lock()
	defer cp.recMu.Unlock()
	if cp.proxies[node] != nil {
		return fmt.Errorf("node %s: a proxy is already running", node)
	}
	if err := cp.startProxy(ctx, node); err != nil {
		return err
	}
	cp.progMu.Lock()
	delete(cp.lastSync, node)
	// The new proxy has programmed nothing: what was programmed is no
	// longer true of every node.
	cp.programmed = 0
	cp.progMu.Unlock()
	cp.wake()
	return nil
}

// Get implements plane.Plane.
func (cp *ControlPlane) Get(_ context.Context, r plane.Ref) (runtime.Object, error) {
	return cp.cluster.Get(r.Kind, r.Namespace, r.Name)
}

// List implements plane.Plane.
func (cp *ControlPlane) List(_ context.Context, kind, namespace, selector string) ([]runtime.Object, error) {
	k, err := sim.CanonicalKind(kind)
	if err != nil {
		return nil, err
	}
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, fmt.Errorf("parse selector %q: %w", selector, err)
	}
	if namespace == "" {
		namespace = "default"
	}
	all, ok := kubeview.List(cp.cluster, k)
	if !ok {
		return nil, fmt.Errorf("list %s: not supported by the embedded plane", kind)
	}
	clusterScoped := k == "Namespace" || k == "Node"
	out := all[:0]
	for _, o := range all {
		m, err := meta.Accessor(o)
		if err != nil {
			return nil, err
		}
		if (clusterScoped || m.GetNamespace() == namespace) && sel.Matches(labels.Set(m.GetLabels())) {
			out = append(out, o)
		}
	}
	return out, nil
}

// Nodes implements plane.Plane.
func (cp *ControlPlane) Nodes() []plane.Node {
	var out []plane.Node
	for _, n := range cp.topo.Nodes() {
		out = append(out, plane.Node{Name: n.Name, IP: n.IP, Gateway: n.Gateway, NS: n.NS})
	}
	return out
}

// Pods implements plane.Plane: the model's pods that the reconciler has
// created in the topology.
func (cp *ControlPlane) Pods(_ context.Context, namespace string) ([]plane.Pod, error) {
	var out []plane.Pod
	for _, p := range cp.cluster.Pods() {
		if namespace != "" && p.Namespace != namespace {
			continue
		}
		tp := cp.topo.Pod(p.Key())
		if tp == nil || tp.IP != p.IP {
			continue // not made yet, or an older pod of that name
		}
		out = append(out, plane.Pod{Namespace: p.Namespace, Name: p.Name, Node: p.Node, IP: p.IP,
			HostNetwork: p.HostNetwork, Ready: p.Ready, Labels: p.Labels, NS: tp.NS})
	}
	return out, nil
}

// Target implements plane.Plane.
func (cp *ControlPlane) Target(_ context.Context, namespace, name string) (plane.Target, error) {
	if name == plane.ExternalTarget {
		return plane.Target{Name: name, NS: cp.topo.External()}, nil
	}
	if n := cp.topo.Node(name); n != nil {
		return plane.Target{Name: name, NS: n.NS}, nil
	}
	if namespace == "" {
		namespace = "default"
	}
	p := cp.topo.Pod(namespace + "/" + name)
	if p == nil {
		return plane.Target{}, fmt.Errorf("no pod, node or %q named %q (namespace %q)", plane.ExternalTarget, name, namespace)
	}
	t := plane.Target{Name: namespace + "/" + name, NS: p.NS}
	for _, e := range cp.cluster.PodEnv(namespace, name) {
		t.Env = append(t.Env, e.Name+"="+e.Value)
	}
	if !p.HostNetwork {
		domain := cp.cluster.Config().DNSDomain
		t.ResolvConf = fmt.Sprintf("nameserver %s\nsearch %s.svc.%s svc.%s %s\noptions ndots:5\n",
			DNSServiceIP, namespace, domain, domain, domain)
	}
	return t, nil
}

// AddHost implements plane.Plane.
func (cp *ControlPlane) AddHost(ctx context.Context, name string, ip netip.Addr, ports []topology.Port) (*netns.NS, error) {
	return cp.topo.AddHost(ctx, name, ip, ports)
}

// RemoveHost implements plane.Plane.
func (cp *ControlPlane) RemoveHost(ctx context.Context, name string) error {
	return cp.topo.RemoveHost(ctx, name)
}

// StopPodServers implements plane.Plane.
func (cp *ControlPlane) StopPodServers(_ context.Context, namespace, name string) error {
	if namespace == "" {
		namespace = "default"
	}
	p := cp.topo.Pod(namespace + "/" + name)
	if p == nil {
		return fmt.Errorf("no running pod %s/%s", namespace, name)
	}
	return p.StopServers()
}

// Close stops every proxy (each cleans up its rules), removes the topology
// and the run directory. It is safe to call more than once.
func (cp *ControlPlane) Close() error {
	if cp.stopWorker != nil {
		cp.stopWorker()
		<-cp.workerDone
		cp.stopWorker = nil
	}
	cp.recMu.Lock()
	defer cp.recMu.Unlock()
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

// Print writes the model's objects as kubectl get does (daemon.Printer).
func (cp *ControlPlane) Print(w io.Writer, r printer.Request) error {
	return printer.Print(w, cp.cluster, r)
}
