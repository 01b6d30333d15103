// Package addons is the seam between a control plane and what runs in its
// pods. A Registry, keyed by container image, decides which Workload a
// container runs: the built-in getip/echo servers for ordinary images,
// cluster DNS for the kube-dns Deployment's image, and whatever an AddOn
// registers. An AddOn is the objects it applies to the cluster (a
// Deployment and its Service, say) plus the workloads for their images;
// the control plane applies the objects like any manifest and, when a pod
// of one of those images starts, starts the workload with the pod's
// network namespace and the cluster's client-go interface, and stops it
// when the pod goes. Nothing in a workload knows which control plane, and
// so which client (the embedded model's list/watch view or a real API
// server's), it has.
//
// Image keys are repositories without tag or digest, as a container
// runtime resolves them. The known ones:
//
//	svcsim/clusterdns, registry.k8s.io/coredns/coredns   cluster DNS (package addons/clusterdns)
//	registry.k8s.io/ingress-nginx/controller,
//	quay.io/kubernetes-ingress-controller/nginx-ingress-controller
//	                                                     nginx as the ingress controller (package addons/ingress)
//	svcsim/gateway-nginx                                 nginx as the Gateway API controller (package addons/gateway)
//	registry.k8s.io/gateway-api/echo-basic,
//	gcr.io/k8s-staging-gateway-api/echo-basic           the Gateway API conformance tests' echo backend (package addons/gateway)
//	anything else                                        the built-in servers (Builtin)
package addons

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"k8s.io/client-go/kubernetes"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/sim/state"
	"github.com/svcsim/svcsim/topology"
)

// Env is what a workload is given when its pod starts.
type Env struct {
	// Pod is the pod it runs in (the container is Pod.Containers[Container]).
	Pod       sim.Pod
	Container int
	// NS is the pod's network namespace: sockets a workload opens inside it
	// (NS.Do) stay there.
	NS Namespace
	// Client reads (and, for kinds the plane lets it, writes) the cluster.
	Client kubernetes.Interface
	// Gateway is the Gateway API's clientset on the same cluster (nil
	// where the plane has none).
	Gateway gwclient.Interface
	// Log receives the workload's progress and error lines.
	Log io.Writer
	// Dir is a directory of the run for the workload's files, its own
	// (named after the pod and container, created by the plane); the
	// workload removes what it wrote when it stops, and the run's removal
	// takes whatever a crash left. Empty: the plane gives none.
	Dir string
	// OnStart, when set, records a process the workload started, so that
	// `svcsim down` finds it after a crash; OnExit forgets it.
	OnStart func(pid int) error
	OnExit  func(pid int)
}

// Namespace is a network namespace to open sockets in; *netns.NS is one.
type Namespace interface {
	// Do runs f with the calling goroutine's thread in the namespace.
	Do(f func() error) error
	// Name names it in errors.
	Name() string
}

var _ Namespace = (*netns.NS)(nil)

// Instance is a running workload.
type Instance interface {
	// Stop ends it and releases everything it holds (sockets, goroutines).
	Stop() error
}

// Workload is what runs in a container of some image.
type Workload struct {
	// Name is for logs and errors ("builtin", "clusterdns").
	Name string
	// Ports returns the ports the workload serves in container c of pod p:
	// what a pod view reports as served, and, for the built-in servers,
	// where topology's servers listen.
	Ports func(p sim.Pod, c sim.Container) []topology.Port
	// Start runs the workload in its pod. Nil means the pod's built-in
	// servers (started by topology with the pod) serve Ports.
	Start func(ctx context.Context, env Env) (Instance, error)
}

// Builtin is the workload of every image the registry does not know:
// topology's getip/echo servers (package topology/podserver), listening on
// the container's declared ports and on every port a Service sends the pod
// to, so that manifests that omit containerPort (as the seed's do) answer.
var Builtin = Workload{
	Name: "builtin",
	Ports: func(p sim.Pod, c sim.Container) []topology.Port {
		var out []topology.Port
		for _, cp := range c.Ports {
			out = append(out, port(cp))
		}
		for _, tp := range p.TargetPorts {
			out = append(out, port(tp))
		}
		return normalize(out)
	},
}

func port(cp sim.ContainerPort) topology.Port {
	proto := string(cp.Protocol)
	if proto == "" {
		proto = string(state.TCP)
	}
	return topology.Port{Port: cp.Port, Protocol: proto}
}

