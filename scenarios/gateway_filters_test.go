package scenarios

import (
	"fmt"
	"math"
	"testing"

	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// TestGatewayFilters mirrors the suite's core filter and weight tests:
// HTTPRouteRequestHeaderModifier (set overwrites, add appends, remove
// drops, several at once), HTTPRouteRedirectHostAndStatus (302 by
// default, 301 asked for, to another host with the path kept) and
// HTTPRouteWeight (weights 70/30/0 over three backends: 500 requests, each
// share within 5 points of its weight, the suite's tolerance).
func TestGatewayFilters(t *testing.T) {
	sc := harness.Scenario{Name: "gateway-filters", Title: "Gateway API: request header changes, redirects, weighted backends", Group: results.GroupGateway}
	listener := "{name: http, port: 80, protocol: HTTP}"
	harness.Run(t, sc, gatewayOptions, func(h *harness.H) {
		installGateway(h, echoBackends("infra-backend-v1", "infra-backend-v2", "infra-backend-v3"),
			gatewayDoc("filters", listener), gatewayDoc("weights", listener),
			`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: request-header-modifier}
spec:
  parentRefs: [{name: filters}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /set}}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, value: set-overwrites-values}]}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /add}}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: X-Header-Add, value: add-appends-values}]}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /remove}}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {remove: [X-Header-Remove]}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /multiple}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}]
        add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}, {name: X-Header-Add-3, value: header-add-3}]
        remove: [X-Header-Remove-1, X-Header-Remove-2]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /hostname-redirect}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org}}]
  - matches: [{path: {type: PathPrefix, value: /host-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301, hostname: example.org}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: weighted-backends}
spec:
  parentRefs: [{name: weights}]
  rules:
  - backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 70}
    - {name: infra-backend-v2, port: 8080, weight: 30}
    - {name: infra-backend-v3, port: 8080, weight: 0}
`)
		v1 := "infra-backend-v1"
		hm := "HTTPRouteRequestHeaderModifier"
		hdr := func(kv ...string) map[string]string {
			m := map[string]string{}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i]] = kv[i+1]
			}
			return m
		}
		rd := "HTTPRouteRedirectHostAndStatus"
		expectAll(h, waitGatewayAddress(h, h.NS, "filters"), []expect{
			{test: hm, path: "/set", headers: hdr("Some-Other-Header", "val"), backend: v1, sawHeaders: hdr("Some-Other-Header", "val", "X-Header-Set", "set-overwrites-values")},
			{test: hm, path: "/set", headers: hdr("Some-Other-Header", "val", "X-Header-Set", "some-other-value"), backend: v1, sawHeaders: hdr("X-Header-Set", "set-overwrites-values")},
			{test: hm, path: "/add", headers: hdr("Some-Other-Header", "val"), backend: v1, sawHeaders: hdr("Some-Other-Header", "val", "X-Header-Add", "add-appends-values")},
			{test: hm, path: "/add", headers: hdr("X-Header-Add", "some-other-value"), backend: v1, sawHeaders: hdr("X-Header-Add", "some-other-value,add-appends-values")},
			{test: hm, path: "/remove", headers: hdr("X-Header-Remove", "val"), backend: v1, sawHeaders: hdr("X-Header-Remove", "")},
			{test: hm, path: "/multiple", headers: hdr("X-Header-Set-2", "set-val-2", "X-Header-Add-2", "add-val-2", "X-Header-Add-3", "add-val-3", "X-Header-Remove-2", "remove-val-2", "Another-Header", "another-header-val"),
				backend: v1, sawHeaders: hdr("X-Header-Set-1", "header-set-1", "X-Header-Set-2", "header-set-2", "X-Header-Add-1", "header-add-1",
					"X-Header-Add-2", "add-val-2,header-add-2", "X-Header-Add-3", "add-val-3,header-add-3", "X-Header-Remove-2", "", "Another-Header", "another-header-val")},
			{test: rd, path: "/hostname-redirect", code: 302, location: "http://example.org/hostname-redirect"},
			{test: rd, path: "/host-and-status", code: 301, location: "http://example.org/host-and-status"},
		})
		addr := waitGatewayAddress(h, h.NS, "weights")
		expectAll(h, addr, []expect{{test: "HTTPRouteWeight", path: "/", code: 200}})
		c := gwClient(h)
		counts := map[string]int{}
		const n = 500
		failed := 0
		for i := 0; i < n; i++ {
			r, err := gwGet(h.Ctx, c, addr, "", "/", nil)
			if err != nil || r.Code != 200 {
				failed++
				continue
			}
			for _, b := range []string{"infra-backend-v1", "infra-backend-v2", "infra-backend-v3"} {
				if len(r.Echo.Pod) > len(b) && r.Echo.Pod[:len(b)+1] == b+"-" {
					counts[b]++
				}
			}
		}
		h.Check(failed == 0, "HTTPRouteWeight: every one of 500 requests answered", "%d failed", failed)
		for b, w := range map[string]float64{"infra-backend-v1": 0.7, "infra-backend-v2": 0.3, "infra-backend-v3": 0} {
			got := float64(counts[b]) / n
			h.Figure("HTTPRouteWeight share of "+b, got, "")
			h.Check(math.Abs(got-w) <= 0.05, fmt.Sprintf("HTTPRouteWeight: %s gets %.0f%% of the requests (within 5 points)", b, w*100), "%d of %d (%.1f%%)", counts[b], n, got*100)
		}
	})
}
