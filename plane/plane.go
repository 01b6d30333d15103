// Package plane is the seam between what drives a simulated cluster (the
// scenarios, the CLI daemon, the bench) and the control plane that runs it:
// the embedded model (package plane/embedded) or, later, genuine
// Kubernetes components with svcsim as every node's kubelet.
//
// Changes return once the control plane has accepted them (validated and
// stored, as an API server answers). They take effect in the kernel later:
// WaitProgrammed is the barrier that returns once every node's proxy has
// programmed a state that includes every change accepted before the call.
// Code that sends traffic after a change calls the barrier first; it never
// relies on a change returning late.
//
// Reads return k8s.io/api typed objects. The kernel side (nodes, pods and
// the external client as network namespaces) is svcsim's own on every
// plane, so handles to those namespaces are part of the interface.
package plane

import (
	"context"
	"net/netip"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/topology"
	"k8s.io/apimachinery/pkg/runtime"
)

// DNSServiceIP is the kube-dns Service's ClusterIP on every plane
// (kubeadm's default, 10.96.0.10 in the 10.96.0.0/12 service range).
const DNSServiceIP = "10.96.0.10"

// ExternalTarget is the Target name of the outside client's namespace.
const ExternalTarget = "external"

// Plane drives one running cluster. Implementations are safe for
// concurrent use.
type Plane interface {
	// Info names the control plane, the datapath its proxies run and the
	// versions of its components, for results.
	Info() Info

	// Apply creates or updates the objects of manifests, all or nothing, as
	// `kubectl apply -n namespace -f` does: namespaced objects without a
	// namespace go into namespace ("" is "default"). It returns kubectl's
	// line per object ("service/getip-service created").
	Apply(ctx context.Context, namespace string, manifests ...Manifest) ([]string, error)
	// Patch applies a strategic merge patch (JSON or YAML) to one object.
	Patch(ctx context.Context, ref Ref, patch []byte) error
	// Scale sets a Deployment's replicas.
	Scale(ctx context.Context, ref Ref, replicas int32) error
	// Delete removes an object; a Namespace takes everything in it along.
	Delete(ctx context.Context, ref Ref) error
	// Label sets labels ("key" to "value") or removes them ("key-" to "").
	Label(ctx context.Context, ref Ref, labels map[string]string) error
	// SetPodReady marks a pod ready or not ready, as its readiness probe
	// would; its endpoints follow.
	SetPodReady(ctx context.Context, namespace, name string, ready bool) error

	// WaitProgrammed returns once every change accepted before the call is
	// in effect: the pods it made run, the pods it removed are gone, and
	// every node's running proxy has programmed a state that includes it.
	// A node whose proxy was killed or stopped is not waited for. It
	// returns the error that kept a change from being programmed, or ctx's.
	WaitProgrammed(ctx context.Context) error

	// Get returns one object (a pointer to its k8s.io/api type); kind takes
	// kubectl's names and aliases (svc, po, deploy, ...).
	Get(ctx context.Context, ref Ref) (runtime.Object, error)
	// List returns the objects of one kind in namespace ("" is "default";
	// cluster-scoped kinds ignore it) matching a label selector ("" is
	// everything), sorted by namespace and name.
	List(ctx context.Context, kind, namespace, selector string) ([]runtime.Object, error)

	// Nodes are the cluster's nodes with their namespaces.
	Nodes() []Node
	// Pods are the running pods of namespace ("" is every namespace) with
	// their network namespaces, sorted by namespace and name.
	Pods(ctx context.Context, namespace string) ([]Pod, error)
	// Target resolves where `exec` runs: ExternalTarget, a node's name, or
	// a pod's name in namespace ("" is "default").
	Target(ctx context.Context, namespace, name string) (Target, error)
	// Dump returns node's datapath state as the datapath's own tool prints
	// it (iptables-save, nft list ruleset, ipvsadm -Ln, ...).
	Dump(ctx context.Context, node string) (string, error)
	// AddHost creates a host outside the cluster on the underlay at ip
	// (the seed's database behind a selectorless Service) whose echo
	// servers listen on ports; RemoveHost removes it.
	AddHost(ctx context.Context, name string, ip netip.Addr, ports []topology.Port) (*netns.NS, error)
	RemoveHost(ctx context.Context, name string) error

	// StopPodServers stops the servers of a pod, as if its process died,
	// while the pod stays listed (and ready) in the API.
	StopPodServers(ctx context.Context, namespace, name string) error
	// KillProxy kills node's proxy as a crash would: its kernel state
	// stays. StopProxy stops it the way its operator would and removes
	// everything it programmed (svcsim's proxies clean up on exit; the
	// genuine kube-proxy runs --cleanup). StartProxy starts node's proxy
	// again; WaitProgrammed then waits for it too.
	KillProxy(ctx context.Context, node string) error
	StopProxy(ctx context.Context, node string) error
	StartProxy(ctx context.Context, node string) error
	// SetDatapath switches every node to the datapath name: the running
	// proxies are stopped (cleaning up), the leftovers of a killed one are
	// removed (`kube-proxy --cleanup`), and name's proxy starts on every
	// node; WaitProgrammed then waits for them.
	SetDatapath(ctx context.Context, name string) error

	// NodeDown takes node off the network as a crash or a pulled cable
	// would: its link to the underlay is cut, while its proxy and pods
	// keep running unseen. The control plane handles it as Kubernetes'
	// node lifecycle controller does: the Node's Ready condition turns
	// Unknown, it is tainted unreachable (nothing new is scheduled there)
	// and its pods are marked not ready, so their endpoints leave every
	// proxy's rules. A lost node's proxy gets no further changes and the
	// barrier does not wait for it. NodeUp restores the link and the node.
	NodeDown(ctx context.Context, node string) error
	NodeUp(ctx context.Context, node string) error
	// RemoveNode tears node down for good (its proxy, its pods, its
	// namespace) and deletes the Node: its pods are deleted and their
	// workloads replace them on the remaining nodes.
	RemoveNode(ctx context.Context, node string) error

	// Close tears the cluster down: proxies stopped (cleaning up),
	// namespaces and the run directory removed. Safe to call twice.
	Close() error
}

