// Package cluster is the kubernetes plane: a plane.Plane whose control
// plane is the genuine one (package plane/kube: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler), whose nodes run svcsim's kubelet
// (package plane/kube/kubelet) and the genuine kube-proxy, and whose cluster
// DNS is the genuine CoreDNS as the kube-dns Deployment.
//
// Every change goes through the API server, with the genuine kubectl, so
// validation, defaulting, allocation and errors are the API server's own.
// WaitProgrammed is a barrier over what kube-proxy has really programmed:
// once the API objects have settled (Deployments rolled out, pods running or
// gone, each Service's EndpointSlices naming its pods), a barrier Service
// and its EndpointSlice are given a new port name, and every running
// kube-proxy's rules must show it. kube-proxy receives Services and
// EndpointSlices on two watches that each deliver in order, so rules that
// contain the barrier's newest generation were synced with every change
// accepted before it. (kube-proxy's sync metrics alone only cover the
// changes it has already received: its watch may lag the API server.)
package cluster

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/addons/gateway"
	"github.com/svcsim/svcsim/addons/ingress"
	"github.com/svcsim/svcsim/addons/loadbalancer"
	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/kubeproxy"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/plane/kube/kubelet"
	"github.com/svcsim/svcsim/topology"
)

// ControlPlaneName is this plane's plane.Info.ControlPlane.
const ControlPlaneName = "kubernetes"

// Options describe a cluster to start.
type Options struct {
	// Nodes is the number of nodes (node1..nodeN, default 2).
	Nodes int
	// Datapath names the nodes' datapath: kube-proxy's as package modes
	// has it registered ("kube-proxy/iptables-nft"; "": kubeproxy.Default)
	// or svcsim's own node proxy's ("nftables@kubernetes", see Datapaths).
	Datapath string
	// Binary is the multi-call binary ("": kube.FindBinary).
	Binary string
	// KubeProxyBinary, when set, is the executable kube-proxy runs from
	// instead of Binary (a multi-call build of a local kubernetes tree,
	// `KUBERNETES_SRC=... make kube`): the control plane stays Binary's.
	KubeProxyBinary string
	// Run is the run directory (nil: a new one, removed by Close).
	Run *rundir.Run
	// Log receives progress lines and the kubelets' logs (nil: discard).
	Log io.Writer
	// AddOns run their workloads in pods of their images (the built-in
	// servers otherwise); their manifests are not applied. The cloud
	// load balancer's controller and the ingress controller (nginx for
	// ingress-nginx's images, package addons/ingress) are always
	// registered, as on the embedded plane.
	AddOns []addons.AddOn
	// ExtraArgs are appended to a control-plane component's flags, keyed
	// by its name (kube.ControllerManager: "--kube-api-qps=200").
	ExtraArgs map[string][]string
	// NodeMonitorGracePeriod, when set, is how long the node lifecycle
	// controller waits for a silent node before it marks it and its pods
	// not ready (--node-monitor-grace-period; upstream's default is 50 s),
	// with the kubelets' Lease renewed every fifth of it: for scenarios
	// that pull a node's cable (NodeDown) and should not wait a minute.
	NodeMonitorGracePeriod time.Duration
	// KubeProxyArgs are appended to kube-proxy's flags on every node (the
	// benchmark: --iptables-min-sync-period=0s).
	KubeProxyArgs []string
}

