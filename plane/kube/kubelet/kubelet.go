// Package kubelet is svcsim's kubelet and CNI for a genuine Kubernetes
// control plane: one Kubelet per simulated node registers its Node (labels,
// addresses, capacity, spec.podCIDR, the Ready condition) and renews its
// Lease, watches the pods bound to it, builds their sandboxes (package
// topology through the Network seam), gives them what a kubelet gives a
// container (Service and downward-API environment, resolv.conf from the
// dnsPolicy, /etc/hosts, ConfigMap, Secret, downward-API and
// service-account-token volumes), runs their workloads, executes their
// readiness and liveness probes from the node's namespace and writes their
// status back; on deletion it drains, stops the servers and deletes the pod
// with grace 0.
//
// It talks to the API only through client-go's kubernetes.Interface, so the
// unit tests run on the fake clientset and the real thing on the genuine API
// server.
package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/svcsim/svcsim/internal/podexec"
	"github.com/svcsim/svcsim/topology"
)

// Config describes one node's kubelet.
type Config struct {
	// Client talks to the API server with the node's credentials.
	Client kubernetes.Interface
	// NodeName, NodeIP (its InternalIP) and PodCIDR (spec.podCIDR, and the
	// range pod IPs come from, host-local style: .2, .3, ...).
	NodeName string
	NodeIP   netip.Addr
	PodCIDR  netip.Prefix
	// Network builds the pods' sandboxes.
	Network Network
	// Dial opens probe connections from the node's namespace; nil uses
	// net.Dialer in the caller's namespace (tests).
	Dial DialFunc
	// Workloads picks what a container runs (by its image, see Registry);
	// nil, or false from it, means the built-in servers (topology/podserver).
	Workloads func(pod *corev1.Pod, c *corev1.Container) (Workload, bool)
	// WorkloadClient is the client workloads get (a pod's own view of the
	// cluster: CoreDNS needs Services and EndpointSlices, which the Node
	// authorizer does not give a kubelet); nil means Client.
	WorkloadClient kubernetes.Interface
	// WorkloadGateway is the Gateway API client workloads get (the
	// Gateway add-on's controller); nil gives them none.
	WorkloadGateway gwclient.Interface
	// Dir is this kubelet's own directory (pod files: resolv.conf, hosts,
	// volumes); it is created and, by Close, removed.
	Dir string
	// WorkloadDir, when set, is where each container with a workload of
	// its own gets a directory, <namespace>_<pod>_<container> (Container.Dir,
	// nginx's configuration and temp files for the ingress controller),
	// created before it starts and removed when the pod goes.
	WorkloadDir string
	// OnStart and OnExit, when set, record and forget the processes
	// workloads start (so that `svcsim down` finds them after a crash).
	OnStart func(pid int) error
	OnExit  func(pid int)
	// ClusterDNS and ClusterDomain are the kubelet's --cluster-dns and
	// --cluster-domain (defaults 10.96.0.10, cluster.local).
	ClusterDNS    netip.Addr
	ClusterDomain string
	// HostResolvConf is the text pods with dnsPolicy Default get (the
	// kubelet's --resolv-conf); empty gives them no nameserver, as nothing
	// outside svcsim's namespaces may be asked.
	HostResolvConf string
	// Capacity is the node's capacity (and allocatable): default cpu 4,
	// memory 8Gi, pods 110, ephemeral-storage 20Gi.
	Capacity corev1.ResourceList
	// Labels are added to the standard ones.
	Labels map[string]string
	// Drain is how long a deleted pod's servers keep serving after
	// "SIGTERM" (at most its terminationGracePeriodSeconds); default 1s.
	Drain time.Duration
	// StatusInterval is how often the node status is re-posted (default
	// 10s, the kubelet's nodeStatusUpdateFrequency); LeaseDuration the
	// Lease's duration (40s), renewed every quarter of it.
	StatusInterval time.Duration
	LeaseDuration  time.Duration
	// Log receives progress and error lines; nil discards them.
	Log io.Writer
	// Version is reported in status.nodeInfo.kubeletVersion.
	Version string
}

// Workload is what a container of some image runs besides (or instead of)
// the built-in servers: CoreDNS for the kube-dns Deployment, say.
type Workload struct {
	// Name is for logs.
	Name string
	// Builtin keeps the built-in servers on the container's ports as well.
	Builtin bool
	// Serves are the ports the workload answers on itself: a Service's
	// targetPort among them is not given to the built-in servers.
	Serves []topology.Port
	// Start runs the workload; it returns once the workload serves.
	Start func(ctx context.Context, c Container) (Instance, error)
}

// Instance is a running workload.
type Instance interface {
	// Stop ends it (the pod is being deleted or the container restarted).
	Stop() error
}

