// Package kubeview shows the embedded model (package sim) through
// client-go's interfaces: a kubernetes.Interface, built on client-go's fake
// clientset, whose objects the View keeps in step with the model. Add-ons
// (cluster DNS now; the load balancer, the ingress controller and an
// informer-fed node proxy next) read the cluster through informers and
// listers over it, exactly as they would over a real API server's client,
// so each is written once and runs on either control plane.
//
// After every committed change of the model, Sync diffs the model's objects
// against what the view holds and writes the difference (create, update,
// delete), so a watch sees the events a real API server would send. The
// view keeps its own revision, like etcd's: every write gets the next one
// as metadata.resourceVersion, a List returns the current one, and a watch
// started from it sends exactly the events since.
//
// The kinds the model owns (see Resources) are read-only to clients: a
// write fails with 403 Forbidden rather than diverging from the model. The
// exceptions are a Service's status subresource, which a controller (the
// load-balancer add-on) writes as it would through an API server: with a
// StatusWriter set (SetStatusWriter), UpdateStatus of a Service goes to the
// model, whose change then reaches the view like any other; likewise an
// Ingress's status subresource, which the ingress controller writes
// (OnIngressStatus), the Gateway API kinds' status subresources
// (OnGatewayStatus, through GatewayClient, the view's Gateway API
// clientset on the same store), and Services themselves when a
// ServiceWriter is set (the Gateway add-on provisions one per Gateway).
// Other kinds (Events, Leases, ...) can be written and live in the view
// only.
package kubeview

import (
	"fmt"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/svcsim/svcsim/sim"
)

// Model is what the view reads: *sim.Cluster.
type Model interface {
	Generation() uint64
	Namespaces() []corev1.Namespace
	NodeObjects() []corev1.Node
	PodObjects() []corev1.Pod
	Services() []corev1.Service
	Endpoints() []corev1.Endpoints
	EndpointSlices() []discoveryv1.EndpointSlice
	Ingresses() []networkingv1.Ingress
	Deployments() []appsv1.Deployment
	DaemonSets() []appsv1.DaemonSet
	// Stored returns the objects of a kind the model only stores
	// (sim.StoredKinds: ConfigMap, Secret, RBAC, IngressClass, ...).
	Stored(kind string) ([]runtime.Object, bool)
}

var _ Model = (*sim.Cluster)(nil)

// resource is one mirrored kind: its API resource and how to list it.
type resource struct {
	gvr  schema.GroupVersionResource
	kind string
	list func(Model) []runtime.Object
}

func objs[T any, P interface {
	*T
	runtime.Object
}](items []T) []runtime.Object {
	out := make([]runtime.Object, len(items))
	for i := range items {
		out[i] = P(&items[i])
	}
	return out
}

// resources are mirrored in this order (namespaces first); deletions go in
// reverse.
var resources = []resource{
	{corev1.SchemeGroupVersion.WithResource("namespaces"), "Namespace", func(m Model) []runtime.Object { return objs(m.Namespaces()) }},
	{corev1.SchemeGroupVersion.WithResource("nodes"), "Node", func(m Model) []runtime.Object { return objs(m.NodeObjects()) }},
	{corev1.SchemeGroupVersion.WithResource("services"), "Service", func(m Model) []runtime.Object { return objs(m.Services()) }},
	{corev1.SchemeGroupVersion.WithResource("endpoints"), "Endpoints", func(m Model) []runtime.Object { return objs(m.Endpoints()) }},
	{discoveryv1.SchemeGroupVersion.WithResource("endpointslices"), "EndpointSlice", func(m Model) []runtime.Object { return objs(m.EndpointSlices()) }},
	{corev1.SchemeGroupVersion.WithResource("pods"), "Pod", func(m Model) []runtime.Object { return objs(m.PodObjects()) }},
	{appsv1.SchemeGroupVersion.WithResource("deployments"), "Deployment", func(m Model) []runtime.Object { return objs(m.Deployments()) }},
	{appsv1.SchemeGroupVersion.WithResource("daemonsets"), "DaemonSet", func(m Model) []runtime.Object { return objs(m.DaemonSets()) }},
	{networkingv1.SchemeGroupVersion.WithResource("ingresses"), "Ingress", func(m Model) []runtime.Object { return objs(m.Ingresses()) }},
}

// The model's stored kinds follow, in its order.
func init() {
	for _, kind := range sim.StoredKinds() {
		g, v, res, _ := sim.StoredResource(kind)
		resources = append(resources, resource{schema.GroupVersionResource{Group: g, Version: v, Resource: res}, kind,
			func(m Model) []runtime.Object {
				out, _ := m.Stored(kind)
				return out
			}})
	}
}

// List returns the model's objects of kind (a canonical Kind such as
// "Service"), in the model's order, and whether the view mirrors that kind.
func List(m Model, kind string) ([]runtime.Object, bool) {
	for _, r := range resources {
		if r.kind == kind {
			return r.list(m), true
		}
	}
	return nil, false
}

