package gateway

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/svcsim/svcsim/addons/ingress/nginxconf"
	"github.com/svcsim/svcsim/addons/ingress/nginxconf/nginxtest"
	"github.com/svcsim/svcsim/sim"
)

// inputs decodes manifests through the model (so the CRDs' defaults are
// filled) and lists them as a controller's informers would.
func inputs(t *testing.T, docs string) Inputs {
	t.Helper()
	c, err := sim.New(sim.DefaultConfig(1))
	require.NoError(t, err)
	objs, err := sim.Decode([]byte(docs), "test.yaml")
	require.NoError(t, err)
	_, err = c.Apply(objs)
	require.NoError(t, err)
	in := Inputs{Now: time.Unix(1e9, 0), Ports: map[string]int{}, Addresses: map[string][]string{}}
	stored := func(kind string) []runtime.Object { o, _ := c.Stored(kind); return o }
	for _, o := range stored("GatewayClass") {
		in.Classes = append(in.Classes, o.(*gwv1.GatewayClass))
	}
	for _, o := range stored("Gateway") {
		in.Gateways = append(in.Gateways, o.(*gwv1.Gateway))
	}
	for _, o := range stored("HTTPRoute") {
		in.Routes = append(in.Routes, o.(*gwv1.HTTPRoute))
	}
	for _, o := range stored("ReferenceGrant") {
		in.Grants = append(in.Grants, o.(*gwv1.ReferenceGrant))
	}
	for _, o := range stored("Secret") {
		in.Secrets = append(in.Secrets, o.(*corev1.Secret))
	}
	for _, s := range c.Services() {
		in.Services = append(in.Services, s.DeepCopy())
	}
	for _, s := range c.EndpointSlices() {
		in.Slices = append(in.Slices, s.DeepCopy())
	}
	for _, n := range c.Namespaces() {
		in.Namespaces = append(in.Namespaces, n.DeepCopy())
	}
	return in
}

const testDocs = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: svcsim}
spec: {controllerName: svcsim.dev/gateway-nginx}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {team: b}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: svcsim
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: b}}}}}
  - {name: same, port: 8080, protocol: HTTP}
  - {name: tls, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: missing}]}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: other}
spec:
  ports: [{port: 8080, targetPort: 3000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: other, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: "", port: 3000, protocol: TCP}]
