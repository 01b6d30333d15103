package scenarios

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// condSlice is a user-written EndpointSlice of Service svc on port 80
// (unnamed) whose endpoints carry the given conditions: each entry is
// "ip@node ready serving terminating" with t/f flags ("10.244.1.3@node1 tft").
func condSlice(svc string, eps ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s-conditions
  labels:
    kubernetes.io/service-name: %s
    endpointslice.kubernetes.io/managed-by: svcsim-scenario
addressType: IPv4
ports:
  - name: ""
    protocol: TCP
    port: 80
endpoints:
`, svc, svc)
	for _, e := range eps {
		at, flags, _ := strings.Cut(e, " ")
		ip, node, _ := strings.Cut(at, "@")
		f := func(i int) bool { return flags[i] == 't' }
		fmt.Fprintf(&b, "  - addresses: [%q]\n    nodeName: %s\n    conditions: {ready: %v, serving: %v, terminating: %v}\n", ip, node, f(0), f(1), f(2))
	}
	return b.String()
}

// TestTerminatingEndpoints: with a user-written EndpointSlice setting each
// endpoint's conditions (as the EndpointSlice controller writes them for a
// pod being deleted), every datapath sends traffic only to ready endpoints
// while one remains, falls back to serving terminating ones when none does
// (KEP-1669, cluster-wide and per node under externalTrafficPolicy Local),
// and sends none to endpoints that are neither; the health check node port
// of a node left with only terminating endpoints answers 503, so load
// balancers drain it, while its NodePort still serves them.
func TestTerminatingEndpoints(t *testing.T) {
	sc := harness.Scenario{Name: "terminating-endpoints", Title: "Terminating endpoints are a last resort; not-ready ones get nothing", Group: results.GroupPublishing}
	svc := "apiVersion: v1\nkind: Service\nmetadata:\n  name: term\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports:\n    - protocol: TCP\n      port: 80\n"
	manifests := []string{webPod("web-1", "web", "node1"), webPod("web-2", "web", "node2"), clientPod("client", "node1"), svc}
	harness.Run(t, sc, harness.Options{Manifests: manifests}, func(h *harness.H) {
		ips := podIPs(h, h.NS, "web-")
		byName := map[string]string{}
		for ip, name := range ips {
			byName[name] = ip
		}
		w1, w2 := byName["web-1"]+"@node1", byName["web-2"]+"@node2"
		c := client(h, h.NS, "client")
		ext := external(h)
		vip := clusterIP(h, h.NS, "term")
		np := nodePort(h, h.NS, "term")
		hc := service(h, h.NS, "term").Spec.HealthCheckNodePort
		n1, n2 := node(h, "node1"), node(h, "node2")

		// web-1 ready, web-2 terminating (still serving).
		h.Apply(condSlice("term", w1+" ttf", w2+" ftt"))
		seen, err := answers(h, c, vip, 20)
		h.Check(err == nil && seen[byName["web-1"]] == 20, "a terminating endpoint gets nothing while a ready one remains",
			"20 requests to %s: %v, err %v", vip, seen, err)
		url := fmt.Sprintf("http://%s:%d/info", n2.IP, np)
		body, err := ext.Get(h.Ctx, url)
		h.Check(err == nil && strings.Contains(body, byName["web-2"]), "Local: node2 falls back to its terminating endpoint",
			"GET %s (node2's only endpoint is terminating): err %v, %.80q", url, err, body)
		for _, tc := range []struct {
			node, ip string
			code     int
		}{{"node1", n1.IP.String(), http.StatusOK}, {"node2", n2.IP.String(), http.StatusServiceUnavailable}} {
			url := fmt.Sprintf("http://%s:%d/healthz", tc.ip, hc)
			code, _, body, err := ext.Response(h.Ctx, url)
			var hb struct {
				LocalEndpoints int `json:"localEndpoints"`
			}
			_ = json.Unmarshal([]byte(body), &hb)
			h.Check(err == nil && code == tc.code, fmt.Sprintf("health check node port on %s answers %d", tc.node, tc.code),
				"GET %s: %d %s (err %v)", url, code, strings.TrimSpace(body), err)
		}

		// No ready endpoint anywhere: the terminating one takes the traffic.
		h.Apply(condSlice("term", w1+" fff", w2+" ftt"))
		seen, err = answers(h, c, vip, 20)
		h.Check(err == nil && seen[byName["web-2"]] == 20, "no ready endpoint left: the serving terminating one is used",
			"20 requests to %s: %v (web-1 neither ready nor serving), err %v", vip, seen, err)

		// Neither ready nor terminating-and-serving: nothing to send to.
		h.Apply(condSlice("term", w1+" fff", w2+" fft"))
		in, body, err := c.GetInfo(h.Ctx, vip)
		h.Check(err != nil, "not-ready, not-serving endpoints get nothing", "GET %s/info: %s %.80q %v", vip, in.IP(), body, err)
	})
}

// TestPublishNotReadyAddresses: a pod whose readiness fails leaves its
// Service's endpoints and gets no traffic, unless the Service sets
// publishNotReadyAddresses, whose endpoints stay ready for proxies (and
// DNS).
func TestPublishNotReadyAddresses(t *testing.T) {
	sc := harness.Scenario{Name: "publish-not-ready", Title: "Not-ready pods get no traffic unless publishNotReadyAddresses", Group: results.GroupPublishing}
	manifests := []string{webPod("web-1", "web", "node1"), clientPod("client", "node1"),
		policyService("plain", "web", ""), policyService("published", "web", "  publishNotReadyAddresses: true\n")}
	harness.Run(t, sc, harness.Options{Manifests: manifests}, func(h *harness.H) {
		c := client(h, h.NS, "client")
		plain, published := clusterIP(h, h.NS, "plain"), clusterIP(h, h.NS, "published")
		ip := pod(h, h.NS, "web-1").IP.String()
		for _, vip := range []string{plain, published} {
			seen, err := answers(h, c, vip, 5)
			h.Check(err == nil && seen[ip] == 5, "ready pod serves "+vip, "5 requests: %v, err %v", seen, err)
		}
		if err := h.P.SetPodReady(h.Ctx, h.NS, "web-1", false); err != nil {
			h.Fatalf("set web-1 not ready: %v", err)
		}
		h.Programmed()
		in, body, err := c.GetInfo(h.Ctx, plain)
		h.Check(err != nil, "not ready: no traffic", "GET %s/info with web-1 not ready: %s %.80q %v", plain, in.IP(), body, err)
		seen, err := answers(h, c, published, 5)
		h.Check(err == nil && seen[ip] == 5, "publishNotReadyAddresses: still served", "5 requests to %s: %v, err %v", published, seen, err)
		if err := h.P.SetPodReady(h.Ctx, h.NS, "web-1", true); err != nil {
			h.Fatalf("set web-1 ready: %v", err)
		}
		h.Programmed()
		seen, err = answers(h, c, plain, 5)
		h.Check(err == nil && seen[ip] == 5, "ready again: served", "5 requests to %s: %v, err %v", plain, seen, err)
	})
}
