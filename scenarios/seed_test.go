package scenarios

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	"github.com/svcsim/svcsim/topology"
)

// seedExternalService is the seed's Service without a selector and its
// hand-written Endpoints, exactly as written there.
const seedExternalService = `apiVersion: v1
kind: Service
metadata:
  name: external-service
spec:
  ports:
    - protocol: TCP
      port: 3307
      targetPort: 3307
---
apiVersion: v1
kind: Endpoints
metadata:
  name: external-service
subsets:
  - addresses:
      - ip: 172.188.2.89
    ports:
      - port: 3307
`

// TestSelectorlessService: the seed's external-service reaches the
// "database outside the cluster" at 172.188.2.89:3307 (a host svcsim makes on
// the underlay) through the ClusterIP; Endpoints on loopback or link-local
// addresses are rejected and change nothing. An Endpoints address that is
// another Service's ClusterIP is accepted on both planes, as by the genuine
// API server (its validateEndpointAddress checks no ClusterIPs): the seed's
// warning is kube-proxy's limitation, so the scenario records whether a
// request through it is answered on each datapath, and asserts only that
// the good endpoint serves again afterwards.
func TestSelectorlessService(t *testing.T) { harness.RunCase(t, selectorlessService()) }

// selectorlessService is TestSelectorlessService as a harness.Case.
func selectorlessService() harness.Case {
	sc := harness.Scenario{Name: "selectorless-service", Title: "Service without a selector reaches an outside backend", Group: results.GroupSelectorless}
	return harness.Case{Scenario: sc, Options: harness.Options{Manifests: []string{getipApp(1, "")}}, Body: func(h *harness.H) {
		db := netip.MustParseAddr("172.188.2.89")
		if _, err := h.P.AddHost(h.Ctx, "external-db", db, []topology.Port{{Port: 3307, Protocol: "TCP"}}); err != nil {
			h.Fatalf("create the outside database host: %v", err)
		}
		h.T.Cleanup(func() {
			if err := h.P.RemoveHost(context.Background(), "external-db"); err != nil {
				h.T.Errorf("remove the outside database host: %v", err)
			}
		})
		h.Apply(seedExternalService)
		vip := clusterIP(h, h.NS, "external-service")
		reply, err := client(h, h.NS, "client").Echo(h.Ctx, "tcp", vip, "SELECT 1")
		h.Check(err == nil && strings.HasPrefix(reply, "external-db ") && strings.HasSuffix(reply, " SELECT 1"),
			"ClusterIP reaches the outside endpoint", "echo via %s: %q %v", vip, reply, err)

		before, _ := h.P.Dump(h.Ctx, "node1")
		getipVIP := strings.Split(clusterIP(h, h.NS, "getip-service"), ":")[0]
		bads := []struct{ ip, want string }{
			{"127.0.0.1", "loopback"},
			{"169.254.1.1", "link-local"},
		}
		for _, bad := range bads {
			m := strings.Replace(seedExternalService, "172.188.2.89", bad.ip, 1)
			_, err := h.P.Apply(h.Ctx, h.NS, plane.Text("bad-endpoints", m))
			h.Check(err != nil && strings.Contains(err.Error(), "subsets[0].addresses[0].ip") && strings.Contains(err.Error(), bad.want),
				"endpoint "+bad.ip+" rejected", "%v", err)
		}
		h.Programmed()
		after, _ := h.P.Dump(h.Ctx, "node1")
		diff := ruleDifference(before, after)
		h.Check(before != "" && diff == "", "rejected batches change nothing", "node1 rules identical (%d lines)%s", strings.Count(before, "\n"), diff)
		reply, err = client(h, h.NS, "client").Echo(h.Ctx, "tcp", vip, "SELECT 2")
		h.Check(err == nil && strings.HasPrefix(reply, "external-db "), "still served after rejections", "%q %v", reply, err)

		// Another Service's ClusterIP (and its port) as the endpoint.
		getipAddr := clusterIP(h, h.NS, "getip-service")
		vipPort := getipAddr[strings.LastIndex(getipAddr, ":")+1:]
		m := strings.Replace(seedExternalService, "172.188.2.89", getipVIP, 1)
		m = strings.Replace(m, "      - port: 3307", "      - port: "+vipPort, 1)
		_, err = h.P.Apply(h.Ctx, h.NS, plane.Text("clusterip-endpoints", m))
		h.Check(err == nil, "endpoint "+getipVIP+" (a ClusterIP) accepted, as by the genuine API server", "%v", err)
		h.Programmed()
		ctx, cancel := context.WithTimeout(h.Ctx, 4*time.Second)
		reply, err = client(h, h.NS, "client").Echo(ctx, "tcp", vip, "VIP")
		cancel()
		answered := 0.0
		if err == nil {
			answered = 1
		}
		h.Figure("request through a ClusterIP endpoint answered (1) or not (0)", answered, "")
		h.T.Logf("through %s to the endpoint %s: %q %v (not asserted: kube-proxy does not support virtual IPs as endpoints)", vip, getipAddr, reply, err)
		h.Apply(seedExternalService)
		reply, err = client(h, h.NS, "client").Echo(h.Ctx, "tcp", vip, "SELECT 3")
		h.Check(err == nil && strings.HasPrefix(reply, "external-db "), "the outside endpoint serves again", "%q %v", reply, err)
	}}
}

// seedMultiPort is the seed's multi-port Service, as written, plus pods
// labelled app=MyApp for it.
const seedMultiPort = `apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app: MyApp
  ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: 9376
    - name: https
      protocol: TCP
      port: 443
      targetPort: 9377
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: myapp
spec:
  replicas: 2
  selector:
    matchLabels:
      app: MyApp
  template:
    metadata:
      labels:
        app: MyApp
    spec:
      containers:
        - name: myapp
          image: myapp
`

