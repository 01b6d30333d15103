package scenarios

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/kube/cluster"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// tallyFrom sends n /info requests to addr and counts answers per pod and
// failures; each request is bounded by timeout, the loop by n.
func tallyFrom(h *harness.H, c *harness.Client, addr string, n int, timeout time.Duration) (map[string]int, int, error) {
	counts, failed := map[string]int{}, 0
	var first error
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(h.Ctx, timeout)
		in, _, err := c.GetInfo(ctx, addr)
		cancel()
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
			continue
		}
		counts[in.IP()]++
	}
	return counts, failed, first
}

// TestNodeLoss: node3 of three is lost (its link to the underlay cut, as
// a crash or a pulled cable looks from outside), then torn down for good.
// Five getip replicas spread over the nodes (node1 also runs the DNS and
// client pods: 1, 2 and 2 replicas). While node3 is lost, the other nodes'
// NodePorts keep answering and no request goes to its pods: the control
// plane marks them not ready (the node lifecycle controller's
// MarkPodsNotReady, at once on the embedded plane) and every proxy drops
// their endpoints. Were they still in the rules, each request would reach
// one with probability 2/5 (as often for round-robin) and time out:
// P(60 of 60 answered) = (3/5)^60 < 1e-13. Torn down, the node's namespace
// is gone, its pods are deleted and replaced on the remaining nodes, and
// the replacements get traffic (P(none answers in 180) = (3/5)^180 for one
// of them); the cluster still tears down cleanly.
func TestNodeLoss(t *testing.T) {
	sc := harness.Scenario{Name: "node-loss", Title: "A node is lost, then torn down: the others keep serving", Group: results.GroupFaults}
	opts := harness.Options{Nodes: 3, OwnsCluster: true, NodeFaults: true, Manifests: []string{getipApp(5, "  type: NodePort\n")}}
	harness.Run(t, sc, opts, func(h *harness.H) {
		const lost = "node3"
		ext := external(h)
		np := nodePort(h, h.NS, "getip-service")
		pods, err := h.P.Pods(h.Ctx, h.NS)
		if err != nil {
			h.Fatalf("pods: %v", err)
		}
		victims, live := map[string]bool{}, map[string]bool{}
		perNode := map[string]int{}
		for _, p := range pods {
			if p.Labels["app"] == "getip" {
				perNode[p.Node]++
				if p.Node == lost {
					victims[p.IP.String()] = true
				} else {
					live[p.IP.String()] = true
				}
			}
		}
		h.Check(len(perNode) == 3 && len(victims) > 0, "getip pods on every node", "%v", perNode)
		var lostNode plane.Node
		for _, n := range h.P.Nodes() {
			if n.Name == lost {
				lostNode = n
			}
			counts, failed, err := tallyFrom(h, ext, fmt.Sprintf("%s:%d", n.IP, np), 20, 3*time.Second)
			if failed > 0 {
				h.Fatalf("before the fault, NodePort of %s: %d of 20 failed (%v)", n.Name, failed, err)
			}
			h.T.Logf("before: NodePort of %s answered by %v", n.Name, counts)
		}
		hitVictim := func(counts map[string]int) int {
			k := 0
			for ip := range victims {
				k += counts[ip]
			}
			return k
		}

		// The cable is pulled.
		t0 := time.Now()
		if err := h.P.NodeDown(h.Ctx, lost); err != nil {
			h.Fatalf("node %s down: %v", lost, err)
		}
		h.Programmed()
		h.Figure("node lost to its endpoints dropped everywhere", time.Since(t0).Seconds(), "s")
		ctx, cancel := context.WithTimeout(h.Ctx, time.Second)
		_, _, err = ext.GetInfo(ctx, fmt.Sprintf("%s:%d", lostNode.IP, np))
		cancel()
		h.Check(err != nil, "the lost node is unreachable", "GET %s:%d/info from external: %v", lostNode.IP, np, err)
		o, err := h.P.Get(h.Ctx, plane.Ref{Kind: "node", Name: lost})
		if err != nil {
			h.Fatalf("get node %s: %v", lost, err)
		}
		n := o.(*corev1.Node)
		h.Check(len(n.Status.Conditions) > 0 && n.Status.Conditions[0].Status != corev1.ConditionTrue,
			"the lost node is not ready", "Ready %v", n.Status.Conditions)
		for ip := range victims {
			h.Check(endpointReady(h, ip) == "false", "its pod's endpoint "+ip+" is not ready",
				"EndpointSlice endpoint %s ready=%s", ip, endpointReady(h, ip))
		}
		for _, n := range h.P.Nodes() {
			if n.Name == lost {
				continue
			}
			counts, failed, err := tallyFrom(h, ext, fmt.Sprintf("%s:%d", n.IP, np), 60, 3*time.Second)
			h.Figure("failed requests via "+n.Name+"'s NodePort, "+lost+" lost", float64(failed), "of 60")
			h.Check(failed == 0 && hitVictim(counts) == 0 && len(counts) == len(live),
				"NodePort of "+n.Name+" serves from the live pods only", "60 requests: %v, %d failed (%v)", counts, failed, err)
		}
		counts, failed, err := tallyFrom(h, client(h, h.NS, "client"), clusterIP(h, h.NS, "getip-service"), 60, 3*time.Second)
		h.Check(failed == 0 && hitVictim(counts) == 0, "the ClusterIP serves from the live pods",
			"60 requests from node1's client pod: %v, %d failed (%v)", counts, failed, err)

		// The node is gone for good.
		t0 = time.Now()
		if err := h.P.RemoveNode(h.Ctx, lost); err != nil {
			h.Fatalf("remove node %s: %v", lost, err)
		}
		h.Check(!netns.Exists(lostNode.NS.Name()), "its namespace is torn down", "%s exists: %v", lostNode.NS.Name(), netns.Exists(lostNode.NS.Name()))
		h.Programmed()
		h.Figure("node removed to its pods replaced and programmed", time.Since(t0).Seconds(), "s")
		nodes, err := h.P.List(h.Ctx, "node", "", "")
		h.Check(err == nil && len(nodes) == 2, "the Node is deleted", "%d nodes (%v)", len(nodes), err)
		after := podIPs(h, h.NS, "getip-deployment-")
		fresh := map[string]bool{}
		for ip := range after {
			if !live[ip] {
				fresh[ip] = true
			}
		}
		stale := 0
		for ip := range after {
			if victims[ip] {
				stale++
			}
		}
		h.Check(len(after) == 5 && len(fresh) == len(victims) && stale == 0,
			"its pods are replaced on the live nodes", "getip pods %v, new %v", after, fresh)
		seen := map[string]int{}
		for _, n := range h.P.Nodes() {
			counts, failed, err := tallyFrom(h, ext, fmt.Sprintf("%s:%d", n.IP, np), 90, 3*time.Second)
			h.Check(failed == 0 && hitVictim(counts) == 0, "NodePort of "+n.Name+" serves after the removal", "90 requests: %v, %d failed (%v)", counts, failed, err)
			for ip, k := range counts {
				seen[ip] += k
			}
		}
		for ip := range fresh {
			h.Check(seen[ip] > 0, "the replacement "+ip+" gets traffic", "answers by pod %v", seen)
		}
	})
}

