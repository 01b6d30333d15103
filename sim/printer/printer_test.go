package printer

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/svcsim/svcsim/sim"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// seedCluster is the seed's manifests on two default nodes, created at t0.
func seedCluster(t *testing.T) *sim.Cluster {
	t.Helper()
	cfg := sim.DefaultConfig(2)
	cfg.Clock = func() time.Time { return t0 }
	c, err := sim.New(cfg)
	require.NoError(t, err)
	objs, err := sim.Load("../testdata/seed")
	require.NoError(t, err)
	_, err = c.Apply(objs)
	require.NoError(t, err)
	return c
}

func get(t *testing.T, c *sim.Cluster, r Request) string {
	t.Helper()
	if r.Now.IsZero() {
		r.Now = t0.Add(18*time.Hour + 3*time.Minute)
	}
	var b bytes.Buffer
	require.NoError(t, Print(&b, c, r))
	return b.String()
}

func TestTables(t *testing.T) {
	c := seedCluster(t)
	out := get(t, c, Request{Kind: "pods", Output: "wide", Selector: "app=getip"})
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 3)
	require.Regexp(t, `^NAME +READY   STATUS    RESTARTS   AGE   IP +NODE    NOMINATED NODE   READINESS GATES$`, lines[0])
	require.Regexp(t, `^getip-deployment-[a-z0-9]+-[a-z0-9]{5}   1/1     Running   0          18h   10\.244\.[12]\.2   node[12]   <none>           <none>$`, lines[1])

	out = get(t, c, Request{Kind: "svc", Output: "wide"})
	require.Contains(t, out, "NAME                     TYPE        CLUSTER-IP")
	require.Regexp(t, `(?m)^myhttp-v2-service +NodePort +10\.\d+\.\d+\.\d+ +<none> +8800:30080/TCP +18h +app=myhttp-v2$`, out)
	require.Regexp(t, `(?m)^getip-service-headless +ClusterIP +None +<none> +7070/TCP +18h +app=getip$`, out)
	require.Regexp(t, `(?m)^my-service +ClusterIP +\S+ +<none> +80/TCP,443/TCP +18h +app=MyApp$`, out)
	require.Regexp(t, `(?m)^external-service +ClusterIP +\S+ +<none> +3307/TCP +18h +<none>$`, out)

	out = get(t, c, Request{Kind: "ep"})
	require.Regexp(t, `(?m)^external-service +172\.188\.2\.89:3307 +18h$`, out)
	require.Regexp(t, `(?m)^getip-service-headless +10\.244\.1\.2:7080,10\.244\.2\.2:7080 +18h$`, out)
	require.Regexp(t, `(?m)^my-service +<none> +18h$`, out)

	out = get(t, c, Request{Kind: "ingress", Output: "wide", Now: t0.Add(8*time.Minute + 59*time.Second)})
	require.Equal(t, "NAME           CLASS    HOSTS                        ADDRESS   PORTS   AGE\n"+
		"ingress-http   <none>   www.tabops.com,www.pdd.com             80      8m59s\n", out)

	out = get(t, c, Request{Kind: "deploy", Output: "wide"})
	require.Equal(t, "NAME               READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS   IMAGES      SELECTOR\n"+
		"getip-deployment   2/2     2            2           18h   getip        getip:v1    app=getip\n"+
		"myhttp-v2          2/2     2            2           18h   myhttp       myhttp:v2   app=myhttp-v2\n", out)

	out = get(t, c, Request{Kind: "nodes", Output: "wide", Now: t0.Add(7*time.Minute + 41*time.Second)})
	require.Equal(t, "NAME    STATUS   ROLES    AGE     VERSION          INTERNAL-IP   EXTERNAL-IP   OS-IMAGE   KERNEL-VERSION   CONTAINER-RUNTIME\n"+
		"node1   Ready    <none>   7m41s   "+sim.KubernetesVersion+"   198.18.0.11   <none>        svcsim     host             svcsim://netns\n"+
		"node2   Ready    <none>   7m41s   "+sim.KubernetesVersion+"   198.18.0.12   <none>        svcsim     host             svcsim://netns\n", out)

	out = get(t, c, Request{Kind: "ns"})
	require.Contains(t, out, "default           Active   18h\n")

	out = get(t, c, Request{Kind: "po", Namespace: "kube-system"})
	require.Equal(t, "No resources found in kube-system namespace.\n", out)
	out = get(t, c, Request{Kind: "svc", AllNamespaces: true})
	require.True(t, strings.HasPrefix(out, "NAMESPACE   NAME "), out)
	out = get(t, c, Request{Kind: "svc", Name: "getip-service", Output: "name"})
	require.Equal(t, "service/getip-service\n", out)
}

