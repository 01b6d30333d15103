package sim

import (
	"net/netip"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var deployPodName = regexp.MustCompile(`^web-[bcdfghjklmnpqrstvwxz2456789]{9,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$`)

func endpointIPs(t *testing.T, c *Cluster, node, key string) []string {
	t.Helper()
	st := c.NodeState(node)
	require.NoError(t, st.Validate())
	sp := st.Service(key)
	require.NotNil(t, sp, "service port %s in NodeState", key)
	var out []string
	for _, e := range sp.Endpoints {
		out = append(out, e.IP.String())
	}
	return out
}

func TestDeploymentPodsAndScale(t *testing.T) {
	c, clk := newCluster(t, 2)
	mustApply(t, c, makeDeployment("default", "web", 2), makeService("default", "web", func(s *corev1.Service) {
		s.Spec.Ports[0].TargetPort = intstr.FromString("http")
	}))
	pods := podsOf(c, "deployment/web")
	require.Len(t, pods, 2)
	for _, p := range pods {
		require.Regexp(t, deployPodName, p.Name)
		require.True(t, p.Ready)
		require.Equal(t, "web", p.Labels["app"])
		require.NotEmpty(t, p.Labels[PodTemplateHashLabel])
	}
	require.NotEqual(t, pods[0].Node, pods[1].Node, "spread over the nodes")
	require.ElementsMatch(t, []string{"10.244.1.2", "10.244.2.2"}, endpointIPs(t, c, "node1", "default/web/TCP"))

	// Same seed and changes, same names.
	c2, _ := newCluster(t, 2)
	mustApply(t, c2, makeDeployment("default", "web", 2), makeService("default", "web", func(s *corev1.Service) {
		s.Spec.Ports[0].TargetPort = intstr.FromString("http")
	}))
	require.Equal(t, pods[0].Name, podsOf(c2, "deployment/web")[0].Name)

	// Scale up: the new pod is an endpoint.
	clk.now = clk.now.Add(60e9)
	require.NoError(t, c.Scale("deploy", "default", "web", 3))
	after := podsOf(c, "deployment/web")
	require.Len(t, after, 3)
	var newest Pod
	for _, p := range after {
		if p.Created.After(t0) {
			newest = p
		}
	}
	require.NotEmpty(t, newest.Name)
	require.Contains(t, endpointIPs(t, c, "node2", "default/web/TCP"), newest.IP.String())

	// Scale down removes the newest pod first.
	require.NoError(t, c.Scale("deployment", "default", "web", 2))
	names := map[string]bool{}
	for _, p := range podsOf(c, "deployment/web") {
		names[p.Name] = true
	}
	require.Equal(t, map[string]bool{pods[0].Name: true, pods[1].Name: true}, names)
	require.NotContains(t, endpointIPs(t, c, "node1", "default/web/TCP"), newest.IP.String())

	// Deleting a pod: it leaves the endpoints, a replacement with a new
	// name and address takes its place.
	gone := pods[0]
	require.NoError(t, c.Delete("po", "default", gone.Name))
	eps := endpointIPs(t, c, "node1", "default/web/TCP")
	require.Len(t, eps, 2)
	require.NotContains(t, eps, gone.IP.String())
	for _, p := range podsOf(c, "deployment/web") {
		require.NotEqual(t, gone.Name, p.Name)
	}

	require.Error(t, c.Scale("svc", "default", "web", 1))
	require.EqualError(t, c.Scale("deploy", "default", "nope", 1), `deployments.apps "nope" not found`)
	require.Error(t, c.Scale("deploy", "default", "web", -1))

	// Scale to zero empties the endpoints.
	require.NoError(t, c.Scale("deploy", "default", "web", 0))
	require.Empty(t, endpointIPs(t, c, "node1", "default/web/TCP"))
	d, err := c.Get("deploy", "default", "web")
	require.NoError(t, err)
	require.Equal(t, int32(0), d.(*appsv1.Deployment).Status.Replicas)
}

func TestDeploymentDefaultsAndRollout(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c, makeDeployment("default", "web", 0, func(d *appsv1.Deployment) { d.Spec.Replicas = nil }))
	require.Len(t, podsOf(c, "deployment/web"), 1, "replicas default to 1")
	old := podsOf(c, "deployment/web")[0]

	// A template change replaces the pods (instant rollout).
	mustApply(t, c, makeDeployment("default", "web", 1, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Image = "getip:v2"
	}))
	now := podsOf(c, "deployment/web")
	require.Len(t, now, 1)
	require.NotEqual(t, old.Name, now[0].Name)
	require.NotEqual(t, old.Labels[PodTemplateHashLabel], now[0].Labels[PodTemplateHashLabel])

	// The selector is immutable; it must match the template.
	_, err := c.Apply(objs(makeDeployment("default", "web", 1, func(d *appsv1.Deployment) {
		d.Spec.Selector.MatchLabels = map[string]string{"app": "other"}
		d.Spec.Template.Labels = map[string]string{"app": "other"}
	})))
	require.ErrorContains(t, err, `spec.selector: Invalid value:`)
	require.ErrorContains(t, err, `field is immutable`)
	_, err = c.Apply(objs(makeDeployment("default", "web2", 1, func(d *appsv1.Deployment) {
		d.Spec.Template.Labels = map[string]string{"app": "other"}
	})))
	require.ErrorContains(t, err, "Deployment.apps \"web2\" is invalid: spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`")
	_, err = c.Apply(objs(makeDeployment("default", "web3", 1, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers = nil
	})))
	require.ErrorContains(t, err, `spec.template.spec.containers: Required value`)
}

