package nftables

import (
	"strings"
	"testing"
)

// summary renders outcomes as "ip:port[ masq]" / "reject" / "drop", sorted.
func summary(outs []outcome) string {
	s := make([]string, len(outs))
	for i, o := range outs {
		s[i] = o.String()
	}
	return strings.Join(s, ", ")
}

// TestPacketFlow traces packets through the table built for the address plan
// (see helpers_test.go) and checks where they can end up.
func TestPacketFlow(t *testing.T) {
	p, fake := newFakeProxier(Config{})
	syncOK(t, p, makeState(allServices()...))

	cases := []struct {
		name   string
		local  bool // sent by the node itself
		src    string
		proto  string
		dst    string
		dport  int
		expect string
	}{
		{"pod to ClusterIP", false, "10.244.1.5", "tcp", "10.96.0.20", 80,
			"10.244.1.3:8080, 10.244.2.3:8080, 10.244.2.4:8080"},
		{"remote pod to ClusterIP", false, "10.244.2.9", "tcp", "10.96.0.20", 80,
			"10.244.1.3:8080, 10.244.2.3:8080, 10.244.2.4:8080"},
		{"hairpin: endpoint to its own service", false, "10.244.1.3", "tcp", "10.96.0.20", 80,
			"10.244.1.3:8080 masq, 10.244.2.3:8080, 10.244.2.4:8080"},
		{"external client to NodePort", false, externalHost, "tcp", node1IP, 30080,
			"10.244.1.4:80 masq, 10.244.2.5:80 masq"},
		{"pod to NodePort on the node's address", false, "10.244.1.5", "tcp", node1IP, 30080,
			"10.244.1.4:80 masq, 10.244.2.5:80 masq"},
		{"NodePort on cni0 address: not served (NodePorts on the node's own address only, kube-proxy's --nodeport-addresses=primary)",
			false, "10.244.1.5", "tcp", node1Cni0, 30080, "10.244.1.1:30080"},
		{"external client to ClusterIP (routed in)", false, externalHost, "tcp", "10.96.0.30", 8800,
			"10.244.1.4:80 masq, 10.244.2.5:80 masq"},
		{"node to ClusterIP", true, node1IP, "tcp", "10.96.0.20", 80,
			"10.244.1.3:8080 masq, 10.244.2.3:8080 masq, 10.244.2.4:8080 masq"},
		{"node to NodePort on itself", true, node1IP, "tcp", node1IP, 30080,
			"10.244.1.4:80 masq, 10.244.2.5:80 masq"},
		{"node to NodePort on localhost: not served", true, "127.0.0.1", "tcp", "127.0.0.1", 30080,
			"127.0.0.1:30080"},
		{"pod to service without endpoints", false, "10.244.1.5", "tcp", "10.96.0.50", 80, "reject"},
		{"node to service without endpoints", true, node1IP, "tcp", "10.96.0.50", 80, "reject"},
		{"external client to NodePort without endpoints", false, externalHost, "tcp", node1IP, 30081, "reject"},
		{"ClusterIP, port the service lacks", false, "10.244.1.5", "tcp", "10.96.0.20", 81, "reject"},
		{"ClusterIP, wrong protocol", false, "10.244.1.5", "udp", "10.96.0.20", 80, "reject"},
		{"unallocated ClusterIP", false, "10.244.1.5", "tcp", "10.96.0.99", 80, "drop"},
		{"node to unallocated ClusterIP", true, node1IP, "tcp", "10.96.0.99", 80, "drop"},
		{"UDP DNS", false, "10.244.1.5", "udp", "10.96.0.10", 53, "10.244.1.2:53, 10.244.2.2:53"},
		{"multi-port http", false, "10.244.1.5", "tcp", "10.96.0.60", 80, "10.244.1.7:9376, 10.244.2.7:9376"},
		{"multi-port https", false, "10.244.1.5", "tcp", "10.96.0.60", 443, "10.244.1.7:9377, 10.244.2.7:9377"},
		{"selectorless service", false, "10.244.1.5", "tcp", "10.96.0.70", 3307, "172.188.2.89:3307"},
		{"non-service traffic untouched", false, "10.244.1.5", "tcp", "10.244.2.3", 8080, "10.244.2.3:8080"},
		{"non-service traffic to node untouched", false, "10.244.1.5", "tcp", node1IP, 22, "198.18.0.11:22"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracer(t, fake, node1IP, node1Cni0)
			var outs []outcome
			if tc.local {
				outs = tr.fromNode(tc.src, tc.proto, tc.dst, tc.dport)
			} else {
				outs = tr.fromOutside(tc.src, tc.proto, tc.dst, tc.dport)
			}
			if got := summary(outs); got != tc.expect {
				t.Errorf("%s %s -> %s:%d\n got: %s\nwant: %s", tc.proto, tc.src, tc.dst, tc.dport, got, tc.expect)
			}
		})
	}
}

// TestPacketFlowAffinity: once a client was sent to an endpoint, the affinity
// set sends it there again; other clients still spread.
func TestPacketFlowAffinity(t *testing.T) {
	p, fake := newFakeProxier(Config{})
	syncOK(t, p, makeState(allServices()...))
	tr := newTracer(t, fake, node1IP, node1Cni0)

	first := tr.fromOutside("10.244.1.5", "tcp", "10.96.0.40", 80)
	if got := summary(first); got != "10.244.1.6:80, 10.244.2.6:80" {
		t.Fatalf("first connection: %s", got)
	}
	// The random choice picked the second endpoint.
	tr.commit(first[1])
	for i := 0; i < 3; i++ {
		if got := summary(tr.fromOutside("10.244.1.5", "tcp", "10.96.0.40", 80)); got != "10.244.2.6:80" {
			t.Fatalf("connection %d of the same client: %s, want only 10.244.2.6:80", i+2, got)
		}
	}
	if got := summary(tr.fromOutside("10.244.1.8", "tcp", "10.96.0.40", 80)); got != "10.244.1.6:80, 10.244.2.6:80" {
		t.Errorf("another client: %s", got)
	}
	// Services without affinity do not record anything.
	for _, o := range tr.fromOutside("10.244.1.5", "tcp", "10.96.0.20", 80) {
		if len(o.updates) != 0 {
			t.Errorf("affinity recorded for a service without it: %v", o.updates)
		}
	}
}

// TestPacketFlowAfterPartialSync: the tracer sees an endpoint change made by
// a partial sync, and a removed service's address becomes unallocated.
func TestPacketFlowAfterPartialSync(t *testing.T) {
	p, fake := newFakeProxier(Config{})
	syncOK(t, p, makeState(allServices()...))
	svcs := allServices()
	svcs[0].Endpoints = svcs[0].Endpoints[:1] // getip: only 10.244.1.3
	svcs = append(svcs[:1], svcs[2:]...)      // myhttp-v2 removed
	syncOK(t, p, makeState(svcs...))
	tr := newTracer(t, fake, node1IP, node1Cni0)
	if got := summary(tr.fromOutside("10.244.1.5", "tcp", "10.96.0.20", 80)); got != "10.244.1.3:8080" {
		t.Errorf("getip after change: %s", got)
	}
	if got := summary(tr.fromOutside("10.244.1.5", "tcp", "10.96.0.30", 8800)); got != "drop" {
		t.Errorf("removed service ClusterIP: %s", got)
	}
	if got := summary(tr.fromOutside(externalHost, "tcp", node1IP, 30080)); got != "198.18.0.11:30080" {
		t.Errorf("removed NodePort: %s", got)
	}
}