func TestDaemonSetTable(t *testing.T) {
	cfg := sim.DefaultConfig(2)
	cfg.Clock = func() time.Time { return t0 }
	c, err := sim.New(cfg)
	require.NoError(t, err)
	objs, err := sim.Decode([]byte(`apiVersion: v1
kind: Namespace
metadata:
  name: ingress-nginx
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: nginx-ingress-controller
  namespace: ingress-nginx
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: ingress-nginx
  template:
    metadata:
      labels:
        app.kubernetes.io/name: ingress-nginx
    spec:
      nodeSelector:
        isIngress: "true"
      hostNetwork: true
      containers:
        - name: nginx-ingress-controller
          image: quay.io/kubernetes-ingress-controller/nginx-ingress-controller:0.28.0
          ports:
            - name: http
              containerPort: 80
`), "mandatory.yaml")
	require.NoError(t, err)
	_, err = c.Apply(objs)
	require.NoError(t, err)
	require.NoError(t, c.Label("node", "", "node1", map[string]string{"isIngress": "true"}))
	out := get(t, c, Request{Kind: "ds", Namespace: "ingress-nginx", Now: t0.Add(3*time.Hour + 31*time.Minute)})
	require.Equal(t, "NAME                       DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR    AGE\n"+
		"nginx-ingress-controller   1         1         1       1            1           isIngress=true   3h31m\n", out)
	out = get(t, c, Request{Kind: "pods", Namespace: "ingress-nginx", Output: "wide", Now: t0.Add(3*time.Hour + 31*time.Minute)})
	require.Regexp(t, `(?m)^nginx-ingress-controller-[a-z0-9]{5}   1/1     Running   0          3h31m   198\.18\.0\.11   node1   <none>           <none>$`, out)
}

func TestObjectsOutput(t *testing.T) {
	c := seedCluster(t)
	out := get(t, c, Request{Kind: "svc", Name: "myhttp-v2-service", Output: "yaml"})
	var m map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(out), &m))
	require.Equal(t, "Service", m["kind"])
	require.Equal(t, "v1", m["apiVersion"])
	require.Contains(t, out, "nodePort: 30080")

	out = get(t, c, Request{Kind: "svc", Output: "json"})
	require.NoError(t, yaml.Unmarshal([]byte(out), &m))
	require.Equal(t, "List", m["kind"])
	require.Len(t, m["items"], 6)

	var b bytes.Buffer
	require.ErrorContains(t, Print(&b, c, Request{Kind: "svc", Output: "toml"}), "allowed formats")
	require.EqualError(t, Print(&b, c, Request{Kind: "svc", Name: "nope"}), `services "nope" not found`)
	require.Error(t, Print(&b, c, Request{Kind: "svc", Selector: "a in (("}))
}

func TestKindNameAndAge(t *testing.T) {
	require.Equal(t, "service", KindName("svc"))
	require.Equal(t, "deployment.apps", KindName("deploy"))
	require.Equal(t, "daemonset.apps", KindName("ds"))
	require.Equal(t, "ingress.networking.k8s.io", KindName("ing"))
	require.Equal(t, "endpoints", KindName("ep"))
	require.Equal(t, "pod", KindName("pods"))
	require.Equal(t, "widget", KindName("Widget"))
	for d, want := range map[time.Duration]string{
		41 * time.Second:               "41s",
		7*time.Minute + 41*time.Second: "7m41s",
		11 * time.Minute:               "11m",
		3*time.Hour + 31*time.Minute:   "3h31m",
		18 * time.Hour:                 "18h",
		50 * time.Hour:                 "2d2h",
	} {
		require.Equal(t, want, Age(metav1.NewTime(t0), t0.Add(d)))
	}
	require.Equal(t, "<unknown>", Age(metav1.Time{}, t0))
}

