package cluster_test

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/modes/agent"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/plane/kube/cluster"
	"github.com/svcsim/svcsim/topology"
	"github.com/svcsim/svcsim/topology/topotest"
)

// ownApp is three getip pods behind a ClusterIP Service.
const ownApp = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: getip, image: "getip:v1", ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
`

// TestOwnDatapathOnKubernetesPlane runs svcsim's nftables datapath on the
// kubernetes plane: on every node svcsim's node proxy (its feed socket
// answers, in mode nftables) fed from the genuine API server. 300
// requests from a pod through the ClusterIP reach all three pods; scaled
// to two, the deleted pod gets none of the next 120. Then the plane
// switches to the genuine kube-proxy (svcsim's node proxies gone, the
// ClusterIP served by kube-proxy) and on to svcsim's iptables datapath
// (kube-proxy's nftables table removed by its --cleanup, the ClusterIP
// served again); nothing is left after Close.
func TestOwnDatapathOnKubernetesPlane(t *testing.T) {
	topotest.RequireRoot(t)
	if _, explicit, err := kube.FindBinary(); err != nil {
		if explicit {
			t.Fatal(err)
		}
		t.Skipf("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var log strings.Builder
	lw := &lockedBuilder{b: &log}
	begin := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{Nodes: 2, Datapath: "nftables@kubernetes", Log: lw})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	runID := c.Run().ID
	t.Cleanup(func() {
		entries, _ := os.ReadDir(netns.Dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), runID) {
				t.Errorf("namespace %s left", e.Name())
			}
		}
		if _, err := os.Stat(c.Run().Dir); !os.IsNotExist(err) {
			t.Errorf("run directory %s left: %v", c.Run().Dir, err)
		}
	})
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if t.Failed() {
			lw.mu.Lock()
			t.Logf("log:\n%s", log.String())
			lw.mu.Unlock()
		}
	}()
	t.Logf("up on nftables@kubernetes after %v", time.Since(begin).Round(time.Millisecond))
	info := c.Info()
	if info.Datapath != "nftables@kubernetes" || info.ControlPlane != "kubernetes" || info.Versions["node-proxy"] == "" || info.Versions[kube.KubeProxy] != "" {
		t.Errorf("Info = %+v", info)
	}
	health := func(node string) (agent.Health, error) {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return agent.NewClient(c.Run().Path("proxy-" + node + ".sock")).Health(hctx)
	}
	for _, n := range c.Nodes() {
		if h, err := health(n.Name); err != nil || h.Mode != "nftables" || h.Generation == 0 {
			t.Errorf("svcsim's node proxy on %s: %+v %v", n.Name, h, err)
		}
	}

	if _, err := c.Apply(ctx, "default", plane.Text("web", ownApp)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if err := c.WaitProgrammed(ctx); err != nil {
		t.Fatal(err)
	}
	obj, err := c.Get(ctx, plane.Ref{Kind: "svc", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	vip := net.JoinHostPort(obj.(*corev1.Service).Spec.ClusterIP, "80")
	var client *netns.NS
	if pods, err := c.Pods(ctx, "kube-system"); err == nil {
		for _, p := range pods {
			if strings.HasPrefix(p.Name, "coredns-") {
				client = p.NS // a pod that is not a backend
			}
		}
	}
	if client == nil {
		t.Fatal("no CoreDNS pod to send from")
	}
	tally := func(n int) (map[string]int, error) {
		hc := topology.HTTPClient(client, false, 2*time.Second)
		defer hc.CloseIdleConnections()
		counts := map[string]int{}
		for range n {
			resp, err := hc.Get("http://" + vip + "/name")
			if err != nil {
				return counts, err
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return counts, err
			}
			counts[string(b)]++
			hc.CloseIdleConnections() // a new connection: a new choice
		}
		return counts, nil
	}
	counts, err := tally(300)
	if err != nil || len(counts) != 3 {
		t.Fatalf("300 requests through %s: %v %v, want all 3 pods", vip, counts, err)
	}
	for pod, k := range counts {
		if k < 50 { // each expects 100; below 50 has p < 1e-8
			t.Errorf("pod %s got %d of 300", pod, k)
		}
	}
	t.Logf("nftables@kubernetes, 300 requests: %v", counts)

	// An endpoint change: scaled to two, the deleted pod gets nothing.
	before, _ := c.Pods(ctx, "default")
	if err := c.Scale(ctx, plane.Ref{Kind: "deployment", Name: "web"}, 2); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	if err := c.WaitProgrammed(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("scale to 2 programmed after %v", time.Since(changed).Round(time.Millisecond))
	after, _ := c.Pods(ctx, "default")
	left := map[string]bool{}
	for _, p := range after {
		left["default/"+p.Name] = true
	}
	counts, err = tally(120)
	if err != nil || len(counts) != 2 {
		t.Errorf("after scaling to 2: %v %v", counts, err)
	}
	for pod := range counts {
		if !left[pod] {
			t.Errorf("deleted pod %s still got traffic (pods before %d, after %v)", pod, len(before), left)
		}
	}

	// Switch to the genuine kube-proxy, then to svcsim's iptables.
	for _, dp := range []string{"kube-proxy/nftables", "iptables/legacy@kubernetes"} {
		switched := time.Now()
		if err := c.SetDatapath(ctx, dp); err != nil {
			t.Fatalf("switch to %s: %v", dp, err)
		}
		t.Logf("%s programmed %v after the switch", dp, time.Since(switched).Round(time.Millisecond))
		if got := c.Info().Datapath; got != dp {
			t.Errorf("Info().Datapath = %s, want %s", got, dp)
		}
		if counts, err := tally(30); err != nil || len(counts) != 2 {
			t.Errorf("%s: 30 requests: %v %v", dp, counts, err)
		}
		for _, n := range c.Nodes() {
			h, err := health(n.Name)
			switch {
			case dp == "kube-proxy/nftables" && err == nil:
				t.Errorf("svcsim's node proxy still answers on %s under kube-proxy: %+v", n.Name, h)
			case dp != "kube-proxy/nftables" && (err != nil || h.Mode != "iptables/legacy"):
				t.Errorf("svcsim's node proxy on %s: %+v %v", n.Name, h, err)
			}
		}
	}
	for _, n := range c.Nodes() {
		out, err := exec.CommandContext(ctx, "nsenter", "--net="+n.NS.Path(), "nft", "list", "tables").CombinedOutput()
		if err != nil || strings.Contains(string(out), "kube-proxy") {
			t.Errorf("%s after kube-proxy/nftables -> iptables/legacy@kubernetes: %s %v", n.Name, out, err)
		}
		d, err := c.Dump(ctx, n.Name)
		if err != nil || !strings.Contains(d, "KUBE-SVC-") || strings.Contains(d, cluster.BarrierNamespace+"/") {
			t.Errorf("%s: dump without KUBE-SVC- or with the barrier (%v):\n%.1500s", n.Name, err, d)
		}
	}
}
