package scenarios

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// webPod is a getip pod labelled app=<app> pinned to node, serving port 80.
func webPod(name, app, node string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels:
    app: %s
spec:
  nodeName: %s
  containers:
    - name: getip
      image: getip
      ports:
        - containerPort: 80
`, name, app, node)
}

// policyService is a Service selecting app on port 80; spec lines (indented
// two spaces) are added as they are.
func policyService(name, app, spec string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
spec:
  selector:
    app: %s
  ports:
    - protocol: TCP
      port: 80
      targetPort: 80
%s`, name, app, spec)
}

// answers sends n requests to addr's /info from c and counts the pods that
// answered; the first error stops it.
func answers(h *harness.H, c *harness.Client, addr string, n int) (map[string]int, error) {
	h.T.Helper()
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		in, _, err := c.GetInfo(h.Ctx, addr)
		if err != nil {
			return seen, err
		}
		seen[in.IP()]++
	}
	return seen, nil
}

// TestInternalTrafficPolicy: under internalTrafficPolicy Local a pod's
// traffic to the ClusterIP reaches only endpoints on its own node, and
// fails when its node has none (kube-proxy drops it; the userspace proxy
// closes it); Cluster spreads over every node's endpoints. The same holds
// for hostNetwork clients (the nodes' own namespaces) and for a
// hostNetwork backend, reached only from its own node's pods and
// namespace.
func TestInternalTrafficPolicy(t *testing.T) {
	sc := harness.Scenario{Name: "internal-traffic-policy", Title: "internalTrafficPolicy: Local keeps pod traffic on its node", Group: results.GroupPublishing}
	manifests := []string{
		webPod("web-1", "web", "node1"), webPod("web-2", "web", "node2"), webPod("only-2", "only2", "node2"),
		policyService("web-local", "web", "  internalTrafficPolicy: Local\n"),
		policyService("web-cluster", "web", ""),
		policyService("only2-local", "only2", "  internalTrafficPolicy: Local\n"),
		clientPod("client-1", "node1"), clientPod("client-2", "node2"),
		hostNetPod("host-1", "node1", "hostweb"),
		strings.Replace(policyService("hostweb-local", "hostweb", "  internalTrafficPolicy: Local\n"), "targetPort: 80", "targetPort: 8080", 1),
	}
	harness.Run(t, sc, harness.Options{Manifests: manifests}, func(h *harness.H) {
		ips := podIPs(h, h.NS, "")
		byName := map[string]string{}
		for ip, name := range ips {
			byName[name] = ip
		}
		c1, c2 := client(h, h.NS, "client-1"), client(h, h.NS, "client-2")
		const n = 20
		local := clusterIP(h, h.NS, "web-local")
		for _, tc := range []struct {
			c    *harness.Client
			want string
		}{{c1, "web-1"}, {c2, "web-2"}} {
			seen, err := answers(h, tc.c, local, n)
			h.Check(err == nil && len(seen) == 1 && seen[byName[tc.want]] == n, "Local: only "+tc.want+" from "+tc.c.Name,
				"%d requests from %s to %s: %v (%s is %s), err %v", n, tc.c.Name, local, seen, tc.want, byName[tc.want], err)
		}
		cluster := clusterIP(h, h.NS, "web-cluster")
		seen, err := answers(h, c1, cluster, n)
		h.Check(err == nil && seen[byName["web-1"]] > 0 && seen[byName["web-2"]] > 0, "Cluster: both nodes' endpoints",
			"%d requests from client-1 to %s: %v, err %v", n, cluster, seen, err)

		none := clusterIP(h, h.NS, "only2-local")
		in, body, err := c1.GetInfo(h.Ctx, none)
		h.Check(err != nil, "Local without a local endpoint fails", "GET %s/info from client-1 (node1; the only endpoint is on node2): %v %q %v", none, in.IP(), body, err)
		seen, err = answers(h, c2, none, 5)
		h.Check(err == nil && seen[byName["only-2"]] == 5, "Local with the endpoint on the node", "5 requests from client-2 to %s: %v, err %v", none, seen, err)

		// hostNetwork clients: the nodes' own namespaces.
		h1, h2 := nodeClient(h, "node1"), nodeClient(h, "node2")
		in, body, err = h1.GetInfo(h.Ctx, none)
		h.Check(err != nil, "Local from a hostNetwork client without a local endpoint fails", "GET %s/info from node1: %v %q %v", none, in.IP(), body, err)
		seen, err = answers(h, h2, none, 5)
		h.Check(err == nil && seen[byName["only-2"]] == 5, "Local from a hostNetwork client with the endpoint on its node", "5 requests from node2 to %s: %v, err %v", none, seen, err)

		// A hostNetwork backend on node1 (its endpoint is node1's address).
		hostVIP := clusterIP(h, h.NS, "hostweb-local")
		n1 := node(h, "node1").IP.String()
		var fails []string
		for _, c := range []*harness.Client{c1, h1} {
			if seen, err := answers(h, c, hostVIP, 5); err != nil || seen[n1] != 5 {
				fails = append(fails, fmt.Sprintf("%s: %v, err %v", c.Name, seen, err))
			}
		}
		h.Check(len(fails) == 0, "Local to a hostNetwork backend from its node's pod and node", "5 requests each from client-1 and node1 to %s (the endpoint is node1's %s): %v", hostVIP, n1, fails)
		fails = nil
		for _, c := range []*harness.Client{c2, h2} {
			if in, body, err := c.GetInfo(h.Ctx, hostVIP); err == nil {
				fails = append(fails, fmt.Sprintf("%s answered by %s %.60q", c.Name, in.IP(), body))
			}
		}
		h.Check(len(fails) == 0, "Local to a hostNetwork backend from the other node fails", "GET %s/info from client-2 and node2: %v", hostVIP, fails)
	})
}

