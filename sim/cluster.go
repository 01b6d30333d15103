// Package sim is svcsim's cluster model: it reads real Kubernetes manifests
// (k8s.io/api types), validates and defaults them as the API server does,
// allocates ClusterIPs, NodePorts and pod addresses, runs the controllers
// that matter for Service networking (Deployment, DaemonSet, scheduler,
// Endpoints) and hands each node an immutable desired state
// (state.NodeState) for its proxy.
//
// Every change is all-or-nothing: it runs on a deep copy of the state which
// replaces the original only when the whole change is valid. Errors read
// like the API server's (`Service "foo" is invalid: spec.ports[0].nodePort:
// ...`). All random choices come from Config.Seed, so a run is reproducible.
//
// It is pure Go: no kernel, no root; package topology and the proxy modes
// turn its output into namespaces and rules.
package sim

import (
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/svcsim/svcsim/sim/state"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Cluster is the simulated cluster. It is safe for concurrent use.
type Cluster struct {
	mu      sync.Mutex
	cfg     Config
	nodes   map[string]*NodeConfig
	created time.Time
	st      *store
}

// ContainerPort is a port a pod's container declares.
type ContainerPort struct {
	Name     string
	Port     int32
	Protocol state.Protocol
}

// Pod is a scheduled pod as the topology needs it.
type Pod struct {
	Namespace, Name string
	Node            string
	// IP is the pod's address: from its node's PodCIDR, or the node's own
	// address for hostNetwork pods.
	IP netip.Addr
	// MAC is the stable MAC of the pod's eth0 (0a:58 + the IPv4 address,
	// like the CNI bridge plugin); nil for hostNetwork pods.
	MAC         net.HardwareAddr
	HostNetwork bool
	Labels      map[string]string
	Ready       bool
	// Ports are the container ports of all containers, in order.
	Ports []ContainerPort
	// Containers are the pod's containers with their images: what runs in
	// the pod is chosen by image (see package addons).
	Containers []Container
	// TargetPorts are the ports Services send this pod to, from every
	// EndpointSlice endpoint (ready or not) whose targetRef is this pod, sorted
	// and without duplicates: a workload that answers on whatever it is sent
	// (the built-in servers) listens on them even when the manifest declares
	// no containerPort, as the seed's do not.
	TargetPorts []ContainerPort
	// Owner is the controlling workload, "deployment/<name>" or
	// "daemonset/<name>", empty for a bare pod.
	Owner   string
	Created time.Time
	// Env is the environment the kubelet gives the pod's containers: the
	// Service variables (see PodEnv) followed by the literal env values of
	// the containers.
	Env []corev1.EnvVar
}

// Container is one container of a pod.
type Container struct {
	Name, Image string
	Ports       []ContainerPort
}

// Key returns "namespace/name".
func (p Pod) Key() string { return p.Namespace + "/" + p.Name }

// New creates an empty cluster with the namespaces every cluster has.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, nodes: map[string]*NodeConfig{}, st: newStore(cfg.Seed)}
	c.created = cfg.now()
	for i := range c.cfg.Nodes {
		n := &c.cfg.Nodes[i]
		c.nodes[n.Name] = n
		c.st.NodeLabels[n.Name] = copyLabels(n.Labels)
	}
	t := c.begin()
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		t.s.Namespaces[ns] = t.newNamespace(ns)
	}
	c.st = t.s
	c.st.Generation = 1
	return c, nil
}

// Config returns the cluster's configuration (node labels as configured;
// see Nodes for the current ones).
func (c *Cluster) Config() Config { return c.cfg }

// Created is when the cluster was created (the nodes' age).
func (c *Cluster) Created() time.Time { return c.created }

// begin starts a change on a copy of the state. Called with mu held.
func (c *Cluster) begin() *txn {
	return &txn{cfg: &c.cfg, nodes: c.nodes, s: c.st.clone(), now: c.cfg.now()}
}

// commit runs the controllers on t and makes it the cluster's state when
// anything changed. Called with mu held.
func (c *Cluster) commit(t *txn) error {
	if err := t.reconcile(); err != nil {
		return err
	}
	// Rejected no-op updates may have advanced the resourceVersion counter;
	// that alone is no change.
	rv := t.s.ResourceVersion
	t.s.ResourceVersion = c.st.ResourceVersion
	if apiequality.Semantic.DeepEqual(c.st, t.s) {
		return nil
	}
	t.s.ResourceVersion = rv
	t.s.Generation = c.st.Generation + 1
	c.st = t.s
	return nil
}

