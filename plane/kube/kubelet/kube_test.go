package kubelet_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/addons/clusterdns"
	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/internal/reexec"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/plane/kube/kubelet"
	"github.com/svcsim/svcsim/topology"
	"github.com/svcsim/svcsim/topology/topotest"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

// clientIn is a client-go clientset for kubeconfig whose connections are
// made from inside ns (the API server listens only in the control-plane
// namespace, on the underlay).
func clientIn(t *testing.T, kubeconfig string, ns *netns.NS) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return topology.DialContext(ctx, ns, network, addr)
	}
	cfg.QPS, cfg.Burst = 50, 100
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestGenuineControlPlane starts the genuine etcd, API server, controller
// manager and scheduler, runs svcsim's kubelet for two nodes, applies a
// Deployment with a Service and checks the pods run with host-local
// addresses of their node's pod CIDR, answer from the other node, appear in
// the EndpointSlice, and go through terminating endpoints when scaled
// down. Everything is gone afterwards.
func TestGenuineControlPlane(t *testing.T) {
	privtest.RequireRoot(t)
	bin, explicit, err := kube.FindBinary()
	if err != nil {
		if explicit {
			t.Fatal(err)
		}
		t.Skipf("%v", err)
	}
	spec := topology.DefaultSpec(privtest.NewRun(t), 2)
	spec.ControlPlaneIP = topology.DefaultControlPlaneIP
	// Runs after the topology's cleanup: nothing of the run is left.
	t.Cleanup(func() {
		entries, _ := os.ReadDir(netns.Dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), spec.Run.ID) {
				t.Errorf("namespace %s left", e.Name())
			}
		}
		if pids, err := spec.Run.PIDs(); err != nil || len(pids) != 0 {
			t.Errorf("processes still recorded in the run: %v %v", pids, err)
		}
	})
	topo := topotest.Build(t, spec)
	run := topo.Run()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	begin := time.Now()
	cp, err := kube.Start(ctx, kube.Config{Run: run, NS: topo.ControlPlane(), AdvertiseIP: spec.ControlPlaneIP, Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cp.Close(); err != nil {
			t.Errorf("close control plane: %v", err)
		}
	}()
	t.Logf("control plane healthy after %v", time.Since(begin).Round(time.Millisecond))

	admin := clientIn(t, cp.AdminKubeconfig(), topo.ControlPlane())
	tn := &kubelet.TopologyNetwork{T: topo}
	var kubelets []*kubelet.Kubelet
	var dirs []string
	var logMu sync.Mutex
	var logs strings.Builder
	defer func() {
		for _, k := range kubelets {
			if err := k.Close(); err != nil {
				t.Errorf("close kubelet: %v", err)
			}
		}
		for _, d := range dirs {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("kubelet directory %s left: %v", d, err)
			}
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("kubelet log:\n%s", logs.String())
			logMu.Unlock()
		}
	}()
	reg := addons.NewRegistry()
	if err := reg.RegisterAddOns(clusterdns.AddOn(kube.ClusterDomain)); err != nil {
		t.Fatal(err)
	}
	regBegin := time.Now()
	for _, n := range spec.Nodes {
		kc, err := cp.NodeKubeconfig(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		dial, err := tn.NodeDialer(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		dir := run.Path("kubelet-" + n.Name)
		dirs = append(dirs, dir)
		k, err := kubelet.Start(ctx, kubelet.Config{
			Client: clientIn(t, kc, topo.Node(n.Name).NS), NodeName: n.Name, NodeIP: n.IP, PodCIDR: n.PodCIDR,
			Network: tn, Dial: dial, Dir: dir, Drain: 2 * time.Second, Log: lockedWriter{&logMu, &logs},
			Workloads: kubelet.Registry(reg), WorkloadClient: admin,
		})
		if err != nil {
			t.Fatal(err)
		}
		kubelets = append(kubelets, k)
	}
	waitFor(t, ctx, "2 Ready nodes", func() (bool, string) {
		nodes, err := admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && len(n.Spec.Taints) == 0 {
					ready++
				}
			}
		}
		return ready == 2, fmt.Sprintf("%d ready", ready)
	})
	t.Logf("2 nodes Ready %v after the kubelets started", time.Since(regBegin).Round(time.Millisecond))
	// Pods of a namespace can be created once its ServiceAccount exists.
	waitFor(t, ctx, "default ServiceAccount", func() (bool, string) {
		_, err := admin.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})

	// Cluster DNS as the kube-dns Deployment: its pod runs svcsim's DNS
	// server through the add-on registry.
	var applyOut strings.Builder
	if err := cp.Kubectl(ctx, kube.KubectlOptions{In: strings.NewReader(clusterdns.Manifests), Out: &applyOut, Err: &applyOut}, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply cluster DNS: %v: %s", err, applyOut.String())
	}

	var dnsIP string
	waitFor(t, ctx, "kube-dns pod Ready", func() (bool, string) {
		l, err := admin.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
		if err != nil || len(l.Items) != 1 {
			return false, fmt.Sprint(err)
		}
		for _, c := range l.Items[0].Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				dnsIP = l.Items[0].Status.PodIP
				return true, ""
			}
		}
		return false, string(l.Items[0].Status.Phase)
	})
	// $SVCSIM_KUBELET_REPLICAS (default 4, even) sizes the Deployment,
	// for measuring start-up at scale.
	replicas := 4
	if v, err := strconv.Atoi(os.Getenv("SVCSIM_KUBELET_REPLICAS")); err == nil && v >= 2 && v%2 == 0 {
		replicas = v
	}
	labels := map[string]string{"app": "getip"}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "getip-service", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "getip-deployment", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(replicas)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](10),
				Containers: []corev1.Container{{Name: "getip", Image: "svcsim/getip:1.0",
					Env:            []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/info", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
				}},
			}}}}
	if _, err := admin.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := admin.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=getip"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	applied := time.Now()
	if _, err := admin.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running, ready, created := map[string]time.Duration{}, map[string]time.Duration{}, map[string]time.Duration{}
	pods := map[string]*corev1.Pod{}
	deadline := time.After(90 * time.Second)
	for len(ready) < replicas {
		select {
		case ev := <-w.ResultChan():
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			pods[p.Name] = p
			if _, seen := created[p.Name]; !seen {
				created[p.Name] = time.Since(applied)
			}
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				if _, seen := running[p.Name]; !seen {
					running[p.Name] = time.Since(applied)
				}
				for _, c := range p.Status.Conditions {
					if _, seen := ready[p.Name]; c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && !seen {
						ready[p.Name] = time.Since(applied)
					}
				}
			}
		case <-deadline:
			t.Fatalf("pods not Ready after 90s: running %v ready %v", running, ready)
		}
	}
	names := make([]string, 0, len(ready))
	for n := range ready {
		names = append(names, n)
	}
	sort.Strings(names)
	var times, own []time.Duration
	for n, d := range running {
		times = append(times, d)
		own = append(own, d-created[n])
	}
	sortDurations(times)
	sortDurations(own)
	last := times[len(times)-1]
	t.Logf("%d pods Running after the Deployment was created: first %v, median %v, last %v (%.1f pods/s); "+
		"from the pod's creation (scheduler and kubelet): median %v, max %v", len(times),
		times[0].Round(time.Millisecond), times[len(times)/2].Round(time.Millisecond), last.Round(time.Millisecond),
		float64(len(times))/last.Seconds(), own[len(own)/2].Round(time.Millisecond), own[len(own)-1].Round(time.Millisecond))
	perNode := map[string][]string{}
	var ips []string
	for _, n := range names {
		p := pods[n]
		if replicas <= 8 {
			t.Logf("pod %s on %s at %s: Running %v, Ready %v after the Deployment was created", n, p.Spec.NodeName, p.Status.PodIP,
				running[n].Round(time.Millisecond), ready[n].Round(time.Millisecond))
		}
		node := topo.Node(p.Spec.NodeName)
		ip := netip.MustParseAddr(p.Status.PodIP)
		if node == nil || !node.PodCIDR.Contains(ip) {
			t.Errorf("pod %s at %v is not in its node %s's pod CIDR", n, ip, p.Spec.NodeName)
		}
		perNode[p.Spec.NodeName] = append(perNode[p.Spec.NodeName], p.Status.PodIP)
		ips = append(ips, p.Status.PodIP)
	}
	for i, n := range spec.Nodes {
		if len(perNode[n.Name]) == 0 {
			t.Errorf("the scheduler put no pod on %s: %v", n.Name, perNode)
		}
		// Every pod of the node (the DNS pod too) took the next address.
		var got []string
		for _, p := range kubelets[i].Pods() {
			got = append(got, p.IP.String())
		}
		sort.Slice(got, func(a, b int) bool { return netip.MustParseAddr(got[a]).Less(netip.MustParseAddr(got[b])) })
		for i, ip := range got {
			want := netip.AddrFrom4([4]byte{10, 244, n.PodCIDR.Addr().As4()[2], byte(2 + i)}).String()
			if ip != want {
				t.Errorf("node %s pod addresses %v, want host-local order from .2", n.Name, got)
				break
			}
		}
	}

	// Each pod answers across nodes, from node2's namespace.
	client := topology.HTTPClient(topo.Node("node2").NS, false, 2*time.Second)
	for _, n := range names {
		resp, err := client.Get("http://" + net.JoinHostPort(pods[n].Status.PodIP, "8080") + "/name")
		if err != nil {
			t.Fatalf("GET pod %s: %v", n, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "default/"+n {
			t.Errorf("pod %s answered %q", n, b)
		}
	}

	// A pod's service-account token (TokenRequest, projected by the
	// ServiceAccount admission plugin's kube-api-access volume) reaches
	// the API server from inside the pod, as CoreDNS's does.
	var pi kubelet.PodInfo
	for _, p := range append(kubelets[0].Pods(), kubelets[1].Pods()...) {
		if p.Namespace == "default" {
			pi = p
		}
	}
	podNS, err := netns.Get(pi.Netns)
	if err != nil {
		t.Fatal(err)
	}
	defer podNS.Close()
	review := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
	sa := "/var/run/secrets/kubernetes.io/serviceaccount"
	cmd, err := pi.Command("sh", "-c", `curl -sS --max-time 5 --cacert `+sa+`/ca.crt -H "Authorization: Bearer $(cat `+sa+`/token)" `+
		`-H 'Content-Type: application/json' -X POST -d '`+review+`' https://`+spec.ControlPlaneIP.String()+`:6443/apis/authentication.k8s.io/v1/selfsubjectreviews; `+
		`echo; cat `+sa+`/namespace; echo; echo $POD_NAME; grep -c nameserver /etc/resolv.conf`)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := podNS.Do(cmd.Run); err != nil {
		t.Fatalf("in pod %s: %v: %s", pi.Name, err, out.String())
	}
	if !strings.Contains(out.String(), `"username": "system:serviceaccount:default:default"`) ||
		!strings.Contains(out.String(), "\ndefault\n"+pi.Name+"\n1\n") {
		t.Errorf("in pod %s: want the service account's identity, the namespace, POD_NAME and one nameserver:\n%s", pi.Name, out.String())
	}

	slices := func() map[string]discoveryv1.EndpointConditions {
		l, err := admin.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=getip-service"})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]discoveryv1.EndpointConditions{}
		for _, s := range l.Items {
			for _, ep := range s.Endpoints {
				for _, a := range ep.Addresses {
					out[a] = ep.Conditions
				}
			}
		}
		return out
	}
	waitFor(t, ctx, "EndpointSlice lists every pod ready", func() (bool, string) {
		eps := slices()
		for _, ip := range ips {
			if !ptr.Deref(eps[ip].Ready, false) {
				return false, fmt.Sprint(eps)
			}
		}
		return len(eps) == len(ips), fmt.Sprint(eps)
	})

	got, err := admin.CoreV1().Services("default").Get(ctx, "getip-service", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var digOut strings.Builder
	dig := exec.Command("dig", "+short", "+time=2", "+tries=3", "@"+dnsIP, "getip-service.default.svc.cluster.local")
	dig.Stdout, dig.Stderr = &digOut, &digOut
	if err := topo.Node("node1").NS.Do(dig.Run); err != nil || strings.TrimSpace(digOut.String()) != got.Spec.ClusterIP {
		t.Errorf("dig @%s getip-service: %v %q, want %s", dnsIP, err, digOut.String(), got.Spec.ClusterIP)
	}

	// Scale down: the two removed pods are terminating (serving, not ready)
	// endpoints for their drain, then gone with their sandboxes.
	scaleBegin := time.Now()
	if _, err := admin.AppsV1().Deployments("default").Patch(ctx, "getip-deployment", "application/merge-patch+json",
		[]byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas/2)), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	sawTerminating := false
	waitFor(t, ctx, "scaled down to 2 endpoints", func() (bool, string) {
		eps := slices()
		for _, c := range eps {
			if ptr.Deref(c.Terminating, false) && ptr.Deref(c.Serving, false) {
				sawTerminating = true
			}
		}
		l, err := admin.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=getip"})
		if err != nil {
			return false, err.Error()
		}
		return len(eps) == replicas/2 && len(l.Items) == replicas/2, fmt.Sprintf("%d endpoints, %d pods", len(eps), len(l.Items))
	})
	t.Logf("scaled %d -> %d in %v (drain 2s)", replicas, replicas/2, time.Since(scaleBegin).Round(time.Millisecond))
	if !sawTerminating {
		t.Error("never saw a serving, terminating endpoint while pods drained")
	}
	total := 0
	for _, k := range kubelets {
		total += len(k.Pods())
	}
	if total != replicas/2+1 || len(topo.Pods()) != replicas/2+1 {
		t.Errorf("after scale-down: kubelets run %d pods, topology has %d; want %d and the DNS pod", total, len(topo.Pods()), replicas/2)
	}
}

func sortDurations(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }

func waitFor(t *testing.T, ctx context.Context, what string, f func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(50 * time.Millisecond) {
		ok, msg := f()
		if ok {
			return
		}
		last = msg
	}
	t.Fatalf("%s: not reached: %s", what, last)
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
