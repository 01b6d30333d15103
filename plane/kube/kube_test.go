package kube_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/modes/kubeproxy"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/topology"
	"github.com/svcsim/svcsim/topology/topotest"
)

// binary returns the upstream binary, skipping (saying why) when it has not
// been built; a $SVCSIM_K8S_BIN that names nothing usable fails instead.
func binary(t *testing.T) string {
	t.Helper()
	bin, explicit, err := kube.FindBinary()
	if err != nil {
		if explicit {
			t.Fatal(err)
		}
		t.Skipf("%v", err)
	}
	return bin
}

func TestVersions(t *testing.T) {
	bin := binary(t)
	v, err := kube.Versions(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	for comp, want := range map[string]string{"kubernetes": "v1.37.2", "etcd": "3.7.3", "coredns": "1.15.0"} {
		if v[comp] != want {
			t.Errorf("%s version %q, want %q (all: %v)", comp, v[comp], want, v)
		}
	}
}

// TestFlagsDoNotLeak: every component of the multi-call binary shows its
// own flags. CoreDNS defines its flags on the standard library's
// flag.CommandLine, which kube-proxy adds to its own: unfiltered, CoreDNS's
// -version would shadow kube-proxy's --version.
func TestFlagsDoNotLeak(t *testing.T) {
	bin := binary(t)
	run := func(args ...string) string {
		out, _ := exec.Command(bin, args...).CombinedOutput() // -h exits non-zero for CoreDNS
		return string(out)
	}
	if out := strings.TrimSpace(run("kube-proxy", "--version")); out != "Kubernetes v1.37.2" {
		t.Errorf("kube-proxy --version = %q", out)
	}
	help := run("kube-proxy", "--help")
	for _, f := range []string{"--dns.port", "--conf ", "--plugins", "--pidfile", "--quiet"} {
		if strings.Contains(help, f) {
			t.Errorf("kube-proxy --help shows CoreDNS's %s", f)
		}
	}
	var got []string
	for line := range strings.Lines(run("coredns", "-h")) {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "-") {
			got = append(got, f[0])
		}
	}
	want := []string{"-conf", "-dns.port", "-log-format", "-p", "-pidfile", "-plugins", "-quiet", "-version"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("coredns -h flags %v, want %v", got, want)
	}
}

// seedService is the seed's myhttp-v2-service.yaml, which the repository
// keeps as the second document of 02-myhttp-v2.yaml.
func seedService(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../sim/testdata/seed/02-myhttp-v2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		if strings.Contains(doc, "name: myhttp-v2-service") {
			return []byte(doc)
		}
	}
	t.Fatal("myhttp-v2-service not found in the seed's manifests")
	return nil
}

const badNodePort = `apiVersion: v1
kind: Service
metadata:
  name: bad-nodeport
spec:
  type: NodePort
  selector:
    app: x
  ports:
  - port: 80
    nodePort: 40000
`

