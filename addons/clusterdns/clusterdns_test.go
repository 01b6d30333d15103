package clusterdns

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// The address plan of these tests:
//
//	getip-service           ClusterIP 10.96.0.20, port http 80/TCP
//	getip-service-headless  headless, port 7070 -> 7080
//	db                      ExternalName db.example.com
//	pods                    10.244.1.2 (ready), 10.244.2.2 (ready), 10.244.2.3 (not ready)

func service(name string, f func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}
	f(s)
	return s
}

func ptr[T any](v T) *T { return &v }

func endpoint(ip string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready)}}
}

func slice(name, svc string, port *discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
	}
	if port != nil {
		s.Ports = []discoveryv1.EndpointPort{*port}
	}
	return s
}

func pod(name, ip string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Status: corev1.PodStatus{PodIP: ip}}
}

func objects() []runtime.Object {
	return []runtime.Object{
		service("getip-service", func(s *corev1.Service) {
			s.Spec.ClusterIP = "10.96.0.20"
			s.Spec.Ports = []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}
		}),
		service("getip-service-headless", func(s *corev1.Service) {
			s.Spec.ClusterIP = corev1.ClusterIPNone
			s.Spec.Ports = []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 7070}}
		}),
		service("db", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "db.example.com"
		}),
		// The headless Service's endpoints, spread over two slices.
		slice("getip-service-headless-a", "getip-service-headless", &discoveryv1.EndpointPort{Port: ptr(int32(7080)), Protocol: ptr(corev1.ProtocolTCP)},
			endpoint("10.244.2.2", true), endpoint("10.244.2.3", false)),
		slice("getip-service-headless-b", "getip-service-headless", &discoveryv1.EndpointPort{Port: ptr(int32(7080)), Protocol: ptr(corev1.ProtocolTCP)},
			endpoint("10.244.1.2", true)),
		// Another Service's slice does not leak into the headless answer.
		slice("getip-service-x", "getip-service", nil, endpoint("10.244.9.9", true)),
		pod("getip-a", "10.244.1.2"), pod("getip-b", "10.244.2.2"), pod("getip-c", "10.244.2.3"),
	}
}

// watcher starts the informer-fed source over a fake clientset holding
// objs, as the add-on runs over any client.
func watcher(t *testing.T, objs ...runtime.Object) (*Watcher, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objs...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := Watch(ctx, client, "cluster.local")
	require.NoError(t, err)
	t.Cleanup(w.Stop)
	return w, client
}

func ask(recs *Records, name string, t uint16) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, t)
	return Answer(recs, q)
}

func addrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		out = append(out, rr.(*dns.A).A.String())
	}
	return out
}

func TestHeadlessAnswersEveryReadyEndpoint(t *testing.T) {
	w, _ := watcher(t, objects()...)
	m := ask(w.Records(), "getip-service-headless.default.svc.cluster.local.", dns.TypeA)
	require.Equal(t, dns.RcodeSuccess, m.Rcode)
	require.Equal(t, []string{"10.244.1.2", "10.244.2.2"}, addrs(m), "ready endpoints of every slice, sorted")

	m = ask(w.Records(), "10-244-1-2.getip-service-headless.default.svc.cluster.local.", dns.TypeA)
	require.Equal(t, []string{"10.244.1.2"}, addrs(m))
	m = ask(w.Records(), "2.1.244.10.in-addr.arpa.", dns.TypePTR)
	require.Len(t, m.Answer, 1)
	require.Equal(t, "10-244-1-2.getip-service-headless.default.svc.cluster.local.", m.Answer[0].(*dns.PTR).Ptr)
}

