package scenarios

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// TestGatewayNamespaces mirrors the suite's cross-namespace tests, with
// the scenario's namespace as gateway-conformance-infra and two more as
// gateway-conformance-web-backend (labelled for the backend-namespaces
// listener) and gateway-conformance-app-backend:
// HTTPRouteCrossNamespace (a route in the backend namespace attaches to a
// Selector listener, reaches web-backend), HTTPRouteInvalidCrossNamespaceParentRef
// (the same route on a Same listener: Accepted False NotAllowedByListeners,
// no attached route), HTTPRouteReferenceGrant (a backendRef into another
// namespace allowed by a ReferenceGrant there) and
// HTTPRouteInvalidCrossNamespaceBackendRef (without one: ResolvedRefs
// False RefNotPermitted, 500).
func TestGatewayNamespaces(t *testing.T) {
	sc := harness.Scenario{Name: "gateway-namespaces", Title: "Gateway API: allowedRoutes across namespaces, ReferenceGrant", Group: results.GroupGateway}
	harness.Run(t, sc, gatewayOptions, func(h *harness.H) {
		web, app := h.NS+"-web", h.NS+"-app"
		defer func() {
			for _, ns := range []string{web, app} {
				if err := h.P.Delete(h.Ctx, plane.Ref{Kind: "namespace", Name: ns}); err != nil {
					h.T.Errorf("delete namespace %s: %v", ns, err)
				}
			}
		}()
		installGateway(h,
			fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {gateway-conformance: backend}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", web, app),
			replaceNS(echoBackends("web-backend"), web), replaceNS(echoBackends("app-backend"), app),
			gatewayDoc("same-namespace", "{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}"),
			gatewayDoc("backend-namespaces", "{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {gateway-conformance: backend}}}}}"),
			fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cross-namespace, namespace: %[1]s}
spec:
  parentRefs: [{name: backend-namespaces, namespace: %[3]s}]
  rules:
  - backendRefs: [{name: web-backend, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-cross-namespace-parent-ref, namespace: %[1]s}
spec:
  parentRefs: [{name: same-namespace, namespace: %[3]s}]
  rules:
  - backendRefs: [{name: web-backend, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: reference-grant, namespace: %[2]s}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: %[3]s}]
  to: [{group: "", kind: Service, name: app-backend}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reference-grant, namespace: %[3]s}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /granted}}]
    backendRefs: [{name: app-backend, namespace: %[2]s, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid-cross-namespace-backend-ref, namespace: %[3]s}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /not-granted}}]
    backendRefs: [{name: web-backend, namespace: %[1]s, port: 8080}]
`, web, app, h.NS))
		backendAddr := waitGatewayAddress(h, h.NS, "backend-namespaces")
		sameAddr := waitGatewayAddress(h, h.NS, "same-namespace")
		reason, ok := routeCondition(h, web, "cross-namespace", "Accepted", metav1.ConditionTrue)
		h.Check(ok, "HTTPRouteCrossNamespace: route Accepted by the Selector listener", "%s", reason)
		expectAll(h, backendAddr, []expect{{test: "HTTPRouteCrossNamespace", path: "/", backend: "web-backend"}})
		reason, ok = routeCondition(h, web, "invalid-cross-namespace-parent-ref", "Accepted", metav1.ConditionFalse)
		h.Check(ok && reason == "NotAllowedByListeners", "HTTPRouteInvalidCrossNamespaceParentRef: Accepted False NotAllowedByListeners", "%s", reason)
		reason, ok = routeCondition(h, h.NS, "reference-grant", "ResolvedRefs", metav1.ConditionTrue)
		h.Check(ok, "HTTPRouteReferenceGrant: ResolvedRefs True with the grant", "%s", reason)
		reason, ok = routeCondition(h, h.NS, "invalid-cross-namespace-backend-ref", "ResolvedRefs", metav1.ConditionFalse)
		h.Check(ok && reason == "RefNotPermitted", "HTTPRouteInvalidCrossNamespaceBackendRef: ResolvedRefs False RefNotPermitted", "%s", reason)
		expectAll(h, sameAddr, []expect{
			{test: "HTTPRouteReferenceGrant", path: "/granted", backend: "app-backend"},
			{test: "HTTPRouteInvalidCrossNamespaceBackendRef", path: "/not-granted", code: 500},
			{test: "HTTPRouteInvalidCrossNamespaceParentRef", path: "/", code: 404},
		})
		g := getGateway(h, h.NS, "same-namespace")
		h.Check(len(g.Status.Listeners) == 1 && g.Status.Listeners[0].AttachedRoutes == 2, "HTTPRouteInvalidCrossNamespaceParentRef: same-namespace's listener counts only its two own routes", "%+v", g.Status.Listeners)
	})
}

// replaceNS puts every object of docs (written without a namespace) into ns.
func replaceNS(docs, ns string) string {
	return strings.ReplaceAll(docs, "metadata: {name: ", "metadata: {namespace: "+ns+", name: ")
}
