package sim

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

func applySeed(t *testing.T) *Cluster {
	t.Helper()
	c, _ := newCluster(t, 2)
	seed, err := Load("testdata/seed")
	require.NoError(t, err)
	lines, err := c.Apply(seed)
	require.NoError(t, err)
	require.Equal(t, []string{
		"deployment.apps/getip-deployment created",
		"service/getip-service created",
		"service/getip-service-headless created",
		"deployment.apps/myhttp-v2 created",
		"service/myhttp-v2-service created",
		"service/myhttp-service created",
		"service/my-service created",
		"service/external-service created",
		"endpoints/external-service created",
		"Warning: extensions/v1beta1 Ingress is deprecated in v1.14+, unavailable in v1.22+; use networking.k8s.io/v1 Ingress (svcsim converted it)",
		"ingress.networking.k8s.io/ingress-http created",
	}, lines)
	return c
}

func TestSeedManifestsApplyAsWritten(t *testing.T) {
	c := applySeed(t)
	gen := c.Generation()

	np := svcOf(t, c, "default", "myhttp-v2-service")
	require.Equal(t, corev1.ServiceTypeNodePort, np.Spec.Type)
	require.Equal(t, int32(30080), np.Spec.Ports[0].NodePort)
	require.Equal(t, "None", svcOf(t, c, "default", "getip-service-headless").Spec.ClusterIP)

	for _, node := range []string{"node1", "node2"} {
		st := c.NodeState(node)
		require.NoError(t, st.Validate())
		require.Equal(t, gen, st.Generation)
		require.Equal(t, "10.244.0.0/16", st.ClusterCIDR.String())
		require.Equal(t, "10.96.0.0/12", st.ServiceCIDR.String())
		require.Nil(t, st.Service("default/getip-service-headless/TCP"), "headless Services are not proxied")
		ext := st.Service("default/external-service/TCP")
		require.NotNil(t, ext)
		require.Equal(t, "172.188.2.89:3307", ext.Endpoints[0].String())
		require.Empty(t, ext.Endpoints[0].Node)
		require.Len(t, st.Service("default/getip-service/TCP").Endpoints, 2)
		require.Len(t, st.Service("default/myhttp-v2-service/TCP").Endpoints, 2)
		require.Empty(t, st.Service("default/my-service:http/TCP").Endpoints)
		require.Equal(t, int32(443), st.Service("default/my-service:https/TCP").Port)
	}
	require.Equal(t, []netip.Addr{netip.MustParseAddr("198.18.0.12")}, c.NodeState("node2").NodeIPs)
	require.Equal(t, "10.244.2.0/24", c.NodeState("node2").PodCIDR.String())
	require.Nil(t, c.NodeState("node9"))

	ings := c.Ingresses()
	require.Len(t, ings, 1)
	ing := ings[0]
	require.Equal(t, "true", ing.Annotations["nginx.ingress.kubernetes.io/use-regex"])
	require.Equal(t, "www.tabops.com", ing.Spec.Rules[0].Host)
	b := ing.Spec.Rules[1].HTTP.Paths[0]
	require.Equal(t, "myhttp-service", b.Backend.Service.Name)
	require.Equal(t, int32(80), b.Backend.Service.Port.Number)
	require.Equal(t, networkingv1.PathTypeImplementationSpecific, *b.PathType)

	// Applying the same manifests again changes nothing.
	seed, _ := Load("testdata/seed")
	lines, err := c.Apply(seed)
	require.NoError(t, err)
	for _, l := range lines {
		require.True(t, strings.HasSuffix(l, " unchanged") || strings.HasPrefix(l, "Warning: extensions/v1beta1 Ingress"), l)
	}
	require.Equal(t, gen, c.Generation())
}

