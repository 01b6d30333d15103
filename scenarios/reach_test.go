package scenarios

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	"github.com/svcsim/svcsim/topology"
)

// pinnedPod is a pod called name on node with labels app: app, serving
// HTTP and the TCP echo on 80 (named http) and the UDP echo on 90.
func pinnedPod(name, node, app string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels:
    app: %s
spec:
  nodeName: %s
  containers:
    - name: server
      image: echo
      ports:
        - containerPort: 80
          name: http
        - containerPort: 90
          protocol: UDP
`, name, app, node)
}

// clientPod is a client pod called name on node.
func clientPod(name, node string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\nspec:\n  nodeName: %s\n  containers:\n    - name: c\n      image: curl\n", name, node)
}

// bothService is Service name of type NodePort over app's pods with an
// HTTP port 80 and a UDP port 90.
func bothService(name, app string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
spec:
  type: NodePort
  selector:
    app: %s
  ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: http
    - name: udp
      protocol: UDP
      port: 90
      targetPort: 90
`, name, app)
}

// serviceAddrs are the ways to reach a bothService: its ClusterIP and every
// node's nodePort, for each protocol.
type serviceAddrs struct {
	TCP, UDP []string // "ip:port", the ClusterIP first
}

func addrsOf(h *harness.H, name string) serviceAddrs {
	h.T.Helper()
	svc := service(h, h.NS, name)
	var a serviceAddrs
	for _, p := range svc.Spec.Ports {
		list := &a.TCP
		if p.Protocol == "UDP" {
			list = &a.UDP
		}
		*list = append(*list, fmt.Sprintf("%s:%d", svc.Spec.ClusterIP, p.Port))
		for _, n := range h.P.Nodes() {
			*list = append(*list, fmt.Sprintf("%s:%d", n.IP, p.NodePort))
		}
	}
	return a
}

// everyEndpoint checks that n requests (HTTP /info for TCP, echo datagrams
// from fresh sockets for UDP) from c to addr are all answered, only by
// pods of want, and by every one of them; it returns the answering pods'
// names with counts.
func everyEndpoint(h *harness.H, step string, c *harness.Client, network, addr string, want map[string]string, n int) map[string]int {
	h.T.Helper()
	seen := map[string]int{}
	for i := range n {
		var name string
		if network == "tcp" {
			in, body, err := c.GetInfo(h.Ctx, addr)
			if err != nil {
				h.Fatalf("%s: request %d of %d from %s to %s: %v (%q)", step, i+1, n, c.Name, addr, err, body)
			}
			name = want[in.IP()]
			if name == "" {
				name = "unexpected " + in.IP()
			}
		} else {
			pod, _ := echoFrom(h, c, "udp", addr, fmt.Sprintf("ping-%d", i))
			name = strings.TrimPrefix(pod, h.NS+"/")
		}
		seen[name]++
	}
	ok := len(seen) == len(want)
	names := map[string]bool{}
	for _, name := range want {
		names[name] = true
	}
	for name := range seen {
		ok = ok && names[name]
	}
	h.Check(ok, fmt.Sprintf("%s: %s %s reaches every endpoint", step, network, addr), "%d from %s answered by %v (endpoints %v)", n, c.Name, seen, want)
	return seen
}

