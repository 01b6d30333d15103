package scenarios

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// lbGone waits (at most 20 s) until Service name has no load-balancer
// address any more.
func lbGone(h *harness.H, name string) bool {
	h.T.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if len(service(h, h.NS, name).Status.LoadBalancer.Ingress) == 0 {
			return true
		}
	}
	return false
}

// patchService applies a strategic merge patch to Service name and waits
// until it is programmed.
func patchService(h *harness.H, name, patch string) {
	h.T.Helper()
	if err := h.P.Patch(h.Ctx, plane.Ref{Kind: "service", Namespace: h.NS, Name: name}, []byte(patch)); err != nil {
		h.Fatalf("patch service %s %s: %v", name, patch, err)
	}
	h.Programmed()
}

// hcAnswers is the status of GET /healthz on the health check node port
// hc of node ip from c (0: no answer).
func hcAnswers(h *harness.H, c *harness.Client, ip string, hc int32) int {
	code, _, _, err := c.Response(h.Ctx, fmt.Sprintf("http://%s:%d/healthz", ip, hc))
	if err != nil {
		return 0
	}
	return code
}

// TestLoadBalancerChanges: upstream's LoadBalancer tests on a live
// cluster. A TCP Service goes ClusterIP -> NodePort -> LoadBalancer (its
// nodePort kept, an address from the cloud that answers), gets another
// nodePort and another port (the address kept, answering on the new
// port), loses its endpoints (no answer) and gets one back, and goes back
// to ClusterIP (nodePort cleared, the address released and quiet). A
// LoadBalancer without node ports gets them (allocateLoadBalancerNodePorts
// switched on) and keeps its address. Under externalTrafficPolicy Local
// the cloud targets only nodes with endpoints (the health check node port
// follows a pod moved to the other node), all of them when both have one,
// a pod on the endpoint's node reaches the address with its own source
// address, and the health check node port goes with the type. loadBalancerSourceRanges are
// enforced for clients outside and pods alike: one pod and its node
// allowed, everything, nothing, and cleared. A LoadBalancer Service with
// one port on TCP and UDP serves both through its ClusterIP.
func TestLoadBalancerChanges(t *testing.T) {
	sc := harness.Scenario{Name: "loadbalancer-changes", Title: "LoadBalancer Services changed live: type, ports, node ports, traffic policy, source ranges", Group: results.GroupPublishing}
	manifests := []string{getipApp(1, ""), clientPod("client-2", "node2"),
		webPod("web-1", "web", "node1"),
		policyService("local-lb", "web", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n"),
		policyService("noports", "getip", "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n"),
		policyService("ranges-lb", "getip", "  type: LoadBalancer\n"),
		strings.Replace(dualEcho("LoadBalancer", "TCP", "UDP"), "replicas: 2", "replicas: 1", 1),
	}
	harness.Run(t, sc, harness.Options{Manifests: manifests}, func(h *harness.H) {
		ext := external(h)
		c1, c2 := client(h, h.NS, "client"), client(h, h.NS, "client-2")
		n1, n2 := node(h, "node1").IP.String(), node(h, "node2").IP.String()
		const svc = "getip-service"
		get := func(c *harness.Client, url string) error { _, err := c.Get(h.Ctx, url); return err }

		// Type and ports of a TCP Service.
		_, _, err := c1.GetInfo(h.Ctx, clusterIP(h, h.NS, svc))
		h.Check(err == nil, "ClusterIP serves", "GET %s/info: %v", clusterIP(h, h.NS, svc), err)
		patchService(h, svc, `{"spec":{"type":"NodePort"}}`)
		np := nodePort(h, h.NS, svc)
		url := fmt.Sprintf("http://%s:%d/info", n2, np)
		h.Check(np != 0 && get(ext, url) == nil, "NodePort: allocated and serving", "nodePort %d; GET %s", np, url)
		patchService(h, svc, `{"spec":{"type":"LoadBalancer"}}`)
		ip, _ := lbAddress(h, svc)
		url = fmt.Sprintf("http://%s/info", ip)
		_, took, err := reachable(h, ext, url)
		h.Check(nodePort(h, h.NS, svc) == np && err == nil, "LoadBalancer: nodePort kept, its address answers",
			"nodePort %d (was %d); GET %s after %v: %v", nodePort(h, h.NS, svc), np, url, took.Round(time.Millisecond), err)
		np2 := moveNodePort(h, svc, 80, np)
		h.Programmed()
		ip2, _ := lbAddress(h, svc)
		_, took, err = reachable(h, ext, url)
		h.Check(np2 != np && ip2 == ip && err == nil, "another nodePort: the address kept and answering",
			"nodePort %d -> %d, address %s -> %s; GET %s after %v: %v", np, np2, ip, ip2, url, took.Round(time.Millisecond), err)
		h.Apply(fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
spec:
  type: LoadBalancer
  selector:
    app: getip
  ports:
    - protocol: TCP
      port: 81
      targetPort: http
      nodePort: %d
`, svc, np2))
		s := service(h, h.NS, svc)
		ip2, _ = lbAddress(h, svc)
		url = fmt.Sprintf("http://%s:81/info", ip)
		_, took, err = reachable(h, ext, url)
		h.Check(len(s.Spec.Ports) == 1 && s.Spec.Ports[0].Port == 81 && s.Spec.Ports[0].NodePort == np2 && ip2 == ip && err == nil,
			"another port: the nodePort and address kept, answering on it", "ports %v, address %s; GET %s after %v: %v", s.Spec.Ports, ip2, url, took.Round(time.Millisecond), err)
		dep := plane.Ref{Kind: "deployment", Namespace: h.NS, Name: "getip-deployment"}
		if err := h.P.Scale(h.Ctx, dep, 0); err != nil {
			h.Fatalf("scale getip-deployment to 0: %v", err)
		}
		h.Programmed()
		err = get(ext, url)
		h.Check(err != nil, "no endpoints: the address does not answer", "GET %s: %v", url, err)
		if err := h.P.Scale(h.Ctx, dep, 1); err != nil {
			h.Fatalf("scale getip-deployment to 1: %v", err)
		}
		h.Programmed()
		_, took, err = reachable(h, ext, url)
		h.Check(err == nil, "an endpoint again: the address answers", "GET %s after %v: %v", url, took.Round(time.Millisecond), err)
		patchService(h, svc, `{"spec":{"type":"ClusterIP"}}`)
		s = service(h, h.NS, svc)
		gone := lbGone(h, svc)
		err = get(ext, url)
		h.Check(s.Spec.Ports[0].NodePort == 0 && gone && err != nil, "back to ClusterIP: nodePort cleared, the address released and quiet",
			"nodePort %d, ingress released %v; GET %s: %v", s.Spec.Ports[0].NodePort, gone, url, err)

		// allocateLoadBalancerNodePorts switched on.
		ipN, _ := lbAddress(h, "noports")
		before := nodePort(h, h.NS, "noports")
		patchService(h, "noports", `{"spec":{"allocateLoadBalancerNodePorts":true}}`)
		after := nodePort(h, h.NS, "noports")
		ipN2, _ := lbAddress(h, "noports")
		url = fmt.Sprintf("http://%s/info", ipN)
		_, took, err = reachable(h, ext, url)
		h.Check(before == 0 && after != 0 && ipN2 == ipN && err == nil, "node ports allocated on a LoadBalancer without them",
			"nodePort %d -> %d, address %s -> %s; GET %s after %v: %v", before, after, ipN, ipN2, url, took.Round(time.Millisecond), err)

		// externalTrafficPolicy Local.
		hc := service(h, h.NS, "local-lb").Spec.HealthCheckNodePort
		ipL, _ := lbAddress(h, "local-lb")
		relay := h.Desc.Traits.Relay
		// Only the pod on the endpoint's node is asked: kube-proxy sends
		// pods' traffic to the address to every endpoint, but the
		// userspace proxy closes, and svcsim's IPVS datapath refuses, a pod
		// on a node without one (they apply Local to it as well).
		var wrong []string
		for _, c := range []*harness.Client{c1} {
			body, _, err := reachable(h, c, fmt.Sprintf("http://%s/client", ipL))
			ap, perr := netip.ParseAddrPort(strings.TrimSpace(body))
			own := pod(h, h.NS, c.Name).IP
			if err != nil || perr != nil || (ap.Addr() == own) == relay {
				wrong = append(wrong, fmt.Sprintf("%s (%s): %q %v", c.Name, own, body, err))
			}
		}
		h.Check(len(wrong) == 0, "Local: a pod reaches the address with its own source", "GET http://%s/client from node1's pod (relaying datapath %v: not kept): %v", ipL, relay, wrong)
		move := func(from, to, node string) {
			h.T.Helper()
			if from != "" {
				del(h, "pod", from)
			}
			if to != "" {
				h.Apply(webPod(to, "web", node))
			}
		}
		for _, step := range []struct {
			from, to, node string
			want           [2]int // node1, node2
		}{{"", "", "", [2]int{200, 503}}, {"web-1", "web-2", "node2", [2]int{503, 200}}, {"", "web-1", "node1", [2]int{200, 200}}} {
			move(step.from, step.to, step.node)
			_, took, err := reachable(h, ext, fmt.Sprintf("http://%s/info", ipL))
			got := [2]int{hcAnswers(h, ext, n1, hc), hcAnswers(h, ext, n2, hc)}
			h.Check(err == nil && got == step.want, fmt.Sprintf("Local: the health check passes on the nodes with endpoints (%v)", step.want),
				"after moving %q -> %q on %s: healthz node1, node2 %v; the address answered after %v: %v", step.from, step.to, step.node, got, took.Round(time.Millisecond), err)
		}
		// The cloud probes on its own schedule: wait until it routes to both.
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if nodes, err := cloudHealth(h, ext, "local-lb"); err == nil && len(nodes) == 2 && nodes[0].Healthy && nodes[1].Healthy {
				break
			}
		}
		seen, err := answers(h, ext, ipL.String(), 20)
		h.Check(err == nil && len(seen) == 2, "Local: the cloud targets every node with endpoints", "20 GETs of %s from outside: %v, err %v", ipL, seen, err)
		patchService(h, "local-lb", `{"spec":{"type":"ClusterIP"}}`)
		got := [2]int{hcAnswers(h, ext, n1, hc), hcAnswers(h, ext, n2, hc)}
		h.Check(got == [2]int{0, 0}, "Local: the health check node port goes with the type", "ClusterIP now: healthz %d on node1, node2 %v", hc, got)

		// loadBalancerSourceRanges.
		ipR, _ := lbAddress(h, "ranges-lb")
		url = fmt.Sprintf("http://%s/info", ipR)
		c1IP := pod(h, h.NS, "client").IP.String()
		for _, step := range []struct {
			ranges string
			allow  [3]bool // outside, client (node1), client-2 (node2)
		}{
			{"null", [3]bool{true, true, true}},
			{fmt.Sprintf(`["%s/32","%s/32"]`, c1IP, n1), [3]bool{false, true, false}},
			{`["0.0.0.0/1","128.0.0.0/1"]`, [3]bool{true, true, true}},
			{`["255.0.0.0/32"]`, [3]bool{false, false, false}},
			{"null", [3]bool{true, true, true}},
		} {
			patchService(h, "ranges-lb", fmt.Sprintf(`{"spec":{"loadBalancerSourceRanges":%s}}`, step.ranges))
			var got [3]bool
			for i, c := range []*harness.Client{ext, c1, c2} {
				if step.allow[i] {
					_, _, err = reachable(h, c, url)
				} else {
					err = get(c, url)
				}
				got[i] = err == nil
			}
			h.Check(got == step.allow, "source ranges "+step.ranges, "GET %s from outside, client (node1), client-2 (node2) answered %v, want %v", url, got, step.allow)
		}

		// One port on TCP and UDP, type LoadBalancer, from a pod.
		vip := netip.MustParseAddr(service(h, h.NS, "dual").Spec.ClusterIP)
		addr := netip.AddrPortFrom(vip, 53).String()
		tcp, terr := c1.Echo(h.Ctx, "tcp", addr, "over-tcp")
		udp, uerr := c1.Echo(h.Ctx, "udp", addr, "over-udp")
		h.Check(terr == nil && uerr == nil && strings.HasSuffix(strings.TrimSpace(tcp), "over-tcp") && strings.HasSuffix(strings.TrimSpace(udp), "over-udp"),
			"LoadBalancer with one port on TCP and UDP: both serve internally", "%s tcp: %q %v; udp: %q %v", addr, tcp, terr, udp, uerr)
	})
}

// udpReachable waits (at most 60 tries in 15 s) until a datagram to addr
// from c is echoed, each from a fresh socket.
func udpReachable(h *harness.H, c *harness.Client, addr string) (time.Duration, error) {
	start := time.Now()
	var err error
	for i := 0; i < 60 && time.Since(start) < 15*time.Second; i++ {
		var reply string
		if reply, err = c.Echo(h.Ctx, "udp", addr, fmt.Sprintf("ping-%d", i)); err == nil && strings.HasSuffix(reply, fmt.Sprintf("ping-%d", i)) {
			return time.Since(start), nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return time.Since(start), err
}

// TestLoadBalancerUDPChanges: upstream's UDP LoadBalancer lifecycle on a
// live cluster: a UDP Service goes ClusterIP -> NodePort -> LoadBalancer
// (its nodePort kept, the cloud's address echoing datagrams from
// outside), gets another nodePort and another port (the address kept and
// echoing), loses its endpoints (no echo) and gets one back, and goes back
// to ClusterIP (nodePort cleared, the address released and silent).
func TestLoadBalancerUDPChanges(t *testing.T) {
	sc := harness.Scenario{Name: "loadbalancer-udp-changes", Title: "A UDP LoadBalancer Service changed live: type, node port, port, endpoints", Group: results.GroupPublishing}
	harness.Run(t, sc, harness.Options{Manifests: []string{udpEchoApp(1), clientPod("client", "node1")}}, func(h *harness.H) {
		ext, c := external(h), client(h, h.NS, "client")
		n2 := node(h, "node2").IP.String()
		const svc = "echo-udp"
		_, err := udpReachable(h, c, clusterIP(h, h.NS, svc))
		h.Check(err == nil, "ClusterIP echoes", "%s: %v", clusterIP(h, h.NS, svc), err)
		patchService(h, svc, `{"spec":{"type":"NodePort"}}`)
		np := nodePort(h, h.NS, svc)
		addr := fmt.Sprintf("%s:%d", n2, np)
		_, err = udpReachable(h, ext, addr)
		h.Check(np != 0 && err == nil, "NodePort: allocated and echoing", "nodePort %d; %s from outside: %v", np, addr, err)
		patchService(h, svc, `{"spec":{"type":"LoadBalancer"}}`)
		ip, _ := lbAddress(h, svc)
		addr = fmt.Sprintf("%s:53", ip)
		took, err := udpReachable(h, ext, addr)
		h.Check(nodePort(h, h.NS, svc) == np && err == nil, "LoadBalancer: nodePort kept, its address echoes",
			"nodePort %d (was %d); %s from outside after %v: %v", nodePort(h, h.NS, svc), np, addr, took.Round(time.Millisecond), err)
		np2 := moveNodePort(h, svc, 53, np)
		h.Programmed()
		ip2, _ := lbAddress(h, svc)
		took, err = udpReachable(h, ext, addr)
		h.Check(np2 != np && ip2 == ip && err == nil, "another nodePort: the address kept and echoing",
			"nodePort %d -> %d, address %s -> %s; %s after %v: %v", np, np2, ip, ip2, addr, took.Round(time.Millisecond), err)
		h.Apply(fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
spec:
  type: LoadBalancer
  selector:
    app: echo
  ports:
    - protocol: UDP
      port: 54
      targetPort: 5353
      nodePort: %d
`, svc, np2))
		s := service(h, h.NS, svc)
		ip2, _ = lbAddress(h, svc)
		addr = fmt.Sprintf("%s:54", ip)
		took, err = udpReachable(h, ext, addr)
		h.Check(len(s.Spec.Ports) == 1 && s.Spec.Ports[0].Port == 54 && s.Spec.Ports[0].NodePort == np2 && ip2 == ip && err == nil,
			"another port: the nodePort and address kept, echoing on it", "ports %v, address %s; %s after %v: %v", s.Spec.Ports, ip2, addr, took.Round(time.Millisecond), err)
		dep := plane.Ref{Kind: "deployment", Namespace: h.NS, Name: "echo"}
		if err := h.P.Scale(h.Ctx, dep, 0); err != nil {
			h.Fatalf("scale echo to 0: %v", err)
		}
		h.Programmed()
		reply, err := ext.Echo(h.Ctx, "udp", addr, "nobody")
		h.Check(err != nil, "no endpoints: the address does not echo", "%s: %q %v", addr, reply, err)
		if err := h.P.Scale(h.Ctx, dep, 1); err != nil {
			h.Fatalf("scale echo to 1: %v", err)
		}
		h.Programmed()
		took, err = udpReachable(h, ext, addr)
		h.Check(err == nil, "an endpoint again: the address echoes", "%s after %v: %v", addr, took.Round(time.Millisecond), err)
		patchService(h, svc, `{"spec":{"type":"ClusterIP"}}`)
		s = service(h, h.NS, svc)
		gone := lbGone(h, svc)
		reply, err = ext.Echo(h.Ctx, "udp", addr, "nobody")
		h.Check(s.Spec.Ports[0].NodePort == 0 && gone && err != nil, "back to ClusterIP: nodePort cleared, the address released and silent",
			"nodePort %d, ingress released %v; %s: %q %v", s.Spec.Ports[0].NodePort, gone, addr, reply, err)
	})
}