// endpointReady is the ready condition ("true", "false", "unset") of the
// EndpointSlice endpoint with address ip in h's namespace, or "absent".
func endpointReady(h *harness.H, ip string) string {
	h.T.Helper()
	slices, err := h.P.List(h.Ctx, "endpointslices", h.NS, "")
	if err != nil {
		h.Fatalf("list endpointslices: %v", err)
	}
	for _, o := range slices {
		for _, e := range o.(*discoveryv1.EndpointSlice).Endpoints {
			for _, a := range e.Addresses {
				if a == ip {
					if e.Conditions.Ready == nil {
						return "unset"
					}
					return fmt.Sprint(*e.Conditions.Ready)
				}
			}
		}
	}
	return "absent"
}

// nextDatapath is the datapath after d in its plane's table (wrapping
// round) that runs on this machine: what TestDatapathSwitch switches to.
func nextDatapath(d modes.Datapath) (modes.Datapath, bool) {
	// The plane's own table: svcsim's in-process datapaths on the
	// embedded plane; kube-proxy's and svcsim's on the kubernetes plane,
	// so that there a switch may go from kube-proxy to svcsim's node proxy
	// and back.
	var table []modes.Datapath
	if harness.OnKube(d) {
		table = cluster.Datapaths()
	} else {
		for _, e := range modes.Table() {
			if e.Start.Factory != nil {
				table = append(table, e)
			}
		}
	}
	at := -1
	for i, e := range table {
		if e.Name == d.Name {
			at = i
		}
	}
	for k := 1; k < len(table); k++ {
		e := table[(at+k+len(table))%len(table)]
		if e.Name != d.Name && e.Unsupported() == "" {
			return e, true
		}
	}
	return modes.Datapath{}, false
}

