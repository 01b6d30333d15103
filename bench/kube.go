package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/svcsim/svcsim/internal/hostinfo"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/kubeproxy"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/plane/kube/cluster"
	"github.com/svcsim/svcsim/report/results"
)

// The kubernetes plane's measurements (svcsim bench --kubernetes).
const (
	// MetricKubeUp: `svcsim up --control-plane kubernetes -f <seed>` from
	// its start until it returns, which is once every node is Ready, every
	// seed pod Running and every kube-proxy programmed (checked after).
	// N is the node count.
	MetricKubeUp = "kube-up-seed"
	// MetricKubePeakMemory: the largest sum, over the daemon `up` starts and
	// every process below it (etcd, the API server, the controller
	// manager, the scheduler, each kube-proxy, CoreDNS; the kubelets run in
	// the daemon), of their proportional set sizes, sampled every 200 ms
	// from the start of `up` until 2 s after it returned. Extra: the same
	// sum of RSS (which counts the shared multi-call binary once per
	// process).
	MetricKubePeakMemory = "kube-peak-memory"
	// MetricKubePods: pods per second from the creation of a Deployment of
	// N replicas until all N are Running, on a plane of Nodes nodes.
	MetricKubePods = "kube-pods-running"
)

// KubeConfig describes the kubernetes plane's measurements.
type KubeConfig struct {
	// Svcsim is the svcsim binary whose `up` is measured; Seed the
	// manifests it applies (sim/testdata/seed).
	Svcsim, Seed string
	// UpReps is how many times `up` is measured (each followed by `down`).
	UpReps int
	// Nodes, Pods and PodReps size the pods/s measurement: PodReps
	// Deployments of Pods replicas, one after another, on one plane of
	// Nodes nodes.
	Nodes, Pods, PodReps int
	// QPS and Burst are the client rate the controller manager and the
	// scheduler get for the pods/s measurement (--kube-api-qps,
	// --kube-api-burst; their defaults, 20/30 and 50/100, would be what it
	// measures).
	QPS, Burst int
	// Datapath is the kube-proxy datapath ("": kubeproxy.Default).
	Datapath   string
	ResultsDir string
	Log        io.Writer
}

// DefaultKube is the sweep: `up` of the seed three times; 200 pods
// on 10 nodes three times with the clients at 200 requests/s (burst 400).
func DefaultKube() KubeConfig {
	return KubeConfig{UpReps: 3, Nodes: 10, Pods: 200, PodReps: 3, QPS: 200, Burst: 400, Datapath: kubeproxy.Default}
}