// Cluster is a running kubernetes plane. It implements plane.Plane.
type Cluster struct {
	opts   Options
	run    *rundir.Run
	ownRun bool
	topo   *topology.Topology
	cp     *kube.ControlPlane
	admin  kubernetes.Interface
	// gateway is the Gateway API client of the admin identity, for the
	// Gateway add-on's workloads.
	gateway  gwclient.Interface
	log      io.Writer
	versions map[string]string
	began    time.Time

	// quiet, made once, is the admin's clientset without the API server's
	// warnings (v1 Endpoints is deprecated: every read would say so).
	quietOnce sync.Once
	quiet     kubernetes.Interface

	// md, made once by DeleteNamespace, deletes objects of any kind.
	mdOnce sync.Once
	md     metadata.Interface
	mdErr  error

	kubelets []*kubelet.Kubelet
	// cloud is the simulated cloud load balancer (namespace
	// <run>-cloud-lb); its controller runs as a pod of the
	// svcsim-lb-controller Deployment in kube-system.
	cloud *loadbalancer.Cloud
	// kubeletConns holds each node's kubelet's connections to the API
	// server (RemoveNode closes them).
	kubeletConns map[string]*connSet

	// proxyMu guards datapath and proxies (nil for a node whose proxy was
	// killed or stopped).
	proxyMu  sync.Mutex
	datapath modes.Datapath
	proxies  map[string]nodeProxy
	// proxyVersion is what the running kube-proxy's binary reports.
	proxyVersion string
	// binMu guards k8sProxyBin, the binary bin/k8s's datapaths run
	// kube-proxy from ("": the control plane's): Options.KubeProxyBinary,
	// or the last SetKubeProxyBinary's. (kindOf reads it, also under
	// proxyMu.)
	binMu       sync.Mutex
	k8sProxyBin string
	// lost names the nodes NodeDown took off the network (under proxyMu):
	// the barrier does not wait for their kube-proxy.
	lost map[string]bool

	barrierMu  sync.Mutex
	barrierGen int
	// barrierIPMu guards barrierIP, the barrier Service's ClusterIP once
	// it exists (Dump leaves it out).
	barrierIPMu sync.Mutex
	barrierIP   string

	// kubeconfigMu serialises writing the per-namespace kubeconfigs.
	kubeconfigMu sync.Mutex

	closeOnce sync.Once
	closeErr  error
}

var _ plane.Plane = (*Cluster)(nil)