// change runs f on a copy of the state and commits it when f succeeds.
func (c *Cluster) change(f func(t *txn) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.begin()
	if err := f(t); err != nil {
		return err
	}
	return c.commit(t)
}

// Generation increases with every effective change of the cluster.
func (c *Cluster) Generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Generation
}

// Nodes returns the nodes with their current labels.
func (c *Cluster) Nodes() []NodeConfig {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]NodeConfig, 0, len(c.cfg.Nodes))
	for _, n := range c.cfg.Nodes {
		n.Labels = copyLabels(c.st.NodeLabels[n.Name])
		out = append(out, n)
	}
	return out
}

// Pods returns every pod bound to a node (running), sorted by namespace
// and name. Pending pods (no node matches their nodeSelector) are left
// out; PodObjects lists them too.
func (c *Cluster) Pods() []Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Pod
	targets := targetPorts(c.st)
	for _, k := range sortedKeys(c.st.Pods) {
		p := c.st.Pods[k]
		if p.Spec.NodeName == "" || p.Status.PodIP == "" {
			continue
		}
		v := c.podView(p)
		v.TargetPorts = targets[k]
		out = append(out, v)
	}
	return out
}

// targetPorts maps each pod key to the ports EndpointSlices (the
// controllers' and the users') send it to.
func targetPorts(s *store) map[string][]ContainerPort {
	sets := map[string]map[ContainerPort]bool{}
	for _, es := range s.EndpointSlices {
		for _, ep := range es.Endpoints {
			ref := ep.TargetRef
			if ref == nil || ref.Kind != "Pod" {
				continue
			}
			ns := ref.Namespace
			if ns == "" {
				ns = es.Namespace
			}
			k := key(ns, ref.Name)
			if p := s.Pods[k]; p == nil || !slices.Contains(ep.Addresses, p.Status.PodIP) {
				continue
			}
			if sets[k] == nil {
				sets[k] = map[ContainerPort]bool{}
			}
			for _, pt := range es.Ports {
				if pt.Port == nil {
					continue
				}
				proto := corev1.ProtocolTCP
				if pt.Protocol != nil {
					proto = *pt.Protocol
				}
				sets[k][ContainerPort{Port: *pt.Port, Protocol: state.Protocol(proto)}] = true
			}
		}
	}
	out := make(map[string][]ContainerPort, len(sets))
	for k, set := range sets {
		ports := make([]ContainerPort, 0, len(set))
		for p := range set {
			ports = append(ports, p)
		}
		sort.Slice(ports, func(i, j int) bool {
			if ports[i].Port != ports[j].Port {
				return ports[i].Port < ports[j].Port
			}
			return ports[i].Protocol < ports[j].Protocol
		})
		out[k] = ports
	}
	return out
}

func (c *Cluster) podView(p *corev1.Pod) Pod {
	ip, _ := netip.ParseAddr(p.Status.PodIP)
	v := Pod{
		Namespace:   p.Namespace,
		Name:        p.Name,
		Node:        p.Spec.NodeName,
		IP:          ip,
		HostNetwork: p.Spec.HostNetwork,
		Labels:      copyLabels(p.Labels),
		Ready:       podReady(p),
		Owner:       ownerView(c.st.Owner[key(p.Namespace, p.Name)]),
		Created:     p.CreationTimestamp.Time,
	}
	if !p.Spec.HostNetwork && ip.Is4() {
		v.MAC = podMAC(ip)
	}
	for _, ctr := range p.Spec.Containers {
		c := Container{Name: ctr.Name, Image: ctr.Image}
		for _, cp := range ctr.Ports {
			c.Ports = append(c.Ports, ContainerPort{Name: cp.Name, Port: cp.ContainerPort, Protocol: state.Protocol(cp.Protocol)})
		}
		v.Ports = append(v.Ports, c.Ports...)
		v.Containers = append(v.Containers, c)
	}
	v.Env = serviceEnv(c.st, p)
	for _, ctr := range p.Spec.Containers {
		for _, e := range ctr.Env {
			if e.ValueFrom == nil {
				v.Env = append(v.Env, corev1.EnvVar{Name: e.Name, Value: e.Value})
			}
		}
	}
	return v
}

// podMAC is the MAC the CNI bridge plugin derives from an IPv4 address.
func podMAC(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x0a, 0x58, b[0], b[1], b[2], b[3]}
}

// ownerView turns "deployment/ns/name" into "deployment/name".
func ownerView(o string) string {
	kind, _, name := splitOwner(o)
	if kind == "" {
		return ""
	}
	return kind + "/" + name
}

// PodObjects returns every pod (Pending ones included) as the API shows it,
// sorted by namespace and name.
func (c *Cluster) PodObjects() []corev1.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	return listOf(c.st.Pods)
}