func TestSeedSessionAffinityPatch(t *testing.T) {
	c := applySeed(t)
	gen := c.Generation()
	// kubectl patch svc getip-service -p '{"spec":{"sessionAffinity":"ClientIP"}}'
	require.NoError(t, c.Patch("svc", "", "getip-service", []byte(`{"spec":{"sessionAffinity":"ClientIP"}}`)))
	require.Equal(t, gen+1, c.Generation())
	sp := c.NodeState("node1").Service("default/getip-service/TCP")
	require.True(t, sp.SessionAffinity)
	require.Equal(t, int32(10800), sp.AffinityTimeout)

	// The patch survives re-applying the manifest, as with kubectl's
	// three-way merge.
	seed, _ := Load("testdata/seed")
	_, err := c.Apply(seed)
	require.NoError(t, err)
	require.True(t, c.NodeState("node1").Service("default/getip-service/TCP").SessionAffinity)

	// A short timeout (YAML patch), then affinity off again.
	require.NoError(t, c.Patch("service", "default", "getip-service", []byte("spec:\n  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 5\n")))
	require.Equal(t, int32(5), c.NodeState("node1").Service("default/getip-service/TCP").AffinityTimeout)
	require.NoError(t, c.Patch("svc", "default", "getip-service", []byte(`{"spec":{"sessionAffinity":"None"}}`)))
	sp = c.NodeState("node1").Service("default/getip-service/TCP")
	require.False(t, sp.SessionAffinity)
	require.Nil(t, svcOf(t, c, "default", "getip-service").Spec.SessionAffinityConfig)

	// An invalid patch changes nothing.
	gen = c.Generation()
	err = c.Patch("svc", "default", "getip-service", []byte(`{"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":40000}]}}`))
	require.EqualError(t, err, `Service "getip-service" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767`)
	require.Equal(t, gen, c.Generation())
	require.Equal(t, corev1.ServiceTypeClusterIP, svcOf(t, c, "default", "getip-service").Spec.Type)

	// A no-op patch is no change.
	require.NoError(t, c.Patch("svc", "default", "getip-service", []byte(`{"spec":{"sessionAffinity":"None"}}`)))
	require.Equal(t, gen, c.Generation())

	require.EqualError(t, c.Patch("svc", "default", "nope", []byte(`{}`)), `services "nope" not found`)
	require.EqualError(t, c.Patch("widgets", "default", "x", []byte(`{}`)), `the server doesn't have a resource type "widgets"`)
	require.Error(t, c.Patch("svc", "default", "getip-service", []byte(`{not json`)))
}

func TestSeedEnv(t *testing.T) {
	c := applySeed(t)
	var pod Pod
	for _, p := range c.Pods() {
		if p.Owner == "deployment/getip-deployment" {
			pod = p
		}
	}
	require.NotEmpty(t, pod.Name)
	ip := svcOf(t, c, "default", "getip-service").Spec.ClusterIP
	env := map[string]string{}
	for _, e := range c.PodEnv("default", pod.Name) {
		env[e.Name] = e.Value
	}
	want := map[string]string{
		"GETIP_SERVICE_SERVICE_HOST":          ip,
		"GETIP_SERVICE_SERVICE_PORT":          "80",
		"GETIP_SERVICE_PORT":                  "tcp://" + ip + ":80",
		"GETIP_SERVICE_PORT_80_TCP":           "tcp://" + ip + ":80",
		"GETIP_SERVICE_PORT_80_TCP_PROTO":     "tcp",
		"GETIP_SERVICE_PORT_80_TCP_PORT":      "80",
		"GETIP_SERVICE_PORT_80_TCP_ADDR":      ip,
		"MY_SERVICE_SERVICE_PORT_HTTPS":       "443",
		"MY_SERVICE_PORT_443_TCP_PROTO":       "tcp",
		"EXTERNAL_SERVICE_SERVICE_PORT":       "3307",
		"MYHTTP_V2_SERVICE_SERVICE_PORT":      "8800",
		"MYHTTP_V2_SERVICE_PORT_8800_TCP":     "tcp://" + svcOf(t, c, "default", "myhttp-v2-service").Spec.ClusterIP + ":8800",
		"MY_SERVICE_SERVICE_PORT":             "80",
		"MY_SERVICE_SERVICE_PORT_HTTP":        "80",
		"MYHTTP_SERVICE_SERVICE_PORT":         "80",
		"MY_SERVICE_PORT_80_TCP_ADDR":         svcOf(t, c, "default", "my-service").Spec.ClusterIP,
		"EXTERNAL_SERVICE_PORT_3307_TCP":      "tcp://" + svcOf(t, c, "default", "external-service").Spec.ClusterIP + ":3307",
		"EXTERNAL_SERVICE_PORT_3307_TCP_PORT": "3307",
	}
	for k, v := range want {
		require.Equal(t, v, env[k], k)
	}
	for k := range env {
		require.False(t, strings.HasPrefix(k, "GETIP_SERVICE_HEADLESS"), "headless Services give no variables: %s", k)
	}
	require.Equal(t, pod.Env[:len(c.PodEnv("default", pod.Name))], c.PodEnv("default", pod.Name))
	require.Nil(t, c.PodEnv("default", "nope"))

	// A Service created after the pod is not in its environment.
	mustApply(t, c, makeService("default", "late"))
	for _, e := range c.PodEnv("default", pod.Name) {
		require.NotContains(t, e.Name, "LATE_")
	}
}