// Manifest is manifest text (YAML or JSON, possibly several documents) with
// the name it came from: a file's path, "-" for standard input, or a name
// of the caller's choosing. It crosses process boundaries as it is.
type Manifest struct {
	Source string `json:"source"`
	Data   []byte `json:"data"`
}

// Ref names one object as kubectl's `TYPE NAME -n NAMESPACE` does.
type Ref struct {
	// Kind is a kind or one of kubectl's resource names and aliases.
	Kind string
	// Namespace ("" is "default"); ignored for cluster-scoped kinds.
	Namespace string
	Name      string
}

// Info describes a running plane for results and the CLI.
type Info struct {
	// ControlPlane is "embedded" (svcsim's model) or "kubernetes".
	ControlPlane string `json:"controlPlane"`
	// Datapath is the proxies' datapath as they report it
	// ("iptables/nft", "nftables", ...).
	Datapath string `json:"datapath"`
	// Versions maps component names to their versions.
	Versions map[string]string `json:"versions,omitempty"`
	// RunID is the run's identity (its namespaces and directory).
	RunID string `json:"runID"`
}

// Node is one node of the cluster.
type Node struct {
	Name string
	IP   netip.Addr
	// Gateway is the node's address on its pod bridge (cni0).
	Gateway netip.Addr
	NS      *netns.NS
}

// Pod is a running pod with its network namespace.
type Pod struct {
	Namespace, Name, Node string
	IP                    netip.Addr
	HostNetwork           bool
	Ready                 bool
	Labels                map[string]string
	// NS is the pod's network namespace (its node's for hostNetwork pods).
	NS *netns.NS
}

// Key is "namespace/name".
func (p Pod) Key() string { return p.Namespace + "/" + p.Name }

// Target is where a command of `exec` runs.
type Target struct {
	// Name is what was asked for ("external", "node1", "default/client").
	Name string
	NS   *netns.NS
	// Env is a pod's environment ("NAME=value": the Service variables
	// and its containers' literal env); empty for nodes and external.
	Env []string
	// ResolvConf is the resolv.conf a pod's dnsPolicy and dnsConfig give it
	// (package sim/podfiles: cluster DNS and search domains for
	// ClusterFirst, dnsConfig alone for None); empty for nodes, external
	// and pods that get none (hostNetwork pods with ClusterFirst).
	ResolvConf string
	// Hosts is the pod's kubelet-managed /etc/hosts (its own names and
	// hostAliases); empty for nodes and external.
	Hosts string
}
