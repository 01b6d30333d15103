package loadbalancer

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// fakeCloud allocates 198.18.1.1, .2, ... in order of first Put.
type fakeCloud struct {
	mu    sync.Mutex
	specs map[string]Spec
	ips   map[string]netip.Addr
	next  netip.Addr
}

func newFakeCloud() *fakeCloud {
	return &fakeCloud{specs: map[string]Spec{}, ips: map[string]netip.Addr{}, next: netip.MustParseAddr("198.18.1.1")}
}

func (f *fakeCloud) Put(_ context.Context, ns, name string, spec Spec) (Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := ns + "/" + name
	if _, ok := f.ips[k]; !ok {
		f.ips[k], f.next = f.next, f.next.Next()
	}
	f.specs[k] = spec
	return Status{Name: k, IP: f.ips[k], Spec: spec}, nil
}

func (f *fakeCloud) Delete(_ context.Context, ns, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.specs, ns+"/"+name)
	delete(f.ips, ns+"/"+name)
	return nil
}

func (f *fakeCloud) List(context.Context) ([]Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Status
	for k, s := range f.specs {
		out = append(out, Status{Name: k, IP: f.ips[k], Spec: s})
	}
	return out, nil
}

func (f *fakeCloud) spec(k string) (Spec, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.specs[k]
	return s, ok
}

func TestControllerAssignsAndReleases(t *testing.T) {
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.11"}}}}
	local := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			HealthCheckNodePort: 31000, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
	class := "example.com/other"
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "theirs"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class, Ports: []corev1.ServicePort{{Port: 80}}}}
	client := fake.NewClientset(node, local, other)
	cloud := newFakeCloud()
	c, err := StartController(ctx, client, cloud, nil)
	require.NoError(t, err)
	defer c.Stop()

	ingress := func(name string) []corev1.LoadBalancerIngress {
		s, err := client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		return s.Status.LoadBalancer.Ingress
	}
	require.Eventually(t, func() bool { return len(ingress("web")) == 1 }, 5*time.Second, 10*time.Millisecond)
	in := ingress("web")[0]
	assert.Equal(t, "198.18.1.1", in.IP)
	require.NotNil(t, in.IPMode)
	assert.Equal(t, corev1.LoadBalancerIPModeVIP, *in.IPMode)
	spec, _ := cloud.spec("default/web")
	assert.Equal(t, HealthCheck{Port: 31000, Path: "/healthz"}, spec.HealthCheck, "Local: the health check node port")
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("198.18.0.11")}, spec.Nodes)
	assert.Equal(t, []Port{{Protocol: "TCP", Port: 80}}, spec.Ports)
	_, theirs := cloud.spec("default/theirs")
	assert.False(t, theirs, "a Service with another loadBalancerClass is not ours")

	// Cluster policy: the proxy's health port.
	s, err := client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	s.Spec.ExternalTrafficPolicy, s.Spec.HealthCheckNodePort = corev1.ServiceExternalTrafficPolicyCluster, 0
	_, err = client.CoreV1().Services("default").Update(ctx, s, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		sp, _ := cloud.spec("default/web")
		return sp.HealthCheck == HealthCheck{Port: 10256, Path: "/healthz"}
	}, 5*time.Second, 10*time.Millisecond)

	// No longer a LoadBalancer: released, status cleared.
	s, err = client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	s.Spec.Type = corev1.ServiceTypeClusterIP
	_, err = client.CoreV1().Services("default").Update(ctx, s, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, ok := cloud.spec("default/web")
		return !ok && len(ingress("web")) == 0
	}, 5*time.Second, 10*time.Millisecond)
}
