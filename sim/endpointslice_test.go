package sim

import (
	"regexp"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// slicesOf returns the slices labelled with service ns/name.
func slicesOf(c *Cluster, ns, name string) []discoveryv1.EndpointSlice {
	var out []discoveryv1.EndpointSlice
	for _, es := range c.EndpointSlices() {
		if es.Namespace == ns && es.Labels[discoveryv1.LabelServiceName] == name {
			out = append(out, es)
		}
	}
	return out
}

// sliceIPs lists the addresses of the slices' endpoints, sorted.
func sliceIPs(ss []discoveryv1.EndpointSlice) []string {
	var out []string
	for _, es := range ss {
		for _, e := range es.Endpoints {
			out = append(out, e.Addresses...)
		}
	}
	sort.Strings(out)
	return out
}

var sliceName = regexp.MustCompile(`^web-[bcdfghjklmnpqrstvwxz2456789]{5}$`)

func TestSliceControllerWritesWhatTheControllerDoes(t *testing.T) {
	c, clk := newCluster(t, 2)
	require.NoError(t, c.Label("node", "", "node2", map[string]string{corev1.LabelTopologyZone: "zone-b"}))
	mustApply(t, c, makeDeployment("default", "web", 2), makeService("default", "web", func(s *corev1.Service) {
		s.Labels = map[string]string{"tier": "front", discoveryv1.LabelManagedBy: "someone"}
		s.Spec.Ports[0].Name = "http"
		s.Spec.Ports[0].TargetPort.StrVal, s.Spec.Ports[0].TargetPort.Type = "http", 1
	}))
	ss := slicesOf(c, "default", "web")
	require.Len(t, ss, 1)
	es := ss[0]
	svc := svcOf(t, c, "default", "web")
	require.Regexp(t, sliceName, es.Name)
	require.Equal(t, "web-", es.GenerateName)
	require.Equal(t, "discovery.k8s.io/v1", es.APIVersion)
	require.Equal(t, "EndpointSlice", es.Kind)
	require.Equal(t, map[string]string{"tier": "front", discoveryv1.LabelServiceName: "web",
		discoveryv1.LabelManagedBy: ManagedBySliceController}, es.Labels)
	require.Equal(t, clk.now.UTC().Format("2006-01-02T15:04:05Z"), es.Annotations[corev1.EndpointsLastChangeTriggerTime])
	require.Equal(t, []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: "web", UID: svc.UID,
		Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}}, es.OwnerReferences)
	require.Equal(t, discoveryv1.AddressTypeIPv4, es.AddressType)
	require.Equal(t, []discoveryv1.EndpointPort{{Name: ptrTo("http"), Port: ptrTo(int32(8080)), Protocol: ptrTo(corev1.ProtocolTCP)}}, es.Ports)
	require.NotEmpty(t, es.UID)
	require.Equal(t, int64(1), es.Generation)

	pods := podsOf(c, "deployment/web")
	require.Len(t, es.Endpoints, 2)
	byPod := map[string]discoveryv1.Endpoint{}
	for _, e := range es.Endpoints {
		byPod[e.TargetRef.Name] = e
	}
	for _, p := range pods {
		e := byPod[p.Name]
		require.Equal(t, []string{p.IP.String()}, e.Addresses)
		require.Equal(t, discoveryv1.EndpointConditions{Ready: ptrTo(true), Serving: ptrTo(true), Terminating: ptrTo(false)}, e.Conditions)
		require.Equal(t, p.Node, *e.NodeName)
		require.Equal(t, "Pod", e.TargetRef.Kind)
		if p.Node == "node2" {
			require.Equal(t, "zone-b", *e.Zone)
		} else {
			require.Nil(t, e.Zone)
		}
	}

	// A no-op change keeps the model's generation; a not-ready pod updates
	// the slice in place.
	gen := c.Generation()
	mustApply(t, c, makeService("default", "web", func(s *corev1.Service) {
		s.Labels = map[string]string{"tier": "front", discoveryv1.LabelManagedBy: "someone"}
		s.Spec.Ports[0].Name = "http"
		s.Spec.Ports[0].TargetPort.StrVal, s.Spec.Ports[0].TargetPort.Type = "http", 1
	}))
	require.Equal(t, gen, c.Generation())
	clk.now = clk.now.Add(90 * 1e9)
	require.NoError(t, c.SetPodReady("default", pods[0].Name, false))
	after := slicesOf(c, "default", "web")
	require.Len(t, after, 1)
	require.Equal(t, es.Name, after[0].Name)
	require.Equal(t, int64(2), after[0].Generation)
	require.Equal(t, clk.now.UTC().Format("2006-01-02T15:04:05Z"), after[0].Annotations[corev1.EndpointsLastChangeTriggerTime])
	for _, e := range after[0].Endpoints {
		ready := e.TargetRef.Name != pods[0].Name
		require.Equal(t, ready, *e.Conditions.Ready, e.TargetRef.Name)
		require.Equal(t, ready, *e.Conditions.Serving, e.TargetRef.Name)
	}
}