// DNS records of these are the cluster DNS add-on's (addons/clusterdns).
func TestExternalNameIsNotProxied(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c,
		makeService("default", "db", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "db.example.com."
			s.Spec.Selector = nil
		}),
		makeService("default", "sts", func(s *corev1.Service) {
			s.Spec.ClusterIP = "None"
			s.Spec.Ports[0].Name = "web"
		}),
		makePod("default", "sts-0", func(p *corev1.Pod) {
			p.Labels = map[string]string{"app": "sts"}
			p.Spec.Hostname, p.Spec.Subdomain = "sts-0", "sts"
		}),
	)
	require.Nil(t, c.NodeState("node1").Service("default/db/TCP"), "ExternalName is not proxied")
}

func TestNodeStateFields(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c,
		makeDeployment("default", "web", 2),
		makeService("default", "web", func(s *corev1.Service) {
			s.Annotations = map[string]string{SchedulerAnnotation: "sh"}
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.ExternalIPs = []string{"198.18.0.200"}
			s.Spec.Ports = []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr8080()}, {Name: "dns-tcp", Port: 53, TargetPort: intstr8080()}}
		}),
	)
	st := c.NodeState("node1")
	require.NoError(t, st.Validate())
	udp, tcp := st.Service("default/web:dns/UDP"), st.Service("default/web:dns-tcp/TCP")
	require.NotNil(t, udp)
	require.NotNil(t, tcp)
	require.Equal(t, "sh", udp.Scheduler)
	require.Equal(t, []netip.Addr{netip.MustParseAddr("198.18.0.200")}, udp.ExternalIPs)
	require.NotZero(t, udp.NodePort)
	require.Equal(t, udp.NodePort, tcp.NodePort, "one node port per service port number across protocols")
	require.Len(t, udp.Endpoints, 2)
	nodes := map[string]bool{}
	for _, e := range udp.Endpoints {
		nodes[e.Node] = true
		require.NotEmpty(t, e.Pod)
	}
	require.Equal(t, map[string]bool{"node1": true, "node2": true}, nodes)
	// Fresh values: changing one does not change the next.
	st.Services[0].Port = 1
	require.NotEqual(t, int32(1), c.NodeState("node1").Services[0].Port)
}

func TestLoadAndDecode(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	write("b.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: b\nspec:\n  ports:\n  - port: 80\n")
	write("a.yml", "---\n# comment only\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: c\n    image: i\n")
	write("c.json", `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"b"}}]}`)
	write("ignored.txt", "not a manifest")
	got, err := Load(dir)
	require.NoError(t, err)
	var srcs []string
	for _, o := range got {
		srcs = append(srcs, filepath.Base(o.Source))
	}
	require.Equal(t, []string{"a.yml:0", "a.yml:1", "b.yaml:0", "c.json:0[0]"}, srcs)
	require.IsType(t, &corev1.Endpoints{}, got[3].Obj)

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	require.ErrorContains(t, err, "does not exist")

	Stdin = strings.NewReader("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n")
	defer func() { Stdin = os.Stdin }()
	got, err = Load("-")
	require.NoError(t, err)
	require.Equal(t, "-:0", got[0].Source)

	_, err = Decode([]byte("apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: x\n"), "pv.yaml")
	require.EqualError(t, err, `pv.yaml:0: unsupported kind "PersistentVolume" (apiVersion "v1"): svcsim models `+SupportedKinds)
	_, err = Decode([]byte("apiVersion: apps/v1beta1\nkind: Deployment\nmetadata:\n  name: x\n"), "d.yaml")
	require.ErrorContains(t, err, `d.yaml:0: unsupported kind "Deployment" (apiVersion "apps/v1beta1")`)
	_, err = Decode([]byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n"), "s.yaml")
	require.ErrorContains(t, err, `s.yaml:0: decode Service (apiVersion v1)`)
	require.ErrorContains(t, err, `unknown field "portz"`)
	_, err = Decode([]byte("metadata:\n  name: x\n"), "k.yaml")
	require.EqualError(t, err, "k.yaml:0: Object 'Kind' is missing")

	beta := "apiVersion: networking.k8s.io/v1beta1\nkind: Ingress\nmetadata:\n  name: i\nspec:\n  backend:\n    serviceName: s\n    servicePort: http\n"
	got, err = Decode([]byte(beta), "i.yaml")
	require.NoError(t, err)
	ing := got[0].Obj.(*networkingv1.Ingress)
	require.Equal(t, "networking.k8s.io/v1", ing.APIVersion)
	require.Equal(t, "http", ing.Spec.DefaultBackend.Service.Port.Name)
}
