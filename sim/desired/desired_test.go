package desired

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/svcsim/svcsim/sim/state"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Address plan of these tests:
//
//	node1 198.18.0.11 (InternalIP), 203.0.113.1 (ExternalIP), pods 10.244.1.0/24, zone-a
//	node2 pods 10.244.2.0/24
//	Services 10.96.0.0/12: ns1/svc 10.96.0.10, ns1/other 10.96.0.20
//	endpoints 10.244.1.x (node1) and 10.244.2.x (node2), target port 8080
//	outside endpoint 172.188.2.89; load balancer 192.0.2.10 (VIP) and 192.0.2.11 (Proxy)

func ptr[T any](v T) *T { return &v }

func makeNode(mut ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{corev1.LabelTopologyZone: "zone-a"}},
		Spec:       corev1.NodeSpec{PodCIDR: "10.244.1.0/24"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeExternalIP, Address: "203.0.113.1"},
			{Type: corev1.NodeHostName, Address: "node1"},
			{Type: corev1.NodeInternalIP, Address: "198.18.0.11"},
		}},
	}
	for _, m := range mut {
		m(n)
	}
	return n
}

func makeService(name, ip string, mut ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: name},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: ip,
			Selector:  map[string]string{"app": name},
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("web")}},
		},
	}
	for _, m := range mut {
		m(s)
	}
	return s
}

// ep is a ready endpoint on node (empty: none) for pod.
func ep(ip, node string, mut ...func(*discoveryv1.Endpoint)) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "ns1", Name: "pod-" + strings.ReplaceAll(ip, ".", "-")},
	}
	if node != "" {
		e.NodeName = &node
	}
	for _, m := range mut {
		m(&e)
	}
	return e
}

func terminating(serving bool) func(*discoveryv1.Endpoint) {
	return func(e *discoveryv1.Endpoint) {
		e.Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(serving), Terminating: ptr(true)}
	}
}

func notReady(e *discoveryv1.Endpoint) {
	e.Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(false), Terminating: ptr(false)}
}

func port(name string, n int32, proto corev1.Protocol) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: &name, Port: &n, Protocol: &proto}
}

// labelSlice adds the label key=value to es.
func labelSlice(es *discoveryv1.EndpointSlice, key, value string) *discoveryv1.EndpointSlice {
	es.Labels[key] = value
	return es
}

func makeSlice(name, svc string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns1", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
		Endpoints:   eps,
	}
}

func http8080() []discoveryv1.EndpointPort {
	return []discoveryv1.EndpointPort{port("http", 8080, corev1.ProtocolTCP)}
}

// summary renders each Service port as "key ready... | notready..." with
// "(node)" after local endpoints' addresses and s/t for serving and
// terminating not-ready ones.
func summary(ns *state.NodeState) []string {
	var out []string
	for _, sp := range ns.Services {
		var r, n []string
		for _, e := range sp.Endpoints {
			r = append(r, e.String())
		}
		for _, e := range sp.NotReadyEndpoints {
			s := e.String()
			if e.Serving {
				s += "s"
			}
			if e.Terminating {
				s += "t"
			}
			n = append(n, s)
		}
		line := sp.Key() + " " + strings.Join(r, ",")
		if len(n) > 0 {
			line += " | " + strings.Join(n, ",")
		}
		out = append(out, line)
	}
	return out
}

