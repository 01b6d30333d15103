package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/svcsim/svcsim/addons/gateway"
	"github.com/svcsim/svcsim/addons/ingress"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	"github.com/svcsim/svcsim/topology"
)

// The Gateway scenarios mirror the core HTTPRoute tests of the Gateway
// API's conformance suite (sigs.k8s.io/gateway-api/conformance v1.6.3,
// tests/*.go and their YAML): the same kinds of objects applied, the same
// requests from outside (the external namespace, through the Gateway's
// load-balancer address, a node's datapath and the controller's nginx),
// the same answers expected of the suite's echo backend. Each check names
// the upstream test it mirrors.

var gatewayOptions = harness.Options{Needs: gatewayNeeds}

func gatewayNeeds() string {
	if _, err := ingress.Binary(); err != nil {
		return err.Error()
	}
	return ""
}

// echoBackends is the suite's infra-backend-v1..v3 pattern: a Deployment
// of the echo image and its Service (port 8080 to the echo's 3000) each.
func echoBackends(names ...string) string {
	var docs []string
	for _, n := range names {
		docs = append(docs, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, labels: {app: %[1]s}}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers:
      - name: echo
        image: registry.k8s.io/gateway-api/echo-basic:v1.5.1
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
---
apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  selector: {app: %[1]s}
  ports: [{port: 8080, targetPort: 3000}]
`, n))
	}
	return strings.Join(docs, "---\n")
}

// gatewayDoc is a Gateway of svcsim's class in the scenario's namespace
// with the listeners given (YAML list items).
func gatewayDoc(name string, listeners ...string) string {
	return "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: " + name + "}\nspec:\n  gatewayClassName: " + gateway.ClassName +
		"\n  listeners:\n  - " + strings.Join(listeners, "\n  - ") + "\n"
}

// installGateway applies the add-on's objects (namespace, class,
// controller) and the given manifests.
func installGateway(h *harness.H, manifests ...string) {
	h.T.Helper()
	h.Apply(gateway.Manifests)
	h.Apply(manifests...)
}

func getGateway(h *harness.H, ns, name string) *gwv1.Gateway {
	h.T.Helper()
	o, err := h.P.Get(h.Ctx, plane.Ref{Kind: "gateway", Namespace: ns, Name: name})
	if err != nil {
		h.Fatalf("get gateway %s/%s: %v", ns, name, err)
	}
	return o.(*gwv1.Gateway)
}

func getRoute(h *harness.H, ns, name string) *gwv1.HTTPRoute {
	h.T.Helper()
	o, err := h.P.Get(h.Ctx, plane.Ref{Kind: "httproute", Namespace: ns, Name: name})
	if err != nil {
		h.Fatalf("get httproute %s/%s: %v", ns, name, err)
	}
	return o.(*gwv1.HTTPRoute)
}

// waitGatewayAddress waits until Gateway ns/name is Programmed with an
// address and returns it.
func waitGatewayAddress(h *harness.H, ns, name string) string {
	h.T.Helper()
	start := time.Now()
	var g *gwv1.Gateway
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		g = getGateway(h, ns, name)
		if c := meta.FindStatusCondition(g.Status.Conditions, "Programmed"); c != nil && c.Status == metav1.ConditionTrue && len(g.Status.Addresses) > 0 {
			h.Figure("gateway "+name+" programmed after", time.Since(start).Seconds(), "s")
			return g.Status.Addresses[0].Value
		}
	}
	h.Fatalf("Gateway %s/%s not Programmed with an address within 30 s: %+v", ns, name, g.Status)
	return ""
}

// routeCondition waits (up to 10 s) for a route's condition of the given
// parent to have status want, and returns its reason.
func routeCondition(h *harness.H, ns, name, typ string, want metav1.ConditionStatus) (string, bool) {
	h.T.Helper()
	var last string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r := getRoute(h, ns, name)
		for _, p := range r.Status.Parents {
			if string(p.ControllerName) != gateway.ControllerName {
				continue
			}
			c := meta.FindStatusCondition(p.Conditions, typ)
			if c == nil {
				continue
			}
			last = fmt.Sprintf("%s %s (%s), observedGeneration %d of %d", c.Status, c.Reason, c.Message, c.ObservedGeneration, r.Generation)
			if c.Status == want && c.ObservedGeneration == r.Generation {
				return c.Reason, true
			}
		}
	}
	return last, false
}

// gwReply is one answer seen from outside.
type gwReply struct {
	Code     int
	Location string
	Echo     gateway.EchoReply
	Body     string
}

// gwClient sends requests from the external namespace, without following
// redirects, a new connection each.
func gwClient(h *harness.H) *http.Client {
	c := topology.HTTPClient(external(h).NS, false, 3*time.Second)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

func gwGet(ctx context.Context, c *http.Client, addr, host, path string, headers map[string]string) (gwReply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return gwReply{}, err
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return gwReply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return gwReply{}, err
	}
	r := gwReply{Code: resp.StatusCode, Location: resp.Header.Get("Location"), Body: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(b, &r.Echo)
	}
	return r, nil
}

// expect is one request and what must answer it.
type expect struct {
	test    string // the upstream conformance test
	host    string
	path    string
	headers map[string]string
	// backend is the Deployment whose pod must answer (""; then code).
	backend string
	code    int
	// location is the redirect's Location.
	location string
	// sawHeaders must be in the request the backend saw ("" value: absent).
	sawHeaders map[string]string
}

// expectAll sends each request until it is answered as expected (routes
// converge within 10 s, as the suite allows eventual consistency) and
// checks it; the answer must then hold for three requests in a row.
func expectAll(h *harness.H, addr string, es []expect) {
	h.T.Helper()
	c := gwClient(h)
	for _, e := range es {
		var last string
		ok := false
		good := 0
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && good < 3; {
			r, err := gwGet(h.Ctx, c, addr, e.host, e.path, e.headers)
			why := matchReply(e, r, err)
			if why == "" {
				good++
				continue
			}
			good, last = 0, why
			time.Sleep(50 * time.Millisecond)
		}
		ok = good >= 3
		name := fmt.Sprintf("%s: %s %s", e.test, orAny(e.host), e.path)
		if len(e.headers) > 0 {
			name += fmt.Sprintf(" %v", e.headers)
		}
		want := e.backend
		if want == "" {
			want = fmt.Sprint(e.code)
			if e.location != "" {
				want += " " + e.location
			}
		}
		h.Check(ok, name+" -> "+want, "%s", last)
	}
}

func orAny(host string) string {
	if host == "" {
		return "(no host)"
	}
	return host
}

func matchReply(e expect, r gwReply, err error) string {
	if err != nil {
		return err.Error()
	}
	code := e.code
	if code == 0 {
		code = 200
	}
	if r.Code != code {
		return fmt.Sprintf("status %d, want %d (%.200s)", r.Code, code, r.Body)
	}
	if e.location != "" && r.Location != e.location {
		return fmt.Sprintf("Location %q, want %q", r.Location, e.location)
	}
	if e.backend != "" && !strings.HasPrefix(r.Echo.Pod, e.backend+"-") {
		return fmt.Sprintf("answered by pod %q, want one of %s", r.Echo.Pod, e.backend)
	}
	for k, v := range e.sawHeaders {
		got := strings.Join(r.Echo.Headers[http.CanonicalHeaderKey(k)], ",")
		if got != v {
			return fmt.Sprintf("backend saw %s: %q, want %q", k, got, v)
		}
	}
	return ""
}

// checkAddress checks a Gateway address is of the cloud's pool.
func checkAddress(h *harness.H, addr string) {
	h.T.Helper()
	a, err := netip.ParseAddr(addr)
	h.Check(err == nil && topology.DefaultLoadBalancerPool.Contains(a), "the Gateway's address is of the cloud load balancer's pool", "%s (pool %v)", addr, topology.DefaultLoadBalancerPool)
}

// TestGatewayHTTPRoute mirrors the suite's basic attachment and status
// tests: HTTPRouteSimpleSameNamespace (a route on the same-namespace
// Gateway reaches infra-backend-v1), GatewayClass Accepted
// (GatewayClassObservedGenerationBump's condition), Gateway Accepted and
// Programmed with an address (GatewayObservedGenerationBump), listener
// attachedRoutes (GatewayWithAttachedRoutes), route Accepted and
// ResolvedRefs, HTTPRouteObservedGenerationBump (a changed route is
// observed at its new generation), and HTTPRouteInvalidNonExistentBackendRef
// (ResolvedRefs False BackendNotFound, 500).
func TestGatewayHTTPRoute(t *testing.T) {
	sc := harness.Scenario{Name: "gateway-httproute", Title: "Gateway API: Gateway status, a route attached, generations, a missing backend", Group: results.GroupGateway}
	harness.Run(t, sc, gatewayOptions, func(h *harness.H) {
		installGateway(h, echoBackends("infra-backend-v1"), gatewayDoc("same-namespace", "{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}"),
			`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gateway-conformance-infra-test}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs: [{name: infra-backend-v1, port: 8080}]
`)
		addr := waitGatewayAddress(h, h.NS, "same-namespace")
		checkAddress(h, addr)
		g := getGateway(h, h.NS, "same-namespace")
		for _, typ := range []string{"Accepted", "Programmed"} {
			c := meta.FindStatusCondition(g.Status.Conditions, typ)
			h.Check(c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == g.Generation,
				"GatewayObservedGenerationBump: Gateway "+typ+" True at its generation", "%+v", c)
		}
		reason, ok := routeCondition(h, h.NS, "gateway-conformance-infra-test", "Accepted", metav1.ConditionTrue)
		h.Check(ok, "HTTPRouteSimpleSameNamespace: route Accepted", "%s", reason)
		reason, ok = routeCondition(h, h.NS, "gateway-conformance-infra-test", "ResolvedRefs", metav1.ConditionTrue)
		h.Check(ok, "HTTPRouteSimpleSameNamespace: route ResolvedRefs", "%s", reason)
		expectAll(h, addr, []expect{{test: "HTTPRouteSimpleSameNamespace", path: "/", backend: "infra-backend-v1"}})
		g = getGateway(h, h.NS, "same-namespace")
		h.Check(len(g.Status.Listeners) == 1 && g.Status.Listeners[0].AttachedRoutes == 1, "GatewayWithAttachedRoutes: listener http has 1 attached route", "%+v", g.Status.Listeners)
		gco, err := h.P.Get(h.Ctx, plane.Ref{Kind: "gatewayclass", Name: gateway.ClassName})
		if err != nil {
			h.Fatalf("get gatewayclass: %v", err)
		}
		gc := gco.(*gwv1.GatewayClass)
		c := meta.FindStatusCondition(gc.Status.Conditions, "Accepted")
		h.Check(c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == gc.Generation, "GatewayClassObservedGenerationBump: GatewayClass Accepted at its generation", "%+v", c)

		// A second rule to a Service that does not exist: the route moves
		// to generation 2, ResolvedRefs False (BackendNotFound), its path 500.
		h.Apply(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gateway-conformance-infra-test}
spec:
  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /missing}}]
    backendRefs: [{name: does-not-exist, port: 8080}]
`)
		reason, ok = routeCondition(h, h.NS, "gateway-conformance-infra-test", "ResolvedRefs", metav1.ConditionFalse)
		h.Check(ok && reason == "BackendNotFound", "HTTPRouteObservedGenerationBump, HTTPRouteInvalidNonExistentBackendRef: ResolvedRefs False BackendNotFound at generation 2", "%s", reason)
		expectAll(h, addr, []expect{
			{test: "HTTPRouteInvalidNonExistentBackendRef", path: "/missing", code: 500},
			{test: "HTTPRouteSimpleSameNamespace", path: "/other", backend: "infra-backend-v1"},
		})
	})
}