// Resources lists the resources the view mirrors from the model.
func Resources() []schema.GroupVersionResource {
	out := make([]schema.GroupVersionResource, len(resources))
	for i, r := range resources {
		out[i] = r.gvr
	}
	return out
}

// View is the model seen through client-go. It is safe for concurrent use.
type View struct {
	client  *fake.Clientset
	gateway *gwfake.Clientset
	tr      *tracker

	mu     sync.Mutex // serialises Sync
	synced bool
	gen    uint64
	// last holds the model's objects as last mirrored (with the model's
	// own resourceVersions), per resource and "namespace/name".
	last map[schema.GroupVersionResource]map[types.NamespacedName]runtime.Object

	statusMu      sync.Mutex
	status        StatusWriter
	ingressStatus func(namespace, name string, st networkingv1.IngressStatus) error
	gwStatus      func(obj runtime.Object) (runtime.Object, error)
	services      ServiceWriter
}

// ServiceWriter takes a client's writes of Services (not their status)
// into the model: Apply creates or replaces one and returns it as the
// model holds it, Delete removes one. It must not call back into the view.
type ServiceWriter interface {
	Apply(svc *corev1.Service) (*corev1.Service, error)
	Delete(namespace, name string) error
}

// SetServiceWriter routes Service creates, updates and deletes to w (nil:
// refused, 403): a controller that provisions Services (the Gateway
// add-on's) writes them as it would through an API server.
func (v *View) SetServiceWriter(w ServiceWriter) {
	v.statusMu.Lock()
	defer v.statusMu.Unlock()
	v.services = w
}

// OnGatewayStatus makes UpdateStatus of the Gateway API's kinds call w,
// which stores the status in the model and returns the stored object;
// without it they are refused like every write of the model's kinds.
func (v *View) OnGatewayStatus(w func(obj runtime.Object) (runtime.Object, error)) {
	v.statusMu.Lock()
	defer v.statusMu.Unlock()
	v.gwStatus = w
}

// GatewayClient is the view's Gateway API clientset (the same store and
// revisions as Client), for the Gateway add-on's informers.
func (v *View) GatewayClient() gwclient.Interface { return v.gateway }

// StatusWriter writes a Service's status into the model and returns the
// Service as the model holds it afterwards (an API server's answer to
// PUT .../services/NAME/status). It must not call back into the view.
type StatusWriter func(svc *corev1.Service) (*corev1.Service, error)

// SetStatusWriter routes UpdateStatus of Services to w (nil: refused, 403).
func (v *View) SetStatusWriter(w StatusWriter) {
	v.statusMu.Lock()
	defer v.statusMu.Unlock()
	v.status = w
}

// New returns an empty view; Sync fills it.
func New() *View {
	tr := newTracker(Resources())
	cs := fake.NewClientset()
	// Replace the fake's own tracker (built for test fixtures) with ours.
	cs.ReactionChain = nil
	cs.WatchReactionChain = nil
	cs.AddReactor("*", "*", k8stesting.ObjectReaction(tr))
	cs.AddWatchReactor("*", func(action k8stesting.Action) (bool, watch.Interface, error) {
		var opts []metav1.ListOptions
		if wa, ok := action.(k8stesting.WatchActionImpl); ok {
			opts = append(opts, wa.ListOptions)
		}
		w, err := tr.Watch(action.GetResource(), action.GetNamespace(), opts...)
		return true, w, err
	})
	gw := gwfake.NewSimpleClientset()
	gw.ReactionChain = nil
	gw.WatchReactionChain = nil
	gw.AddReactor("*", "*", k8stesting.ObjectReaction(tr))
	gw.AddWatchReactor("*", cs.WatchReactionChain[0].React)
	v := &View{client: cs, gateway: gw, tr: tr, last: map[schema.GroupVersionResource]map[types.NamespacedName]runtime.Object{}}
	gw.PrependReactor("update", "*", func(action k8stesting.Action) (bool, runtime.Object, error) {
		ua, ok := action.(k8stesting.UpdateAction)
		if !ok || action.GetSubresource() != "status" {
			return false, nil, nil
		}
		v.statusMu.Lock()
		w := v.gwStatus
		v.statusMu.Unlock()
		if w == nil {
			return false, nil, nil
		}
		out, err := w(ua.GetObject().DeepCopyObject())
		return true, out, err
	})
	// Service writes (not status) go to the model when a writer is set.
	for _, verb := range []string{"create", "update", "delete"} {
		cs.PrependReactor(verb, "services", func(action k8stesting.Action) (bool, runtime.Object, error) {
			if action.GetSubresource() != "" {
				return false, nil, nil
			}
			v.statusMu.Lock()
			w := v.services
			v.statusMu.Unlock()
			if w == nil {
				return false, nil, nil
			}
			if a, ok := action.(k8stesting.DeleteAction); ok && action.GetVerb() == "delete" {
				return true, nil, w.Delete(a.GetNamespace(), a.GetName())
			}
			if a, ok := action.(k8stesting.CreateAction); ok {
				svc, ok := a.GetObject().(*corev1.Service)
				if !ok {
					return true, nil, fmt.Errorf("%s services: want a Service, got %T", verb, a.GetObject())
				}
				svc = svc.DeepCopy()
				if svc.Namespace == "" {
					svc.Namespace = a.GetNamespace()
				}
				out, err := w.Apply(svc)
				return true, out, err
			}
			return false, nil, nil
		})
	}
	cs.PrependReactor("update", "services", func(action k8stesting.Action) (bool, runtime.Object, error) {
		ua, ok := action.(k8stesting.UpdateAction)
		if !ok || action.GetSubresource() != "status" {
			return false, nil, nil
		}
		svc, ok := ua.GetObject().(*corev1.Service)
		if !ok {
			return true, nil, fmt.Errorf("update services/status: want a Service, got %T", ua.GetObject())
		}
		v.statusMu.Lock()
		w := v.status
		v.statusMu.Unlock()
		if w == nil {
			return true, nil, tr.refuseOwned(action.GetResource(), svc.Name)
		}
		svc = svc.DeepCopy()
		if svc.Namespace == "" {
			svc.Namespace = action.GetNamespace()
		}
		out, err := w(svc)
		return true, out, err
	})
	// Status writes of Ingresses (the ingress controller's) go to the
	// model, which the next Sync mirrors back.
	cs.PrependReactor("update", "ingresses", func(action k8stesting.Action) (bool, runtime.Object, error) {
		ua, ok := action.(k8stesting.UpdateAction)
		if !ok || action.GetSubresource() != "status" {
			return false, nil, nil
		}
		ing, ok := ua.GetObject().(*networkingv1.Ingress)
		v.statusMu.Lock()
		w := v.ingressStatus
		v.statusMu.Unlock()
		if !ok || w == nil {
			return false, nil, nil
		}
		if err := w(ing.Namespace, ing.Name, ing.Status); err != nil {
			return true, nil, err
		}
		return true, ing, nil
	})
	return v
}

