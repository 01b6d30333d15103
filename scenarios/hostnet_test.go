package scenarios

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// hostNetPod is a hostNetwork pod called name on node labelled app: app,
// serving HTTP on TCP 8080 and the UDP echo on 8081 in the node's own
// network namespace.
func hostNetPod(name, node, app string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels:
    app: %s
spec:
  nodeName: %s
  hostNetwork: true
  containers:
    - name: server
      image: echo
      ports:
        - containerPort: 8080
          name: http
        - containerPort: 8081
          protocol: UDP
`, name, app, node)
}

// TestHostNetworkEndpoints: backends in their nodes' own network namespace
// (hostNetwork pods: the endpoint address is the node's) are reached, every
// endpoint answering: over TCP through the ClusterIP and every nodePort
// from a pod, through every nodePort from outside; over UDP through every
// nodePort from outside. Not over UDP from a pod: a UDP server bound to
// the wildcard address in a node's namespace answers a pod on its own node
// from the bridge's address (the route's source), which conntrack cannot
// match to the translated flow, so the pod never sees the reply.
// Upstream's netexec binds its UDP server to the host IP for hostNetwork
// endpoints for that reason; svcsim's built-in server binds the wildcard.
func TestHostNetworkEndpoints(t *testing.T) {
	sc := harness.Scenario{Name: "hostnetwork-endpoints", Title: "hostNetwork backends behind a Service", Group: results.GroupService}
	const svc = `apiVersion: v1
kind: Service
metadata:
  name: hostnet
spec:
  type: NodePort
  selector:
    app: hostnet
  ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: http
    - name: udp
      protocol: UDP
      port: 90
      targetPort: 8081
`
	opts := harness.Options{Manifests: []string{hostNetPod("h1", "node1", "hostnet"), hostNetPod("h2", "node2", "hostnet"), svc, clientPod("c1", "node1")}}
	harness.Run(t, sc, opts, func(h *harness.H) {
		eps := map[string]string{}
		for _, n := range []string{"h1", "h2"} {
			p := pod(h, h.NS, n)
			eps[p.IP.String()] = n
		}
		h.Check(eps[node(h, "node1").IP.String()] == "h1" && eps[node(h, "node2").IP.String()] == "h2", "endpoints are the nodes' addresses", "%v", eps)
		a := addrsOf(h, "hostnet")
		c1, ext := client(h, h.NS, "c1"), external(h)
		for _, addr := range a.TCP {
			everyEndpoint(h, "from a pod", c1, "tcp", addr, eps, 30)
		}
		for _, addr := range a.TCP[1:] {
			everyEndpoint(h, "from outside", ext, "tcp", addr, eps, 30)
		}
		for _, addr := range a.UDP[1:] {
			everyEndpoint(h, "from outside", ext, "udp", addr, eps, 30)
		}
	})
}

// TestUDPConntrackPaths: the udp-conntrack check on two more paths. A UDP
// client keeping one source port while the Service's only endpoint is
// replaced keeps getting answers from the replacement: from outside
// through a nodePort, and from a node's own namespace (a hostNetwork
// client) through the ClusterIP. Stale conntrack entries for the old
// endpoint must go for either.
func TestUDPConntrackPaths(t *testing.T) {
	sc := harness.Scenario{Name: "udp-conntrack-paths", Title: "A UDP client on one port follows a replaced endpoint: NodePort, hostNetwork client", Group: results.GroupService}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(1, ""), udpEchoApp(1)}}, func(h *harness.H) {
		h.Apply(`apiVersion: v1
kind: Service
metadata:
  name: echo-udp-np
spec:
  type: NodePort
  selector:
    app: echo
  ports:
    - protocol: UDP
      port: 53
      targetPort: 5353
`)
		np := nodePort(h, h.NS, "echo-udp-np")
		paths := []struct {
			what string
			from *harness.Client
			addr string
		}{
			{"outside via node2's nodePort", external(h), fmt.Sprintf("%s:%d", h.P.Nodes()[1].IP, np)},
			{"node1's namespace via the ClusterIP", nodeClient(h, "node1"), clusterIP(h, h.NS, "echo-udp")},
		}
		for _, p := range paths {
			conn, err := p.from.DialContext(h.Ctx, "udp", p.addr)
			if err != nil {
				h.Fatalf("dial udp %s: %v", p.addr, err)
			}
			ask := udpAsker(conn)
			first := ""
			for range 20 {
				if first = ask(); first != "" {
					break
				}
			}
			if first == "" {
				conn.Close()
				h.Fatalf("%s: no answer from %s before any change", p.what, p.addr)
			}
			if err := h.P.Delete(h.Ctx, plane.Ref{Kind: "pod", Namespace: h.NS, Name: strings.TrimPrefix(first, h.NS+"/")}); err != nil {
				h.Fatalf("delete pod %s: %v", first, err)
			}
			h.Programmed()
			// At most 40 datagrams (about 12 s) until another pod answers,
			// then 10 more must all reach it.
			second, n := "", 0
			t0 := time.Now()
			for range 40 {
				if a := ask(); a != "" && a != first {
					second = a
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			took := time.Since(t0)
			if second != "" {
				for range 10 {
					if ask() == second {
						n++
					}
				}
			}
			conn.Close()
			h.Check(second != "" && n == 10, p.what+": the same source port reaches the replacement endpoint",
				"after deleting %s: answered by %q after %v, then %d of 10", first, second, took.Round(time.Millisecond), n)
			h.Figure("first answer from the replacement, "+p.what, took.Seconds(), "s")
		}
	})
}
