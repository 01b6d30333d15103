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
	"runtime/debug"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/addons/clusterdns"
	"github.com/svcsim/svcsim/addons/gateway"
	"github.com/svcsim/svcsim/addons/ingress"
	"github.com/svcsim/svcsim/addons/loadbalancer"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/modes/agent"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/sim/kubeview"
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
	// Ingress registers the ingress controller add-on (package
	// addons/ingress): pods of ingress-nginx's controller images run a
	// real nginx configured from the Ingresses.
	Ingress bool
	// Gateway registers the Gateway API add-on (package addons/gateway):
	// pods of its controller image run nginx for the Gateways of its
	// class (gateway.Manifests bring the controller), pods of the
	// conformance suite's echo image its echo backend.
	Gateway bool
	// AddOns are further add-ons: their objects are applied when the
	// cluster starts and their workloads run in pods of their images.
	AddOns []addons.AddOn
	// LoadBalancer runs the simulated cloud load balancer (namespace
	// <run>-cloud-lb at topology.DefaultLoadBalancerIP on the underlay) and
	// its controller add-on (package addons/loadbalancer), which gives
	// every Service of type LoadBalancer an address from
	// LoadBalancerPool (topology.DefaultLoadBalancerPool when unset).
	LoadBalancer     bool
	LoadBalancerPool netip.Prefix
}

// DNSServiceIP is the kube-dns Service's ClusterIP, kubeadm's default
// (plane.DNSServiceIP, the same on every plane).
const DNSServiceIP = clusterdns.ServiceIP

// DefaultConfig is a two-node cluster on the default address plan running mode.
func DefaultConfig(mode string, nodes int) Config {
	return Config{
		Mode:         mode,
		Sim:          sim.DefaultConfig(nodes),
		DNS:          true,
		LoadBalancer: true,
		Ingress:      true,
		Gateway:      true,
		ExternalIP:   netip.MustParseAddr("198.18.0.100"),
		Underlay:     netip.MustParsePrefix("198.18.0.0/24"),
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
	// ends finish the terminating pods' deletions (by namespace/name/uid),
	// as kubelets confirm them once the pods' servers have exited; closed
	// stops them. Both guarded by mu.
	ends   map[string]*time.Timer
	closed bool

	// view is the model through client-go, kept in step by the reconciler;
	// workloads read the cluster through its client.
	// cloud is the simulated cloud load balancer (nil without
	// Config.LoadBalancer).
	cloud *loadbalancer.Cloud

	view     *kubeview.View
	registry *addons.Registry

	// recMu serialises reconciles and guards proxies and workloads (the
	// nodes).
	recMu   sync.Mutex
	proxies map[string]*agent.Process
	// lost are the nodes whose link is cut (NodeDown): their proxies get
	// no pushes and are not waited for.
	lost map[string]bool
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
		proxies: map[string]*agent.Process{}, lost: map[string]bool{}, lastSync: map[string]agent.SyncReply{}, workloads: map[string][]addons.Instance{},
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
	if cfg.LoadBalancer {
		spec.LoadBalancerIP, spec.LoadBalancerPool = topology.DefaultLoadBalancerIP, cfg.LoadBalancerPool
	}
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
	if cfg.LoadBalancer {
		tspec := cp.topo.Spec()
		if cp.cloud, err = loadbalancer.StartCloud(ctx, cp.topo.CloudLB(), loadbalancer.CloudConfig{
			Pool: tspec.LoadBalancerPool, API: netip.AddrPortFrom(tspec.LoadBalancerIP, loadbalancer.APIPort).String(), Log: logw,
		}); err != nil {
			return nil, fmt.Errorf("cloud load balancer: %w", err)
		}
		addOns = append([]addons.AddOn{loadbalancer.AddOn(fmt.Sprintf("http://%s:%d", tspec.LoadBalancerIP, loadbalancer.APIPort))}, addOns...)
		// The controller writes Services' status through the view, as it
		// would through an API server; the model takes it.
		cp.view.SetStatusWriter(func(svc *corev1.Service) (*corev1.Service, error) {
			var out *corev1.Service
			err := cp.change(func() error {
				var err error
				out, err = cp.cluster.SetServiceStatus(svc.Namespace, svc.Name, svc.Status)
				return err
			})
			return out, err
		})
	}
	if cfg.DNS {
		addOns = append([]addons.AddOn{clusterdns.AddOn(cfg.Sim.DNSDomain)}, addOns...)
	}
	if cfg.Ingress {
		addOns = append(addOns, ingress.AddOn())
	}
	if cfg.Gateway {
		addOns = append(addOns, gateway.AddOn())
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
	// The ingress controller writes Ingresses' status the same way, the
	// Gateway controller the Gateway API kinds' status and the Services
	// it provisions.
	cp.view.OnIngressStatus(func(ns, name string, st networkingv1.IngressStatus) error {
		return cp.change(func() error { return cp.cluster.SetIngressStatus(ns, name, st) })
	})
	cp.view.OnGatewayStatus(func(obj runtime.Object) (runtime.Object, error) {
		var out runtime.Object
		err := cp.change(func() error {
			var err error
			out, err = cp.cluster.SetStatus(obj)
			return err
		})
		return out, err
	})
	cp.view.SetServiceWriter(serviceWriter{cp})
	wctx, cancel := context.WithCancel(context.Background())
	cp.stopWorker, cp.workerDone = cancel, make(chan struct{})
	go cp.reconciler(wctx)
	if err := cp.WaitProgrammed(ctx); err != nil {
		return nil, err
	}
	return cp, nil
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

// Close stops every proxy (each cleans up its rules), removes the topology
// and the run directory. It is safe to call more than once.
func (cp *ControlPlane) Close() error {
	cp.mu.Lock()
	cp.closed = true
	for k, t := range cp.ends {
		t.Stop()
		delete(cp.ends, k)
	}
	cp.mu.Unlock()
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
	if cp.cloud != nil {
		if err := cp.cloud.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stop cloud load balancer: %w", err))
		}
		cp.cloud = nil
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