// Kube measures the kubernetes plane and writes each metric's bench to
// cfg.ResultsDir. Nothing is asserted: the figures are outputs.
func Kube(ctx context.Context, cfg KubeConfig) ([]results.Bench, error) {
	if cfg.Datapath == "" {
		cfg.Datapath = kubeproxy.Default
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	d, err := kubeproxy.Get(cfg.Datapath)
	if err != nil {
		return nil, err
	}
	if why := d.Unsupported(); why != "" {
		return nil, fmt.Errorf("%s cannot run here: %s", d.Name, why)
	}
	env := hostinfo.Collect(hostinfo.Lane())
	info := &results.DatapathInfo{Order: d.Report.Order, Claim: string(d.Report.Claim)}
	var out []results.Bench
	var errs []error
	add := func(b results.Bench) {
		b.Datapath, b.Env, b.Info = d.Name, env, info
		if err := results.WriteBench(cfg.ResultsDir, b); err != nil {
			errs = append(errs, err)
		}
		out = append(out, b)
	}

	if cfg.UpReps > 0 {
		var secs, pss, rss []float64
		for i := range cfg.UpReps {
			s, peak, err := kubeUpOnce(ctx, cfg, d)
			if err != nil {
				errs = append(errs, fmt.Errorf("up %d of %d: %w", i+1, cfg.UpReps, err))
				break
			}
			fmt.Fprintf(cfg.Log, "bench: kubernetes plane up with the seed, every pod Running: %.1f s; peak %.0f MiB PSS, %.0f MiB RSS\n", s, mib(peak.PSS), mib(peak.RSS))
			secs, pss, rss = append(secs, s), append(pss, mib(peak.PSS)), append(rss, mib(peak.RSS))
		}
		if len(secs) > 0 {
			add(results.Bench{Metric: MetricKubeUp, Unit: "s", XLabel: "nodes", Points: []results.Point{point(2, secs, false, nil)},
				Note: "svcsim up --control-plane kubernetes -f " + filepath.Base(cfg.Seed) + " until it returns (every node Ready, every seed pod Running, every kube-proxy programmed)"})
			add(results.Bench{Metric: MetricKubePeakMemory, Unit: "MiB", XLabel: "nodes",
				Points: []results.Point{point(2, pss, false, map[string]float64{"rss_median_mib": median(rss)})},
				Note:   "largest sum of PSS over the daemon and every process below it, during up with the seed (RSS, which counts the shared binary once per process, in the results file)"})
		}
	}
	if cfg.PodReps > 0 && ctx.Err() == nil {
		rates, secs, err := kubePods(ctx, cfg, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("pods/s: %w", err))
		}
		if len(rates) > 0 {
			add(results.Bench{Metric: MetricKubePods, Unit: "pods/s", XLabel: "pods",
				Points: []results.Point{point(cfg.Pods, rates, false, map[string]float64{"nodes": float64(cfg.Nodes), "seconds_median": median(secs), "kube_api_qps": float64(cfg.QPS), "kube_api_burst": float64(cfg.Burst)})},
				Note:   fmt.Sprintf("a Deployment of %d replicas on %d nodes, from its creation until every pod is Running; kube-controller-manager and kube-scheduler with --kube-api-qps=%d --kube-api-burst=%d (their defaults, 20/30 and 50/100, limit it to about 20 pods/s)", cfg.Pods, cfg.Nodes, cfg.QPS, cfg.Burst)})
		}
	}
	return out, errors.Join(errs...)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func median(xs []float64) float64 { return point(0, xs, false, nil).Median }

// kubeUpOnce runs `svcsim up` of the seed, samples the memory of what it
// starts, checks that every pod is Running, and runs `svcsim down`.
func kubeUpOnce(ctx context.Context, cfg KubeConfig, d modes.Datapath) (secs float64, peak kube.Memory, err error) {
	var log bytes.Buffer
	up := exec.CommandContext(ctx, cfg.Svcsim, "up", "--control-plane", cluster.ControlPlaneName, "--mode", d.Name, "-f", cfg.Seed)
	up.Stdout, up.Stderr = &log, &log
	begin := time.Now()
	if err := up.Start(); err != nil {
		return 0, peak, fmt.Errorf("svcsim up: %w", err)
	}
	defer func() {
		down := exec.Command(cfg.Svcsim, "down")
		if out, derr := down.CombinedOutput(); derr != nil {
			err = errors.Join(err, fmt.Errorf("svcsim down: %w: %s", derr, out))
		}
	}()
	done := make(chan error, 1)
	go func() { done <- up.Wait() }()
	roots := map[int]bool{up.Process.Pid: true}
	sample := func() {
		var m kube.Memory
		for pid := range descendants(roots) {
			if pm := kube.MemoryOf(pid); pm.PSS > 0 {
				m.PSS += pm.PSS
				m.RSS += pm.RSS
				roots[pid] = true // the daemon stays a root once up has exited
			}
		}
		peak.PSS, peak.RSS = max(peak.PSS, m.PSS), max(peak.RSS, m.RSS)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case err := <-done:
			if err != nil {
				return 0, peak, fmt.Errorf("svcsim up: %w\n%s", err, log.String())
			}
			secs = time.Since(begin).Seconds()
			waiting = false
		case <-tick.C:
			sample()
		}
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		sample()
		time.Sleep(200 * time.Millisecond)
	}
	phases, err := exec.CommandContext(ctx, cfg.Svcsim, "kubectl", "get", "pods", "-A", "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.phase}{"\n"}{end}`).Output()
	if err != nil {
		return secs, peak, fmt.Errorf("svcsim kubectl get pods: %w", err)
	}
	n := 0
	for line := range strings.Lines(strings.TrimSpace(string(phases))) {
		if f := strings.Fields(line); len(f) != 2 || f[1] != string(corev1.PodRunning) {
			return secs, peak, fmt.Errorf("after up, pod %q is not Running", strings.TrimSpace(line))
		}
		n++
	}
	if n == 0 {
		return secs, peak, errors.New("after up, no pod runs")
	}
	return secs, peak, nil
}

// descendants is roots and every process below them, from /proc.
func descendants(roots map[int]bool) map[int]bool {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		_, rest, ok := strings.Cut(string(b), ") ")
		if f := strings.Fields(rest); ok && len(f) > 1 {
			if ppid, err := strconv.Atoi(f[1]); err == nil {
				parent[pid] = ppid
			}
		}
	}
	in := map[int]bool{}
	var below func(pid int, depth int) bool
	below = func(pid int, depth int) bool {
		if roots[pid] {
			return true
		}
		if p, ok := parent[pid]; ok && p > 1 && depth < 64 {
			return below(p, depth+1)
		}
		return false
	}
	for pid := range parent {
		if below(pid, 0) {
			in[pid] = true
		}
	}
	return in
}