// Start builds the topology (nodes, the external client, the
// control-plane namespace and the cloud load balancer's), starts the
// genuine control plane, one svcsim kubelet per node (spec.podCIDR
// 10.244.<i>.0/24), the genuine kube-proxy on every node, the simulated
// cloud load balancer (package addons/loadbalancer: its API and prober in
// <run>-cloud-lb, its controller as the svcsim-lb-controller Deployment in
// kube-system, writing status.loadBalancer through the API server as a
// cloud controller manager's service controller does) and CoreDNS as the
// kube-dns Deployment, and returns once every node is Ready and cluster
// DNS is programmed. On error everything
// made so far is removed.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if o.Nodes == 0 {
		o.Nodes = 2
	}
	if o.Datapath == "" {
		o.Datapath = kubeproxy.Default
	}
	dp, err := Get(o.Datapath)
	if err != nil {
		return nil, err
	}
	if o.Binary == "" {
		if o.Binary, _, err = kube.FindBinary(); err != nil {
			return nil, err
		}
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	c := &Cluster{opts: o, run: o.Run, log: &lockedWriter{w: logw}, datapath: dp, proxies: map[string]nodeProxy{}, lost: map[string]bool{}, kubeletConns: map[string]*connSet{}, began: time.Now()}
	if g := o.NodeMonitorGracePeriod; g > 0 {
		extra := map[string][]string{}
		for k, v := range o.ExtraArgs {
			extra[k] = v
		}
		extra[kube.ControllerManager] = append(slices.Clone(extra[kube.ControllerManager]),
			"--node-monitor-grace-period="+g.String(), "--node-monitor-period=1s")
		o.ExtraArgs = extra
	}
	if c.run == nil {
		if c.run, err = rundir.New(); err != nil {
			return nil, fmt.Errorf("create run directory: %w", err)
		}
		c.ownRun = true
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	if c.versions, err = kube.Versions(ctx, o.Binary); err != nil {
		return nil, err
	}
	c.opts = o
	c.k8sProxyBin = o.KubeProxyBinary
	c.proxyVersion = c.versions["kubernetes"]
	bin, err := c.datapathBinary(dp)
	if err != nil {
		return nil, err
	}
	if err := c.setProxyBinary(ctx, bin); err != nil {
		return nil, err
	}
	if bi, err := buildinfo.ReadFile(o.Binary); err == nil {
		c.versions["go"] = bi.GoVersion // the toolchain that built the components
	}
	spec := topology.DefaultSpec(c.run, o.Nodes)
	for i := range spec.Nodes {
		spec.Nodes[i].UserNS = dp.Start.UserNamespace
	}
	spec.ControlPlaneIP = topology.DefaultControlPlaneIP
	spec.LoadBalancerIP, spec.LoadBalancerPool = topology.DefaultLoadBalancerIP, topology.DefaultLoadBalancerPool
	c.logf("run %s: building %d nodes, the control-plane and the cloud load balancer's namespaces", c.run.ID, o.Nodes)
	if c.topo, err = topology.Build(ctx, spec); err != nil {
		return nil, fmt.Errorf("build topology: %w", err)
	}
	if c.cloud, err = loadbalancer.StartCloud(ctx, c.topo.CloudLB(), loadbalancer.CloudConfig{
		Pool: spec.LoadBalancerPool, API: c.cloudAPI().Host, Log: c.log,
	}); err != nil {
		return nil, fmt.Errorf("cloud load balancer: %w", err)
	}
	c.logf("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler")
	if c.cp, err = kube.Start(ctx, kube.Config{Run: c.run, NS: c.topo.ControlPlane(), AdvertiseIP: spec.ControlPlaneIP, Binary: o.Binary, ExtraArgs: o.ExtraArgs}); err != nil {
		return nil, err
	}
	if c.admin, err = clientIn(c.cp.AdminKubeconfig(), c.topo.ControlPlane()); err != nil {
		return nil, err
	}
	if err := c.installGatewayAPI(ctx); err != nil {
		// The plane serves everything else without it; Gateway API
		// objects are then refused by the API server as unknown kinds.
		c.logf("the Gateway API is not installed: %v", err)
	}
	if err := c.startKubelets(ctx, spec); err != nil {
		return nil, err
	}
	for _, n := range spec.Nodes {
		if err := c.startProxy(ctx, n.Name); err != nil {
			return nil, err
		}
	}
	if err := c.waitNodesReady(ctx, len(spec.Nodes)); err != nil {
		return nil, err
	}
	c.logf("nodes Ready after %v; applying kube-dns (CoreDNS %s)", time.Since(c.began).Round(time.Millisecond), c.versions[kube.CoreDNS])
	if err := c.waitServiceAccount(ctx, "default"); err != nil {
		return nil, err
	}
	if _, err := c.Apply(ctx, "kube-system", plane.Text("kube-dns", kubeDNSManifests), plane.Text("load-balancer", loadbalancer.Manifests)); err != nil {
		return nil, fmt.Errorf("apply kube-dns and the load-balancer controller: %w", err)
	}
	if err := c.WaitProgrammed(ctx); err != nil {
		return nil, fmt.Errorf("kube-dns and the load-balancer controller: %w", err)
	}
	c.logf("cluster up after %v", time.Since(c.began).Round(time.Millisecond))
	return c, nil
}

func (c *Cluster) logf(format string, a ...any) {
	fmt.Fprintf(c.log, "kubernetes plane: "+format+"\n", a...)
}

// clientIn is a clientset for kubeconfig whose connections are made from
// inside ns (the API server listens only in the control-plane namespace).
func clientIn(kubeconfig string, ns *netns.NS) (kubernetes.Interface, error) {
	return clientTracked(kubeconfig, ns, nil)
}

// clientTracked is clientIn whose connections conns (when not nil) records.
func clientTracked(kubeconfig string, ns *netns.NS, conns *connSet) (kubernetes.Interface, error) {
	cfg, err := restIn(kubeconfig, ns, conns)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", kubeconfig, err)
	}
	return cs, nil
}