// TestPodToService: pods on either node reach a Service's ClusterIP and
// every node's nodePort, over TCP (HTTP) and UDP, and every endpoint
// answers (upstream's pod-Service checks); a backend sees the client pod's
// own address through the ClusterIP (kube-proxy preserves it; the
// userspace proxy relays from the node); and pods reach each other's
// addresses directly with their source unchanged (no SNAT between pods).
func TestPodToService(t *testing.T) {
	sc := harness.Scenario{Name: "pod-to-service", Title: "Pods reach ClusterIP and NodePort over TCP and UDP; sources kept", Group: results.GroupService}
	opts := harness.Options{Manifests: []string{pinnedPod("b1", "node1", "both"), pinnedPod("b2", "node2", "both"), bothService("both", "both"),
		clientPod("c1", "node1"), clientPod("c2", "node2")}}
	harness.Run(t, sc, opts, func(h *harness.H) {
		eps := podIPs(h, h.NS, "b")
		addrs := addrsOf(h, "both")
		for _, name := range []string{"c1", "c2"} {
			c := client(h, h.NS, name)
			for _, a := range addrs.TCP {
				everyEndpoint(h, "from "+name, c, "tcp", a, eps, 30)
			}
			for _, a := range addrs.UDP {
				everyEndpoint(h, "from "+name, c, "udp", a, eps, 30)
			}
			// The source a backend sees through the ClusterIP.
			own := pod(h, h.NS, name).IP.String()
			seen := map[string]int{}
			for range 10 {
				body, err := c.Get(h.Ctx, "http://"+addrs.TCP[0]+"/client")
				if err != nil {
					h.Fatalf("GET /client from %s: %v", name, err)
				}
				ip, _, _ := strings.Cut(body, ":")
				seen[ip]++
			}
			if h.Desc.Traits.Relay {
				h.Check(seen[own] == 0, "a relaying proxy: backends see the node, not "+name, "sources %v (client %s)", seen, own)
			} else {
				h.Check(seen[own] == 10, "backends see "+name+"'s own address through the ClusterIP", "sources %v (client %s)", seen, own)
			}
			_, src := echoFrom(h, c, "udp", addrs.UDP[0], "ping")
			srcIP, _, _ := strings.Cut(src, ":")
			if h.Desc.Traits.Relay {
				h.Check(srcIP != own, "a relaying proxy: UDP backends see the node, not "+name, "source %s (client %s)", src, own)
			} else {
				h.Check(srcIP == own, "UDP backends see "+name+"'s own address through the ClusterIP", "source %s (client %s)", src, own)
			}
		}
		// Pod to pod, across and within nodes: no SNAT.
		for _, from := range []string{"c1", "c2", "b1", "b2"} {
			c := client(h, h.NS, from)
			own := pod(h, h.NS, from).IP.String()
			for ip, to := range eps {
				if to == from {
					continue
				}
				body, err := c.Get(h.Ctx, "http://"+ip+"/client")
				got, _, _ := strings.Cut(body, ":")
				h.Check(err == nil && got == own, fmt.Sprintf("%s -> %s directly: source kept", from, to), "%s saw %q (want %s) %v", to, body, own, err)
			}
		}
	})
}

// TestHairpin: a backend reaches its own Service's ClusterIP and every
// node's nodePort, over TCP and UDP, and every endpoint answers, itself
// included (hairpin: a pod sent back to itself through the bridge); with a
// second Service over the same selector, both work from the endpoint, and
// after the first is deleted the second still does while the first's
// ClusterIP goes quiet.
func TestHairpin(t *testing.T) {
	sc := harness.Scenario{Name: "hairpin", Title: "A backend reaches itself and its peers through its own Service", Group: results.GroupService}
	opts := harness.Options{Manifests: []string{pinnedPod("e1", "node1", "ep"), pinnedPod("e2", "node2", "ep"),
		bothService("eps", "ep"), bothService("eps2", "ep")}}
	harness.Run(t, sc, opts, func(h *harness.H) {
		eps := podIPs(h, h.NS, "e")
		c := client(h, h.NS, "e1")
		check := func(step, svc string) {
			h.T.Helper()
			a := addrsOf(h, svc)
			for _, addr := range a.TCP {
				seen := everyEndpoint(h, step, c, "tcp", addr, eps, 30)
				h.Check(seen["e1"] > 0, step+": e1 reaches itself through "+addr, "%v", seen)
			}
			for _, addr := range a.UDP {
				everyEndpoint(h, step, c, "udp", addr, eps, 30)
			}
		}
		check("from endpoint e1", "eps")
		check("second Service, same selector", "eps2")
		// Only one endpoint left: e1 is sent to itself every time.
		vip := addrsOf(h, "eps").TCP[0]
		del(h, "service", "eps")
		ok, what := quiet(h, c, vip)
		h.Check(ok, "the deleted Service's ClusterIP is quiet", "%s: %s", vip, what)
		check("after deleting the first", "eps2")
		del(h, "pod", "e2")
		only := map[string]string{pod(h, h.NS, "e1").IP.String(): "e1"}
		for _, addr := range addrsOf(h, "eps2").TCP {
			everyEndpoint(h, "e1 the only endpoint (hairpin)", c, "tcp", addr, only, 10)
		}
		for _, addr := range addrsOf(h, "eps2").UDP {
			everyEndpoint(h, "e1 the only endpoint (hairpin)", c, "udp", addr, only, 10)
		}
	})
}

// TestNodeToService: from a node's own network namespace (where kubelet
// and hostNetwork pods send from) a Service's ClusterIP and the nodePort
// on the node's own and the other node's address answer over TCP and UDP,
// every endpoint in turn; once the Service is deleted its nodePorts go
// quiet, asked from the node.
func TestNodeToService(t *testing.T) {
	sc := harness.Scenario{Name: "node-to-service", Title: "A node reaches ClusterIP and NodePorts over TCP and UDP", Group: results.GroupService}
	opts := harness.Options{Manifests: []string{pinnedPod("b1", "node1", "both"), pinnedPod("b2", "node2", "both"), bothService("both", "both")}}
	harness.Run(t, sc, opts, func(h *harness.H) {
		eps := podIPs(h, h.NS, "b")
		a := addrsOf(h, "both")
		for _, nodeName := range []string{"node1", "node2"} {
			c := nodeClient(h, nodeName)
			for _, addr := range a.TCP {
				everyEndpoint(h, "from "+nodeName, c, "tcp", addr, eps, 30)
			}
			for _, addr := range a.UDP {
				everyEndpoint(h, "from "+nodeName, c, "udp", addr, eps, 30)
			}
		}
		del(h, "service", "both")
		c := nodeClient(h, "node1")
		for _, addr := range a.TCP[1:] {
			ok, what := quiet(h, c, addr)
			h.Check(ok, "deleted: TCP nodePort "+addr+" quiet from node1", "%s", what)
		}
		for _, addr := range a.UDP[1:] {
			ok, what := quietUDP(h, c, addr)
			h.Check(ok, "deleted: UDP nodePort "+addr+" quiet from node1", "%s", what)
		}
	})
}