func TestEndpointSlices(t *testing.T) {
	c := seedCluster(t)
	out := get(t, c, Request{Kind: "endpointslices"})
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Regexp(t, `^NAME +ADDRESSTYPE   PORTS +ENDPOINTS +AGE$`, lines[0])
	two := `10\.244\.[12]\.\d+,10\.244\.[12]\.\d+`
	for _, re := range []string{
		`external-service-[a-z0-9]{5} +IPv4 +3307 +172\.188\.2\.89 +18h`,
		`getip-service-[a-z0-9]{5} +IPv4 +80 +` + two + ` +18h`,
		`getip-service-headless-[a-z0-9]{5} +IPv4 +7080 +` + two + ` +18h`,
		`my-service-[a-z0-9]{5} +IPv4 +<unset> +<unset> +18h`,
		`myhttp-service-[a-z0-9]{5} +IPv4 +80 +` + two + ` +18h`,
		`myhttp-v2-service-[a-z0-9]{5} +IPv4 +80 +` + two + ` +18h`,
	} {
		require.Regexp(t, `(?m)^`+re+`$`, out)
	}
	require.Len(t, lines, 7)
	require.Equal(t, get(t, c, Request{Kind: "endpointslice"}), out)

	out = get(t, c, Request{Kind: "endpointslices", Output: "name"})
	require.Regexp(t, `(?m)^endpointslice\.discovery\.k8s\.io/getip-service-[a-z0-9]{5}$`, out)
	out = get(t, c, Request{Kind: "endpointslices", Output: "yaml", Selector: "kubernetes.io/service-name=external-service"})
	var list struct {
		Items []map[string]any `json:"items"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(out), &list))
	require.Len(t, list.Items, 1)
	require.Equal(t, "EndpointSlice", list.Items[0]["kind"])
	require.Equal(t, "discovery.k8s.io/v1", list.Items[0]["apiVersion"])
	require.Contains(t, out, "endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io")
	require.Contains(t, get(t, c, Request{Kind: "endpointslices", Output: "json"}), `"addressType": "IPv4"`)

	require.Equal(t, "<unset>", FormatSlicePorts(nil))
	p := func(n int32) discoveryv1.EndpointPort { return discoveryv1.EndpointPort{Port: &n} }
	name := "dns"
	require.Equal(t, "1,2,dns + 1 more...", FormatSlicePorts([]discoveryv1.EndpointPort{p(1), p(2), {Name: &name}, p(4)}))
	require.Equal(t, "*", FormatSlicePorts([]discoveryv1.EndpointPort{{}}))
	require.Equal(t, "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...", FormatSliceEndpoints([]discoveryv1.Endpoint{
		{Addresses: []string{"10.0.0.1", "10.0.0.2"}}, {Addresses: []string{"10.0.0.3"}}, {Addresses: []string{"10.0.0.4"}}, {Addresses: []string{"10.0.0.5"}}}))
}

// ingress-nginx's objects print with kubectl's columns.
func TestStoredKindTables(t *testing.T) {
	c := seedCluster(t)
	objs, err := sim.Decode([]byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: nginx-configuration}
data: {a: "1", b: "2"}
---
apiVersion: v1
kind: Secret
metadata: {name: tls}
type: kubernetes.io/tls
stringData: {tls.crt: x, tls.key: y}
---
apiVersion: rbac.authorization.k8s.io/v1beta1
kind: ClusterRoleBinding
metadata: {name: crb}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cr}
subjects: [{kind: ServiceAccount, name: sa, namespace: default}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
`), "x.yaml")
	require.NoError(t, err)
	_, err = c.Apply(objs)
	require.NoError(t, err)
	require.Equal(t, "NAME                  DATA   AGE\nnginx-configuration   2      18h\n", get(t, c, Request{Kind: "cm"}))
	require.Equal(t, "NAME   TYPE                DATA   AGE\ntls    kubernetes.io/tls   2      18h\n", get(t, c, Request{Kind: "secrets"}))
	require.Equal(t, "NAME   ROLE             AGE   USERS   GROUPS   SERVICEACCOUNTS\ncrb    ClusterRole/cr   18h                    default/sa\n",
		get(t, c, Request{Kind: "clusterrolebindings", Output: "wide", Namespace: "elsewhere"}))
	require.Equal(t, "NAME    CONTROLLER             PARAMETERS   AGE\nnginx   k8s.io/ingress-nginx   <none>       18h\n", get(t, c, Request{Kind: "ingressclass"}))
	require.Equal(t, "clusterrolebinding.rbac.authorization.k8s.io/crb\n", get(t, c, Request{Kind: "clusterrolebinding", Output: "name"}))
}

// TestIngressRow: CLASS is spec.ingressClassName (<none> for the older
// annotation), PORTS 80, 443 with a tls section, ADDRESS the status's.
func TestIngressRow(t *testing.T) {
	class := "nginx"
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "secure", CreationTimestamp: metav1.NewTime(t0)},
		Spec: networkingv1.IngressSpec{
			IngressClassName: &class,
			TLS:              []networkingv1.IngressTLS{{Hosts: []string{"secure.test"}, SecretName: "s"}},
			Rules:            []networkingv1.IngressRule{{Host: "secure.test"}, {}},
		},
		Status: networkingv1.IngressStatus{LoadBalancer: networkingv1.IngressLoadBalancerStatus{Ingress: []networkingv1.IngressLoadBalancerIngress{{IP: "198.18.1.1"}}}},
	}
	require.Equal(t, []string{"secure", "nginx", "secure.test,*", "198.18.1.1", "80, 443", "5m"}, ingressRow(ing, t0.Add(5*time.Minute)))
}