// udpPod is a UDP echo pod (port 5353) labelled app=<app> on node.
func udpPod(name, app, node string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels:
    app: %s
spec:
  nodeName: %s
  containers:
    - name: echo
      image: echo
      ports:
        - containerPort: 5353
          protocol: UDP
`, name, app, node)
}

// TestLoadBalancerUDPPodCycles: a client outside keeps one UDP socket
// (one source port) on a LoadBalancer Service's address while its only
// server pod is replaced, first by a pod on the other node, then by one
// on the same node: every time the same source port reaches the new pod
// (the nodes delete the old endpoint's conntrack entries), as upstream's
// two "server pod cycles for a LoadBalancer service" tests check.
func TestLoadBalancerUDPPodCycles(t *testing.T) {
	sc := harness.Scenario{Name: "loadbalancer-udp-pod-cycles", Title: "A UDP client on one port follows its LoadBalancer's server pod to another node and within one", Group: results.GroupPublishing}
	svc := `apiVersion: v1
kind: Service
metadata:
  name: cycle
spec:
  type: LoadBalancer
  selector:
    app: cycle
  ports:
    - protocol: UDP
      port: 80
      targetPort: 5353
`
	harness.Run(t, sc, harness.Options{Manifests: []string{udpPod("udp-1", "cycle", "node1"), svc}}, func(h *harness.H) {
		ip, _ := lbAddress(h, "cycle")
		addr := fmt.Sprintf("%s:80", ip)
		conn, err := external(h).DialContext(h.Ctx, "udp", addr)
		if err != nil {
			h.Fatalf("dial udp %s: %v", addr, err)
		}
		defer conn.Close()
		askPod := udpAsker(conn)
		ask := func() string { return strings.TrimPrefix(askPod(), h.NS+"/") }
		// The cloud routes the address once its health checks pass: at
		// most 60 datagrams (about 18 s).
		first := ""
		for range 60 {
			if first = ask(); first != "" {
				break
			}
		}
		h.Check(first == "udp-1", "the address echoes from the first pod", "%s from outside: answered by %q", addr, first)
		for _, step := range []struct{ old, next, node, what string }{
			{"udp-1", "udp-2", "node2", "a pod on the other node"},
			{"udp-2", "udp-3", "node2", "a pod on the same node"},
		} {
			h.Apply(udpPod(step.next, "cycle", step.node))
			del(h, "pod", step.old)
			// At most 40 datagrams (about 12 s) until the new pod answers,
			// then 10 more must all reach it.
			got, n := "", 0
			t0 := time.Now()
			for range 40 {
				if got = ask(); got == step.next {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			took := time.Since(t0)
			if got == step.next {
				for range 10 {
					if ask() == step.next {
						n++
					}
				}
			}
			h.Check(got == step.next && n == 10, "the same source port reaches "+step.what,
				"%s replaced by %s on %s: answered by %q after %v, then %d of 10", step.old, step.next, step.node, got, took.Round(time.Millisecond), n)
			h.Figure("first answer from "+step.what, took.Seconds(), "s")
		}
	})
}

// moveNodePort gives port of Service svc another free nodePort than np
// (the first of 30000-30009 the API accepts) and returns it (np when none
// was accepted).
func moveNodePort(h *harness.H, svc string, port, np int32) int32 {
	h.T.Helper()
	for cand := int32(30000); cand < 30010; cand++ {
		if cand == np {
			continue
		}
		if err := h.P.Patch(h.Ctx, plane.Ref{Kind: "service", Namespace: h.NS, Name: svc},
			[]byte(fmt.Sprintf(`{"spec":{"ports":[{"port":%d,"nodePort":%d}]}}`, port, cand))); err == nil {
			return cand
		}
	}
	return np
}