// TestLargePayload: a 1 MiB HTTP body goes to a backend and comes back
// whole (POST /echo), through the ClusterIP and a nodePort, from a pod and
// from outside; a 2000-byte UDP datagram (two IP fragments on a 1500-byte
// MTU) is echoed whole through the ClusterIP and a nodePort.
func TestLargePayload(t *testing.T) {
	sc := harness.Scenario{Name: "large-payload", Title: "1 MiB HTTP bodies both ways and fragmented UDP datagrams", Group: results.GroupService}
	opts := harness.Options{Manifests: []string{pinnedPod("b1", "node1", "both"), pinnedPod("b2", "node2", "both"), bothService("both", "both"),
		clientPod("c1", "node1")}}
	harness.Run(t, sc, opts, func(h *harness.H) {
		a := addrsOf(h, "both")
		body := make([]byte, 1<<20)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range body {
			body[i] = byte(rng.IntN(256))
		}
		sum := sha256.Sum256(body)
		post := func(from, addr string, ns *harness.Client) {
			h.T.Helper()
			hc := topology.HTTPClient(ns.NS, false, 20*time.Second)
			ctx, cancel := context.WithTimeout(h.Ctx, 20*time.Second)
			defer cancel()
			t0 := time.Now()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/echo", bytes.NewReader(body))
			if err != nil {
				h.Fatalf("request: %v", err)
			}
			resp, err := hc.Do(req)
			if err != nil {
				h.Fatalf("POST 1 MiB to %s from %s: %v", addr, from, err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(io.LimitReader(resp.Body, 2<<20))
			h.Check(err == nil && resp.StatusCode == http.StatusOK && len(got) == len(body) && sha256.Sum256(got) == sum,
				"1 MiB both ways from "+from+" via "+addr, "%s, %d bytes back in %v, same SHA-256: %v (%v)",
				resp.Status, len(got), time.Since(t0).Round(time.Millisecond), len(got) == len(body) && sha256.Sum256(got) == sum, err)
		}
		c := client(h, h.NS, "c1")
		post("c1", a.TCP[0], c)
		post("c1", a.TCP[2], c)
		post("outside", a.TCP[1], external(h))
		payload := "big-" + strings.Repeat("o", 1996)
		for _, addr := range []string{a.UDP[0], a.UDP[2]} {
			reply, err := c.Echo(h.Ctx, "udp", addr, payload)
			f := strings.Fields(reply)
			h.Check(err == nil && len(f) == 3 && f[2] == payload, "a 2000-byte datagram echoed whole via "+addr,
				"reply of %d bytes, payload %d of 2000 bytes back: %v", len(reply), len(lastField(f)), err)
		}
	})
}

func lastField(f []string) string {
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// TestUDPAffinity: with sessionAffinity ClientIP a UDP Service sends every
// datagram of a client to one backend, from whatever source port (each
// datagram from a fresh socket); switched off, the datagrams spread again.
// A fresh socket may draw a source port that an earlier datagram of the
// test used less than nf_conntrack_udp_timeout (30 s) ago: the kernel then
// sends it along that flow's conntrack entry, made before affinity was
// switched on, to that flow's backend (seen as 1 of 40 datagrams on several
// datapaths, the genuine kube-proxy's included). Such datagrams are left out
// of the affinity count, and said.
func TestUDPAffinity(t *testing.T) {
	sc := harness.Scenario{Name: "udp-affinity", Title: "sessionAffinity: ClientIP over UDP", Group: results.GroupService}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(1, ""), udpEchoApp(3)}}, func(h *harness.H) {
		c := client(h, h.NS, "client")
		vip := clusterIP(h, h.NS, "echo-udp")
		used := map[string]bool{} // sources (address:port) backends saw
		tally := func(n int) (seen map[string]int, reused int) {
			seen = map[string]int{}
			for i := range n {
				pod, source := echoFrom(h, c, "udp", vip, fmt.Sprintf("ping-%d", i))
				if used[source] {
					reused++
					continue
				}
				used[source] = true
				seen[pod]++
			}
			return seen, reused
		}
		patch := func(p string) {
			h.T.Helper()
			if err := h.P.Patch(h.Ctx, plane.Ref{Kind: "service", Namespace: h.NS, Name: "echo-udp"}, []byte(p)); err != nil {
				h.Fatalf("patch %s: %v", p, err)
			}
			h.Programmed()
		}
		before, _ := tally(60)
		h.Check(len(before) == 3, "without affinity datagrams spread", "60 datagrams answered by %v", before)
		patch(`{"spec":{"sessionAffinity":"ClientIP"}}`)
		pinned, reused := tally(40)
		h.Check(len(pinned) == 1 && reused <= 10, "ClientIP pins every datagram, whatever the source port",
			"40 datagrams from fresh sockets answered by %v; %d left out: their source port had been used before", pinned, reused)
		patch(`{"spec":{"sessionAffinity":"None"}}`)
		after, _ := tally(60)
		h.Check(len(after) == 3, "affinity off: datagrams spread again", "60 datagrams answered by %v", after)
	})
}