func TestScheduling(t *testing.T) {
	c, _ := newCluster(t, 3)
	mustApply(t, c,
		makePod("default", "a"),
		makePod("default", "b"),
		makePod("default", "c"),
		makePod("default", "d"),
		makePod("default", "pinned", func(p *corev1.Pod) { p.Spec.NodeName = "node3" }),
		makePod("default", "host", func(p *corev1.Pod) {
			p.Spec.HostNetwork = true
			p.Spec.NodeSelector = map[string]string{HostnameLabel: "node2"}
		}),
		makePod("default", "waits", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"isIngress": "true"} }),
	)
	byName := map[string]Pod{}
	for _, p := range c.Pods() {
		byName[p.Name] = p
	}
	// Fewest pods first, ties by name: a->node1, b->node2, c->node3, d->node1.
	require.Equal(t, "node1", byName["a"].Node)
	require.Equal(t, "node2", byName["b"].Node)
	require.Equal(t, "node3", byName["c"].Node)
	require.Equal(t, "node1", byName["d"].Node)
	require.Equal(t, "node3", byName["pinned"].Node)
	require.Equal(t, netip.MustParseAddr("10.244.1.2"), byName["a"].IP)
	require.Equal(t, netip.MustParseAddr("10.244.1.3"), byName["d"].IP)
	require.Equal(t, "0a:58:0a:f4:01:03", byName["d"].MAC.String())
	require.Equal(t, []ContainerPort{{Name: "http", Port: 8080, Protocol: "TCP"}}, byName["a"].Ports)

	host := byName["host"]
	require.Equal(t, "node2", host.Node)
	require.True(t, host.HostNetwork)
	require.Equal(t, netip.MustParseAddr("198.18.0.12"), host.IP)
	require.Nil(t, host.MAC)

	// No node matches: Pending, not in Pods(), scheduled once one does.
	_, ok := byName["waits"]
	require.False(t, ok)
	var pending *corev1.Pod
	for _, p := range c.PodObjects() {
		if p.Name == "waits" {
			pending = &p
		}
	}
	require.NotNil(t, pending)
	require.Equal(t, corev1.PodPending, pending.Status.Phase)
	gen := c.Generation()
	mustApply(t, c, makeService("default", "unrelated"))
	require.Equal(t, gen+1, c.Generation(), "a pending pod does not make every change count twice")
	require.NoError(t, c.Label("node", "", "node3", map[string]string{"isIngress": "true"}))
	for _, p := range c.Pods() {
		if p.Name == "waits" {
			require.Equal(t, "node3", p.Node)
			return
		}
	}
	t.Fatal("pod was not scheduled after the node was labelled")
}

func TestPodIPsAreNotReusedAtOnce(t *testing.T) {
	c, _ := newCluster(t, 1)
	mustApply(t, c, makePod("default", "a"), makePod("default", "b"))
	require.NoError(t, c.Delete("pod", "default", "a"))
	mustApply(t, c, makePod("default", "c"))
	for _, p := range c.Pods() {
		if p.Name == "c" {
			require.Equal(t, "10.244.1.4", p.IP.String(), "like host-local IPAM, allocation goes on after the last address")
		}
	}
	_, err := c.Apply(objs(makePod("default", "x", func(p *corev1.Pod) { p.Spec.NodeName = "node9" })))
	require.ErrorContains(t, err, `spec.nodeName: Invalid value: "node9": no such node in the simulated cluster`)
	// Pods are immutable apart from labels and annotations.
	_, err = c.Apply(objs(makePod("default", "b", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 9 })))
	require.ErrorContains(t, err, `Pod "b" is invalid: spec: Forbidden: pod updates may not change fields`)
	lines := mustApply(t, c, makePod("default", "b", func(p *corev1.Pod) { p.Labels["tier"] = "x" }))
	require.Equal(t, []string{"pod/b configured"}, lines)
}

