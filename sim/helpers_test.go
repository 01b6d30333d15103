package sim

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Address plan of these tests (DefaultConfig(2)):
//
//	node1 198.18.0.11, pods 10.244.1.0/24     node2 198.18.0.12, pods 10.244.2.0/24
//	Services 10.96.0.0/12, NodePorts 30000-32767, domain cluster.local
//
// Pod addresses start at .2 of the node's range; the clock is fixed at t0
// and moved by tests that look at ages.

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type testClock struct{ now time.Time }

func (c *testClock) Now() time.Time { return c.now }

func newCluster(t *testing.T, nodes int) (*Cluster, *testClock) {
	t.Helper()
	clk := &testClock{now: t0}
	cfg := DefaultConfig(nodes)
	cfg.Clock = clk.Now
	c, err := New(cfg)
	require.NoError(t, err)
	return c, clk
}

func makeService(ns, name string, mut ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for _, m := range mut {
		m(s)
	}
	return s
}

func makeDeployment(ns, name string, replicas int32, mut ...func(*appsv1.Deployment)) *appsv1.Deployment {
	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "getip:v1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
		},
	}
	for _, m := range mut {
		m(d)
	}
	return d
}

func makePod(ns, name string, mut ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "getip:v1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}
	for _, m := range mut {
		m(p)
	}
	return p
}

func makeEndpoints(ns, name string, ips ...string) *corev1.Endpoints {
	ep := &corev1.Endpoints{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Endpoints"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
	}
	ss := corev1.EndpointSubset{Ports: []corev1.EndpointPort{{Port: 3307}}}
	for _, ip := range ips {
		ss.Addresses = append(ss.Addresses, corev1.EndpointAddress{IP: ip})
	}
	ep.Subsets = []corev1.EndpointSubset{ss}
	return ep
}

func objs(os ...runtime.Object) []Object {
	out := make([]Object, len(os))
	for i, o := range os {
		out[i] = Object{Source: "test.yaml:" + string(rune('0'+i)), Obj: o}
	}
	return out
}

func mustApply(t *testing.T, c *Cluster, os ...runtime.Object) []string {
	t.Helper()
	lines, err := c.Apply(objs(os...))
	require.NoError(t, err)
	return lines
}

func svcOf(t *testing.T, c *Cluster, ns, name string) *corev1.Service {
	t.Helper()
	o, err := c.Get("svc", ns, name)
	require.NoError(t, err)
	return o.(*corev1.Service)
}

func podsOf(c *Cluster, owner string) []Pod {
	var out []Pod
	for _, p := range c.Pods() {
		if p.Owner == owner {
			out = append(out, p)
		}
	}
	return out
}

func intstr8080() intstr.IntOrString { return intstr.FromInt32(8080) }