// restIn is the client configuration of kubeconfig whose connections are
// made from inside ns and recorded in conns (when not nil).
func restIn(kubeconfig string, ns *netns.NS, conns *connSet) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := topology.DialContext(ctx, ns, network, addr)
		if err != nil || conns == nil {
			return c, err
		}
		return conns.add(c), nil
	}
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

// quietClient is the admin's clientset that drops the API server's
// warnings (the barrier reads deprecated v1 Endpoints for a proxy that
// does); c.admin when it cannot be made.
func (c *Cluster) quietClient() kubernetes.Interface {
	c.quietOnce.Do(func() {
		c.quiet = c.admin
		cfg, err := restIn(c.cp.AdminKubeconfig(), c.topo.ControlPlane(), nil)
		if err != nil {
			return
		}
		cfg.WarningHandler = rest.NoWarnings{}
		if cs, err := kubernetes.NewForConfig(cfg); err == nil {
			c.quiet = cs
		}
	})
	return c.quiet
}

// cloudAPI is the cloud load balancer's API (on its namespace's
// underlay address).
func (c *Cluster) cloudAPI() *url.URL {
	return &url.URL{Scheme: "http", Host: netip.AddrPortFrom(c.topo.Spec().LoadBalancerIP, loadbalancer.APIPort).String()}
}

func (c *Cluster) startKubelets(ctx context.Context, spec topology.Spec) error {
	reg := addons.NewRegistry()
	// The embedded plane's add-ons: the load-balancer controller (a cloud
	// controller manager's service controller, here a pod reading the
	// genuine API server) and nginx for ingress-nginx's images, reading
	// Ingresses from the API server.
	own := []addons.AddOn{loadbalancer.AddOn(c.cloudAPI().String()), ingress.AddOn(), gateway.AddOn()}
	if err := reg.RegisterAddOns(append(own, c.opts.AddOns...)...); err != nil {
		return err
	}
	fallback := kubelet.Registry(reg)
	workloads := func(pod *corev1.Pod, ct *corev1.Container) (kubelet.Workload, bool) {
		if addons.Repository(ct.Image) == addons.Repository(CoreDNSImage) {
			return c.coreDNSWorkload(), true
		}
		return fallback(pod, ct)
	}
	tn := &kubelet.TopologyNetwork{T: c.topo}
	for _, n := range spec.Nodes {
		kc, err := c.cp.NodeKubeconfig(n.Name)
		if err != nil {
			return err
		}
		node := c.topo.Node(n.Name)
		conns := newConnSet()
		c.kubeletConns[n.Name] = conns
		cs, err := clientTracked(kc, node.NS, conns)
		if err != nil {
			return err
		}
		dial, err := tn.NodeDialer(n.Name)
		if err != nil {
			return err
		}
		var lease time.Duration
		if g := c.opts.NodeMonitorGracePeriod; g > 0 {
			lease = g * 4 / 5 // renewed every quarter: a fifth of the grace period
		}
		k, err := kubelet.Start(ctx, kubelet.Config{
			Client: cs, NodeName: n.Name, NodeIP: n.IP, PodCIDR: n.PodCIDR, Network: tn, Dial: dial, LeaseDuration: lease,
			Dir: c.run.Path("kubelet-" + n.Name), Workloads: workloads, WorkloadClient: c.admin, WorkloadGateway: c.gateway,
			// The embedded plane's layout: <run>/workloads/<ns>_<pod>_<container>.
			WorkloadDir: c.run.Path("workloads"), OnStart: c.run.RecordPID, OnExit: func(pid int) { _ = c.run.ForgetPID(pid) },
			Log: prefixWriter{"kubelet " + n.Name + ": ", c.log}, Version: c.versions["kubernetes"],
		})
		if err != nil {
			return fmt.Errorf("kubelet on %s: %w", n.Name, err)
		}
		c.kubelets = append(c.kubelets, k)
	}
	return nil
}

