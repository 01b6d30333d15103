package topology_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/topology/topotest"
)

// The topology gives kube-proxy what it needs on a node: with a DNAT rule
// like a ClusterIP's, a pod reaches another pod on the same bridge (the reply
// is bridged, so only bridge-nf-call-iptables lets conntrack undo the DNAT),
// and a pod reaches itself (hairpin mode on its cni0 port, plus masquerade as
// kube-proxy does for hairpin traffic), and the node itself reaches a
// service address.
func TestServiceDatapathSupport(t *testing.T) {
	privtest.RequireRoot(t)
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		t.Skip("iptables not installed")
	}
	topo := topotest.NewTestTopology(t, 1)
	pods := addPods(t, topo, podA, podB)
	a := pods[0]
	node := topo.Node("node1")
	rules := [][]string{
		{"-t", "nat", "-A", "PREROUTING", "-d", "10.96.0.50", "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", "10.244.1.3:80"},
		{"-t", "nat", "-A", "PREROUTING", "-d", "10.96.0.51", "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", "10.244.1.2:80"},
		{"-t", "nat", "-A", "POSTROUTING", "-s", "10.244.1.2", "-d", "10.244.1.2", "-j", "MASQUERADE"},
		{"-t", "nat", "-A", "OUTPUT", "-d", "10.96.0.50", "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", "10.244.1.3:80"},
	}
	err = node.NS.Do(func() error {
		for _, r := range rules {
			if out, err := exec.Command(ipt, r...).CombinedOutput(); err != nil {
				t.Errorf("iptables %s: %v: %s", strings.Join(r, " "), err, out)
			}
		}
		return nil
	})
	if err != nil || t.Failed() {
		t.Fatalf("program node: %v", err)
	}
	body, pod := mustGet(t, a.NS, "10.96.0.50:80", "/client")
	if pod != "default/b" || !strings.HasPrefix(body, "10.244.1.2:") {
		t.Fatalf("a -> service -> b: X-Pod %q client %q", pod, body)
	}
	body, pod = mustGet(t, a.NS, "10.96.0.51:80", "/client")
	if pod != "default/a" || !strings.HasPrefix(body, "10.244.1.1:") {
		t.Fatalf("a -> service -> a (hairpin): X-Pod %q client %q, want masqueraded to the gateway", pod, body)
	}
	// The node itself reaches a service address (routed towards eth0, then
	// rewritten in OUTPUT).
	if _, pod = mustGet(t, node.NS, "10.96.0.50:80", "/name"); pod != "default/b" {
		t.Fatalf("node -> service -> b: X-Pod %q", pod)
	}
}