func TestNodeState(t *testing.T) {
	for _, tc := range []struct {
		name     string
		services []*corev1.Service
		slices   []*discoveryv1.EndpointSlice
		want     []string
		check    func(t *testing.T, ns *state.NodeState)
	}{{
		name:     "ClusterIP with one slice",
		services: []*corev1.Service{makeService("svc", "10.96.0.10")},
		slices:   []*discoveryv1.EndpointSlice{makeSlice("svc-abcde", "svc", http8080(), ep("10.244.2.3", "node2"), ep("10.244.1.2", "node1"))},
		want:     []string{"ns1/svc:http/TCP 10.244.1.2:8080,10.244.2.3:8080"},
		check: func(t *testing.T, ns *state.NodeState) {
			sp := ns.Services[0]
			require.Equal(t, "ClusterIP", sp.Type)
			require.Equal(t, netip.MustParseAddr("10.96.0.10"), sp.ClusterIP)
			require.Equal(t, int32(80), sp.Port)
			require.Equal(t, state.PolicyCluster, sp.ExternalTrafficPolicy)
			require.Equal(t, state.PolicyCluster, sp.InternalTrafficPolicy)
			require.Equal(t, state.Endpoint{IP: netip.MustParseAddr("10.244.1.2"), Port: 8080, Node: "node1", Pod: "pod-10-244-1-2",
				Ready: true, Serving: true}, sp.Endpoints[0])
			require.Zero(t, sp.NodePort)
			require.Zero(t, sp.HealthCheckNodePort)
			require.False(t, sp.SessionAffinity)
		},
	}, {
		name: "NodePort, externalTrafficPolicy Local, affinity",
		services: []*corev1.Service{makeService("svc", "10.96.0.10", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Annotations = map[string]string{SchedulerAnnotation: "sh"}
		})},
		slices: []*discoveryv1.EndpointSlice{makeSlice("svc-abcde", "svc", http8080(), ep("10.244.1.2", "node1"))},
		want:   []string{"ns1/svc:http/TCP 10.244.1.2:8080"},
		check: func(t *testing.T, ns *state.NodeState) {
			sp := ns.Services[0]
			require.Equal(t, "NodePort", sp.Type)
			require.Equal(t, int32(30080), sp.NodePort)
			require.Equal(t, state.PolicyLocal, sp.ExternalTrafficPolicy)
			require.Zero(t, sp.HealthCheckNodePort, "only LoadBalancer Services have a health check port")
			require.True(t, sp.SessionAffinity)
			require.Equal(t, int32(state.DefaultAffinityTimeout), sp.AffinityTimeout)
			require.Equal(t, "sh", sp.Scheduler)
		},
	}, {
		name: "LoadBalancer: ingress VIPs, source ranges, health check node port",
		services: []*corev1.Service{makeService("svc", "10.96.0.10", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 32000
			s.Spec.LoadBalancerSourceRanges = []string{" 203.0.113.0/24", "2001:db8::/32", "bogus"}
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}}
			proxy := corev1.LoadBalancerIPModeProxy
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{
				{IP: "192.0.2.11", IPMode: &proxy}, {IP: "192.0.2.10"}, {Hostname: "lb.example.com"}}
		})},
		slices: []*discoveryv1.EndpointSlice{makeSlice("svc-abcde", "svc", http8080(), ep("10.244.1.2", "node1"))},
		want:   []string{"ns1/svc:http/TCP 10.244.1.2:8080"},
		check: func(t *testing.T, ns *state.NodeState) {
			sp := ns.Services[0]
			require.Equal(t, "LoadBalancer", sp.Type)
			require.Equal(t, []netip.Addr{netip.MustParseAddr("192.0.2.10")}, sp.LoadBalancerIPs)
			require.Equal(t, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, sp.LoadBalancerSourceRanges)
			require.Equal(t, int32(32000), sp.HealthCheckNodePort)
			require.Equal(t, state.PolicyLocal, sp.ExternalTrafficPolicy)
			require.Equal(t, int32(60), sp.AffinityTimeout)
		},
	}, {
		name: "ClusterIP: externalTrafficPolicy applies with externalIPs only; internalTrafficPolicy Local",
		services: []*corev1.Service{
			makeService("svc", "10.96.0.10", func(s *corev1.Service) {
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				s.Spec.ExternalIPs = []string{"198.18.0.200", "2001:db8::1"}
				s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
			}),
			makeService("other", "10.96.0.20", func(s *corev1.Service) {
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			}),
		},
		want: []string{"ns1/other:http/TCP ", "ns1/svc:http/TCP "},
		check: func(t *testing.T, ns *state.NodeState) {
			require.Equal(t, state.PolicyCluster, ns.Services[0].ExternalTrafficPolicy, "not reachable from outside")
			require.Equal(t, state.PolicyLocal, ns.Services[1].ExternalTrafficPolicy)
			require.Equal(t, state.PolicyLocal, ns.Services[1].InternalTrafficPolicy)
			require.Equal(t, []netip.Addr{netip.MustParseAddr("198.18.0.200")}, ns.Services[1].ExternalIPs)
			require.NotNil(t, ns.Services[0].Endpoints, "no endpoints is an empty list")
		},
	}, {
		name: "ExternalName, headless, other proxies and unset ClusterIPs are not proxied",
		services: []*corev1.Service{
			makeService("ext", "", func(s *corev1.Service) {
				s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "db.example.com"
			}),
			makeService("headless", corev1.ClusterIPNone),
			makeService("elsewhere", "10.96.0.40", func(s *corev1.Service) {
				s.Labels = map[string]string{ServiceProxyNameLabel: "other-proxy"}
			}),
			makeService("v6", "fd00::10"),
			nil,
		},
		slices: []*discoveryv1.EndpointSlice{
			makeSlice("headless-abcde", "headless", http8080(), ep("10.244.1.2", "node1")),
			makeSlice("ext-abcde", "ext", http8080(), ep("10.244.1.2", "node1")),
		},
		want: nil,
	}, {
		name: "the headless label filters slices, not Services (kube-proxy's two informers)",
		services: []*corev1.Service{
			makeService("labelled", "10.96.0.30", func(s *corev1.Service) {
				s.Labels = map[string]string{corev1.IsHeadlessService: ""}
			}),
			makeService("sliced", "10.96.0.31"),
		},
		slices: []*discoveryv1.EndpointSlice{
			makeSlice("labelled-abcde", "labelled", http8080(), ep("10.244.1.2", "node1")),
			labelSlice(makeSlice("sliced-abcde", "sliced", http8080(), ep("10.244.1.3", "node1")), corev1.IsHeadlessService, ""),
			labelSlice(makeSlice("sliced-fghij", "sliced", http8080(), ep("10.244.1.4", "node1")), ServiceProxyNameLabel, "other-proxy"),
		},
		// A slice labelled with another proxy's name still counts (only its
		// Service's label makes kube-proxy skip it).
		want: []string{"ns1/labelled:http/TCP 10.244.1.2:8080", "ns1/sliced:http/TCP 10.244.1.4:8080"},
	}, {
		name: "named target ports: matched by name and protocol",
		services: []*corev1.Service{makeService("svc", "10.96.0.10", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{
				{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("web")},
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("dns")},
				{Name: "sctp", Port: 9, Protocol: corev1.ProtocolSCTP},
			}
		})},
		slices: []*discoveryv1.EndpointSlice{
			// Two pods whose container ports differ: two port lists, two slices.
			makeSlice("svc-aaaaa", "svc", []discoveryv1.EndpointPort{port("http", 8080, corev1.ProtocolTCP), port("dns", 5353, corev1.ProtocolUDP)},
				ep("10.244.1.2", "node1")),
			makeSlice("svc-bbbbb", "svc", []discoveryv1.EndpointPort{port("http", 9090, corev1.ProtocolTCP)}, ep("10.244.2.3", "node2")),
			// A port of the same name but another protocol serves nothing.
			makeSlice("svc-ccccc", "svc", []discoveryv1.EndpointPort{port("http", 7070, corev1.ProtocolUDP), port("dns", 5300, corev1.ProtocolTCP)},
				ep("10.244.2.4", "node2")),
		},
		want: []string{"ns1/svc:dns/UDP 10.244.1.2:5353", "ns1/svc:http/TCP 10.244.1.2:8080,10.244.2.3:9090"},
	}, {
		name: "unnamed port",
		services: []*corev1.Service{makeService("svc", "10.96.0.10", func(s *corev1.Service) {
			s.Spec.Ports[0].Name = ""
			s.Spec.Ports[0].Protocol = ""
		})},
		slices: []*discoveryv1.EndpointSlice{
			makeSlice("svc-aaaaa", "svc", []discoveryv1.EndpointPort{{Name: ptr(""), Port: ptr(int32(3307))}}, ep("172.188.2.89", "")),
			makeSlice("svc-bbbbb", "svc", []discoveryv1.EndpointPort{{Port: ptr(int32(3308))}}, ep("172.188.2.90", "")),
		},
		want: []string{"ns1/svc/TCP 172.188.2.89:3307"},
	}, {
		name:     "not-ready and terminating endpoints",
		services: []*corev1.Service{makeService("svc", "10.96.0.10")},
		slices: []*discoveryv1.EndpointSlice{makeSlice("svc-abcde", "svc", http8080(),
			ep("10.244.1.2", "node1"),
			ep("10.244.1.3", "node1", notReady),
			ep("10.244.1.4", "node1", terminating(true)),
			ep("10.244.2.5", "node2", terminating(false)),
			ep("10.244.2.6", "node2", func(e *discoveryv1.Endpoint) { e.Conditions = discoveryv1.EndpointConditions{} }),
		)},
		want: []string{"ns1/svc:http/TCP 10.244.1.2:8080,10.244.2.6:8080 | 10.244.1.3:8080,10.244.1.4:8080st,10.244.2.5:8080t"},
		check: func(t *testing.T, ns *state.NodeState) {
			e := ns.Services[0].Endpoints[1]
			require.True(t, e.Ready && e.Serving && !e.Terminating, "missing conditions read as ready and serving")
		},
	}, {
		name:     "a Service spread over several slices, with duplicates",
		services: []*corev1.Service{makeService("svc", "10.96.0.10"), makeService("other", "10.96.0.20")},
		slices: []*discoveryv1.EndpointSlice{
			makeSlice("svc-bbbbb", "svc", http8080(), ep("10.244.2.3", "node2"), ep("10.244.2.4", "node2")),
			makeSlice("svc-aaaaa", "svc", http8080(), ep("10.244.1.2", "node1"), ep("10.244.2.3", "node2", notReady)),
			makeSlice("svc-ccccc", "svc", http8080(), ep("10.244.2.4", "", notReady), ep("10.244.1.2", "", notReady)),
			// The same address under a local node name wins over the first.
			makeSlice("svc-ddddd", "svc", http8080(), ep("10.244.2.4", "node1", terminating(true))),
			makeSlice("other-aaaaa", "other", http8080(), ep("10.244.1.9", "node1")),
		},
		want: []string{"ns1/other:http/TCP 10.244.1.9:8080", "ns1/svc:http/TCP 10.244.1.2:8080 | 10.244.2.3:8080,10.244.2.4:8080st"},
		check: func(t *testing.T, ns *state.NodeState) {
			require.Equal(t, "node1", ns.Services[1].NotReadyEndpoints[1].Node)
		},
	}, {
		name:     "slices of other Services, namespaces and families are not used",
		services: []*corev1.Service{makeService("svc", "10.96.0.10")},
		slices: []*discoveryv1.EndpointSlice{
			makeSlice("other-aaaaa", "other", http8080(), ep("10.244.1.9", "node1")),
			func() *discoveryv1.EndpointSlice {
				es := makeSlice("svc-aaaaa", "svc", http8080(), ep("10.244.1.8", "node1"))
				es.Namespace = "ns2"
				return es
			}(),
			func() *discoveryv1.EndpointSlice {
				es := makeSlice("svc-bbbbb", "svc", http8080(), ep("fd00::8", "node1"))
				es.AddressType = discoveryv1.AddressTypeIPv6
				return es
			}(),
			func() *discoveryv1.EndpointSlice {
				es := makeSlice("svc-ccccc", "svc", http8080(), ep("10.244.1.7", "node1"))
				es.Labels = nil
				return es
			}(),
			labelSlice(makeSlice("svc-ddddd", "svc", http8080(), ep("10.244.1.6", "node1")), corev1.IsHeadlessService, ""),
			makeSlice("svc-eeeee", "svc", []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP)}}, ep("10.244.1.5", "node1")),
			makeSlice("svc-fffff", "svc", http8080(), discoveryv1.Endpoint{}, ep("fd00::9", "node1"), ep("not-an-ip", "node1")),
			nil,
		},
		want: []string{"ns1/svc:http/TCP "},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			opt := Options{ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"), Generation: 7}
			ns := NodeState(makeNode(), tc.services, tc.slices, opt)
			require.NoError(t, ns.Validate())
			require.Equal(t, tc.want, summary(ns))
			if tc.check != nil {
				tc.check(t, ns)
			}
		})
	}
}