func (c *Cluster) waitNodesReady(ctx context.Context, want int) error {
	return poll(ctx, 100*time.Millisecond, fmt.Sprintf("%d Ready nodes", want), func() (bool, string, error) {
		nodes, err := c.admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready >= want, fmt.Sprintf("%d Ready", ready), nil
	})
}

// waitServiceAccount waits for namespace's default ServiceAccount: pods of
// a namespace are refused until the controller manager has made it.
func (c *Cluster) waitServiceAccount(ctx context.Context, namespace string) error {
	return poll(ctx, 50*time.Millisecond, "ServiceAccount "+namespace+"/default", func() (bool, string, error) {
		_, err := c.admin.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err), nil
	})
}

// poll calls f every interval until it reports done, fails, or ctx ends
// (then the error names what was waited for and f's last word).
func poll(ctx context.Context, interval time.Duration, what string, f func() (bool, string, error)) error {
	last := ""
	for {
		done, msg, err := f()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		last = msg
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s (%s): %w", what, last, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// Info implements plane.Plane.
func (c *Cluster) Info() plane.Info {
	c.proxyMu.Lock()
	dp := c.datapath
	c.proxyMu.Unlock()
	v := map[string]string{}
	for _, comp := range []string{kube.Etcd, kube.APIServer, kube.ControllerManager, kube.Scheduler, kube.Kubectl} {
		v[comp] = c.versions["kubernetes"]
	}
	c.proxyMu.Lock()
	v[kube.KubeProxy] = c.proxyVersion
	c.proxyMu.Unlock()
	v[kube.Etcd] = c.versions["etcd"]
	v[kube.CoreDNS] = c.versions["coredns"]
	v["kubelet"] = "svcsim " + svcsimVersion()
	if _, own := OwnMode(dp.Name); own {
		// svcsim's node proxy runs instead of kube-proxy.
		delete(v, kube.KubeProxy)
		v["node-proxy"] = "svcsim " + svcsimVersion()
	}
	if c.versions["go"] != "" {
		v["go"] = c.versions["go"]
	}
	if tool := dp.Dump[0]; toolVersion(tool) != "" {
		v[tool] = toolVersion(tool)
	}
	for k, note := range c.datapathNotes(dp) {
		v[k] = note
	}
	return plane.Info{ControlPlane: ControlPlaneName, Datapath: dp.Name, Versions: v, RunID: c.run.ID}
}

// svcsimVersion is the main module's version as the Go toolchain stamped
// it ("(devel)" in a work tree).
func svcsimVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

var (
	toolVersionsMu sync.Mutex
	toolVersions   = map[string]string{}
)

// toolVersion is the first line of `tool --version` ("iptables-save
// v1.8.9 (legacy)", "nftables v1.0.6 (Lester Gooch #5)"): the userspace
// tool kube-proxy programs the kernel with; "" when it does not say.
func toolVersion(tool string) string {
	toolVersionsMu.Lock()
	defer toolVersionsMu.Unlock()
	if v, ok := toolVersions[tool]; ok {
		return v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, "--version").Output()
	v := ""
	if err == nil {
		v, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	toolVersions[tool] = v
	return v
}

// Run is the run directory.
func (c *Cluster) Run() *rundir.Run { return c.run }

// ControlPlane is the genuine control plane (kubeconfigs, kubectl).
func (c *Cluster) ControlPlane() *kube.ControlPlane { return c.cp }

// Topology is the kernel side.
func (c *Cluster) Topology() *topology.Topology { return c.topo }

// Client is an administrator's clientset.
func (c *Cluster) Client() kubernetes.Interface { return c.admin }

// Nodes implements plane.Plane.
func (c *Cluster) Nodes() []plane.Node {
	var out []plane.Node
	for _, n := range c.topo.Nodes() {
		out = append(out, plane.Node{Name: n.Name, IP: n.IP, Gateway: n.Gateway, NS: n.NS})
	}
	return out
}

// Close implements plane.Plane: the node proxies stopped and cleaned up on
// every node (kube-proxy and its --cleanup, or svcsim's node proxies), the kubelets (their pods) and the control plane stopped, the
// topology and the run directory (when Start made it) removed.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		if c.cp != nil && c.topo != nil {
			c.proxyMu.Lock()
			running := c.proxies
			c.proxies = map[string]nodeProxy{}
			dp := c.datapath
			c.proxyMu.Unlock()
			kind := c.kindOf(dp)
			stopped := map[string]bool{}
			for node, p := range running {
				if p != nil {
					if err := p.stop(); err != nil {
						errs = append(errs, fmt.Errorf("stop the proxy on %s: %w", node, err))
					}
					stopped[node] = true
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			for _, n := range c.topo.Nodes() {
				if err := kind.cleanup(ctx, n.Name, stopped[n.Name]); err != nil {
					errs = append(errs, err)
				}
			}
			cancel()
		}
		for _, k := range c.kubelets {
			if err := k.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if c.cloud != nil {
			if err := c.cloud.Close(); err != nil {
				errs = append(errs, fmt.Errorf("stop cloud load balancer: %w", err))
			}
		}
		if c.cp != nil {
			if err := c.cp.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if c.topo != nil {
			if err := c.topo.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if c.ownRun && c.run != nil {
			if err := c.run.Remove(); err != nil {
				errs = append(errs, err)
			}
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type prefixWriter struct {
	prefix string
	w      io.Writer
}

func (p prefixWriter) Write(b []byte) (int, error) {
	var sb strings.Builder
	for line := range strings.Lines(string(b)) {
		sb.WriteString(p.prefix)
		sb.WriteString(line)
	}
	if _, err := io.WriteString(p.w, sb.String()); err != nil {
		return 0, err
	}
	return len(b), nil
}

var _ = os.Getpid

// installGatewayAPI installs the pinned Gateway API module's standard
// CRDs (server-side: the HTTPRoute CRD is larger than client-side apply's
// annotation allows), waits until the API server serves them, and makes
// the Gateway API client the Gateway add-on's workloads get.
func (c *Cluster) installGatewayAPI(ctx context.Context) error {
	start := time.Now()
	crds, err := gateway.CRDs()
	if err != nil {
		return err
	}
	if _, err := c.kubectl(ctx, crds, "apply", "--server-side", "--field-manager=svcsim", "-f", "-"); err != nil {
		return fmt.Errorf("install the Gateway API CRDs: %w", err)
	}
	if _, err := c.kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/gatewayclasses.gateway.networking.k8s.io", "crd/gateways.gateway.networking.k8s.io",
		"crd/httproutes.gateway.networking.k8s.io", "crd/referencegrants.gateway.networking.k8s.io"); err != nil {
		return fmt.Errorf("wait for the Gateway API CRDs: %w", err)
	}
	cfg, err := restIn(c.cp.AdminKubeconfig(), c.topo.ControlPlane(), nil)
	if err != nil {
		return err
	}
	if c.gateway, err = gwclient.NewForConfig(cfg); err != nil {
		return fmt.Errorf("gateway API client: %w", err)
	}
	c.logf("Gateway API %s CRDs established after %v", gateway.ModuleVersion(), time.Since(start).Round(time.Millisecond))
	return nil
}

// RESTConfig is the admin identity's client configuration, its
// connections made from the control plane's namespace (where the API
// server listens), for clients other than client-go's typed one (the
// Gateway API conformance suite's controller-runtime client).
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	return restIn(c.cp.AdminKubeconfig(), c.topo.ControlPlane(), nil)
}