func TestDaemonSetFollowsNodeLabels(t *testing.T) {
	c, _ := newCluster(t, 2)
	ds := &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "nginx-ingress-controller", Namespace: "ingress-nginx"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "ingress"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "ingress"}},
				Spec: corev1.PodSpec{
					HostNetwork:  true,
					NodeSelector: map[string]string{"isIngress": "true"},
					Containers:   []corev1.Container{{Name: "nginx", Image: "nginx", Ports: []corev1.ContainerPort{{ContainerPort: 80}}}},
				},
			},
		},
	}
	ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "ingress-nginx"}}
	// The namespace comes later in the batch but is created first.
	lines := mustApply(t, c, ds, ns)
	require.Equal(t, []string{"daemonset.apps/nginx-ingress-controller created", "namespace/ingress-nginx created"}, lines)
	require.Empty(t, podsOf(c, "daemonset/nginx-ingress-controller"))

	require.NoError(t, c.Label("node", "", "node1", map[string]string{"isIngress": "true"}))
	pods := podsOf(c, "daemonset/nginx-ingress-controller")
	require.Len(t, pods, 1)
	require.Regexp(t, `^nginx-ingress-controller-[bcdfghjklmnpqrstvwxz2456789]{5}$`, pods[0].Name)
	require.Equal(t, "node1", pods[0].Node)
	require.Equal(t, "198.18.0.11", pods[0].IP.String())

	require.NoError(t, c.Label("no", "", "node2", map[string]string{"isIngress": "true"}))
	require.Len(t, podsOf(c, "daemonset/nginx-ingress-controller"), 2)
	require.NoError(t, c.Label("nodes", "", "node1", map[string]string{"isIngress-": ""}))
	pods = podsOf(c, "daemonset/nginx-ingress-controller")
	require.Len(t, pods, 1)
	require.Equal(t, "node2", pods[0].Node)
	for _, n := range c.Nodes() {
		if n.Name == "node1" {
			require.NotContains(t, n.Labels, "isIngress")
			require.Equal(t, "node1", n.Labels[HostnameLabel])
		}
	}

	// Node manifests set labels of existing nodes only.
	node := &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{"isIngress": "true"}}}
	require.Equal(t, []string{"node/node1 configured"}, mustApply(t, c, node))
	require.Len(t, podsOf(c, "daemonset/nginx-ingress-controller"), 2)
	require.Equal(t, []string{"node/node1 unchanged"}, mustApply(t, c, node))
	node.Name = "node7"
	_, err := c.Apply(objs(node))
	require.ErrorContains(t, err, `nodes "node7" not found`)

	// Deleting the DaemonSet deletes its pods.
	require.NoError(t, c.Delete("ds", "ingress-nginx", "nginx-ingress-controller"))
	require.Empty(t, podsOf(c, "daemonset/nginx-ingress-controller"))
}

func TestEndpointsController(t *testing.T) {
	c, _ := newCluster(t, 2)
	withPort := func(name string, port int32) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Labels = map[string]string{"app": "web"}
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: name, ContainerPort: port}}
		}
	}
	mustApply(t, c,
		makePod("default", "p1", withPort("http", 8080)),
		makePod("default", "p2", withPort("http", 9090)),
		makePod("default", "p3", withPort("metrics", 7000)),
		&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "other"}},
		makePod("other", "p4", withPort("http", 8080)),
		makeService("default", "web", func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("http") }),
	)
	st := c.NodeState("node1")
	sp := st.Service("default/web/TCP")
	require.NotNil(t, sp)
	var got []string
	for _, e := range sp.Endpoints {
		got = append(got, e.String()+"@"+e.Node+"/"+e.Pod)
	}
	// p1 and p2 resolve "http" to their own numbers; p3 lacks it; p4 is
	// in another namespace.
	require.ElementsMatch(t, []string{"10.244.1.2:8080@node1/p1", "10.244.2.2:9090@node2/p2"}, got)

	ep, err := c.Get("ep", "default", "web")
	require.NoError(t, err)
	require.Len(t, ep.(*corev1.Endpoints).Subsets, 2, "one subset per distinct port set, like the controller")

	// Not ready: out of NodeState, in notReadyAddresses.
	require.NoError(t, c.SetPodReady("default", "p1", false))
	require.Equal(t, []string{"10.244.2.2"}, endpointIPs(t, c, "node1", "default/web/TCP"))
	ep, _ = c.Get("endpoints", "default", "web")
	var notReady []string
	for _, ss := range ep.(*corev1.Endpoints).Subsets {
		for _, a := range ss.NotReadyAddresses {
			notReady = append(notReady, a.IP)
		}
	}
	require.Equal(t, []string{"10.244.1.2"}, notReady)
	require.NoError(t, c.SetPodReady("default", "p1", true))
	require.Len(t, endpointIPs(t, c, "node1", "default/web/TCP"), 2)
	require.Error(t, c.SetPodReady("default", "nope", true))

	// Relabelling a pod takes it out.
	require.NoError(t, c.Label("pod", "default", "p2", map[string]string{"app": "other"}))
	require.Equal(t, []string{"10.244.1.2"}, endpointIPs(t, c, "node1", "default/web/TCP"))

	// A user's Endpoints of a selector Service are overwritten.
	mustApply(t, c, makeEndpoints("default", "web", "192.0.2.1"))
	require.Equal(t, []string{"10.244.1.2"}, endpointIPs(t, c, "node1", "default/web/TCP"))

	// Deleting the Service deletes its Endpoints.
	require.NoError(t, c.Delete("svc", "default", "web"))
	_, err = c.Get("ep", "default", "web")
	require.EqualError(t, err, `endpoints "web" not found`)
}