// Container is what a workload is given: the pod, the container, and what
// the kubelet prepared for it.
type Container struct {
	Pod       *corev1.Pod
	Container *corev1.Container
	// Sandbox is the pod's network (Sandbox.Netns its namespace) and IP
	// its address.
	Sandbox Sandbox
	IP      netip.Addr
	// Env is the container's environment, "NAME=value", in the kubelet's
	// order.
	Env []string
	// Mounts are the container's volume mounts: host paths under Dir to
	// bind at container paths, plus /etc/hosts and /etc/resolv.conf.
	Mounts []Mount
	// Scratch is an empty directory for podexec.Spec.Scratch.
	Scratch string
	// Dir is the workload's own directory (Config.WorkloadDir; empty
	// without one); OnStart and OnExit are Config's.
	Dir     string
	OnStart func(pid int) error
	OnExit  func(pid int)
	Client  kubernetes.Interface
	Gateway gwclient.Interface
	Log     io.Writer
}

// Mount is a file or directory to show a container at Path (package
// podexec binds them in a private mount namespace).
type Mount = podexec.Mount

// Kubelet is a running kubelet. Its methods are safe for concurrent use.
type Kubelet struct {
	cfg     Config
	factory informers.SharedInformerFactory
	pods    informers.SharedInformerFactory
	podLst  corelisters.PodLister
	svcLst  corelisters.ServiceLister
	ipam    *ipam
	cancel  context.CancelFunc
	ctx     context.Context
	wg      sync.WaitGroup
	logMu   sync.Mutex
	started time.Time

	nodeMu  sync.Mutex
	nodeUID types.UID

	mu      sync.Mutex
	closed  bool
	workers map[types.UID]*podWorker
}

func (c *Config) defaults() error {
	if c.Client == nil || c.Network == nil {
		return errors.New("kubelet: Config needs Client and Network")
	}
	if c.NodeName == "" || !c.NodeIP.IsValid() || !c.PodCIDR.IsValid() {
		return fmt.Errorf("kubelet: Config needs NodeName, NodeIP and PodCIDR (have %q %v %v)", c.NodeName, c.NodeIP, c.PodCIDR)
	}
	if c.Dir == "" {
		return errors.New("kubelet: Config needs Dir")
	}
	if !c.ClusterDNS.IsValid() {
		c.ClusterDNS = netip.MustParseAddr("10.96.0.10")
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.Capacity == nil {
		c.Capacity = corev1.ResourceList{
			corev1.ResourceCPU:              resource.MustParse("4"),
			corev1.ResourceMemory:           resource.MustParse("8Gi"),
			corev1.ResourcePods:             resource.MustParse("110"),
			corev1.ResourceEphemeralStorage: resource.MustParse("20Gi"),
		}
	}
	if c.Drain == 0 {
		c.Drain = time.Second
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = 10 * time.Second
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 40 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.WorkloadClient == nil {
		c.WorkloadClient = c.Client
	}
	if c.Version == "" {
		c.Version = "v1.37.2"
	}
	return nil
}

// Start registers the node (creating or updating its Node object and
// posting its status) and starts the lease, status and pod loops. It
// returns once the node is registered and the pod informer has synced.
func Start(ctx context.Context, cfg Config) (_ *Kubelet, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("kubelet %s: %w", cfg.NodeName, err)
	}
	k := &Kubelet{cfg: cfg, ipam: newIPAM(cfg.PodCIDR), workers: map[types.UID]*podWorker{}, started: time.Now()}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			err = errors.Join(err, k.Close())
		}
	}()
	if err := k.register(ctx); err != nil {
		return nil, err
	}
	k.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0)
	podFactory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
		}))
	k.pods = podFactory
	podInf := podFactory.Core().V1().Pods()
	svcInf := k.factory.Core().V1().Services()
	k.podLst, k.svcLst = podInf.Lister(), svcInf.Lister()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.podChanged(obj) },
		UpdateFunc: func(_, obj any) { k.podChanged(obj) },
		DeleteFunc: func(obj any) { k.podGone(obj) },
	}
	if _, err := podInf.Informer().AddEventHandler(handler); err != nil {
		return nil, fmt.Errorf("kubelet %s: watch pods: %w", cfg.NodeName, err)
	}
	svcHandler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { k.servicesChanged() },
		UpdateFunc: func(_, _ any) { k.servicesChanged() },
		DeleteFunc: func(any) { k.servicesChanged() },
	}
	if _, err := svcInf.Informer().AddEventHandler(svcHandler); err != nil {
		return nil, fmt.Errorf("kubelet %s: watch services: %w", cfg.NodeName, err)
	}
	k.factory.Start(k.ctx.Done())
	podFactory.Start(k.ctx.Done())
	synced := func(f informers.SharedInformerFactory) error {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("kubelet %s: %v informer did not sync: %w", cfg.NodeName, typ, context.Cause(ctx))
			}
		}
		return nil
	}
	if err := errors.Join(synced(k.factory), synced(podFactory)); err != nil {
		return nil, err
	}
	k.wg.Add(2)
	go func() { defer k.wg.Done(); k.leaseLoop() }()
	go func() { defer k.wg.Done(); k.statusLoop() }()
	k.logf("registered node %s (%v, pods %v)", cfg.NodeName, cfg.NodeIP, cfg.PodCIDR)
	return k, nil
}

func (k *Kubelet) logf(format string, a ...any) {
	k.logMu.Lock()
	defer k.logMu.Unlock()
	fmt.Fprintf(k.cfg.Log, "%s kubelet %s: %s\n", time.Now().Format("15:04:05.000"), k.cfg.NodeName, fmt.Sprintf(format, a...))
}

