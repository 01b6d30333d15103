package scenarios

import (
	"testing"

	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// TestGatewayMatching mirrors the suite's core matching tests, each route
// on a Gateway of its own (the suite runs them one after another on
// same-namespace; here they run side by side, each at its own address):
// HTTPRouteExactPathMatching (Exact /one and /two, nothing else),
// HTTPRouteMatching (PathPrefix element-wise, a header match ORed with a
// path), HTTPRouteHeaderMatching (ANDed headers, more headers first, ties
// to the earlier rule, ORed matches, 404 when none matches) and
// HTTPRouteMatchingAcrossRoutes (two routes sharing example.com merge;
// example.net only has the first's rules).
func TestGatewayMatching(t *testing.T) {
	sc := harness.Scenario{Name: "gateway-matching", Title: "Gateway API: Exact and PathPrefix paths, header matches, matching across routes", Group: results.GroupGateway}
	listener := "{name: http, port: 80, protocol: HTTP}"
	harness.Run(t, sc, gatewayOptions, func(h *harness.H) {
		installGateway(h, echoBackends("infra-backend-v1", "infra-backend-v2"),
			gatewayDoc("exact", listener), gatewayDoc("matching", listener), gatewayDoc("headers", listener), gatewayDoc("across", listener),
			`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: exact-matching}
spec:
  parentRefs: [{name: exact}]
  rules:
  - matches: [{path: {type: Exact, value: /one}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: Exact, value: /two}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matching}
spec:
  parentRefs: [{name: matching}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: header-matching}
spec:
  parentRefs: [{name: headers}]
  rules:
  - matches: [{headers: [{name: version, value: one}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{headers: [{name: version, value: two}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{headers: [{name: version, value: two}, {name: color, value: orange}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{headers: [{name: color, value: blue}]}, {headers: [{name: color, value: green}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{headers: [{name: color, value: red}]}, {headers: [{name: color, value: yellow}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matching-part1}
spec:
  parentRefs: [{name: across}]
  hostnames: [example.com, example.net]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: matching-part2}
spec:
  parentRefs: [{name: across}]
  hostnames: [example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
`)
		v1, v2 := "infra-backend-v1", "infra-backend-v2"
		t1 := "HTTPRouteExactPathMatching"
		expectAll(h, waitGatewayAddress(h, h.NS, "exact"), []expect{
			{test: t1, path: "/one", backend: v1}, {test: t1, path: "/two", backend: v2},
			{test: t1, path: "/", code: 404}, {test: t1, path: "/one/example", code: 404}, {test: t1, path: "/two/", code: 404},
		})
		t2 := "HTTPRouteMatching"
		expectAll(h, waitGatewayAddress(h, h.NS, "matching"), []expect{
			{test: t2, path: "/", backend: v1}, {test: t2, path: "/example", backend: v1},
			{test: t2, path: "/", headers: map[string]string{"Version": "one"}, backend: v1},
			{test: t2, path: "/v2", backend: v2}, {test: t2, path: "/v2/example", backend: v2},
			{test: t2, path: "/", headers: map[string]string{"Version": "two"}, backend: v2},
			{test: t2, path: "/v2/", backend: v2}, {test: t2, path: "/v2example", backend: v1}, {test: t2, path: "/foo/v2/example", backend: v1},
		})
		t3 := "HTTPRouteHeaderMatching"
		hdr := func(kv ...string) map[string]string {
			m := map[string]string{}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i]] = kv[i+1]
			}
			return m
		}
		expectAll(h, waitGatewayAddress(h, h.NS, "headers"), []expect{
			{test: t3, path: "/", headers: hdr("Version", "one"), backend: v1},
			{test: t3, path: "/", headers: hdr("Version", "two"), backend: v2},
			{test: t3, path: "/", headers: hdr("Version", "two", "Color", "orange"), backend: v1},
			{test: t3, path: "/", headers: hdr("Version", "two", "Color", "blue"), backend: v2},
			{test: t3, path: "/", headers: hdr("Color", "orange"), code: 404},
			{test: t3, path: "/", headers: hdr("Some-Other-Header", "one"), code: 404},
			{test: t3, path: "/", headers: hdr("Color", "blue"), backend: v1},
			{test: t3, path: "/", headers: hdr("Color", "green"), backend: v1},
			{test: t3, path: "/", headers: hdr("Color", "red"), backend: v2},
			{test: t3, path: "/", headers: hdr("Color", "yellow"), backend: v2},
			{test: t3, path: "/", headers: hdr("Color", "purple"), code: 404},
		})
		t4 := "HTTPRouteMatchingAcrossRoutes"
		expectAll(h, waitGatewayAddress(h, h.NS, "across"), []expect{
			{test: t4, host: "example.com", path: "/", backend: v1},
			{test: t4, host: "example.com", path: "/example", backend: v1},
			{test: t4, host: "example.net", path: "/example", backend: v1},
			{test: t4, host: "example.com", path: "/example", headers: hdr("Version", "one"), backend: v1},
			{test: t4, host: "example.com", path: "/v2", backend: v2},
			{test: t4, host: "example.net", path: "/v2", backend: v1},
			{test: t4, host: "example.com", path: "/v2/example", backend: v2},
			{test: t4, host: "example.com", path: "/", headers: hdr("Version", "two"), backend: v2},
			{test: t4, host: "example.net", path: "/", headers: hdr("Version", "two"), backend: v1},
			{test: t4, host: "example.org", path: "/", code: 404},
		})
	})
}