func TestSliceHeadlessAndPlaceholder(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c, makeService("default", "web", func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }))
	ss := slicesOf(c, "default", "web")
	require.Len(t, ss, 1, "a Service without endpoints has one placeholder slice")
	require.Empty(t, ss[0].Endpoints)
	require.Empty(t, ss[0].Ports)
	require.Contains(t, ss[0].Labels, corev1.IsHeadlessService)
	placeholder := ss[0].Name

	mustApply(t, c, makeDeployment("default", "web", 3))
	ss = slicesOf(c, "default", "web")
	require.Len(t, ss, 1)
	require.NotEqual(t, placeholder, ss[0].Name, "the placeholder has no ports: endpoints with a port list get their own slice")
	require.Len(t, ss[0].Endpoints, 3)

	require.NoError(t, c.Scale("deploy", "default", "web", 0))
	ss = slicesOf(c, "default", "web")
	require.Len(t, ss, 1)
	require.Empty(t, ss[0].Endpoints)

	require.NoError(t, c.Delete("svc", "default", "web"))
	require.Empty(t, slicesOf(c, "default", "web"), "the garbage collector removes slices of a deleted Service")
}

func TestSlicesHoldAtMost100Endpoints(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c, makeDeployment("default", "web", 150), makeService("default", "web"))
	ss := slicesOf(c, "default", "web")
	require.Len(t, ss, 2)
	require.Len(t, sliceIPs(ss), 150)
	names := map[string]int{}
	for _, es := range ss {
		require.LessOrEqual(t, len(es.Endpoints), MaxEndpointsPerSlice)
		names[es.Name] = len(es.Endpoints)
	}
	// Scaling down keeps the slices; endpoints are removed where they are.
	require.NoError(t, c.Scale("deploy", "default", "web", 120))
	ss = slicesOf(c, "default", "web")
	require.Len(t, sliceIPs(ss), 120)
	for _, es := range ss {
		_, ok := names[es.Name]
		require.True(t, ok, "slice %s is new", es.Name)
	}
	// Scaling up keeps the slices too (the controller does not rebalance:
	// 80 new endpoints fit in neither untouched slice, so they get a new one).
	require.NoError(t, c.Scale("deploy", "default", "web", 200))
	ss = slicesOf(c, "default", "web")
	require.Len(t, sliceIPs(ss), 200)
	seen := 0
	for _, es := range ss {
		require.LessOrEqual(t, len(es.Endpoints), MaxEndpointsPerSlice)
		if _, ok := names[es.Name]; ok {
			seen++
		}
	}
	require.Equal(t, 2, seen)
	require.Len(t, ss, 3)
}