// TestControlPlane starts the genuine control plane in a control-plane
// namespace, drives it with the genuine kubectl and checks that closing it
// leaves nothing behind.
func TestControlPlane(t *testing.T) {
	privtest.RequireRoot(t)
	bin := binary(t)
	_, homeKubeErr := os.Stat(filepath.Join(os.Getenv("HOME"), ".kube"))

	spec := topology.DefaultSpec(privtest.NewRun(t), 1)
	spec.ControlPlaneIP = topology.DefaultControlPlaneIP
	topo := topotest.Build(t, spec)
	run := topo.Run()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	begin := time.Now()
	cp, err := kube.Start(ctx, kube.Config{Run: run, NS: topo.ControlPlane(), AdvertiseIP: spec.ControlPlaneIP, Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane healthy %v after Start; ready after etcd start: %v", time.Since(begin).Round(time.Millisecond), cp.Ready())
	closed := false
	defer func() {
		if !closed {
			_ = cp.Close()
		}
	}()
	procs := cp.Processes()
	var rssSum, pssSum int64
	for _, p := range procs {
		m := p.Memory()
		rssSum += m.RSS
		pssSum += m.PSS
		t.Logf("%-24s pid %-7d RSS %6.1f MiB  PSS %6.1f MiB", p.Name, p.PID(), mib(m.RSS), mib(m.PSS))
	}
	t.Logf("%-24s             RSS %6.1f MiB  PSS %6.1f MiB", "total", mib(rssSum), mib(pssSum))

	t.Run("listens only inside the control-plane namespace", func(t *testing.T) {
		cpIno, err := topo.ControlPlane().Inode()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range procs {
			if ino := netInode(t, p.PID()); ino != cpIno {
				t.Errorf("%s runs in netns %d, want the control plane's %d", p.Name, ino, cpIno)
			}
		}
		want := map[int]bool{kube.APIServerPort: true, 2379: true, 10257: true, 10259: true}
		inside := listeningPorts(t, procs[0].PID())
		for port := range want {
			if !inside[port] {
				t.Errorf("nothing listens on %d in the control-plane namespace (%v)", port, inside)
			}
		}
		root := listeningPorts(t, 1)
		for port := range want {
			if root[port] {
				t.Errorf("port %d listens in the host's root namespace", port)
			}
		}
	})

	kubectl := func(dir, stdin string, args ...string) (string, string, error) {
		var out, errb bytes.Buffer
		o := kube.KubectlOptions{Dir: dir, Out: &out, Err: &errb}
		if stdin != "" {
			o.In = strings.NewReader(stdin)
		}
		err := cp.Kubectl(ctx, o, args...)
		return out.String(), errb.String(), err
	}

	t.Run("versions", func(t *testing.T) {
		out, stderr, err := kubectl("", "", "version", "-o", "json")
		if err != nil {
			t.Fatalf("kubectl version: %v: %s", err, stderr)
		}
		var v struct {
			Client struct{ GitVersion string } `json:"clientVersion"`
			Server struct{ GitVersion string } `json:"serverVersion"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("kubectl version output %q: %v", out, err)
		}
		if v.Client.GitVersion != "v1.37.2" || v.Server.GitVersion != "v1.37.2" {
			t.Fatalf("client %q, server %q, want v1.37.2", v.Client.GitVersion, v.Server.GitVersion)
		}
	})

	t.Run("seed service, verbatim", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "myhttp-v2-service.yaml"), seedService(t), 0o644); err != nil {
			t.Fatal(err)
		}
		out, stderr, err := kubectl(dir, "", "create", "-f", "myhttp-v2-service.yaml")
		if err != nil || strings.TrimSpace(out) != "service/myhttp-v2-service created" {
			t.Fatalf("kubectl create: %v\nstdout %q\nstderr %q", err, out, stderr)
		}
		out, stderr, err = kubectl("", "", "get", "svc", "myhttp-v2-service", "-o", "jsonpath={.spec.type} {.spec.ports[0].nodePort} {.spec.clusterIP}")
		if err != nil {
			t.Fatalf("kubectl get: %v: %s", err, stderr)
		}
		f := strings.Fields(out)
		if len(f) != 3 || f[0] != "NodePort" || f[1] != "30080" || !topology.DefaultServiceCIDR.Contains(mustAddr(t, f[2])) {
			t.Fatalf("service: %q", out)
		}
		out, stderr, err = kubectl("", "", "patch", "svc", "myhttp-v2-service", "-p", `{"spec":{"sessionAffinity":"ClientIP"}}`)
		if err != nil || strings.TrimSpace(out) != "service/myhttp-v2-service patched" {
			t.Fatalf("kubectl patch: %v\nstdout %q\nstderr %q", err, out, stderr)
		}
	})

	t.Run("through Open, as another process would; a shell with kubectl on PATH", func(t *testing.T) {
		cl, err := kube.Open(run)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		var out, errb bytes.Buffer
		if err := cl.Kubectl(ctx, kube.KubectlOptions{Out: &out, Err: &errb}, "get", "svc", "myhttp-v2-service", "-o", "name"); err != nil || strings.TrimSpace(out.String()) != "service/myhttp-v2-service" {
			t.Fatalf("kubectl through Open: %v: %q %q", err, out.String(), errb.String())
		}
		sh := exec.Command("sh", "-c", `command -v kubectl && kubectl get ns default -o name && echo "$HOME"`)
		sh.Env = cl.KubectlEnv()
		var shOut []byte
		if err := cl.NS().Do(func() error { var err error; shOut, err = sh.CombinedOutput(); return err }); err != nil {
			t.Fatalf("shell: %v: %s", err, shOut)
		}
		lines := strings.Split(strings.TrimSpace(string(shOut)), "\n")
		if len(lines) != 3 || filepath.Base(lines[0]) != "kubectl" || lines[1] != "namespace/default" || !strings.HasPrefix(lines[2], cp.Dir()) {
			t.Fatalf("shell said %q", shOut)
		}
	})

	t.Run("CoreDNS with the kube-dns Corefile answers for Services and resolves nothing else", func(t *testing.T) {
		dir := t.TempDir()
		conf := filepath.Join(dir, "Corefile")
		corefile := kube.Corefile(kube.CorefileOptions{Port: 1053, Kubeconfig: cp.AdminKubeconfig(),
			HealthAddr: "127.0.0.1:18080", ReadyAddr: "127.0.0.1:18181", MetricsAddr: "127.0.0.1:19153"})
		if err := os.WriteFile(conf, []byte(corefile), 0o644); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		dns, err := cp.StartProcess(cp.NS(), kube.CoreDNS, []string{"-conf", conf}, kube.ProcessOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer dns.Stop(10 * time.Second)
		client := topology.HTTPClient(cp.NS(), false, 2*time.Second)
		for deadline := time.Now().Add(30 * time.Second); ; {
			resp, err := client.Get("http://127.0.0.1:18181/ready")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) || dns.Err() != nil {
				b, _ := os.ReadFile(dns.Log)
				t.Fatalf("CoreDNS not ready (%v); log:\n%s", dns.Err(), b)
			}
			time.Sleep(50 * time.Millisecond)
		}
		m := dns.Memory()
		t.Logf("CoreDNS ready %v after start; RSS %.1f MiB, PSS %.1f MiB", time.Since(begin).Round(time.Millisecond), mib(m.RSS), mib(m.PSS))
		vip, stderr, err := kubectl("", "", "get", "svc", "myhttp-v2-service", "-o", "jsonpath={.spec.clusterIP}")
		if err != nil {
			t.Fatalf("kubectl get: %v: %s", err, stderr)
		}
		dig := func(args ...string) string {
			out, err := exec.Command("ip", append([]string{"netns", "exec", cp.NS().Name(), "dig", "-p", "1053", "@127.0.0.1", "+time=2", "+tries=1"}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("dig %v: %v: %s", args, err, out)
			}
			return strings.TrimSpace(string(out))
		}
		if got := dig("+short", "myhttp-v2-service.default.svc.cluster.local", "A"); got != vip {
			t.Fatalf("myhttp-v2-service.default.svc.cluster.local = %q, want %s", got, vip)
		}
		// No plugin serves names outside the cluster domain: CoreDNS
		// answers SERVFAIL without asking anyone.
		if got := dig("+noall", "+comments", "example.com", "A"); !strings.Contains(got, "status: SERVFAIL") || !strings.Contains(got, "ANSWER: 0") {
			t.Fatalf("example.com was answered:\n%s", got)
		}
	})

	t.Run("nodePort outside the range, refused by the API server", func(t *testing.T) {
		out, stderr, err := kubectl("", badNodePort, "create", "-f", "-")
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("kubectl create: %v (want a non-zero exit)\nstdout %q\nstderr %q", err, out, stderr)
		}
		want := `The Service "bad-nodeport" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767`
		if !strings.Contains(stderr, want) {
			t.Fatalf("stderr %q\nwant %q", stderr, want)
		}
	})

	t.Run("genuine kube-proxy programs the node and carries traffic", func(t *testing.T) {
		node := topo.Node("node1")
		if _, err := topo.AddPod(ctx, topology.PodSpec{Name: "default/web", Node: "node1", IP: netip.MustParseAddr("10.244.1.2"),
			Ports: []topology.Port{{Port: 80, Protocol: "TCP"}}}); err != nil {
			t.Fatal(err)
		}
		if _, stderr, err := kubectl("", nodeAndService, "create", "-f", "-"); err != nil {
			t.Fatalf("create node, service, slice: %v: %s", err, stderr)
		}
		// kube-proxy programs nothing until its Node has an InternalIP.
		if _, stderr, err := kubectl("", "", "patch", "node", "node1", "--subresource=status", "--type=merge",
			"-p", `{"status":{"addresses":[{"type":"InternalIP","address":"198.18.0.11"}]}}`); err != nil {
			t.Fatalf("patch node status: %v: %s", err, stderr)
		}
		out, stderr, err := kubectl("", "", "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}")
		if err != nil {
			t.Fatalf("get svc web: %v: %s", err, stderr)
		}
		vip := mustAddr(t, out)
		for _, d := range kubeproxy.Datapaths() {
			if d.Start.Binary != "" {
				continue // another build (kube-proxy-1.25): the kubernetes plane's scenarios run it
			}
			name, dp := d.Name, struct{ backend string }{d.Start.IPTablesBackend}
			begin := time.Now()
			kp, err := cp.StartKubeProxy(ctx, kube.KubeProxyConfig{Node: "node1", NS: node.NS, Args: d.Start.Args, IPTables: dp.backend})
			if err != nil {
				t.Fatal(err)
			}
			client := topology.HTTPClient(node.NS, false, 2*time.Second)
			var pod string
			for deadline := time.Now().Add(30 * time.Second); pod != "default/web"; {
				if time.Now().After(deadline) {
					b, _ := os.ReadFile(kp.Log)
					t.Fatalf("%s: node1 -> %v:80 never reached the pod (last %q); kube-proxy log:\n%s", name, vip, pod, b)
				}
				if resp, err := client.Get("http://" + netip.AddrPortFrom(vip, 80).String() + "/name"); err == nil {
					pod = resp.Header.Get("X-Pod")
					resp.Body.Close()
				}
				time.Sleep(50 * time.Millisecond)
			}
			// Its /run is its own tmpfs, in its own mount namespace; the
			// host's mount table never shows it.
			src := cp.PrivateRunSource()
			if mi, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", kp.PID())); !privateRunIn(string(mi), src) {
				t.Errorf("%s: no tmpfs %s on its /run:\n%s", name, src, mi)
			}
			if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), src) {
				t.Errorf("%s: the host's mount table shows %s", name, src)
			}
			if dp.backend == kube.IPTablesLegacy {
				// iptables took the node's own lock, in its /run.
				if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/run/xtables.lock", kp.PID())); err != nil {
					t.Errorf("%s: no xtables.lock in its own /run: %v", name, err)
				}
			}
			m := kp.Memory()
			t.Logf("%s carried node1 -> %v:80 to default/web %v after its start; RSS %.1f MiB, PSS %.1f MiB",
				name, vip, time.Since(begin).Round(time.Millisecond), mib(m.RSS), mib(m.PSS))
			resp, err := client.Get("http://" + kube.KubeProxyMetricsAddr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			metrics, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			syncs, err := kube.ParseKubeProxySync(metrics)
			if err != nil || !syncs["IPv4"].Programmed() {
				t.Fatalf("%s: IPv4 sync %+v, %v; metrics:\n%.3000s", name, syncs, err, metrics)
			}
			if s2, err := kube.KubeProxySyncIn(ctx, node.NS); err != nil || s2["IPv4"].Synced.Before(syncs["IPv4"].Synced) {
				t.Fatalf("%s: KubeProxySyncIn %+v, %v", name, s2, err)
			}
			if other := map[string]string{kube.IPTablesLegacy: kube.IPTablesNFT, kube.IPTablesNFT: kube.IPTablesLegacy}[dp.backend]; other != "" {
				if rules := proxyRules(t, node.NS, other); strings.Contains(rules, "KUBE-SERVICES") {
					t.Fatalf("%s programmed the iptables-%s backend too:\n%s", name, other, rules)
				}
			}
			// Like a real kube-proxy it leaves its rules behind; --cleanup
			// removes them.
			if err := kp.Stop(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			if rules := proxyRules(t, node.NS, dp.backend); !strings.Contains(rules, "kube-proxy") && !strings.Contains(rules, "KUBE-SERVICES") {
				t.Fatalf("%s: its rules are gone after it stopped:\n%s", name, rules)
			}
			if err := cp.KubeProxyCleanup(ctx, kube.KubeProxyConfig{NS: node.NS, IPTables: dp.backend}); err != nil {
				t.Fatal(err)
			}
			if rules := proxyRules(t, node.NS, dp.backend); strings.Contains(rules, "kube-proxy") || strings.Contains(rules, "KUBE-SERVICES") {
				t.Fatalf("%s: kube-proxy --cleanup left:\n%s", name, rules)
			}
		}
	})

	t.Run("Check notices a dead component", func(t *testing.T) {
		if err := cp.Check(ctx); err != nil {
			t.Fatalf("healthy plane: %v", err)
		}
		var sched *kube.Process
		for _, p := range procs {
			if p.Name == kube.Scheduler {
				sched = p
			}
		}
		if err := syscall.Kill(sched.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-sched.Done()
		err := cp.Check(ctx)
		if err == nil || !strings.Contains(err.Error(), "kube-scheduler (pid") || strings.Contains(err.Error(), "kube-apiserver") {
			t.Fatalf("Check after killing the scheduler: %v", err)
		}
	})

	// Close: every component stops, kube/ goes; nothing is left of them.
	begin = time.Now()
	if err := cp.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	closed = true
	t.Logf("control plane stopped in %v", time.Since(begin).Round(time.Millisecond))
	for _, p := range procs {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID())); err == nil {
			if st := procState(p.PID()); st != "" && st != "Z" {
				t.Errorf("%s (pid %d) still running after Close", p.Name, p.PID())
			}
		}
	}
	if recorded, err := run.PIDs(); err != nil || len(recorded) != 0 {
		t.Errorf("pids still recorded in the run: %v %v", recorded, err)
	}
	if _, err := os.Stat(cp.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left after Close: %v", cp.Dir(), err)
	}
	cpName := topo.ControlPlane().Name()
	if err := topo.Close(); err != nil {
		t.Errorf("close topology: %v", err)
	}
	if netns.Exists(cpName) {
		t.Errorf("namespace %s left", cpName)
	}
	if m := mountsMentioning(t, run.ID); len(m) > 0 {
		t.Errorf("mounts of the run left: %v", m)
	}
	if _, err := os.Stat(filepath.Join(os.Getenv("HOME"), ".kube")); homeKubeErr != nil && err == nil {
		t.Errorf("kubectl wrote %s", filepath.Join(os.Getenv("HOME"), ".kube"))
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("address %q: %v", s, err)
	}
	return a
}

// nodeAndService: a Node, and a selectorless Service with a hand-made
// EndpointSlice for the pod default/web (svcsim's kubelet will make Nodes
// and pods; this test only needs kube-proxy's inputs).
const nodeAndService = `apiVersion: v1
kind: Node
metadata:
  name: node1
  labels:
    kubernetes.io/hostname: node1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - port: 80
    protocol: TCP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- port: 80
  protocol: TCP
  name: ""
endpoints:
- addresses: ["10.244.1.2"]
  nodeName: node1
  conditions:
    ready: true
`

// proxyRules dumps what a kube-proxy may have programmed in ns: the nftables
// table list, or the nat table of the iptables backend.
func proxyRules(t *testing.T, ns *netns.NS, backend string) string {
	t.Helper()
	args := []string{"nft", "list", "tables"}
	if backend != "" {
		args = []string{"iptables-" + backend + "-save", "-t", "nat"}
	}
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name()}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v in %s: %v: %s", args, ns.Name(), err, out)
	}
	return string(out)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func netInode(t *testing.T, pid int) uint64 {
	t.Helper()
	s, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(s, "net:["), "]"), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return n
}

// listeningPorts reads the TCP listeners (state 0A) of pid's network
// namespace from /proc/<pid>/net/tcp and tcp6.
func listeningPorts(t *testing.T, pid int) map[int]bool {
	t.Helper()
	ports := map[int]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // header
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 4 || fl[3] != "0A" {
				continue
			}
			_, hexPort, _ := strings.Cut(fl[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil {
				ports[int(p)] = true
			}
		}
	}
	return ports
}

func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

func mountsMentioning(t *testing.T, s string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, s) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// privateRunIn reports whether mountinfo has a tmpfs from source mounted
// on /run ("... /run rw,... - tmpfs <source> rw,...").
func privateRunIn(mountinfo, source string) bool {
	for line := range strings.Lines(mountinfo) {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) > 4 && f[4] == "/run" && len(g) > 1 && g[0] == "tmpfs" && g[1] == source {
			return true
		}
	}
	return false
}
