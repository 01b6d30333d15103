package scenarios

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/svcsim/svcsim/plane"
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

// slowPod is a getip pod labelled app=<app> on node whose container keeps
// serving for sleep seconds once the pod is deleted (a preStop sleep hook,
// as upstream's netexec --delay-shutdown), within a grace period as long.
func slowPod(name, app, node string, sleep int) string {
	return webPod(name, app, node) + fmt.Sprintf(`      lifecycle:
        preStop:
          sleep:
            seconds: %d
  terminationGracePeriodSeconds: %d
`, sleep, sleep)
}

// TestPodTermination: a deleted pod whose container keeps serving (a
// preStop sleep of 45 s) is terminating: its endpoint is serving and
// terminating, not ready, and, being the only one, takes the traffic of
// every Service (KEP-1669): through a ClusterIP under internalTrafficPolicy
// Cluster from both nodes and under Local only from its own node, through
// a NodePort under externalTrafficPolicy Cluster and, under Local, only on
// its node; the health check node port of its node answers 503 meanwhile.
// When its readiness fails too, only a publishNotReadyAddresses Service
// still reaches it (through the ClusterIP and every node's NodePort), and
// follows that field switched off and on; once its servers exit the pod
// is gone and nothing answers.
func TestPodTermination(t *testing.T) {
	sc := harness.Scenario{Name: "pod-termination", Title: "A deleted pod serves as a terminating endpoint until its servers exit", Group: results.GroupPublishing}
	const sleep = 45
	manifests := []string{slowPod("web-0", "term", "node1", sleep), clientPod("client-1", "node1"), clientPod("client-2", "node2"),
		policyService("term-cluster", "term", ""),
		policyService("term-local", "term", "  internalTrafficPolicy: Local\n"),
		policyService("term-np", "term", "  type: NodePort\n"),
		policyService("term-np-local", "term", "  type: NodePort\n  externalTrafficPolicy: Local\n"),
		policyService("term-lb", "term", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n"),
		policyService("term-pnr", "term", "  type: NodePort\n  publishNotReadyAddresses: true\n"),
	}
	harness.Run(t, sc, harness.Options{Manifests: manifests}, func(h *harness.H) {
		web := pod(h, h.NS, "web-0").IP.String()
		c1, c2 := client(h, h.NS, "client-1"), client(h, h.NS, "client-2")
		ext := external(h)
		n1, n2 := node(h, "node1").IP.String(), node(h, "node2").IP.String()
		hc := fmt.Sprintf("http://%s:%d/healthz", n1, service(h, h.NS, "term-lb").Spec.HealthCheckNodePort)
		at := func(ip, svc string) string { return fmt.Sprintf("%s:%d", ip, nodePort(h, h.NS, svc)) }
		// reaches: 5 GETs of addr from c all answered by web-0.
		reaches := func(c *harness.Client, addr string) (bool, string) {
			seen, err := answers(h, c, addr, 5)
			return err == nil && seen[web] == 5, fmt.Sprintf("5 GETs of %s/info from %s: %v, err %v", addr, c.Name, seen, err)
		}
		refused := func(c *harness.Client, addr string) (bool, string) {
			in, body, err := c.GetInfo(h.Ctx, addr)
			return err != nil, fmt.Sprintf("GET %s/info from %s: %s %.60q %v", addr, c.Name, in.IP(), body, err)
		}
		code, _, body, err := ext.Response(h.Ctx, hc)
		h.Check(err == nil && code == http.StatusOK, "health check node port 200 while web-0 is ready", "GET %s: %d %s %v", hc, code, strings.TrimSpace(body), err)

		deleted := time.Now()
		if err := h.P.Delete(h.Ctx, plane.Ref{Kind: "pod", Namespace: h.NS, Name: "web-0"}); err != nil {
			h.Fatalf("delete pod web-0: %v", err)
		}
		h.Programmed()
		o, err := h.P.Get(h.Ctx, plane.Ref{Kind: "pod", Namespace: h.NS, Name: "web-0"})
		var conds []string
		for _, es := range slicesOf(h, "term-cluster") {
			for _, ep := range es.Endpoints {
				conds = append(conds, fmt.Sprintf("%s ready=%v serving=%v terminating=%v", ep.Addresses[0],
					ptr.Deref(ep.Conditions.Ready, false), ptr.Deref(ep.Conditions.Serving, false), ptr.Deref(ep.Conditions.Terminating, false)))
			}
		}
		terminating := err == nil && o.(*corev1.Pod).DeletionTimestamp != nil
		h.Check(terminating && len(conds) == 1 && conds[0] == web+" ready=false serving=true terminating=true", "deleted: terminating, its endpoint serving",
			"pod web-0 after delete: deletionTimestamp set %v (err %v); term-cluster's endpoints: %v", terminating, err, conds)

		code, _, body, err = ext.Response(h.Ctx, hc)
		h.Check(err == nil && code == http.StatusServiceUnavailable, "health check node port 503 with only a terminating endpoint",
			"GET %s: %d %s %v", hc, code, strings.TrimSpace(body), err)
		ok, msg := reaches(c1, at(n1, "term-lb"))
		h.Check(ok, "its NodePort still serves the terminating endpoint", "%s", msg)

		ok1, msg1 := reaches(c1, clusterIP(h, h.NS, "term-cluster"))
		ok2, msg2 := reaches(c2, clusterIP(h, h.NS, "term-cluster"))
		h.Check(ok1 && ok2, "internalTrafficPolicy Cluster: falls back to the terminating endpoint", "%s; %s", msg1, msg2)
		ok1, msg1 = reaches(c1, clusterIP(h, h.NS, "term-local"))
		ok2, msg2 = refused(c2, clusterIP(h, h.NS, "term-local"))
		h.Check(ok1 && ok2, "internalTrafficPolicy Local: falls back to the local terminating endpoint", "%s; %s", msg1, msg2)
		ok1, msg1 = reaches(c1, at(n1, "term-np"))
		ok2, msg2 = reaches(c2, at(n1, "term-np"))
		h.Check(ok1 && ok2, "externalTrafficPolicy Cluster: falls back to the terminating endpoint", "%s; %s", msg1, msg2)
		ok1, msg1 = refused(c1, at(n2, "term-np-local"))
		ok2, msg2 = reaches(c1, at(n1, "term-np-local"))
		ok3, msg3 := reaches(c2, at(n1, "term-np-local"))
		h.Check(ok1 && ok2 && ok3, "externalTrafficPolicy Local: falls back to the local terminating endpoint", "%s; %s; %s", msg1, msg2, msg3)

		// Its readiness fails too (netexec fails its probe after SIGTERM).
		if err := h.P.SetPodReady(h.Ctx, h.NS, "web-0", false); err != nil {
			h.Fatalf("set web-0 not ready: %v", err)
		}
		h.Programmed()
		var pnr, plain []string
		for _, addr := range []string{clusterIP(h, h.NS, "term-pnr"), at(n1, "term-pnr"), at(n2, "term-pnr")} {
			if ok, msg := reaches(c2, addr); !ok {
				pnr = append(pnr, msg)
			}
		}
		h.Check(len(pnr) == 0, "terminating and unready: publishNotReadyAddresses still reaches it", "ClusterIP and both NodePorts from client-2: %v", pnr)
		for _, addr := range []string{clusterIP(h, h.NS, "term-np"), at(n1, "term-np"), at(n2, "term-np")} {
			if ok, msg := refused(c2, addr); !ok {
				plain = append(plain, msg)
			}
		}
		h.Check(len(plain) == 0, "terminating and unready: without publishNotReadyAddresses nothing reaches it", "ClusterIP and both NodePorts from client-2: %v", plain)
		// publishNotReadyAddresses switched on a live Service.
		pnrVIP := clusterIP(h, h.NS, "term-pnr")
		for _, on := range []bool{false, true} {
			patch := fmt.Sprintf(`{"spec":{"publishNotReadyAddresses":%v}}`, on)
			if err := h.P.Patch(h.Ctx, plane.Ref{Kind: "service", Namespace: h.NS, Name: "term-pnr"}, []byte(patch)); err != nil {
				h.Fatalf("patch term-pnr %s: %v", patch, err)
			}
			h.Programmed()
			if on {
				ok, msg = reaches(c2, pnrVIP)
			} else {
				ok, msg = refused(c2, pnrVIP)
			}
			h.Check(ok, fmt.Sprintf("publishNotReadyAddresses switched to %v", on), "%s", msg)
		}
		h.Figure("checks while terminating", time.Since(deleted).Seconds(), "s")

		// Its servers exit at the end of the preStop sleep: the pod goes.
		gone := false
		for end := deleted.Add((sleep + 20) * time.Second); !gone && time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
			_, err := h.P.Get(h.Ctx, plane.Ref{Kind: "pod", Namespace: h.NS, Name: "web-0"})
			gone = err != nil
		}
		h.Figure("pod gone after delete", time.Since(deleted).Seconds(), "s")
		h.Check(gone, "the pod goes when its servers exit", "web-0 gone after %v (preStop sleep %d s)", time.Since(deleted).Round(100*time.Millisecond), sleep)
		h.Programmed()
		ok, msg = refused(c2, clusterIP(h, h.NS, "term-pnr"))
		h.Check(ok, "gone: nothing answers", "%s", msg)
	})
}