// leftoversOf lists what of datapath d's own kernel state is in node's
// namespace, read with the real tools: the iptables mode's KUBE-SVC/SEP
// chains in its backend, the kube-proxy nftables table, IPVS virtual servers
// and kube-ipvs0, the userspace proxy's KUBE-PORTALS chains.
func leftoversOf(h *harness.H, node string, d modes.Datapath) []string {
	h.T.Helper()
	c := nodeClient(h, node)
	run := func(argv ...string) string {
		out, err := c.Exec(h.Ctx, argv[0], argv[1:]...)
		if err != nil {
			h.Fatalf("%s in %s: %v", strings.Join(argv, " "), node, err)
		}
		return out
	}
	var bad []string
	grep := func(out string, marks ...string) {
		for _, l := range strings.Split(out, "\n") {
			for _, m := range marks {
				if strings.Contains(l, m) {
					bad = append(bad, strings.TrimSpace(l))
					break
				}
			}
		}
	}
	switch d.Kernel {
	case modes.KernelIptables:
		grep(run(d.Dump...), "KUBE-SVC-", "KUBE-SEP-")
	case modes.KernelNftables:
		grep(run("nft", "list", "tables"), "table ip kube-proxy")
	case modes.KernelIPVS:
		for _, l := range strings.Split(run("ipvsadm", "-Ln"), "\n") {
			if strings.HasPrefix(l, "TCP") || strings.HasPrefix(l, "UDP") {
				bad = append(bad, strings.TrimSpace(l))
			}
		}
		grep(run("ip", "-o", "link", "show"), "kube-ipvs0")
	case modes.KernelUserspace:
		grep(run("iptables-legacy-save"), "KUBE-PORTALS")
		grep(run("iptables-nft-save"), "KUBE-PORTALS")
	}
	return bad
}

// TestDatapathSwitch: a live cluster switches from its datapath A to the
// next one B of the table (plane.Plane.SetDatapath) after node1's proxy was
// killed, so that node1 holds a dead proxy's rules and node2 a proxy that
// stops cleanly. B serves the ClusterIP and every NodePort from every pod,
// and nothing of A is left on either node while B runs (A's own marks:
// KUBE-SVC/SEP chains of its iptables backend, table ip kube-proxy, IPVS
// virtual servers and kube-ipvs0, KUBE-PORTALS); once B stops too, neither
// node holds any proxy state. Like kube-proxy's platformCleanup, a starting
// svcsim proxy removes what datapaths with disjoint kernel state left
// (modes.Disjoint: nftables after the iptables family and back); within
// the iptables family (iptables, IPVS, userspace share KUBE-* chains) the
// plane runs the old mode's one-shot cleanup, as the kubernetes plane runs
// `kube-proxy --cleanup`.
func TestDatapathSwitch(t *testing.T) {
	sc := harness.Scenario{Name: "datapath-switch", Title: "Switching datapath on a live node leaves nothing of the old one", Group: results.GroupFaults}
	opts := harness.Options{OwnsCluster: true, Manifests: []string{getipApp(2, "  type: NodePort\n")}}
	harness.Run(t, sc, opts, func(h *harness.H) {
		next, ok := nextDatapath(h.Desc)
		if !ok {
			h.Result.Reason = "no other datapath runs on this machine"
			h.T.Skip(h.Result.Reason)
		}
		h.T.Logf("switching %s -> %s", h.Desc.Name, next.Name)
		backends := podIPs(h, h.NS, "getip-deployment-")
		if err := h.P.KillProxy(h.Ctx, "node1"); err != nil {
			h.Fatalf("kill node1's proxy: %v", err)
		}
		left := leftoversOf(h, "node1", h.Desc)
		h.Check(len(left) > 0, "the killed proxy left its rules on node1", "%d lines of %s state", len(left), h.Desc.Name)
		t0 := time.Now()
		if err := h.P.SetDatapath(h.Ctx, next.Name); err != nil {
			h.Fatalf("switch to %s: %v", next.Name, err)
		}
		h.Programmed()
		h.Figure("switch to "+next.Name+" programmed", time.Since(t0).Seconds(), "s")
		h.Check(h.P.Info().Datapath == next.Name, "the nodes run "+next.Name, "plane reports %s", h.P.Info().Datapath)
		counts, _, err := client(h, h.NS, "client").Tally(h.Ctx, clusterIP(h, h.NS, "getip-service"), 60)
		h.Check(err == nil && len(counts) == len(backends), "the ClusterIP serves on "+next.Name, "60 requests: %v %v", counts, err)
		ext := external(h)
		np := nodePort(h, h.NS, "getip-service")
		for _, n := range h.P.Nodes() {
			counts, _, err := ext.Tally(h.Ctx, fmt.Sprintf("%s:%d", n.IP, np), 30)
			h.Check(err == nil && len(counts) == len(backends), "NodePort of "+n.Name+" serves on "+next.Name, "30 requests: %v %v", counts, err)
			left := leftoversOf(h, n.Name, h.Desc)
			h.Check(len(left) == 0, "nothing of "+h.Desc.Name+" on "+n.Name, "%d lines: %q", len(left), left)
		}
		for _, n := range h.P.Nodes() {
			if err := h.P.StopProxy(h.Ctx, n.Name); err != nil {
				h.Fatalf("stop %s's proxy: %v", n.Name, err)
			}
			for _, d := range []modes.Datapath{h.Desc, next} {
				left := leftoversOf(h, n.Name, d)
				h.Check(len(left) == 0, "nothing of "+d.Name+" on "+n.Name+" once both stopped", "%d lines: %q", len(left), left)
			}
		}
	})
}
