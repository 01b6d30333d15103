package sim

import (
	"testing"

	"github.com/stretchr/testify/require"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

const gatewayDocs = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: svcsim}
spec: {controllerName: svcsim.dev/gateway-nginx}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: svcsim
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: svc, port: 8080}]
`

// The Gateway API's kinds apply, are defaulted as the CRDs' schemas
// default them, count generations on spec changes only, keep status out of
// apply, and are refused with the CEL rules' messages.
func TestGatewayKinds(t *testing.T) {
	c, _ := newCluster(t, 1)
	apply := func(doc string) ([]string, error) {
		objs, err := Decode([]byte(doc), "gw.yaml")
		require.NoError(t, err)
		return c.Apply(objs)
	}
	lines, err := apply(gatewayDocs)
	require.NoError(t, err)
	require.Equal(t, []string{"gatewayclass.gateway.networking.k8s.io/svcsim created",
		"gateway.gateway.networking.k8s.io/gw created", "httproute.gateway.networking.k8s.io/r created"}, lines)
	o, err := c.Get("httproute", "default", "r")
	require.NoError(t, err)
	r := o.(*gwv1.HTTPRoute)
	require.Equal(t, int64(1), r.Generation)
	require.Equal(t, gwv1.PathMatchPathPrefix, *r.Spec.Rules[0].Matches[0].Path.Type)
	require.Equal(t, "/", *r.Spec.Rules[0].Matches[0].Path.Value)
	require.Equal(t, int32(1), *r.Spec.Rules[0].BackendRefs[0].Weight)
	require.Equal(t, gwv1.Kind("Gateway"), *r.Spec.ParentRefs[0].Kind)
	o, err = c.Get("gateways", "default", "gw")
	require.NoError(t, err)
	g := o.(*gwv1.Gateway)
	require.Equal(t, gwv1.NamespacesFromSame, *g.Spec.Listeners[0].AllowedRoutes.Namespaces.From)

	// Status through SetStatus only; apply keeps it; a spec change moves
	// the generation, an unchanged apply does not.
	g.Status.Addresses = []gwv1.GatewayStatusAddress{{Value: "198.18.1.1"}}
	_, err = c.SetStatus(g)
	require.NoError(t, err)
	lines, err = apply(gatewayDocs)
	require.NoError(t, err)
	require.Contains(t, lines, "gateway.gateway.networking.k8s.io/gw unchanged")
	_, err = apply("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  gatewayClassName: svcsim\n  listeners:\n  - {name: http, port: 8080, protocol: HTTP}\n")
	require.NoError(t, err)
	o, _ = c.Get("gateway", "default", "gw")
	g = o.(*gwv1.Gateway)
	require.Equal(t, int64(2), g.Generation)
	require.Equal(t, "198.18.1.1", g.Status.Addresses[0].Value)
	gws, ok := c.Stored("gateway")
	require.True(t, ok)
	require.Len(t, gws, 1)

	for _, tc := range []struct{ doc, msg string }{
		{"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: svcsim}\nspec: {controllerName: other.dev/x}\n",
			`GatewayClass.gateway.networking.k8s.io "svcsim" is invalid: spec.controllerName: Invalid value: "other.dev/x": Value is immutable`},
		{"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: two}\nspec:\n  gatewayClassName: svcsim\n  listeners:\n  - {name: a, port: 80, protocol: HTTP}\n  - {name: a, port: 81, protocol: HTTP}\n",
			"Listener name must be unique within the Gateway"},
		{"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: two}\nspec:\n  gatewayClassName: svcsim\n  listeners:\n  - {name: a, port: 80, protocol: HTTP}\n  - {name: b, port: 80, protocol: HTTP}\n",
			"Combination of port, protocol and hostname must be unique for each listener"},
		{"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: tls}\nspec:\n  gatewayClassName: svcsim\n  listeners:\n  - {name: a, port: 443, protocol: HTTPS, tls: {mode: Terminate}}\n",
			"certificateRefs or options must be specified when mode is Terminate"},
		{"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: p}\nspec:\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /a//b}}]\n",
			"must not contain '//' when type one of ['Exact', 'PathPrefix']"},
		{"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: p}\nspec:\n  rules:\n  - backendRefs: [{name: svc}]\n",
			"Must have port for Service reference"},
		{"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: p}\nspec:\n  rules:\n  - filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org}}]\n    backendRefs: [{name: svc, port: 80}]\n",
			"RequestRedirect filter must not be used together with backendRefs"},
		{"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: p}\nspec:\n  parentRefs: [{name: gw}, {name: gw}]\n",
			"sectionName or port must be specified when parentRefs includes 2 or more references to the same parent"},
	} {
		_, err := apply(tc.doc)
		require.ErrorContains(t, err, tc.msg)
	}
}