// TestExternalTrafficPolicy: a NodePort under externalTrafficPolicy Local
// answers only on nodes with a local endpoint, and its backend sees the
// outside client's own address (a relaying datapath's backends see the
// node's: it cannot keep it); under Cluster every node answers and the
// traffic is masqueraded. A LoadBalancer Service under Local gets a health
// check node port, answered on every node as kube-proxy does (JSON body,
// X-Load-Balancing-Endpoint-Weight, 200 with local endpoints, 503 without),
// and each node proxy answers :10256/healthz.
func TestExternalTrafficPolicy(t *testing.T) {
	sc := harness.Scenario{Name: "external-traffic-policy", Title: "externalTrafficPolicy: Local keeps the client's address; health check node port", Group: results.GroupPublishing}
	manifests := []string{
		webPod("web-1", "web", "node1"),
		policyService("web-local", "web", "  type: NodePort\n  externalTrafficPolicy: Local\n"),
		policyService("web-cluster", "web", "  type: NodePort\n"),
		policyService("web-lb", "web", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n"),
	}
	harness.Run(t, sc, harness.Options{Manifests: manifests}, func(h *harness.H) {
		ext := external(h)
		n1, n2 := node(h, "node1"), node(h, "node2")
		const client = "198.18.0.100"
		remote := func(url string) (string, error) {
			body, err := ext.Get(h.Ctx, url)
			if err != nil {
				return "", err
			}
			ap, err := netip.ParseAddrPort(strings.TrimSpace(body))
			if err != nil {
				return "", fmt.Errorf("GET %s: %q is not ip:port", url, body)
			}
			return ap.Addr().String(), nil
		}

		local := nodePort(h, h.NS, "web-local")
		url := fmt.Sprintf("http://%s:%d/client", n1.IP, local)
		// A relaying datapath dials the backend itself: the backend sees an
		// address of node1 (its gateway on cni0 for a local pod), never
		// the client's.
		relay := h.Desc.Traits.Relay
		for i := 0; i < 5; i++ {
			got, err := remote(url)
			if err != nil || (got == client) == relay {
				h.Fatalf("Local on node1: GET %s: backend saw %q (client %s, relaying datapath %v); err %v", url, got, client, relay, err)
			}
		}
		h.Check(true, "Local: node with the endpoint answers, source kept", "GET %s five times: the backend saw the client's %s: %v (a relaying datapath cannot keep it)", url, client, !relay)
		url2 := fmt.Sprintf("http://%s:%d/client", n2.IP, local)
		got, err := remote(url2)
		h.Check(err != nil, "Local: node without endpoints does not answer", "GET %s (node2 has no web pod): %q %v", url2, got, err)

		cluster := nodePort(h, h.NS, "web-cluster")
		url = fmt.Sprintf("http://%s:%d/client", n2.IP, cluster)
		got, err = remote(url)
		h.Check(err == nil && got == n2.IP.String(), "Cluster: any node answers, masqueraded",
			"GET %s (endpoint on node1): backend saw %q (want node2's %s), err %v", url, got, n2.IP, err)

		hc := service(h, h.NS, "web-lb").Spec.HealthCheckNodePort
		h.Check(hc >= 30000 && hc <= 32767, "healthCheckNodePort allocated", "web-lb got healthCheckNodePort %d", hc)
		for _, tc := range []struct {
			ip    netip.Addr
			code  int
			count int
		}{{n1.IP, http.StatusOK, 1}, {n2.IP, http.StatusServiceUnavailable, 0}} {
			url := fmt.Sprintf("http://%s:%d/healthz", tc.ip, hc)
			code, hdr, body, err := ext.Response(h.Ctx, url)
			var hb struct {
				Service             struct{ Namespace, Name string } `json:"service"`
				LocalEndpoints      int                              `json:"localEndpoints"`
				ServiceProxyHealthy bool                             `json:"serviceProxyHealthy"`
			}
			jerr := json.Unmarshal([]byte(body), &hb)
			ok := err == nil && jerr == nil && code == tc.code && hb.LocalEndpoints == tc.count && hb.ServiceProxyHealthy &&
				hb.Service.Namespace == h.NS && hb.Service.Name == "web-lb" &&
				hdr.Get("X-Load-Balancing-Endpoint-Weight") == strconv.Itoa(tc.count)
			h.Check(ok, fmt.Sprintf("health check node port answers %d", tc.code), "GET %s: %d, weight %q, %s (err %v, %v)",
				url, code, hdr.Get("X-Load-Balancing-Endpoint-Weight"), strings.TrimSpace(body), err, jerr)
		}
		for _, n := range []netip.Addr{n1.IP, n2.IP} {
			url := fmt.Sprintf("http://%s:10256/healthz", n)
			code, _, body, err := ext.Response(h.Ctx, url)
			var pb map[string]any
			jerr := json.Unmarshal([]byte(body), &pb)
			_, hasTime := pb["lastUpdated"]
			h.Check(err == nil && jerr == nil && code == http.StatusOK && hasTime, "proxy healthz answers 200",
				"GET %s: %d %s (err %v, %v)", url, code, strings.TrimSpace(body), err, jerr)
		}
	})
}
