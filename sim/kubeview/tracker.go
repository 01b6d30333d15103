package kubeview

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// listScheme makes the list objects List returns: client-go's kinds and
// the Gateway API's.
var listScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(scheme.AddToScheme(s))
	utilruntime.Must(gwv1.Install(s))
	return s
}()

// historySize is how many recent events the tracker keeps so that a watch
// can start at the revision its list returned (what the API server's watch
// cache does). A watch from an older revision gets 410 Gone, and the
// reflector lists again.
const historySize = 4096

// tracker is the object store behind the fake clientset: a
// k8stesting.ObjectTracker written for list/watch consumers rather than
// for unit-test fixtures. Unlike client-go's own tracker it
//
//   - stamps every write with one cluster-wide revision (etcd's), set as
//     metadata.resourceVersion and returned by List, so list-then-watch
//     neither misses nor repeats an event, deletions included;
//   - queues events per watcher without bound (client-go's fake watcher
//     panics when 100 events are unread, which a large apply would cause);
//   - filters watches by label and field selector (metadata.name,
//     metadata.namespace), and sends ADDED/DELETED when an update moves an
//     object into or out of a label selector, as the API server does;
//   - refuses client writes to kinds the model owns (see View).
type tracker struct {
	mu       sync.Mutex
	objects  map[schema.GroupVersionResource]map[types.NamespacedName]runtime.Object
	rev      int64
	history  []event
	dropped  int64 // revision of the newest event no longer in history
	watchers map[schema.GroupVersionResource]map[*watcher]bool
	// owned are the resources the model writes; clients may only read them.
	owned map[schema.GroupVersionResource]bool
}

type event struct {
	gvr      schema.GroupVersionResource
	typ      watch.EventType
	obj, old runtime.Object // old: the previous state, for Modified
	rev      int64
}

var _ k8stesting.ObjectTracker = (*tracker)(nil)

func newTracker(owned []schema.GroupVersionResource) *tracker {
	t := &tracker{
		objects:  map[schema.GroupVersionResource]map[types.NamespacedName]runtime.Object{},
		watchers: map[schema.GroupVersionResource]map[*watcher]bool{},
		owned:    map[schema.GroupVersionResource]bool{},
		rev:      1,
	}
	for _, gvr := range owned {
		t.owned[gvr] = true
	}
	return t
}

func nameOf(obj runtime.Object) (types.NamespacedName, metav1.Object, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return types.NamespacedName{}, nil, err
	}
	return types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()}, m, nil
}

// put creates or replaces an object (the model's write path). Called with
// mu held.
func (t *tracker) put(gvr schema.GroupVersionResource, obj runtime.Object) error {
	obj = obj.DeepCopyObject()
	nn, m, err := nameOf(obj)
	if err != nil {
		return err
	}
	byName := t.objects[gvr]
	if byName == nil {
		byName = map[types.NamespacedName]runtime.Object{}
		t.objects[gvr] = byName
	}
	t.rev++
	m.SetResourceVersion(strconv.FormatInt(t.rev, 10))
	old, exists := byName[nn]
	byName[nn] = obj
	ev := event{gvr: gvr, typ: watch.Added, obj: obj, rev: t.rev}
	if exists {
		ev.typ, ev.old = watch.Modified, old
	}
	t.record(ev)
	return nil
}

// remove deletes an object. Called with mu held.
func (t *tracker) remove(gvr schema.GroupVersionResource, nn types.NamespacedName) error {
	old, ok := t.objects[gvr][nn]
	if !ok {
		return apierrors.NewNotFound(gvr.GroupResource(), nn.Name)
	}
	delete(t.objects[gvr], nn)
	t.rev++
	// The API server sends the deleted object stamped with the deletion's
	// revision.
	gone := old.DeepCopyObject()
	if m, err := meta.Accessor(gone); err == nil {
		m.SetResourceVersion(strconv.FormatInt(t.rev, 10))
	}
	t.record(event{gvr: gvr, typ: watch.Deleted, obj: gone, rev: t.rev})
	return nil
}

// record keeps ev for late watches and hands it to every watcher of its
// resource. Called with mu held; never blocks.
func (t *tracker) record(ev event) {
	t.history = append(t.history, ev)
	if len(t.history) > 2*historySize {
		cut := len(t.history) - historySize
		t.dropped = t.history[cut-1].rev
		t.history = append([]event(nil), t.history[cut:]...)
	}
	for w := range t.watchers[ev.gvr] {
		w.offer(ev)
	}
}

func (t *tracker) refuseOwned(gvr schema.GroupVersionResource, name string) error {
	if t.owned[gvr] {
		return apierrors.NewForbidden(gvr.GroupResource(), name,
			errors.New("the embedded model owns this resource: its list/watch view is read-only"))
	}
	return nil
}

