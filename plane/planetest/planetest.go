// Package planetest is an asynchronous fake plane for unit tests: the
// embedded model (package sim) accepts changes at once, as on every
// plane, and a fake datapath per node "programs" each node's desired state
// only after a delay. A test that reads the programmed state (what a
// packet would meet) right after a change, without plane.WaitProgrammed,
// sees the old state: the fake makes a forgotten barrier fail. It needs no
// root and has no kernel side (no namespaces: NS handles are nil).
package planetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/embedded"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/sim/state"
	"github.com/svcsim/svcsim/topology"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// ErrNoKernel is returned by the methods that need a kernel side.
var ErrNoKernel = errors.New("planetest: the fake plane has no kernel side")

// Fake is a plane.Plane over the model whose nodes program their state
// Delay after each change.
type Fake struct {
	Delay   time.Duration
	cluster *sim.Cluster

	mu         sync.Mutex
	programmed map[string]*state.NodeState // by node
	stopped    map[string]bool             // nodes whose proxy is down
	progress   chan struct{}               // closed and replaced on every programming
	kick       chan struct{}
	lastChange time.Time // when the newest change was accepted
	stop       context.CancelFunc
	done       chan struct{}
}

var _ plane.Plane = (*Fake)(nil)

// New starts a fake plane of nodes nodes whose programming lags each
// change by delay. Close stops it.
func New(nodes int, delay time.Duration) (*Fake, error) {
	cl, err := sim.New(sim.DefaultConfig(nodes))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fake{Delay: delay, cluster: cl, programmed: map[string]*state.NodeState{}, stopped: map[string]bool{},
		progress: make(chan struct{}), kick: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
	go f.programmer(ctx)
	f.wake()
	return f, nil
}

// Programmed is the state node's fake datapath holds now: what a packet
// arriving there would meet (nil before its first programming).
func (f *Fake) Programmed(node string) *state.NodeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.programmed[node]
}

func (f *Fake) wake() {
	f.mu.Lock()
	f.lastChange = time.Now()
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// programmer programs every running node, Delay after being woken.
func (f *Fake) programmer(ctx context.Context) {
	defer close(f.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.kick:
		}
		// Every change is programmed no sooner than Delay after it, even
		// one made while an earlier change's delay was running.
		for {
			f.mu.Lock()
			wait := f.Delay - time.Since(f.lastChange)
			f.mu.Unlock()
			if wait <= 0 {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		f.mu.Lock()
		for _, n := range f.cluster.Nodes() {
			if !f.stopped[n.Name] {
				f.programmed[n.Name] = f.cluster.NodeState(n.Name)
			}
		}
		close(f.progress)
		f.progress = make(chan struct{})
		f.mu.Unlock()
	}
}

// Info implements plane.Plane.
func (f *Fake) Info() plane.Info {
	return plane.Info{ControlPlane: "planetest", Datapath: "fake", RunID: "planetest"}
}

// Apply implements plane.Plane.
func (f *Fake) Apply(_ context.Context, namespace string, ms ...plane.Manifest) ([]string, error) {
	objs, err := embedded.Decode(namespace, ms...)
	if err != nil {
		return nil, err
	}
	out, err := f.cluster.Apply(objs)
	if err == nil {
		f.wake()
	}
	return out, err
}

func (f *Fake) change(err error) error {
	if err == nil {
		f.wake()
	}
	return err
}

// Patch implements plane.Plane.
func (f *Fake) Patch(_ context.Context, r plane.Ref, patch []byte) error {
	return f.change(f.cluster.Patch(r.Kind, r.Namespace, r.Name, patch))
}

// Scale implements plane.Plane.
func (f *Fake) Scale(_ context.Context, r plane.Ref, replicas int32) error {
	return f.change(f.cluster.Scale(r.Kind, r.Namespace, r.Name, replicas))
}

// Delete implements plane.Plane.
func (f *Fake) Delete(_ context.Context, r plane.Ref) error {
	return f.change(f.cluster.Delete(r.Kind, r.Namespace, r.Name))
}

// Label implements plane.Plane.
func (f *Fake) Label(_ context.Context, r plane.Ref, l map[string]string) error {
	return f.change(f.cluster.Label(r.Kind, r.Namespace, r.Name, l))
}

// SetPodReady implements plane.Plane.
func (f *Fake) SetPodReady(_ context.Context, namespace, name string, ready bool) error {
	return f.change(f.cluster.SetPodReady(namespace, name, ready))
}

// WaitProgrammed implements plane.Plane: every running node holds the
// model's generation at the call, or a later one.
func (f *Fake) WaitProgrammed(ctx context.Context) error {
	want := f.cluster.Generation()
	for {
		f.mu.Lock()
		ok := true
		for _, n := range f.cluster.Nodes() {
			if st := f.programmed[n.Name]; !f.stopped[n.Name] && (st == nil || st.Generation < want) {
				ok = false
			}
		}
		progress := f.progress
		f.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-progress:
		case <-f.done:
			return errors.New("planetest: closed")
		case <-ctx.Done():
			return fmt.Errorf("wait for generation %d: %w", want, ctx.Err())
		}
	}
}

// Get implements plane.Plane.
func (f *Fake) Get(_ context.Context, r plane.Ref) (runtime.Object, error) {
	return f.cluster.Get(r.Kind, r.Namespace, r.Name)
}

// List implements plane.Plane for pods and services.
func (f *Fake) List(_ context.Context, kind, namespace, selector string) ([]runtime.Object, error) {
	k, err := sim.CanonicalKind(kind)
	if err != nil {
		return nil, err
	}
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, err
	}
	if namespace == "" {
		namespace = "default"
	}
	var all []runtime.Object
	switch k {
	case "Pod":
		for _, o := range f.cluster.PodObjects() {
			all = append(all, &o)
		}
	case "Service":
		for _, o := range f.cluster.Services() {
			all = append(all, &o)
		}
	default:
		return nil, fmt.Errorf("planetest: list %s not supported", kind)
	}
	var out []runtime.Object
	for _, o := range all {
		m, _ := meta.Accessor(o)
		if m.GetNamespace() == namespace && sel.Matches(labels.Set(m.GetLabels())) {
			out = append(out, o)
		}
	}
	return out, nil
}