endpoints: [{addresses: [10.244.1.5]}, {addresses: [10.244.1.6]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: other}
spec:
  parentRefs: [{name: gw, namespace: default}]
  hostnames: [a.example]
  rules:
  - matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /p}, headers: [{name: X-Version, value: "v$2\"; return 200 x"}]}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Set, value: "a$b"}]
        add: [{name: X-Add, value: added}]
        remove: [X-Gone]
    backendRefs: [{name: web, port: 8080}, {name: missing, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: b.example, statusCode: 301}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: refused}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules: [{backendRefs: [{name: web, namespace: other, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-tls}
spec:
  parentRefs: [{name: gw, sectionName: tls}]
`

func cond(t *testing.T, cs []metav1.Condition, typ string) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(cs, typ)
	require.NotNil(t, c, "condition %s in %v", typ, cs)
	return *c
}

// Build attaches routes by allowedRoutes and hostnames, resolves
// backends, and gives every object the status the conformance tests read;
// the rendered configuration parses back and passes nginx -t.
func TestBuild(t *testing.T) {
	in := inputs(t, testDocs)
	dir := t.TempDir()
	base := Plan{Generation: 3, Prefix: dir, StatusPort: StatusPort}
	first := Build(ControllerName, in, base)
	require.Equal(t, map[string][]int32{"default/gw": {80, 443, 8080}}, first.Listeners)
	require.Equal(t, metav1.ConditionFalse, cond(t, first.Gateways["default/gw"].Conditions, "Programmed").Status)

	in.Ports = map[string]int{"default/gw:80": 20000, "default/gw:8080": 20001, "default/gw:443": 20002}
	in.Addresses = map[string][]string{"default/gw": {"198.18.1.1"}}
	b := Build(ControllerName, in, base)
	require.Equal(t, metav1.ConditionTrue, cond(t, b.Classes["/svcsim"].Conditions, "Accepted").Status)
	gs := b.Gateways["default/gw"]
	require.Equal(t, "198.18.1.1", gs.Addresses[0].Value)
	for _, typ := range []string{"Accepted", "Programmed"} {
		c := cond(t, gs.Conditions, typ)
		require.Equal(t, metav1.ConditionTrue, c.Status, typ)
		require.Equal(t, int64(1), c.ObservedGeneration)
	}
	require.Len(t, gs.Listeners, 3)
	// A listener whose certificate does not resolve is not served, and
	// the route on it does not keep the others from being served.
	require.Equal(t, "InvalidCertificateRef", cond(t, gs.Listeners[2].Conditions, "ResolvedRefs").Reason)
	require.NotContains(t, b.Plan.Ports, 20002)
	require.Equal(t, int32(1), gs.Listeners[0].AttachedRoutes, "the route from namespace other on the Selector listener")
	require.Equal(t, int32(0), gs.Listeners[1].AttachedRoutes, "the Same listener takes no route from other")

	rs := b.Routes["other/r"]
	require.Len(t, rs, 1)
	require.Equal(t, "Accepted", cond(t, rs[0].Conditions, "Accepted").Reason)
	rr := cond(t, rs[0].Conditions, "ResolvedRefs")
	require.Equal(t, metav1.ConditionFalse, rr.Status)
	require.Equal(t, "BackendNotFound", rr.Reason)

	ref := b.Routes["default/refused"]
	require.Len(t, ref, 1)
	require.Equal(t, "NotAllowedByListeners", cond(t, ref[0].Conditions, "Accepted").Reason)
	require.Equal(t, "RefNotPermitted", cond(t, ref[0].Conditions, "ResolvedRefs").Reason)

	text, tree, err := Render(&b.Plan)
	require.NoError(t, err)
	require.NoError(t, nginxconf.Check(text, tree))
	for _, want := range []string{
		"server 10.244.1.5:3000 weight=1 max_fails=0;", // two endpoints share web's weight 1 (scaled by 2)
		"server 127.0.0.1:10247 weight=2 max_fails=0;", // missing's weight 1 (scaled by 2): 500 from the status server
		`proxy_set_header X-Set "a${svcsim_dollar}b";`,
		"proxy_set_header X-Gone \"\";",
		"return 301 http://b.example$request_uri;",
	} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, text, "\nreturn 200 x")
	require.NoError(t, nginxtest.Run(t, dir, text), text)
	require.True(t, strings.Contains(text, "server_name a.example;"))
}

// The pinned module's standard CRDs are found and hold the four kinds.
func TestCRDs(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	require.Contains(t, string(mod), "\t"+Module+" "+PinnedVersion+"\n", "PinnedVersion is go.mod's pin")
	b, err := CRDs()
	if err != nil && os.Geteuid() != 0 {
		t.Skipf("as a normal user the module cache may be out of reach: %v", err)
	}
	require.NoError(t, err)
	for _, kind := range []string{"GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant"} {
		require.Contains(t, string(b), "\n    kind: "+kind+"\n")
	}
	require.NotContains(t, string(b), "ValidatingAdmissionPolicy")
}

// Listener kinds and protocols as GatewayInvalidRouteKind and
// GatewayListenerUnsupportedProtocol check them: supportedKinds holds the
// kinds served (HTTPRoute) even beside an invalid one, whose presence makes
// ResolvedRefs False (InvalidRouteKinds); a Gateway none of whose
// listeners is accepted is not Accepted.
func TestBuildListenerKindsAndProtocols(t *testing.T) {
	in := inputs(t, `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: svcsim}
spec: {controllerName: svcsim.dev/gateway-nginx}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: kinds}
spec:
  gatewayClassName: svcsim
  listeners:
  - {name: only-invalid, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: InvalidRoute}]}}
  - {name: mixed, port: 81, protocol: HTTP, allowedRoutes: {kinds: [{kind: InvalidRoute}, {kind: HTTPRoute}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tcp}
spec:
  gatewayClassName: svcsim
  listeners:
  - {name: tcp, port: 9000, protocol: TCP}
`)
	b := Build(ControllerName, in, Plan{Prefix: t.TempDir(), StatusPort: StatusPort})
	ls := b.Gateways["default/kinds"].Listeners
	require.Len(t, ls, 2)
	require.Empty(t, ls[0].SupportedKinds)
	require.Equal(t, "InvalidRouteKinds", cond(t, ls[0].Conditions, "ResolvedRefs").Reason)
	require.Len(t, ls[1].SupportedKinds, 1)
	require.Equal(t, "HTTPRoute", string(ls[1].SupportedKinds[0].Kind))
	require.Equal(t, "InvalidRouteKinds", cond(t, ls[1].Conditions, "ResolvedRefs").Reason)
	require.Equal(t, metav1.ConditionTrue, cond(t, b.Gateways["default/kinds"].Conditions, "Accepted").Status)
	tcp := b.Gateways["default/tcp"]
	require.Equal(t, metav1.ConditionFalse, cond(t, tcp.Conditions, "Accepted").Status)
	require.Equal(t, "UnsupportedProtocol", cond(t, tcp.Listeners[0].Conditions, "Accepted").Reason)
}