// TestMultiPortService: both named ports of the seed's my-service reach the
// backends on their own target ports; a second port without a name is
// rejected.
func TestMultiPortService(t *testing.T) { harness.RunCase(t, multiPortService()) }

// multiPortService is TestMultiPortService as a harness.Case.
func multiPortService() harness.Case {
	sc := harness.Scenario{Name: "multi-port", Title: "Multi-port Service: every port routes to its targetPort", Group: results.GroupMultiPort}
	return harness.Case{Scenario: sc, Options: harness.Options{Manifests: []string{getipApp(1, ""), seedMultiPort}}, Body: func(h *harness.H) {
		vip := service(h, h.NS, "my-service").Spec.ClusterIP
		pods := podIPs(h, h.NS, "myapp-")
		c := client(h, h.NS, "client")
		for _, port := range []int{80, 443} {
			seen := map[string]int{}
			for i := 0; i < 30; i++ {
				in, _, err := c.GetInfo(h.Ctx, fmt.Sprintf("%s:%d", vip, port))
				if err != nil {
					h.Fatalf("port %d: %v", port, err)
				}
				seen[pods[in.IP()]]++
			}
			h.Check(len(seen) == 2 && seen[""] == 0, fmt.Sprintf("port %d reaches both MyApp pods", port), "%s:%d, 30 requests: %v", vip, port, seen)
		}
		bad := strings.Replace(seedMultiPort, "    - name: https\n      protocol: TCP\n", "    - protocol: TCP\n", 1)
		_, err := h.P.Apply(h.Ctx, h.NS, plane.Text("unnamed-port", bad))
		h.Check(err != nil && strings.Contains(err.Error(), "spec.ports[1].name"), "unnamed second port rejected", "%v", err)
	}}
}

// TestUDPService: UDP echo through a ClusterIP works and spreads; the source
// address backends see is recorded (the client's own for NAT datapaths, the
// node's for the userspace proxy, which opens its own connections).
func TestUDPService(t *testing.T) {
	sc := harness.Scenario{Name: "udp", Title: "UDP through a ClusterIP", Group: results.GroupProxyModes}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(1, ""), udpEchoApp(3)}}, func(h *harness.H) {
		vip := clusterIP(h, h.NS, "echo-udp")
		c := client(h, h.NS, "client")
		clientPod := pod(h, h.NS, "client")
		node1 := node(h, "node1")
		pods := map[string]int{}
		sources := map[string]int{}
		const n = 90
		for i := 0; i < n; i++ {
			reply, err := c.Echo(h.Ctx, "udp", vip, fmt.Sprintf("ping %d", i))
			if err != nil {
				h.Fatalf("udp request %d to %s: %v", i, vip, err)
			}
			f := strings.Fields(reply)
			if len(f) < 3 || f[2] != "ping" {
				h.Fatalf("unexpected udp reply %q", reply)
			}
			pods[f[0]]++
			src, _, _ := strings.Cut(f[1], ":")
			sources[src]++
		}
		h.Check(len(pods) == 3, "every UDP backend used", "%d datagrams answered by %v", n, pods)
		want := clientPod.IP.String()
		why := "NAT datapaths keep the client's address"
		if h.Desc.Traits.Relay {
			want, why = "", "the userspace proxy connects from the node"
		}
		for src := range sources {
			if want != "" {
				h.Check(src == want, "backends see the client's address", "%s: sources %v", why, sources)
			} else {
				h.Check(src != clientPod.IP.String() && (src == node1.IP.String() || src == node1.Gateway.String()),
					"backends see the proxy's address", "%s: sources %v", why, sources)
			}
		}
	})
}

// ruleDifference is "" when two dumps hold the same lines, in any order,
// else the lines only one of them has. The order is left out because the
// genuine kube-proxy's iptables proxier writes KUBE-SERVICES in the
// iteration order of its service map on every sync (syncProxyRules in
// pkg/proxy/iptables ranges over svcPortMap): the same rules in another
// order after the barrier's sync. A rule added, removed or changed shows.
func ruleDifference(a, b string) string {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	var only []string
	for l, n := range count {
		switch {
		case n > 0:
			only = append(only, fmt.Sprintf("before only: %q", l))
		case n < 0:
			only = append(only, fmt.Sprintf("after only: %q", l))
		}
	}
	if len(only) == 0 {
		return ""
	}
	sort.Strings(only)
	if len(only) > 6 {
		only = append(only[:6], fmt.Sprintf("... %d more", len(only)-6))
	}
	return ": " + strings.Join(only, "; ")
}

// TestRuleDifference: reordered lines are the same rules; an added,
// removed or changed line is not (root-free).
func TestRuleDifference(t *testing.T) {
	a := "*nat\n-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-A\n-A KUBE-SERVICES -d 10.96.0.2/32 -j KUBE-SVC-B\nCOMMIT\n"
	if d := ruleDifference(a, "*nat\n-A KUBE-SERVICES -d 10.96.0.2/32 -j KUBE-SVC-B\n-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-A\nCOMMIT\n"); d != "" {
		t.Errorf("reordered rules differ: %s", d)
	}
	for _, b := range []string{
		strings.Replace(a, "10.96.0.2/32", "10.96.0.3/32", 1),
		strings.Replace(a, "COMMIT\n", "-A KUBE-SERVICES -d 10.96.0.3/32 -j KUBE-SVC-C\nCOMMIT\n", 1),
		strings.Replace(a, "-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-A\n", "", 1),
		a + a,
	} {
		if d := ruleDifference(a, b); d == "" {
			t.Errorf("no difference found between\n%s\nand\n%s", a, b)
		}
	}
}