// Add stores obj as a create would (ObjectTracker's fixture entry point).
func (t *tracker) Add(obj runtime.Object) error {
	gvks, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil {
		return err
	}
	gvr, _ := meta.UnsafeGuessKindToResource(gvks[0])
	_, m, err := nameOf(obj)
	if err != nil {
		return err
	}
	return t.Create(gvr, obj, m.GetNamespace())
}

// Get returns a copy of one object.
func (t *tracker) Get(gvr schema.GroupVersionResource, ns, name string, _ ...metav1.GetOptions) (runtime.Object, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	obj, ok := t.objects[gvr][types.NamespacedName{Namespace: ns, Name: name}]
	if !ok {
		return nil, apierrors.NewNotFound(gvr.GroupResource(), name)
	}
	return obj.DeepCopyObject(), nil
}

// Create stores a new object written by a client.
func (t *tracker) Create(gvr schema.GroupVersionResource, obj runtime.Object, ns string, _ ...metav1.CreateOptions) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	nn, m, err := nameOf(obj)
	if err != nil {
		return err
	}
	if err := t.refuseOwned(gvr, nn.Name); err != nil {
		return err
	}
	if nn.Namespace == "" {
		nn.Namespace = ns
		m.SetNamespace(ns)
	}
	if nn.Namespace != ns {
		return apierrors.NewBadRequest(fmt.Sprintf("the namespace of the object (%s) does not match the namespace of the request (%s)", nn.Namespace, ns))
	}
	if _, exists := t.objects[gvr][nn]; exists {
		return apierrors.NewAlreadyExists(gvr.GroupResource(), nn.Name)
	}
	return t.put(gvr, obj)
}

// Update replaces an object written by a client; a stale
// metadata.resourceVersion is a conflict, as on the API server.
func (t *tracker) Update(gvr schema.GroupVersionResource, obj runtime.Object, ns string, _ ...metav1.UpdateOptions) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.update(gvr, obj, ns)
}

func (t *tracker) update(gvr schema.GroupVersionResource, obj runtime.Object, ns string) error {
	nn, m, err := nameOf(obj)
	if err != nil {
		return err
	}
	if err := t.refuseOwned(gvr, nn.Name); err != nil {
		return err
	}
	if nn.Namespace == "" {
		nn.Namespace = ns
		m.SetNamespace(ns)
	}
	cur, ok := t.objects[gvr][nn]
	if !ok {
		return apierrors.NewNotFound(gvr.GroupResource(), nn.Name)
	}
	if rv := m.GetResourceVersion(); rv != "" {
		if cm, err := meta.Accessor(cur); err == nil && cm.GetResourceVersion() != rv {
			return apierrors.NewConflict(gvr.GroupResource(), nn.Name,
				errors.New("the object has been modified; please apply your changes to the latest version and try again"))
		}
	}
	return t.put(gvr, obj)
}

// Patch stores an object the fake's patch reaction has already patched.
func (t *tracker) Patch(gvr schema.GroupVersionResource, obj runtime.Object, ns string, _ ...metav1.PatchOptions) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.update(gvr, obj, ns)
}

// Apply (server-side apply) is not supported.
func (t *tracker) Apply(gvr schema.GroupVersionResource, _ runtime.Object, _ string, _ ...metav1.PatchOptions) error {
	return apierrors.NewMethodNotSupported(gvr.GroupResource(), "apply")
}

// Delete removes an object written by a client.
func (t *tracker) Delete(gvr schema.GroupVersionResource, ns, name string, _ ...metav1.DeleteOptions) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.refuseOwned(gvr, name); err != nil {
		return err
	}
	return t.remove(gvr, types.NamespacedName{Namespace: ns, Name: name})
}

// selector is a watch's or list's filter.
type selector struct {
	ns     string
	labels labels.Selector
	fields fields.Selector
}

func newSelector(ns string, opts []metav1.ListOptions) (selector, string, error) {
	s := selector{ns: ns, labels: labels.Everything(), fields: fields.Everything()}
	if len(opts) == 0 {
		return s, "", nil
	}
	o := opts[0]
	var err error
	if o.LabelSelector != "" {
		if s.labels, err = labels.Parse(o.LabelSelector); err != nil {
			return s, "", apierrors.NewBadRequest(err.Error())
		}
	}
	if o.FieldSelector != "" {
		if s.fields, err = fields.ParseSelector(o.FieldSelector); err != nil {
			return s, "", apierrors.NewBadRequest(err.Error())
		}
	}
	return s, o.ResourceVersion, nil
}

func (s selector) matches(obj runtime.Object) bool {
	if obj == nil {
		return false
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return false
	}
	if s.ns != "" && m.GetNamespace() != s.ns {
		return false
	}
	return s.labels.Matches(labels.Set(m.GetLabels())) &&
		s.fields.Matches(fields.Set{"metadata.name": m.GetName(), "metadata.namespace": m.GetNamespace()})
}

