package kubeview

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/svcsim/svcsim/sim"
)

const app = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: getip, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`

func newCluster(t *testing.T) *sim.Cluster {
	t.Helper()
	c, err := sim.New(sim.DefaultConfig(2))
	require.NoError(t, err)
	return c
}

func apply(t *testing.T, c *sim.Cluster, v *View, manifests string) {
	t.Helper()
	objs, err := sim.Decode([]byte(manifests), "test")
	require.NoError(t, err)
	_, err = c.Apply(objs)
	require.NoError(t, err)
	require.NoError(t, v.Sync(c))
}

// next returns the next event of w within a second.
func next(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		require.True(t, ok, "watch closed")
		return ev
	case <-time.After(time.Second):
		t.Fatal("no watch event within 1s")
	}
	return watch.Event{}
}

func quiet(t *testing.T, w watch.Interface) {
	t.Helper()
	select {
	case ev := <-w.ResultChan():
		t.Fatalf("unexpected event %s %T", ev.Type, ev.Object)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestWatchSeesAddUpdateDelete(t *testing.T) {
	ctx := context.Background()
	c, v := newCluster(t), New()
	t.Cleanup(v.Close)
	require.NoError(t, v.Sync(c))
	svcs := v.Client().CoreV1().Services("default")
	list, err := svcs.List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, list.Items)
	w, err := svcs.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	require.NoError(t, err)
	defer w.Stop()

	apply(t, c, v, app)
	ev := next(t, w)
	require.Equal(t, watch.Added, ev.Type)
	added := ev.Object.(*corev1.Service)
	require.Equal(t, "web", added.Name)
	require.NotEmpty(t, added.Spec.ClusterIP, "the model's allocation is mirrored")
	quiet(t, w)

	require.NoError(t, c.Patch("service", "default", "web", []byte(`{"spec":{"sessionAffinity":"ClientIP"}}`)))
	require.NoError(t, v.Sync(c))
	ev = next(t, w)
	require.Equal(t, watch.Modified, ev.Type)
	mod := ev.Object.(*corev1.Service)
	require.Equal(t, corev1.ServiceAffinityClientIP, mod.Spec.SessionAffinity)
	rvAdded, _ := strconv.Atoi(added.ResourceVersion)
	rvMod, _ := strconv.Atoi(mod.ResourceVersion)
	require.Greater(t, rvMod, rvAdded, "resourceVersion grows with every write")

	// A Sync with nothing changed writes nothing.
	require.NoError(t, v.Sync(c))
	quiet(t, w)

	require.NoError(t, c.Delete("service", "default", "web"))
	require.NoError(t, v.Sync(c))
	ev = next(t, w)
	require.Equal(t, watch.Deleted, ev.Type)
	require.Equal(t, "web", ev.Object.(*corev1.Service).Name)
	_, err = svcs.Get(ctx, "web", metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "%v", err)
}

// A watch started from a listed revision gets exactly the events after it,
// deletions included.
func TestWatchFromListedRevision(t *testing.T) {
	ctx := context.Background()
	c, v := newCluster(t), New()
	t.Cleanup(v.Close)
	apply(t, c, v, app)
	pods := v.Client().CoreV1().Pods("")
	list, err := pods.List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, list.Items, 2)

	require.NoError(t, c.Scale("deployment", "default", "web", 1))
	require.NoError(t, v.Sync(c))
	w, err := pods.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	require.NoError(t, err)
	defer w.Stop()
	ev := next(t, w)
	require.Equal(t, watch.Deleted, ev.Type)
	quiet(t, w)

	// From "" the watch starts with every object.
	all, err := pods.Watch(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	defer all.Stop()
	require.Equal(t, watch.Added, next(t, all).Type)
	quiet(t, all)
}

// A watch with a label selector sees an object leave and enter it.
func TestWatchLabelSelector(t *testing.T) {
	ctx := context.Background()
	c, v := newCluster(t), New()
	t.Cleanup(v.Close)
	apply(t, c, v, app)
	w, err := v.Client().CoreV1().Services("default").Watch(ctx, metav1.ListOptions{LabelSelector: "tier=front"})
	require.NoError(t, err)
	defer w.Stop()
	quiet(t, w)
	require.NoError(t, c.Label("service", "default", "web", map[string]string{"tier": "front"}))
	require.NoError(t, v.Sync(c))
	require.Equal(t, watch.Added, next(t, w).Type)
	require.NoError(t, c.Label("service", "default", "web", map[string]string{"tier-": ""}))
	require.NoError(t, v.Sync(c))
	require.Equal(t, watch.Deleted, next(t, w).Type)
}

// Informers over the view see every change, and their listers follow.
func TestInformersFollowTheModel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, v := newCluster(t), New()
	t.Cleanup(v.Close)
	require.NoError(t, v.Sync(c))
	f := informers.NewSharedInformerFactory(v.Client(), 0)
	podInf := f.Core().V1().Pods()
	events := make(chan string, 1000)
	_, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { events <- "add " + obj.(*corev1.Pod).Name },
		UpdateFunc: func(_, obj any) { events <- "update " + obj.(*corev1.Pod).Name },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			events <- "delete " + obj.(*corev1.Pod).Name
		},
	})
	require.NoError(t, err)
	nodes := f.Core().V1().Nodes().Lister()
	namespaces := f.Core().V1().Namespaces().Lister()
	f.Start(ctx.Done())
	defer func() { cancel(); f.Shutdown() }()
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		require.True(t, ok, "%v synced", typ)
	}
	ns, err := namespaces.List(labels.Everything())
	require.NoError(t, err)
	require.Len(t, ns, 4, "the namespaces every cluster has")
	n, err := nodes.List(labels.Everything())
	require.NoError(t, err)
	require.Len(t, n, 2)

	apply(t, c, v, app)
	got := collect(t, events, 2)
	require.Equal(t, []string{"add", "add"}, verbs(got))

	require.NoError(t, c.Label("node", "", "node1", map[string]string{"zone": "a"}))
	require.NoError(t, v.Sync(c))
	require.Eventually(t, func() bool {
		n, err := nodes.Get("node1")
		return err == nil && n.Labels["zone"] == "a"
	}, time.Second, 5*time.Millisecond)

	pods := c.Pods()
	require.NoError(t, c.SetPodReady("default", pods[0].Name, false))
	require.NoError(t, v.Sync(c))
	require.Equal(t, []string{"update " + pods[0].Name}, collect(t, events, 1))

	require.NoError(t, c.Delete("deployment", "default", "web"))
	require.NoError(t, v.Sync(c))
	require.Equal(t, []string{"delete", "delete"}, verbs(collect(t, events, 2)))
	require.Eventually(t, func() bool {
		l, _ := podInf.Lister().List(labels.Everything())
		return len(l) == 0
	}, time.Second, 5*time.Millisecond)
}

func collect(t *testing.T, ch chan string, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		select {
		case s := <-ch:
			out = append(out, s)
		case <-time.After(2 * time.Second):
			t.Fatalf("got %v, want %d events", out, n)
		}
	}
	select {
	case s := <-ch:
		t.Fatalf("unexpected event %q after %v", s, out)
	case <-time.After(50 * time.Millisecond):
	}
	sort.Strings(out)
	return out
}

func verbs(events []string) []string {
	out := make([]string, len(events))
	for i, e := range events {
		fmt.Sscan(e, &out[i])
	}
	return out
}

// A burst far larger than client-go's fake watch buffer (100) neither
// panics nor loses an event.
func TestLargeBurst(t *testing.T) {
	ctx := context.Background()
	c, v := newCluster(t), New()
	t.Cleanup(v.Close)
	require.NoError(t, v.Sync(c))
	w, err := v.Client().CoreV1().Services("default").Watch(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	defer w.Stop()
	var m string
	for i := range 300 {
		m += fmt.Sprintf("---\napiVersion: v1\nkind: Service\nmetadata: {name: s%d}\nspec: {ports: [{port: 80}]}\n", i)
	}
	apply(t, c, v, m)
	for range 300 {
		require.Equal(t, watch.Added, next(t, w).Type)
	}
	quiet(t, w)
}

// Clients may read the model's kinds but not write them; other kinds can
// be written and watched.
func TestWrites(t *testing.T) {
	ctx := context.Background()
	c, v := newCluster(t), New()
	t.Cleanup(v.Close)
	apply(t, c, v, app)
	svcs := v.Client().CoreV1().Services("default")
	s, err := svcs.Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	s.Labels = map[string]string{"x": "y"}
	_, err = svcs.Update(ctx, s, metav1.UpdateOptions{})
	require.True(t, apierrors.IsForbidden(err), "%v", err)
	require.True(t, apierrors.IsForbidden(svcs.Delete(ctx, "web", metav1.DeleteOptions{})))

	// ConfigMaps are the model's (a stored kind) and read-only too.
	_, err = v.Client().CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}}, metav1.CreateOptions{})
	require.True(t, apierrors.IsForbidden(err), "%v", err)

	leases := v.Client().CoordinationV1().Leases("default")
	holder := func(s string) *string { return &s }
	l, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "lock"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: holder("a")}}, metav1.CreateOptions{})
	require.NoError(t, err)
	stale := l.DeepCopy()
	l.Spec.HolderIdentity = holder("b")
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	require.NoError(t, err)
	stale.Spec.HolderIdentity = holder("c")
	_, err = leases.Update(ctx, stale, metav1.UpdateOptions{})
	require.True(t, apierrors.IsConflict(err), "a stale resourceVersion conflicts: %v", err)
	_, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "lock"}}, metav1.CreateOptions{})
	require.True(t, apierrors.IsAlreadyExists(err), "%v", err)
}

// The model's EndpointSlices are mirrored, and follow its pods.
func TestEndpointSlices(t *testing.T) {
	ctx := context.Background()
	c, v := newCluster(t), New()
	t.Cleanup(v.Close)
	apply(t, c, v, app)
	slices := v.Client().DiscoveryV1().EndpointSlices("default")
	list, err := slices.List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=web"})
	require.NoError(t, err)
	require.Len(t, list.Items, 1)
	require.Len(t, list.Items[0].Endpoints, 2)
	w, err := slices.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion, LabelSelector: "kubernetes.io/service-name=web"})
	require.NoError(t, err)
	defer w.Stop()
	require.NoError(t, c.Scale("deployment", "default", "web", 3))
	require.NoError(t, v.Sync(c))
	ev := next(t, w)
	require.Equal(t, watch.Modified, ev.Type)
	require.Len(t, ev.Object.(*discoveryv1.EndpointSlice).Endpoints, 3)
}

// BenchmarkSyncOneChange measures a Sync after one change (a scale) in a
// cluster of 1000 Services: each Sync lists and compares every object.
func BenchmarkSyncOneChange(b *testing.B) {
	c, err := sim.New(sim.DefaultConfig(2))
	require.NoError(b, err)
	v := New()
	b.Cleanup(v.Close)
	var m string
	for i := range 1000 {
		m += fmt.Sprintf("---\napiVersion: v1\nkind: Service\nmetadata: {name: s%d}\nspec: {ports: [{port: 80}]}\n", i)
	}
	objs, err := sim.Decode([]byte(m+"---\n"+app), "bench")
	require.NoError(b, err)
	_, err = c.Apply(objs)
	require.NoError(b, err)
	require.NoError(b, v.Sync(c))
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		require.NoError(b, c.Scale("deployment", "default", "web", int32(1+i%2)))
		b.StartTimer()
		require.NoError(b, v.Sync(c))
	}
}

// The model's stored kinds (Secrets, IngressClasses, RBAC, ...) are
// mirrored: a watch sees a Secret's creation, update and deletion with its
// decoded data, and cluster-scoped ones list without a namespace.
func TestStoredKinds(t *testing.T) {
	ctx := context.Background()
	c, v := newCluster(t), New()
	t.Cleanup(v.Close)
	w, err := v.Client().CoreV1().Secrets("default").Watch(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	defer w.Stop()
	apply(t, c, v, "apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\nstringData: {a: one}\n---\n"+
		"apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: k8s.io/ingress-nginx}\n")
	ev := next(t, w)
	require.Equal(t, watch.Added, ev.Type)
	require.Equal(t, []byte("one"), ev.Object.(*corev1.Secret).Data["a"])
	apply(t, c, v, "apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\nstringData: {a: two}\n")
	ev = next(t, w)
	require.Equal(t, watch.Modified, ev.Type)
	require.Equal(t, []byte("two"), ev.Object.(*corev1.Secret).Data["a"])
	ics, err := v.Client().NetworkingV1().IngressClasses().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, ics.Items, 1)
	require.Equal(t, "k8s.io/ingress-nginx", ics.Items[0].Spec.Controller)
	require.NoError(t, c.Delete("secret", "default", "tls"))
	require.NoError(t, v.Sync(c))
	require.Equal(t, watch.Deleted, next(t, w).Type)
}

// A Service's status is written through the view only with a StatusWriter,
// into the model; the view then mirrors the model's object.
func TestServiceStatusWriter(t *testing.T) {
	c := newCluster(t)
	v := New()
	defer v.Close()
	apply(t, c, v, app)
	ctx := context.Background()
	svc, err := v.Client().CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.18.1.7"}}
	_, err = v.Client().CoreV1().Services("default").UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	require.True(t, apierrors.IsForbidden(err), "no writer: %v", err)

	v.SetStatusWriter(func(s *corev1.Service) (*corev1.Service, error) {
		return c.SetServiceStatus(s.Namespace, s.Name, s.Status)
	})
	out, err := v.Client().CoreV1().Services("default").UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Equal(t, "198.18.1.7", out.Status.LoadBalancer.Ingress[0].IP)
	require.NoError(t, v.Sync(c))
	got, err := v.Client().CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "198.18.1.7", got.Status.LoadBalancer.Ingress[0].IP)

	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "not-an-ip"}}
	_, err = v.Client().CoreV1().Services("default").UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	require.True(t, apierrors.IsInvalid(err), "bad address: %v", err)
	// The spec cannot be changed through the status.
	svc.Status.LoadBalancer.Ingress = nil
	svc.Spec.Ports[0].Port = 81
	_, err = v.Client().CoreV1().Services("default").UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	require.NoError(t, err)
	s, err := c.Get("service", "default", "web")
	require.NoError(t, err)
	require.Equal(t, int32(80), s.(*corev1.Service).Spec.Ports[0].Port)
}