func TestSliceMirroring(t *testing.T) {
	c, _ := newCluster(t, 2)
	ep := makeEndpoints("default", "db", "172.188.2.89")
	ep.Labels = map[string]string{"team": "data"}
	ep.Annotations = map[string]string{"note": "x"}
	ep.Subsets[0].NotReadyAddresses = []corev1.EndpointAddress{{IP: "172.188.2.90"}}
	mustApply(t, c, makeService("default", "db", func(s *corev1.Service) {
		s.Spec.Selector = nil
		s.Spec.Ports[0].Port = 3306
	}), ep)
	ss := slicesOf(c, "default", "db")
	require.Len(t, ss, 1)
	es := ss[0]
	require.Regexp(t, `^db-.{5}$`, es.Name)
	require.Equal(t, map[string]string{"team": "data", discoveryv1.LabelServiceName: "db",
		discoveryv1.LabelManagedBy: ManagedByMirroring}, es.Labels)
	require.Equal(t, "x", es.Annotations["note"])
	require.NotContains(t, es.Annotations, LastAppliedAnnotation)
	require.Equal(t, "Endpoints", es.OwnerReferences[0].Kind)
	require.Equal(t, []discoveryv1.EndpointPort{{Name: ptrTo(""), Port: ptrTo(int32(3307)), Protocol: ptrTo(corev1.ProtocolTCP)}}, es.Ports)
	require.Equal(t, []discoveryv1.Endpoint{
		{Addresses: []string{"172.188.2.89"}, Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(true)}},
		{Addresses: []string{"172.188.2.90"}, Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(false)}},
	}, es.Endpoints)

	// Skip-mirror, and a Service that gets a selector, remove the mirror.
	ep.Labels[discoveryv1.LabelSkipMirror] = "true"
	mustApply(t, c, ep)
	require.Empty(t, slicesOf(c, "default", "db"))
	delete(ep.Labels, discoveryv1.LabelSkipMirror)
	mustApply(t, c, ep)
	require.Len(t, slicesOf(c, "default", "db"), 1)
	require.NoError(t, c.Delete("ep", "default", "db"))
	require.Empty(t, slicesOf(c, "default", "db"))
}

func userSlice(name, svc string, mut ...func(*discoveryv1.EndpointSlice)) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "staff"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptrTo("http"), Port: ptrTo(int32(80))}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"172.188.2.89"}}},
	}
	for _, m := range mut {
		m(es)
	}
	return es
}

func TestUserSlices(t *testing.T) {
	c, _ := newCluster(t, 2)
	lines := mustApply(t, c, makeService("default", "ext", func(s *corev1.Service) { s.Spec.Selector = nil }), userSlice("ext-1", "ext"))
	require.Equal(t, "endpointslice.discovery.k8s.io/ext-1 created", lines[1])
	o, err := c.Get("endpointslices", "default", "ext-1")
	require.NoError(t, err)
	es := o.(*discoveryv1.EndpointSlice)
	require.Equal(t, corev1.ProtocolTCP, *es.Ports[0].Protocol, "protocol defaults to TCP")
	require.Equal(t, int64(1), es.Generation)
	require.Equal(t, []string{"endpointslice.discovery.k8s.io/ext-1 unchanged"}, mustApply(t, c, userSlice("ext-1", "ext")))
	mustApply(t, c, userSlice("ext-1", "ext", func(es *discoveryv1.EndpointSlice) { es.Endpoints[0].Addresses[0] = "172.188.2.90" }))
	o, _ = c.Get("endpointslice", "default", "ext-1")
	require.Equal(t, int64(2), o.(*discoveryv1.EndpointSlice).Generation)

	for _, tc := range []struct {
		name string
		mut  func(*discoveryv1.EndpointSlice)
		want string
	}{
		{"address type", func(es *discoveryv1.EndpointSlice) { es.AddressType = "" }, `addressType: Required value`},
		{"address type value", func(es *discoveryv1.EndpointSlice) { es.AddressType = "IP" }, `addressType: Unsupported value: "IP": supported values: "FQDN", "IPv4", "IPv6"`},
		{"no address", func(es *discoveryv1.EndpointSlice) { es.Endpoints[0].Addresses = nil }, `endpoints[0].addresses: Required value: must contain at least 1 address`},
		{"bad ip", func(es *discoveryv1.EndpointSlice) { es.Endpoints[0].Addresses[0] = "10.0.0.300" }, `endpoints[0].addresses[0]: Invalid value: "10.0.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`},
		{"loopback", func(es *discoveryv1.EndpointSlice) { es.Endpoints[0].Addresses[0] = "127.0.0.1" }, `endpoints[0].addresses[0]: Invalid value: "127.0.0.1": may not be in the loopback range`},
		{"port name", func(es *discoveryv1.EndpointSlice) { es.Ports[0].Name = ptrTo("HTTP") }, `ports[0].name: Invalid value: "HTTP"`},
		{"duplicate port", func(es *discoveryv1.EndpointSlice) { es.Ports = append(es.Ports, es.Ports[0]) }, `ports[1].name: Duplicate value: "http"`},
		{"protocol", func(es *discoveryv1.EndpointSlice) { es.Ports[0].Protocol = ptrTo(corev1.Protocol("ICMP")) }, `ports[0].protocol: Unsupported value: "ICMP"`},
		{"hostname", func(es *discoveryv1.EndpointSlice) { es.Endpoints[0].Hostname = ptrTo("a.b") }, `endpoints[0].hostname: Invalid value: "a.b"`},
		{"node name", func(es *discoveryv1.EndpointSlice) { es.Endpoints[0].NodeName = ptrTo("Node_1") }, `endpoints[0].nodeName: Invalid value: "Node_1"`},
		{"name", func(es *discoveryv1.EndpointSlice) { es.Name = "Bad_Name" }, `metadata.name: Invalid value: "Bad_Name"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Apply(objs(userSlice("ext-2", "ext", tc.mut)))
			require.ErrorContains(t, err, `EndpointSlice.discovery.k8s.io "`)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err = c.Apply(objs(userSlice("ext-1", "ext", func(es *discoveryv1.EndpointSlice) {
		es.AddressType = discoveryv1.AddressTypeFQDN
		es.Endpoints[0].Addresses[0] = "db.example.com"
	})))
	require.ErrorContains(t, err, "addressType: Invalid value: \"FQDN\": field is immutable")

	// Controllers leave a user's slice alone: it outlives its Service and
	// goes with its namespace.
	require.NoError(t, c.Delete("svc", "default", "ext"))
	require.Len(t, slicesOf(c, "default", "ext"), 1)
	require.NoError(t, c.Delete("endpointslice", "default", "ext-1"))
	require.Empty(t, c.EndpointSlices())
	ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	mustApply(t, c, ns, userSlice("s", "x", func(es *discoveryv1.EndpointSlice) { es.Namespace = "shop" }))
	require.Len(t, c.EndpointSlices(), 1)
	require.NoError(t, c.Delete("ns", "", "shop"))
	require.Empty(t, c.EndpointSlices())
}