// Services returns copies of all Services, sorted.
func (c *Cluster) Services() []corev1.Service {
	c.mu.Lock()
	defer c.mu.Unlock()
	return listOf(c.st.Services)
}

// Endpoints returns copies of all Endpoints, sorted.
func (c *Cluster) Endpoints() []corev1.Endpoints {
	c.mu.Lock()
	defer c.mu.Unlock()
	return listOf(c.st.Endpoints)
}

// Ingresses returns copies of all Ingresses (networking.k8s.io/v1), sorted.
func (c *Cluster) Ingresses() []networkingv1.Ingress {
	c.mu.Lock()
	defer c.mu.Unlock()
	return listOf(c.st.Ingresses)
}

// Deployments returns copies of all Deployments with their status, sorted.
func (c *Cluster) Deployments() []appsv1.Deployment {
	c.mu.Lock()
	defer c.mu.Unlock()
	return listOf(c.st.Deployments)
}

// DaemonSets returns copies of all DaemonSets with their status, sorted.
func (c *Cluster) DaemonSets() []appsv1.DaemonSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return listOf(c.st.DaemonSets)
}

// Namespaces returns copies of all Namespaces, sorted.
func (c *Cluster) Namespaces() []corev1.Namespace {
	c.mu.Lock()
	defer c.mu.Unlock()
	return listOf(c.st.Namespaces)
}

// NodeObjects returns the nodes as corev1.Node (labels, addresses, pod
// CIDR, Ready), sorted by name.
func (c *Cluster) NodeObjects() []corev1.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []corev1.Node
	for _, n := range c.cfg.Nodes {
		out = append(out, c.nodeObject(n))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func listOf[T any, P interface {
	*T
	DeepCopy() P
}](m map[string]P) []T {
	out := make([]T, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, *m[k].DeepCopy())
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Get returns a copy of one object; kind accepts kubectl's names and
// aliases (svc, po, deploy, ds, ep, ns, ing, no).
func (c *Cluster) Get(kind, namespace, name string) (runtime.Object, error) {
	ki, err := lookupKind(kind)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ki.Kind == "Node" {
		for _, n := range c.cfg.Nodes {
			if n.Name == name {
				o := c.nodeObject(n)
				return &o, nil
			}
		}
		return nil, ki.notFound(name)
	}
	o := getObject(c.st, ki, namespaceOr(namespace), name)
	if o == nil {
		return nil, ki.notFound(name)
	}
	return o.DeepCopyObject(), nil
}

// SetPodReady marks a pod ready or not ready (as a failing readiness probe
// would); Endpoints follow.
func (c *Cluster) SetPodReady(namespace, name string, ready bool) error {
	return c.change(func(t *txn) error {
		p := t.s.Pods[key(namespaceOr(namespace), name)]
		if p == nil {
			return kinds["Pod"].notFound(name)
		}
		if podReady(p) != ready {
			setPodReady(p, ready, t.now)
			p.ResourceVersion = t.s.nextRV()
		}
		return nil
	})
}

// SetServiceStatus replaces a Service's status (status.loadBalancer and
// conditions), as PUT .../services/NAME/status does on an API server: the
// spec and metadata are the model's. A load-balancer controller writes its
// addresses here; the proxies then serve them. It returns the Service as
// stored.
func (c *Cluster) SetServiceStatus(namespace, name string, st corev1.ServiceStatus) (*corev1.Service, error) {
	var out *corev1.Service
	err := c.change(func(t *txn) error {
		s := t.s.Services[key(namespaceOr(namespace), name)]
		if s == nil {
			return kinds["Service"].notFound(name)
		}
		for i, in := range st.LoadBalancer.Ingress {
			if in.IP == "" && in.Hostname == "" {
				return kinds["Service"].invalid(name, field.ErrorList{field.Required(
					field.NewPath("status", "loadBalancer", "ingress").Index(i), "must specify an IP or a hostname")})
			}
			if in.IP != "" {
				if a, err := netip.ParseAddr(in.IP); err != nil || !a.Is4() {
					return kinds["Service"].invalid(name, field.ErrorList{field.Invalid(
						field.NewPath("status", "loadBalancer", "ingress").Index(i).Child("ip"), in.IP, "must be a valid IPv4 address")})
				}
			}
		}
		if !apiequality.Semantic.DeepEqual(s.Status, st) {
			s.Status = *st.DeepCopy()
			s.ResourceVersion = t.s.nextRV()
		}
		out = s.DeepCopy()
		return nil
	})
	return out, err
}

func namespaceOr(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}