// NodeName is the node this kubelet runs.
func (k *Kubelet) NodeName() string { return k.cfg.NodeName }

// podChanged hands an added or updated pod to its worker, starting one for a
// new pod bound here.
func (k *Kubelet) podChanged(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != k.cfg.NodeName {
		return
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		if w := k.worker(pod.UID); w == nil {
			return // finished before this kubelet saw it
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return
	}
	w := k.workers[pod.UID]
	if w == nil {
		w = newPodWorker(k, pod)
		k.workers[pod.UID] = w
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			if w.run(k.ctx) {
				k.mu.Lock()
				delete(k.workers, pod.UID)
				k.mu.Unlock()
			}
		}()
	}
	w.update(pod)
}

// podGone tells a worker its pod is gone from the API (deleted with grace
// 0, by us or by someone forcing it).
func (k *Kubelet) podGone(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if w := k.worker(pod.UID); w != nil {
		w.gone()
	}
}

func (k *Kubelet) worker(uid types.UID) *podWorker {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.workers[uid]
}

// servicesChanged tells every running pod to recompute the ports its
// built-in servers listen on.
func (k *Kubelet) servicesChanged() {
	k.mu.Lock()
	ws := make([]*podWorker, 0, len(k.workers))
	for _, w := range k.workers {
		ws = append(ws, w)
	}
	k.mu.Unlock()
	for _, w := range ws {
		w.poke()
	}
}

// PodInfo is what `svcsim exec` needs to run a command as a pod's container
// would: its namespace, environment and files.
type PodInfo struct {
	Namespace, Name string
	UID             types.UID
	IP              netip.Addr
	// Netns is the pod's network namespace name under /run/netns.
	Netns string
	// Env is the first container's environment.
	Env []string
	// ResolvConf and Hosts are the files the kubelet made for the pod
	// (empty for a pod not started yet).
	ResolvConf, Hosts string
	// Mounts are the first container's mounts; Scratch an empty
	// directory for podexec.
	Mounts  []Mount
	Scratch string
}

// Command runs argv as in the pod's first container: its mounts and
// environment (start it inside the pod's network namespace, Netns, with
// netns.NS.Do).
func (p PodInfo) Command(argv ...string) (*exec.Cmd, error) {
	return podexec.Command(podexec.Spec{Mounts: p.Mounts, Scratch: p.Scratch}, p.Env, argv)
}

// Pod returns the running pod namespace/name, if this kubelet runs it.
func (k *Kubelet) Pod(namespace, name string) (PodInfo, bool) {
	for _, p := range k.Pods() {
		if p.Namespace == namespace && p.Name == name {
			return p, true
		}
	}
	return PodInfo{}, false
}

// Pods lists the pods whose sandboxes this kubelet has built, by
// namespace and name.
func (k *Kubelet) Pods() []PodInfo {
	k.mu.Lock()
	ws := make([]*podWorker, 0, len(k.workers))
	for _, w := range k.workers {
		ws = append(ws, w)
	}
	k.mu.Unlock()
	var out []PodInfo
	for _, w := range ws {
		if info, ok := w.info(); ok {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// SetReady makes the pod's running containers ready or not ready whatever
// their readiness probes say (a scenario's stand-in for a probe that starts
// failing) and posts the status; the endpoint controllers follow.
func (k *Kubelet) SetReady(namespace, name string, ready bool) error {
	k.mu.Lock()
	var w *podWorker
	for _, cand := range k.workers {
		if cand.ns == namespace && cand.name == name {
			w = cand
		}
	}
	k.mu.Unlock()
	if w == nil {
		return fmt.Errorf("kubelet %s: no pod %s/%s", k.cfg.NodeName, namespace, name)
	}
	w.mu.Lock()
	w.readyOverride, w.overrideNew = &ready, true
	w.mu.Unlock()
	w.signal()
	return nil
}

// Close stops the loops and removes every pod sandbox this kubelet built
// and its directory. The Node and the pods stay in the API, as when a
// real kubelet stops. Idempotent.
func (k *Kubelet) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	k.mu.Unlock()
	k.cancel()
	for _, f := range []informers.SharedInformerFactory{k.factory, k.pods} {
		if f != nil {
			f.Shutdown()
		}
	}
	k.wg.Wait()
	var errs []error
	k.mu.Lock()
	ws := k.workers
	k.workers = map[types.UID]*podWorker{}
	k.mu.Unlock()
	for _, w := range ws {
		errs = append(errs, w.teardown(context.Background()))
	}
	errs = append(errs, os.RemoveAll(k.cfg.Dir))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kubelet %s: close: %w", k.cfg.NodeName, err)
	}
	return nil
}

// selects reports whether a Service's selector picks the pod.
func selects(svc *corev1.Service, pod *corev1.Pod) bool {
	if len(svc.Spec.Selector) == 0 {
		return false
	}
	return labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels))
}

func arch() string { return runtime.GOARCH }

func podDir(root string, uid types.UID) string { return filepath.Join(root, "pods", string(uid)) }
