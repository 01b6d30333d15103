package scenarios

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/svcsim/svcsim/addons/loadbalancer"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	"github.com/svcsim/svcsim/topology"
)

// lbAddress waits (at most 20 s) until the controller has written Service
// name's load-balancer address and returns it with its ipMode.
func lbAddress(h *harness.H, name string) (netip.Addr, string) {
	h.T.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := service(h, h.NS, name)
		if in := s.Status.LoadBalancer.Ingress; len(in) > 0 {
			ip, err := netip.ParseAddr(in[0].IP)
			if err != nil {
				h.Fatalf("service %s: ingress %q: %v", name, in[0].IP, err)
			}
			mode := ""
			if in[0].IPMode != nil {
				mode = string(*in[0].IPMode)
			}
			return ip, mode
		}
		if time.Now().After(deadline) {
			h.Fatalf("service %s: no status.loadBalancer.ingress after 20 s", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// reachable waits (at most 60 attempts in 15 s) until GET url answers from
// c, as a client of a load balancer waits for its health checks to pass;
// it returns the body and how long it took.
func reachable(h *harness.H, c *harness.Client, url string) (string, time.Duration, error) {
	start := time.Now()
	var err error
	for i := 0; i < 60 && time.Since(start) < 15*time.Second; i++ {
		var body string
		if body, err = c.Get(h.Ctx, url); err == nil {
			return body, time.Since(start), nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return "", time.Since(start), err
}

// cloudHealth waits (at most 15 s) until the cloud has probed every node of
// Service name's load balancer and returns their health.
func cloudHealth(h *harness.H, c *harness.Client, name string) ([]loadbalancer.NodeStatus, error) {
	h.T.Helper()
	url := fmt.Sprintf("http://%s:%d/v1/loadbalancers", topology.DefaultLoadBalancerIP, loadbalancer.APIPort)
	deadline := time.Now().Add(15 * time.Second)
	for {
		raw, err := c.Get(h.Ctx, url)
		var lbs []loadbalancer.Status
		if err == nil {
			err = json.Unmarshal([]byte(raw), &lbs)
		}
		if err == nil {
			for _, lb := range lbs {
				probed := len(lb.Nodes) > 0
				for _, n := range lb.Nodes {
					probed = probed && n.Last != "not probed yet"
				}
				if lb.Name == h.NS+"/"+name && probed {
					return lb.Nodes, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("GET %s: %s not probed after 15 s (%v)", url, name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestLoadBalancer: Services of type LoadBalancer get an address of the
// cloud's pool (ipMode VIP) and answer from the outside namespace through
// the simulated cloud load balancer, which routes the address, unchanged,
// to the nodes whose health check passes; under externalTrafficPolicy Local
// only nodes with an endpoint pass (the health check node port) and the
// backend sees the client's address; loadBalancerSourceRanges is enforced
// on the nodes; allocateLoadBalancerNodePorts: false needs no NodePort.
func TestLoadBalancer(t *testing.T) {
	sc := harness.Scenario{Name: "loadbalancer", Title: "LoadBalancer Services through a simulated cloud load balancer", Group: results.GroupPublishing}
	manifests := []string{
		webPod("web-1", "web", "node1"), webPod("web-2", "web", "node2"), webPod("one-1", "one", "node1"),
		policyService("web-lb", "web", "  type: LoadBalancer\n"),
		policyService("one-local", "one", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n"),
		policyService("web-denied", "web", "  type: LoadBalancer\n  loadBalancerSourceRanges: [\"10.1.0.0/16\"]\n"),
		policyService("web-allowed", "web", "  type: LoadBalancer\n  loadBalancerSourceRanges: [\"198.18.0.100/32\", \"10.1.0.0/16\"]\n"),
		policyService("web-noports", "web", "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n"),
	}
	opts := harness.Options{Manifests: manifests}
	harness.Run(t, sc, opts, func(h *harness.H) {
		ext := external(h)
		ips := podIPs(h, h.NS, "")
		addr := map[string]netip.Addr{}
		for _, name := range []string{"web-lb", "one-local", "web-denied", "web-allowed", "web-noports"} {
			ip, mode := lbAddress(h, name)
			h.Check(topology.DefaultLoadBalancerPool.Contains(ip) && mode == string(corev1.LoadBalancerIPModeVIP),
				"EXTERNAL-IP for "+name, "%s: %s (ipMode %s) from the pool %s", name, ip, mode, topology.DefaultLoadBalancerPool)
			addr[name] = ip
		}
		h.Programmed()

		url := fmt.Sprintf("http://%s/info", addr["web-lb"])
		_, took, err := reachable(h, ext, url)
		h.Check(err == nil, "Cluster: reachable from outside", "GET %s from external after %v (health checks on :10256/healthz): %v", url, took.Round(time.Millisecond), err)
		h.Figure("load balancer reachable after", took.Seconds(), "s")
		seen, err := answers(h, ext, addr["web-lb"].String(), 20)
		both := len(seen) == 2
		for ip := range seen {
			both = both && ips[ip] != ""
		}
		h.Check(err == nil && both, "Cluster: spread over both nodes' pods", "20 requests to %s: %v, err %v", addr["web-lb"], seen, err)

		url = fmt.Sprintf("http://%s/client", addr["one-local"])
		body, took, err := reachable(h, ext, url)
		h.Check(err == nil, "Local: reachable from outside", "GET %s after %v: %q %v", url, took.Round(time.Millisecond), body, err)
		relay := h.Desc.Traits.Relay
		for i := 0; i < 10; i++ {
			body, err := ext.Get(h.Ctx, url)
			ap, perr := netip.ParseAddrPort(strings.TrimSpace(body))
			if err != nil || perr != nil || (ap.Addr().String() == "198.18.0.100") == relay {
				h.Fatalf("Local: GET %s: %q (relaying datapath %v): %v %v", url, body, relay, err, perr)
			}
		}
		h.Check(true, "Local: backend sees the client's address", "10 GETs of %s: the backend saw 198.18.0.100: %v (a relaying datapath cannot keep it)", url, !relay)
		nodes, err := cloudHealth(h, ext, "one-local")
		ok := err == nil && len(nodes) == 2 && nodes[0].Healthy && !nodes[1].Healthy
		h.Check(ok, "Local: only node1 passes the health check node port", "cloud: %v (health check on port %d), err %v",
			nodes, service(h, h.NS, "one-local").Spec.HealthCheckNodePort, err)

		url = fmt.Sprintf("http://%s/info", addr["web-allowed"])
		_, took, err = reachable(h, ext, url)
		h.Check(err == nil, "source ranges: an allowed client passes", "GET %s (ranges 198.18.0.100/32, 10.1.0.0/16) after %v: %v", url, took.Round(time.Millisecond), err)
		// The cloud routes web-denied to healthy nodes: only the nodes'
		// proxies can refuse the client.
		nodes, err = cloudHealth(h, ext, "web-denied")
		h.Check(err == nil && len(nodes) == 2 && nodes[0].Healthy && nodes[1].Healthy, "source ranges: the cloud forwards to both nodes",
			"cloud: %v, err %v", nodes, err)
		url = fmt.Sprintf("http://%s/info", addr["web-denied"])
		in, body, err := ext.GetInfo(h.Ctx, addr["web-denied"].String())
		h.Check(err != nil, "source ranges: another client is refused", "GET %s (ranges 10.1.0.0/16) from 198.18.0.100: %s %q %v", url, in.IP(), body, err)

		np := service(h, h.NS, "web-noports").Spec.Ports[0].NodePort
		url = fmt.Sprintf("http://%s/info", addr["web-noports"])
		_, took, err = reachable(h, ext, url)
		h.Check(np == 0 && err == nil, "allocateLoadBalancerNodePorts: false", "nodePort %d; GET %s after %v: %v", np, url, took.Round(time.Millisecond), err)
	})
}
