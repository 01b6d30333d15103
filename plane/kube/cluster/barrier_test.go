package cluster

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// settledPod is a Running, Ready pod app=web at ip; mutators change it.
func settledPod(name, ip string, mut ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Name: "web", Image: "svcsim/getip"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	for _, m := range mut {
		m(p)
	}
	return p
}

// deleting marks a pod deleted; with sleep > 0 its container has a preStop
// sleep hook of that many seconds.
func deleting(sleep int64) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		now := metav1.Now()
		p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, ptr.To[int64](30)
		if sleep > 0 {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: sleep}}}
		}
	}
}

func webSlice(eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4, Endpoints: eps,
	}
}

func endpoint(ip string, ready, serving, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{
		Ready: ptr.To(ready), Serving: ptr.To(serving), Terminating: ptr.To(terminating)}}
}

// TestSettledTerminating: the barrier counts a terminating pod that a
// preStop sleep keeps serving as settled once its endpoint says serving and
// terminating (so scenarios can check it while it terminates), and still
// waits out one whose servers exit at SIGTERM, and a slice that has not yet
// caught up with a deletion.
func TestSettledTerminating(t *testing.T) {
	svc := func(pnr bool) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, PublishNotReadyAddresses: pnr,
				Ports: []corev1.ServicePort{{Port: 80}}}}
	}
	notReady := func(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse }
	for _, tc := range []struct {
		name string
		objs []runtime.Object
		want string // "" settled, else a word of what is moving
	}{
		{"ready pod, ready endpoint", []runtime.Object{svc(false), settledPod("a", "10.244.1.2"),
			webSlice(endpoint("10.244.1.2", true, true, false))}, ""},
		{"preStop pod terminating, endpoint serving and terminating", []runtime.Object{svc(false), settledPod("a", "10.244.1.2", deleting(45)),
			webSlice(endpoint("10.244.1.2", false, true, true))}, ""},
		{"preStop pod terminating, slice not caught up", []runtime.Object{svc(false), settledPod("a", "10.244.1.2", deleting(45)),
			webSlice(endpoint("10.244.1.2", true, true, false))}, "EndpointSlices of ns/web"},
		{"preStop pod terminating and unready", []runtime.Object{svc(false), settledPod("a", "10.244.1.2", deleting(45), notReady),
			webSlice(endpoint("10.244.1.2", false, true, true))}, "EndpointSlices of ns/web"},
		{"preStop pod terminating and unready, slice follows", []runtime.Object{svc(false), settledPod("a", "10.244.1.2", deleting(45), notReady),
			webSlice(endpoint("10.244.1.2", false, false, true))}, ""},
		{"publishNotReadyAddresses: terminating is still ready", []runtime.Object{svc(true), settledPod("a", "10.244.1.2", deleting(45), notReady),
			webSlice(endpoint("10.244.1.2", true, false, true))}, ""},
		{"no preStop: waited out", []runtime.Object{svc(false), settledPod("a", "10.244.1.2", deleting(0)),
			webSlice(endpoint("10.244.1.2", false, true, true))}, "pod ns/a terminating"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{admin: fake.NewClientset(tc.objs...)}
			got, err := c.settled(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("settled: %q, want %q", got, tc.want)
			}
		})
	}
}