// TestSliceDecode: a user's EndpointSlice decodes strictly and applies
// beside a controller's.
func TestSliceDecode(t *testing.T) {
	doc := `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ext-1, labels: {kubernetes.io/service-name: ext}}
addressType: IPv4
ports: [{name: "", port: 3307}]
endpoints: [{addresses: ["172.188.2.89"], conditions: {ready: true}}]
`
	os, err := Decode([]byte(doc), "s.yaml")
	require.NoError(t, err)
	require.IsType(t, &discoveryv1.EndpointSlice{}, os[0].Obj)
	_, err = Decode([]byte(doc+"bogus: 1\n"), "s.yaml")
	require.ErrorContains(t, err, "bogus")

	c, _ := newCluster(t, 2)
	_, err = c.Apply(os)
	require.NoError(t, err)
	mustApply(t, c, makeDeployment("default", "web", 2), makeService("default", "web"))
	require.Len(t, c.EndpointSlices(), 2, "the user's slice and the controller's")
}

func TestNodeStateFromSlices(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c, makeDeployment("default", "web", 2), makeService("default", "web"),
		makeService("default", "ext", func(s *corev1.Service) { s.Spec.Selector = nil; s.Spec.Ports[0].Name = "http" }),
		userSlice("ext-1", "ext"))
	pods := podsOf(c, "deployment/web")
	require.NoError(t, c.SetPodReady("default", pods[1].Name, false))
	ns := c.NodeState("node1")
	require.Equal(t, 2, ns.Version)
	require.NoError(t, ns.Validate())
	ext := ns.Service("default/ext:http/TCP")
	require.NotNil(t, ext)
	require.Len(t, ext.Endpoints, 1, "a user's slice feeds the proxies")
	require.Equal(t, "172.188.2.89:80", ext.Endpoints[0].String())
	web := ns.Service("default/web/TCP")
	require.Len(t, web.Endpoints, 1)
	require.Equal(t, pods[0].Name, web.Endpoints[0].Pod)
	require.Len(t, web.NotReadyEndpoints, 1)
	require.Equal(t, pods[1].Name, web.NotReadyEndpoints[0].Pod)
	require.Equal(t, pods[1].Node, web.NotReadyEndpoints[0].Node)
	require.Nil(t, c.NodeState("node9"))
}