// TestSessionAffinityNodePort: sessionAffinity ClientIP through a nodePort,
// from outside: every request lands on one pod; switched off, requests
// spread; switched on again, pinned again; with timeoutSeconds 2 the pin
// ends after idle (on IPVS it outlives the idle time while its persistence
// template holds TIME_WAIT connections: checked pinned, the expiry itself
// is waited out by session-affinity through the ClusterIP).
func TestSessionAffinityNodePort(t *testing.T) {
	sc := harness.Scenario{Name: "session-affinity-nodeport", Title: "sessionAffinity through a NodePort: pins, switches, expires", Group: results.GroupService}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(3, "  type: NodePort\n")}}, func(h *harness.H) {
		ext := external(h)
		addr := fmt.Sprintf("%s:%d", h.P.Nodes()[0].IP, nodePort(h, h.NS, "getip-service"))
		patch := func(p string) {
			h.T.Helper()
			if err := h.P.Patch(h.Ctx, plane.Ref{Kind: "service", Namespace: h.NS, Name: "getip-service"}, []byte(p)); err != nil {
				h.Fatalf("patch %s: %v", p, err)
			}
			h.Programmed()
		}
		patch(`{"spec":{"sessionAffinity":"ClientIP"}}`)
		counts := reachesOne(h, ext, addr, 30)
		h.Check(len(counts) == 1, "ClientIP through the nodePort pins", "30 requests to %s from outside: %v", addr, counts)
		patch(`{"spec":{"sessionAffinity":"None"}}`)
		counts = reachesOne(h, ext, addr, 90)
		h.Check(len(counts) == 3, "switched off: requests spread", "90 requests: %v", counts)
		const timeout = 2
		patch(fmt.Sprintf(`{"spec":{"sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":%d}}}}`, timeout))
		if h.Desc.Traits.Affinity == modes.AffinityTemplate {
			// A template made before (10800 s) may still hold the client:
			// IPVS keeps it across the switch. Pinned is what is asserted.
			counts = reachesOne(h, ext, addr, 30)
			h.Check(len(counts) == 1, "switched on again: pinned", "30 requests: %v", counts)
			var first string
			for ip := range counts {
				first = ip
			}
			time.Sleep(time.Duration(timeout)*time.Second + 1500*time.Millisecond)
			in, _, err := ext.GetInfo(h.Ctx, addr)
			h.Check(err == nil && in.IP() == first, "IPVS: still pinned after timeoutSeconds of idle (its template holds TIME_WAIT connections)", "%s (pinned %s) %v", in.IP(), first, err)
			return
		}
		counts = reachesOne(h, ext, addr, 30)
		h.Check(len(counts) == 1, "switched on again (timeoutSeconds 2): pinned while busy", "30 requests: %v", counts)
		var prev string
		for ip := range counts {
			prev = ip
		}
		// As in session-affinity: a fresh choice after idle lands elsewhere
		// with probability >= 2/3 per round, so 12 rounds miss it with
		// probability <= 1.9e-6.
		var expired time.Duration
		idle := time.Now()
		for round := 0; round < 12 && expired == 0; round++ {
			time.Sleep(time.Duration(timeout)*time.Second + 1500*time.Millisecond)
			in, _, err := ext.GetInfo(h.Ctx, addr)
			if err != nil {
				h.Fatalf("traffic: %v", err)
			}
			if in.IP() != prev {
				expired = time.Since(idle)
			}
			prev, idle = in.IP(), time.Now()
		}
		h.Check(expired > 0, "the pin through the nodePort expires after idle", "a new backend after %.1fs idle (timeoutSeconds %d)", expired.Seconds(), timeout)
		h.Figure("observed affinity expiry through the nodePort", expired.Seconds(), "s")
	})
}