func TestNodeStateNode(t *testing.T) {
	opt := Options{ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"), Generation: 7}
	ns := NodeState(makeNode(), nil, nil, opt)
	require.Equal(t, state.Version, ns.Version)
	require.Equal(t, "node1", ns.Node)
	require.Equal(t, "zone-a", ns.Zone)
	require.Equal(t, uint64(7), ns.Generation)
	require.Equal(t, []netip.Addr{netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("203.0.113.1")}, ns.NodeIPs, "InternalIP first")
	require.Equal(t, netip.MustParsePrefix("10.244.1.0/24"), ns.PodCIDR)
	require.Equal(t, opt.ClusterCIDR, ns.ClusterCIDR)
	require.Equal(t, opt.ServiceCIDR, ns.ServiceCIDR)
	require.NotNil(t, ns.Services)

	// Endpoints carry their zone; the inputs are left as they were.
	es := makeSlice("svc-abcde", "svc", http8080(), ep("10.244.2.3", "node2", func(e *discoveryv1.Endpoint) { e.Zone = ptr("zone-b") }))
	svc := makeService("svc", "10.96.0.10")
	before := fmt.Sprint(*es, *svc)
	ns = NodeState(makeNode(), []*corev1.Service{svc}, []*discoveryv1.EndpointSlice{es}, opt)
	require.Equal(t, "zone-b", ns.Services[0].Endpoints[0].Zone)
	require.Equal(t, before, fmt.Sprint(*es, *svc))
	require.Empty(t, NodeState(nil, nil, nil, opt).Node)
}
