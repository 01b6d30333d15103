package cluster_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/reexec"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/plane/kube/cluster"
	"github.com/svcsim/svcsim/topology"
	"github.com/svcsim/svcsim/topology/topotest"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

// pss sums the proportional set size of every process recorded in the run
// (the control plane, kube-proxies, CoreDNS) and of this test process (the
// kubelets), in MiB.
func pss(t *testing.T, c *cluster.Cluster) float64 {
	var total int64
	for _, p := range c.ControlPlane().Processes() {
		total += p.Memory().PSS
	}
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err == nil {
		for l := range strings.Lines(string(b)) {
			var kb int64
			if _, err := fmt.Sscanf(l, "Pss: %d kB", &kb); err == nil {
				total += kb << 10
			}
		}
	}
	return float64(total) / (1 << 20)
}

// TestKubernetesPlane starts the kubernetes plane with two nodes, applies
// the seed's getip Deployment and Service, and checks through the barrier
// that the ClusterIP answers from every pod, cluster DNS resolves it (the
// genuine CoreDNS), the API server's own errors come back, kube-proxy's
// fault hooks behave, the datapath switches, and nothing is left after
// Close.
func TestKubernetesPlane(t *testing.T) {
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
	c, err := cluster.Start(ctx, cluster.Options{Nodes: 2, Datapath: "kube-proxy/iptables-nft", Log: lw})
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
		// kube-proxy's private /run never reached the host's mount table.
		if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), c.ControlPlane().PrivateRunSource()) {
			t.Errorf("the host's mount table shows %s", c.ControlPlane().PrivateRunSource())
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
	t.Logf("up (2 Ready nodes, kube-dns programmed) after %v; PSS %.0f MiB", time.Since(begin).Round(time.Millisecond), pss(t, c))
	info := c.Info()
	if info.ControlPlane != "kubernetes" || info.Datapath != "kube-proxy/iptables-nft" || info.Versions[kube.APIServer] == "" {
		t.Errorf("Info = %+v", info)
	}

	seed := filepath.Join("..", "..", "..", "sim", "testdata", "seed")
	ms, err := plane.ReadManifests(nil, filepath.Join(seed, "00-getip.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	lines, err := c.Apply(ctx, "", ms...)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	t.Logf("apply: %v", lines)
	if err := c.WaitProgrammed(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("seed getip programmed %v after apply; PSS %.0f MiB", time.Since(applied).Round(time.Millisecond), pss(t, c))

	obj, err := c.Get(ctx, plane.Ref{Kind: "svc", Name: "getip-service"})
	if err != nil {
		t.Fatal(err)
	}
	svc, ok := obj.(*corev1.Service)
	if !ok || svc.Spec.ClusterIP == "" {
		t.Fatalf("Get svc = %T %v", obj, obj)
	}
	pods, err := c.Pods(ctx, "default")
	if err != nil || len(pods) == 0 {
		t.Fatalf("pods %v %v", pods, err)
	}
	port := svc.Spec.Ports[0].Port
	get := func(ns *netns.NS) (string, error) {
		hc := topology.HTTPClient(ns, false, 2*time.Second)
		defer hc.CloseIdleConnections()
		resp, err := hc.Get(fmt.Sprintf("http://%s/name", net.JoinHostPort(svc.Spec.ClusterIP, fmt.Sprint(port))))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	for _, p := range pods {
		if got, err := get(p.NS); err != nil || !strings.HasPrefix(got, "default/") {
			t.Errorf("from pod %s: %q %v", p.Name, got, err)
		}
	}
	// Cluster DNS: the genuine CoreDNS behind kube-dns answers with the
	// ClusterIP.
	tgt, err := c.Target(ctx, "default", pods[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tgt.ResolvConf, plane.DNSServiceIP) {
		t.Errorf("resolv.conf %q", tgt.ResolvConf)
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return topology.DialContext(ctx, pods[0].NS, network, net.JoinHostPort(plane.DNSServiceIP, "53"))
	}}
	addrs, err := r.LookupHost(ctx, "getip-service.default.svc.cluster.local.")
	if err != nil || len(addrs) != 1 || addrs[0] != svc.Spec.ClusterIP {
		t.Errorf("kube-dns lookup: %v %v, want %s", addrs, err, svc.Spec.ClusterIP)
		out, _ := exec.Command("nsenter", "--net="+pods[0].NS.Path(), "dig", "+time=1", "+tries=1", "@"+plane.DNSServiceIP, "getip-service.default.svc.cluster.local").CombinedOutput()
		t.Logf("dig: %s", out)
	}

	// The API server's own error.
	_, err = c.Apply(ctx, "", plane.Text("bad", "apiVersion: v1\nkind: Service\nmetadata: {name: bad-nodeport}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 40000}]}\n"))
	if err == nil || !strings.Contains(err.Error(), "provided port is not in the valid range") {
		t.Errorf("nodePort 40000: %v", err)
	}

	// The seed's extensions/v1beta1 Ingress is converted, and says so.
	ing, err := plane.ReadManifests(nil, filepath.Join(seed, "06-ingress-http.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines, err = c.Apply(ctx, "", ing...)
	if err != nil || len(lines) != 2 || !strings.Contains(lines[0], "converted from extensions/v1beta1 to networking.k8s.io/v1") ||
		lines[1] != "ingress.networking.k8s.io/ingress-http created" {
		t.Errorf("apply the seed's Ingress: %q %v", lines, err)
	}

	// SetPodReady: the endpoint goes not ready, then back.
	if err := c.SetPodReady(ctx, "default", pods[0].Name, false); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitProgrammed(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := c.Pods(ctx, "default")
	for _, p := range after {
		if p.Name == pods[0].Name && p.Ready {
			t.Errorf("pod %s still ready", p.Name)
		}
	}
	if err := c.SetPodReady(ctx, "default", pods[0].Name, true); err != nil {
		t.Fatal(err)
	}

	// Fault hooks: StopProxy removes the rules, StartProxy brings them back.
	if err := c.StopProxy(ctx, "node1"); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Dump(ctx, "node1"); err != nil || strings.Contains(d, "KUBE-SVC") {
		t.Errorf("after StopProxy node1 still has KUBE-SVC rules (%v)", err)
	}
	if err := c.StartProxy(ctx, "node1"); err != nil {
		t.Fatal(err)
	}
	if err := c.KillProxy(ctx, "node2"); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Dump(ctx, "node2"); err != nil || !strings.Contains(d, "KUBE-SVC") {
		t.Errorf("after KillProxy node2 lost its rules (%v)", err)
	}
	if err := c.StartProxy(ctx, "node2"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitProgrammed(ctx); err != nil {
		t.Fatal(err)
	}
	for _, dp := range []string{"kube-proxy/nftables", "kube-proxy/iptables-legacy"} {
		switched := time.Now()
		if err := c.SetDatapath(ctx, dp); err != nil {
			t.Fatal(err)
		}
		t.Logf("datapath %s programmed %v after the switch", dp, time.Since(switched).Round(time.Millisecond))
		for _, p := range pods {
			if got, err := get(p.NS); err != nil || !strings.HasPrefix(got, "default/") {
				t.Errorf("%s: from pod %s: %q %v", dp, p.Name, got, err)
			}
		}
	}
	if d, _ := c.Dump(ctx, "node1"); !strings.Contains(d, "KUBE-SVC") {
		t.Errorf("iptables-legacy dump has no KUBE-SVC chain:\n%.2000s", d)
	}
	t.Logf("PSS at the end %.0f MiB", pss(t, c))
}

type lockedBuilder struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