func TestClusterIPAndSRVAndCNAME(t *testing.T) {
	w, _ := watcher(t, objects()...)
	recs := w.Records()
	m := ask(recs, "GETIP-SERVICE.default.svc.cluster.local.", dns.TypeA)
	require.Equal(t, []string{"10.96.0.20"}, addrs(m))

	m = ask(recs, "_http._tcp.getip-service.default.svc.cluster.local.", dns.TypeSRV)
	require.Len(t, m.Answer, 1)
	require.Equal(t, uint16(80), m.Answer[0].(*dns.SRV).Port)
	require.Equal(t, "getip-service.default.svc.cluster.local.", m.Answer[0].(*dns.SRV).Target)
	require.Len(t, m.Extra, 1, "the target's address rides along")

	m = ask(recs, "20.0.96.10.in-addr.arpa.", dns.TypePTR)
	require.Len(t, m.Answer, 1)
	require.Equal(t, "getip-service.default.svc.cluster.local.", m.Answer[0].(*dns.PTR).Ptr)

	m = ask(recs, "db.default.svc.cluster.local.", dns.TypeA)
	require.Len(t, m.Answer, 1)
	require.Equal(t, "db.example.com.", m.Answer[0].(*dns.CNAME).Target)

	m = ask(recs, "10-244-2-3.default.pod.cluster.local.", dns.TypeA)
	require.Equal(t, []string{"10.244.2.3"}, addrs(m), "every pod with an address has its dashed name")
}

func TestUnknownAndOutside(t *testing.T) {
	w, _ := watcher(t, objects()...)
	m := ask(w.Records(), "nosuch.default.svc.cluster.local.", dns.TypeA)
	require.Equal(t, dns.RcodeNameError, m.Rcode)
	require.Len(t, m.Ns, 1)
	// A name that exists without records of the asked type is NODATA.
	m = ask(w.Records(), "getip-service.default.svc.cluster.local.", dns.TypeSRV)
	require.Equal(t, dns.RcodeSuccess, m.Rcode)
	require.Empty(t, m.Answer)
	m = ask(w.Records(), "example.com.", dns.TypeA)
	require.Equal(t, dns.RcodeRefused, m.Rcode)
}

// Answers follow the cluster: a change seen by the informers is in the
// next answer.
func TestAnswersFollowTheCluster(t *testing.T) {
	ctx := context.Background()
	w, client := watcher(t, objects()...)
	const name = "getip-service-headless.default.svc.cluster.local."
	s, err := client.DiscoveryV1().EndpointSlices("default").Get(ctx, "getip-service-headless-a", metav1.GetOptions{})
	require.NoError(t, err)
	s.Endpoints[1].Conditions.Ready = ptr(true)
	_, err = client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(ask(w.Records(), name, dns.TypeA).Answer) == 3 }, 5*time.Second, 5*time.Millisecond)

	require.NoError(t, client.DiscoveryV1().EndpointSlices("default").Delete(ctx, "getip-service-headless-b", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool {
		return len(ask(w.Records(), name, dns.TypeA).Answer) == 2
	}, 5*time.Second, 5*time.Millisecond)

	require.NoError(t, client.CoreV1().Services("default").Delete(ctx, "getip-service", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool {
		return ask(w.Records(), "getip-service.default.svc.cluster.local.", dns.TypeA).Rcode == dns.RcodeNameError
	}, 5*time.Second, 5*time.Millisecond)
}

// Build does not depend on the order listers return objects in.
func TestBuildIsOrderIndependent(t *testing.T) {
	var a, b Objects
	for _, o := range objects() {
		switch o := o.(type) {
		case *corev1.Service:
			a.Services = append(a.Services, o)
			b.Services = append([]*corev1.Service{o}, b.Services...)
		case *discoveryv1.EndpointSlice:
			a.EndpointSlices = append(a.EndpointSlices, o)
			b.EndpointSlices = append([]*discoveryv1.EndpointSlice{o}, b.EndpointSlices...)
		case *corev1.Pod:
			a.Pods = append(a.Pods, o)
			b.Pods = append([]*corev1.Pod{o}, b.Pods...)
		}
	}
	ra, rb := Build("cluster.local", a), Build("cluster.local", b)
	require.Equal(t, ra.Names(), rb.Names())
	for _, n := range ra.Names() {
		require.Equal(t, ra.A(n), rb.A(n), n)
		require.Equal(t, ra.SRV(n), rb.SRV(n), n)
	}
}
