package feed

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/svcsim/svcsim/sim/desired"
	"github.com/svcsim/svcsim/sim/state"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// Address plan: node1 198.18.0.11 (pods 10.244.1.0/24), Service web
// 10.96.0.20:80 over 10.244.1.5:8080 and 10.244.2.7:8080.

func objects() (*corev1.Node, *corev1.Service, *discoveryv1.EndpointSlice) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"},
		Spec:   corev1.NodeSpec{PodCIDR: "10.244.1.0/24"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.11"}}}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	name, port, proto := "http", int32(8080), corev1.ProtocolTCP
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-abc",
		Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.5"}, NodeName: strPtr("node1")},
			{Addresses: []string{"10.244.2.7"}, NodeName: strPtr("node2")}}}
	return node, svc, slice
}

func strPtr(s string) *string { return &s }

// pushes records what the feed pushed.
type pushes struct {
	mu   sync.Mutex
	got  []*state.NodeState
	fail int // fail the next n pushes
}

func (p *pushes) push(_ context.Context, st *state.NodeState) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail > 0 {
		p.fail--
		return context.DeadlineExceeded // any error
	}
	p.got = append(p.got, st)
	return nil
}

// wait returns the first pushed state after the n-th for which ok holds.
func (p *pushes) wait(t *testing.T, what string, ok func(*state.NodeState) bool) *state.NodeState {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, st := range p.got {
			if ok(st) {
				p.mu.Unlock()
				return st
			}
		}
		p.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no push with %s within 10 s", what)
	return nil
}

func eps(st *state.NodeState) []string {
	var out []string
	for _, s := range st.Services {
		for _, e := range s.Endpoints {
			out = append(out, s.Name+" "+e.IP.String())
		}
	}
	return out
}

// TestFeed: the first push holds the listed objects as desired.NodeState
// computes them (node IPs from the Node, endpoints from the slice, the
// generation numbered by the feed); a slice change and a Service labelled
// for another proxy each give a new state; a failed push is retried.
func TestFeed(t *testing.T) {
	node, svc, slice := objects()
	client := fake.NewClientset(node, svc, slice)
	p := &pushes{fail: 1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opt := desired.Options{ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12")}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Client: client, Node: "node1", Options: opt, Push: p.push, RetryInterval: 10 * time.Millisecond})
	}()

	first := p.wait(t, "web's two endpoints", func(st *state.NodeState) bool { return len(eps(st)) == 2 })
	if first.Node != "node1" || len(first.NodeIPs) != 1 || first.NodeIPs[0] != netip.MustParseAddr("198.18.0.11") ||
		first.ClusterCIDR != opt.ClusterCIDR || first.Generation != 1 {
		t.Errorf("first state %+v: node, node IPs, cluster CIDR or generation wrong (the failed push must not count)", first)
	}
	want := State(node, []*corev1.Service{svc}, []*discoveryv1.EndpointSlice{slice}, opt)
	want.Generation = first.Generation
	if !sameState(first, want) || first.Generation != want.Generation {
		t.Errorf("first state differs from desired.NodeState over the same objects:\n%+v\nwant\n%+v", first, want)
	}

	slice = slice.DeepCopy()
	slice.Endpoints = slice.Endpoints[:1]
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	second := p.wait(t, "one endpoint", func(st *state.NodeState) bool { return len(eps(st)) == 1 })
	if second.Generation <= first.Generation {
		t.Errorf("generation %d after %d", second.Generation, first.Generation)
	}

	svc = svc.DeepCopy()
	svc.Labels = map[string]string{desired.ServiceProxyNameLabel: "other"}
	if _, err := client.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p.wait(t, "no Service (labelled for another proxy)", func(st *state.NodeState) bool { return st.Generation > second.Generation && len(st.Services) == 0 })

	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestConfigRequired: a feed without a client, node or push is refused.
func TestConfigRequired(t *testing.T) {
	if err := Run(context.Background(), Config{Node: "node1"}); err == nil {
		t.Error("Run without Client and Push succeeded")
	}
}