// Nodes implements plane.Plane (without namespaces).
func (f *Fake) Nodes() []plane.Node {
	var out []plane.Node
	for _, n := range f.cluster.Nodes() {
		out = append(out, plane.Node{Name: n.Name, IP: n.IP})
	}
	return out
}

// Pods implements plane.Plane (without namespaces).
func (f *Fake) Pods(_ context.Context, namespace string) ([]plane.Pod, error) {
	var out []plane.Pod
	for _, p := range f.cluster.Pods() {
		if namespace == "" || p.Namespace == namespace {
			out = append(out, plane.Pod{Namespace: p.Namespace, Name: p.Name, Node: p.Node, IP: p.IP,
				HostNetwork: p.HostNetwork, Ready: p.Ready, Labels: p.Labels})
		}
	}
	return out, nil
}

// Target implements plane.Plane: pods' environment, no namespace.
func (f *Fake) Target(_ context.Context, namespace, name string) (plane.Target, error) {
	if _, err := f.cluster.Get("pod", namespace, name); err != nil {
		return plane.Target{}, err
	}
	t := plane.Target{Name: name}
	for _, e := range f.cluster.PodEnv(namespace, name) {
		t.Env = append(t.Env, e.Name+"="+e.Value)
	}
	return t, nil
}

// Dump implements plane.Plane: node's programmed state as JSON.
func (f *Fake) Dump(_ context.Context, node string) (string, error) {
	b, err := json.MarshalIndent(f.Programmed(node), "", "  ")
	return string(b), err
}

// AddHost implements plane.Plane: not supported.
func (f *Fake) AddHost(context.Context, string, netip.Addr, []topology.Port) (*netns.NS, error) {
	return nil, ErrNoKernel
}

// RemoveHost implements plane.Plane: not supported.
func (f *Fake) RemoveHost(context.Context, string) error { return ErrNoKernel }

// StopPodServers implements plane.Plane: not supported.
func (f *Fake) StopPodServers(context.Context, string, string) error { return ErrNoKernel }

// KillProxy implements plane.Plane: node stops programming and keeps
// what it holds.
func (f *Fake) KillProxy(_ context.Context, node string) error {
	return f.setStopped(node, true, false)
}

// StopProxy implements plane.Plane: node stops programming and forgets
// its state.
func (f *Fake) StopProxy(_ context.Context, node string) error { return f.setStopped(node, true, true) }

// StartProxy implements plane.Plane.
func (f *Fake) StartProxy(_ context.Context, node string) error {
	err := f.setStopped(node, false, false)
	f.wake()
	return err
}

// SetDatapath implements plane.Plane: not supported.
func (f *Fake) SetDatapath(context.Context, string) error { return ErrNoKernel }

// NodeDown implements plane.Plane: the model marks node lost and its fake
// datapath stops programming (a cut link gets no changes).
func (f *Fake) NodeDown(_ context.Context, node string) error {
	if err := f.setStopped(node, true, false); err != nil {
		return err
	}
	err := f.cluster.SetNodeReady(node, false)
	f.wake()
	return err
}

// NodeUp implements plane.Plane.
func (f *Fake) NodeUp(_ context.Context, node string) error {
	if err := f.cluster.SetNodeReady(node, true); err != nil {
		return err
	}
	err := f.setStopped(node, false, false)
	f.wake()
	return err
}

// RemoveNode implements plane.Plane: the model deletes node and its pods.
func (f *Fake) RemoveNode(_ context.Context, node string) error {
	if err := f.setStopped(node, true, true); err != nil {
		return err
	}
	err := f.cluster.DeleteNode(node)
	f.wake()
	return err
}

func (f *Fake) setStopped(node string, stopped, forget bool) error {
	if _, err := f.cluster.Get("node", "", node); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped[node] = stopped
	if forget {
		delete(f.programmed, node)
	}
	return nil
}

// Close stops the programmer.
func (f *Fake) Close() error {
	f.stop()
	<-f.done
	return nil
}

// Endpoints lists the endpoint IPs node's programmed state holds for
// Service ns/name (every port), sorted as programmed.
func Endpoints(st *state.NodeState, ns, name string) []netip.Addr {
	if st == nil {
		return nil
	}
	var out []netip.Addr
	for _, sp := range st.Services {
		if sp.Namespace == ns && sp.Name == name {
			for _, ep := range sp.Endpoints {
				out = append(out, ep.IP)
			}
		}
	}
	return out
}