// List returns the matching objects and the current revision.
func (t *tracker) List(gvr schema.GroupVersionResource, gvk schema.GroupVersionKind, ns string, opts ...metav1.ListOptions) (runtime.Object, error) {
	sel, _, err := newSelector(ns, opts)
	if err != nil {
		return nil, err
	}
	listGVK := gvk
	listGVK.Kind += "List"
	list, err := listScheme.New(listGVK)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", gvr.Resource, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var items []runtime.Object
	for _, obj := range t.sorted(gvr) {
		if sel.matches(obj) {
			items = append(items, obj.DeepCopyObject())
		}
	}
	if err := meta.SetList(list, items); err != nil {
		return nil, err
	}
	if lm, err := meta.ListAccessor(list); err == nil {
		lm.SetResourceVersion(strconv.FormatInt(t.rev, 10))
	}
	return list, nil
}

// sorted returns gvr's objects ordered by namespace and name. Called with
// mu held.
func (t *tracker) sorted(gvr schema.GroupVersionResource) []runtime.Object {
	byName := t.objects[gvr]
	keys := make([]types.NamespacedName, 0, len(byName))
	for k := range byName {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Namespace != keys[j].Namespace {
			return keys[i].Namespace < keys[j].Namespace
		}
		return keys[i].Name < keys[j].Name
	})
	out := make([]runtime.Object, len(keys))
	for i, k := range keys {
		out[i] = byName[k]
	}
	return out
}

// Watch starts a watch. From revision "" or "0" it first sends every
// matching object as ADDED; from a revision a List returned it sends every
// event since, or fails with 410 Gone when those are no longer kept.
func (t *tracker) Watch(gvr schema.GroupVersionResource, ns string, opts ...metav1.ListOptions) (watch.Interface, error) {
	sel, rvText, err := newSelector(ns, opts)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	w := newWatcher(t, gvr, sel)
	switch rvText {
	case "", "0":
		for _, obj := range t.sorted(gvr) {
			w.offer(event{gvr: gvr, typ: watch.Added, obj: obj, rev: t.rev})
		}
	default:
		from, err := strconv.ParseInt(rvText, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid resourceVersion %q", rvText))
		}
		if from < t.dropped {
			return nil, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", from, t.dropped))
		}
		for _, ev := range t.history {
			if ev.rev > from && ev.gvr == gvr {
				w.offer(ev)
			}
		}
	}
	if t.watchers[gvr] == nil {
		t.watchers[gvr] = map[*watcher]bool{}
	}
	t.watchers[gvr][w] = true
	go w.run()
	return w, nil
}

func (t *tracker) forget(w *watcher) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.watchers[w.gvr], w)
}

// stopAll ends every watch (their result channels close).
func (t *tracker) stopAll() {
	t.mu.Lock()
	var ws []*watcher
	for _, set := range t.watchers {
		for w := range set {
			ws = append(ws, w)
		}
	}
	t.mu.Unlock()
	for _, w := range ws {
		w.Stop()
	}
}

// watcher is one watch: an unbounded queue drained into its result
// channel by its own goroutine.
type watcher struct {
	t      *tracker
	gvr    schema.GroupVersionResource
	sel    selector
	mu     sync.Mutex
	queue  []watch.Event
	wake   chan struct{}
	done   chan struct{}
	result chan watch.Event
	once   sync.Once
}

func newWatcher(t *tracker, gvr schema.GroupVersionResource, sel selector) *watcher {
	return &watcher{t: t, gvr: gvr, sel: sel, wake: make(chan struct{}, 1),
		done: make(chan struct{}), result: make(chan watch.Event)}
}

// offer queues ev as this watcher sees it through its selector.
func (w *watcher) offer(ev event) {
	now, before := w.sel.matches(ev.obj), ev.typ == watch.Modified && w.sel.matches(ev.old)
	typ := ev.typ
	switch {
	case ev.typ != watch.Modified && !now:
		return
	case ev.typ == watch.Modified && now && !before:
		typ = watch.Added
	case ev.typ == watch.Modified && !now && before:
		typ = watch.Deleted
	case ev.typ == watch.Modified && !now:
		return
	}
	w.mu.Lock()
	w.queue = append(w.queue, watch.Event{Type: typ, Object: ev.obj.DeepCopyObject()})
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) run() {
	defer close(w.result)
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.mu.Unlock()
			select {
			case <-w.wake:
				continue
			case <-w.done:
				return
			}
		}
		ev := w.queue[0]
		w.queue[0] = watch.Event{}
		w.queue = w.queue[1:]
		w.mu.Unlock()
		select {
		case w.result <- ev:
		case <-w.done:
			return
		}
	}
}

// Stop ends the watch; ResultChan closes.
func (w *watcher) Stop() {
	w.once.Do(func() {
		close(w.done)
		w.t.forget(w)
	})
}

// ResultChan delivers the events.
func (w *watcher) ResultChan() <-chan watch.Event { return w.result }