// kubePods starts a plane of cfg.Nodes nodes with the controller manager's
// and the scheduler's client rate raised, and times cfg.PodReps
// Deployments of cfg.Pods replicas until every pod is Running.
func kubePods(ctx context.Context, cfg KubeConfig, d modes.Datapath) (rates, secs []float64, err error) {
	rate := []string{"--kube-api-qps=" + strconv.Itoa(cfg.QPS), "--kube-api-burst=" + strconv.Itoa(cfg.Burst)}
	c, err := cluster.Start(ctx, cluster.Options{Nodes: cfg.Nodes, Datapath: d.Name,
		ExtraArgs: map[string][]string{kube.ControllerManager: rate, kube.Scheduler: rate}})
	if err != nil {
		return nil, nil, fmt.Errorf("start a %d-node kubernetes plane: %w", cfg.Nodes, err)
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	for i := range cfg.PodReps {
		ns := fmt.Sprintf("bench-pods-%d", i)
		s, err := podsOnce(ctx, c, ns, cfg.Pods)
		if err != nil {
			return rates, secs, err
		}
		fmt.Fprintf(cfg.Log, "bench: %d pods Running on %d nodes in %.2f s: %.1f pods/s\n", cfg.Pods, cfg.Nodes, s, float64(cfg.Pods)/s)
		rates, secs = append(rates, float64(cfg.Pods)/s), append(secs, s)
		if err := c.Delete(ctx, plane.Ref{Kind: "namespace", Name: ns}); err != nil {
			return rates, secs, err
		}
		if err := c.WaitProgrammed(ctx); err != nil {
			return rates, secs, err
		}
	}
	return rates, secs, nil
}

// podsOnce creates namespace ns and a Deployment of n getip replicas in it,
// and returns the seconds from the Deployment's creation until all n pods
// are Running with an address.
func podsOnce(ctx context.Context, c *cluster.Cluster, ns string, n int) (float64, error) {
	cs := c.Client()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return 0, fmt.Errorf("create namespace %s: %w", ns, err)
	}
	// The namespace's default ServiceAccount comes from the controller
	// manager; pods are refused until it exists.
	for {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	labels := map[string]string{"app": "pods"}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "pods"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(n)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "getip", Image: "getip"}}},
			},
		},
	}
	begin := time.Now()
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		return 0, fmt.Errorf("create the Deployment: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=pods"})
		if err != nil {
			return 0, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				running++
			}
		}
		if running >= n {
			return time.Since(begin).Seconds(), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%d of %d pods Running: %w", running, n, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