// OnIngressStatus makes the view's Ingress status writes (UpdateStatus)
// call w, which stores them in the model; without it they are refused
// like every write of the model's kinds.
func (v *View) OnIngressStatus(w func(namespace, name string, st networkingv1.IngressStatus) error) {
	v.statusMu.Lock()
	defer v.statusMu.Unlock()
	v.ingressStatus = w
}

// Client is the view's kubernetes.Interface, for informers and listers.
func (v *View) Client() kubernetes.Interface { return v.client }

// Revision is the view's current revision (the resourceVersion a List
// returns now).
func (v *View) Revision() int64 {
	v.tr.mu.Lock()
	defer v.tr.mu.Unlock()
	return v.tr.rev
}

// Close ends every open watch.
func (v *View) Close() { v.tr.stopAll() }

// Sync brings the view in step with m: every object created, changed or
// deleted in the model since the last Sync is written to the view, which
// sends the matching watch events. Nothing happens when m's generation is
// the one last synced.
func (v *View) Sync(m Model) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	// The fake clientset records every action it serves; a long-running
	// view must not.
	v.client.ClearActions()
	var (
		gen   uint64
		lists [][]runtime.Object
	)
	// Each kind is listed on its own; read again if the model moved
	// meanwhile, so that one Sync mirrors one generation.
	for try := 0; try < 3; try++ {
		gen = m.Generation()
		if v.synced && gen == v.gen {
			return nil
		}
		lists = lists[:0]
		for _, r := range resources {
			lists = append(lists, r.list(m))
		}
		if m.Generation() == gen {
			break
		}
	}
	v.tr.mu.Lock()
	defer v.tr.mu.Unlock()
	want := make([]map[types.NamespacedName]runtime.Object, len(resources))
	for i, r := range resources {
		want[i] = map[types.NamespacedName]runtime.Object{}
		have := v.last[r.gvr]
		for _, obj := range lists[i] {
			nn, _, err := nameOf(obj)
			if err != nil {
				return fmt.Errorf("mirror %s: %w", r.gvr.Resource, err)
			}
			want[i][nn] = obj
			if old, ok := have[nn]; ok && apiequality.Semantic.DeepEqual(old, obj) {
				continue
			}
			if err := v.tr.put(r.gvr, obj); err != nil {
				return fmt.Errorf("mirror %s %s: %w", r.gvr.Resource, nn, err)
			}
		}
	}
	for i := len(resources) - 1; i >= 0; i-- {
		r := resources[i]
		for nn := range v.last[r.gvr] {
			if _, ok := want[i][nn]; ok {
				continue
			}
			if err := v.tr.remove(r.gvr, nn); err != nil {
				return fmt.Errorf("mirror deletion of %s %s: %w", r.gvr.Resource, nn, err)
			}
		}
		v.last[r.gvr] = want[i]
	}
	v.gen, v.synced = gen, true
	return nil
}