// normalize sorts ports by number and protocol, fills the default
// protocol, and drops zero ports and duplicates.
func normalize(ports []topology.Port) []topology.Port {
	seen := map[topology.Port]bool{}
	var out []topology.Port
	for _, p := range ports {
		if p.Protocol == "" {
			p.Protocol = string(state.TCP)
		}
		if p.Port <= 0 || seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Port != out[j].Port {
			return out[i].Port < out[j].Port
		}
		return out[i].Protocol < out[j].Protocol
	})
	return out
}

// Repository strips an image reference's tag and digest:
// "registry.k8s.io/coredns/coredns:v1.12.0" -> "registry.k8s.io/coredns/coredns".
func Repository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	// A colon after the last slash starts a tag; one before it is a
	// registry's port.
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}

// Registry maps image repositories to workloads. The zero value is not
// usable; NewRegistry makes one.
type Registry struct {
	byRepo map[string]Workload
}

// NewRegistry returns a registry that runs Builtin for every image.
func NewRegistry() *Registry { return &Registry{byRepo: map[string]Workload{}} }

// Register makes repo's containers run w. Registering a repository twice is
// an error.
func (r *Registry) Register(repo string, w Workload) error {
	if repo == "" || repo != Repository(repo) {
		return fmt.Errorf("register workload %s: image key %q is not a repository without tag or digest", w.Name, repo)
	}
	if w.Ports == nil {
		return fmt.Errorf("register workload %s for %s: no Ports", w.Name, repo)
	}
	if old, ok := r.byRepo[repo]; ok {
		return fmt.Errorf("register workload %s: image %s already runs %s", w.Name, repo, old.Name)
	}
	r.byRepo[repo] = w
	return nil
}

// Lookup returns the workload for image (Builtin when none is registered).
func (r *Registry) Lookup(image string) Workload {
	if w, ok := r.byRepo[Repository(image)]; ok {
		return w
	}
	return Builtin
}

// Plan is what runs in one pod.
type Plan struct {
	// ServerPorts are where the pod's built-in servers listen
	// (topology.PodSpec.Ports); empty when no container runs them.
	ServerPorts []topology.Port
	// Serves is every port the pod's workloads serve.
	Serves []topology.Port
	// Starts are the containers whose workload has its own Start, in
	// container order.
	Starts []Start
}

// Start is one container's workload to start.
type Start struct {
	Container int
	Workload  Workload
}

// Plan decides what runs in p. The ports Services send the pod to go to
// its built-in servers only where no other workload of the pod serves them
// (the DNS pod's port 53 is its DNS server's).
func (r *Registry) Plan(p sim.Pod) Plan {
	var plan Plan
	own := map[topology.Port]bool{}
	var builtin []int
	for i, c := range p.Containers {
		w := r.Lookup(c.Image)
		if w.Start == nil {
			builtin = append(builtin, i)
			continue
		}
		plan.Starts = append(plan.Starts, Start{Container: i, Workload: w})
		for _, pt := range w.Ports(p, c) {
			own[pt] = true
			plan.Serves = append(plan.Serves, pt)
		}
	}
	if len(p.Containers) == 0 {
		builtin = []int{-1}
	}
	for _, i := range builtin {
		var c sim.Container
		if i >= 0 {
			c = p.Containers[i]
		}
		for _, pt := range Builtin.Ports(p, c) {
			if !own[pt] {
				plan.ServerPorts = append(plan.ServerPorts, pt)
			}
		}
	}
	plan.ServerPorts = normalize(plan.ServerPorts)
	plan.Serves = normalize(append(plan.Serves, plan.ServerPorts...))
	return plan
}

// AddOn is a cluster add-on: objects applied when the cluster starts and
// the workloads their pods run.
type AddOn struct {
	// Name names the add-on in errors ("cluster-dns").
	Name string
	// Manifests are YAML documents applied to the cluster as they are.
	Manifests []byte
	// Workloads are registered by image repository.
	Workloads map[string]Workload
}

// RegisterAddOns registers every add-on's workloads in r.
func (r *Registry) RegisterAddOns(addOns ...AddOn) error {
	for _, a := range addOns {
		repos := make([]string, 0, len(a.Workloads))
		for repo := range a.Workloads {
			repos = append(repos, repo)
		}
		sort.Strings(repos)
		for _, repo := range repos {
			if err := r.Register(repo, a.Workloads[repo]); err != nil {
				return fmt.Errorf("add-on %s: %w", a.Name, err)
			}
		}
	}
	return nil
}
