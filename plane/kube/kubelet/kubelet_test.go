package kubelet

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/topology"
)

// Address plan of these tests: node1 198.18.0.11, pods 10.244.1.0/24
// (gateway .1, first pod .2), cluster DNS 10.96.0.10.

// fakeNetwork records sandboxes instead of building namespaces.
type fakeNetwork struct {
	mu    sync.Mutex
	pods  map[string]*fakeSandbox
	added []topology.PodSpec
}

type fakeSandbox struct {
	mu       sync.Mutex
	spec     topology.PodSpec
	running  bool
	starts   int
	removed  bool
	setPorts [][]topology.Port
}

func newFakeNetwork() *fakeNetwork { return &fakeNetwork{pods: map[string]*fakeSandbox{}} }

func (n *fakeNetwork) AddPod(_ context.Context, spec topology.PodSpec) (Sandbox, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pods[spec.Name] != nil {
		return nil, &net.AddrError{Err: "sandbox exists", Addr: spec.Name}
	}
	s := &fakeSandbox{spec: spec, running: true, starts: 1}
	n.pods[spec.Name] = s
	n.added = append(n.added, spec)
	return s, nil
}

func (n *fakeNetwork) RemovePod(_ context.Context, name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.pods[name]
	if s == nil {
		return &net.AddrError{Err: "no sandbox", Addr: name}
	}
	s.mu.Lock()
	s.removed, s.running = true, false
	s.mu.Unlock()
	delete(n.pods, name)
	return nil
}

func (n *fakeNetwork) sandbox(name string) *fakeSandbox {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pods[name]
}

func (s *fakeSandbox) Netns() *netns.NS { return nil }
func (s *fakeSandbox) StopServers() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = false
	return nil
}
func (s *fakeSandbox) StartServers() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = true
	s.starts++
	return nil
}
func (s *fakeSandbox) SetPorts(p []topology.Port) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setPorts = append(s.setPorts, p)
	return nil
}
func (s *fakeSandbox) isRunning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

// probeTarget is an HTTP server standing in for every pod: the kubelet's
// probe dials are redirected to it, and the addresses asked for recorded.
type probeTarget struct {
	srv    *httptest.Server
	code   atomic.Int32
	mu     sync.Mutex
	dialed []string
}

func newProbeTarget(t *testing.T) *probeTarget {
	pt := &probeTarget{}
	pt.code.Store(200)
	pt.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.UserAgent(), "kube-probe/") {
			w.WriteHeader(400)
			return
		}
		w.WriteHeader(int(pt.code.Load()))
	}))
	t.Cleanup(pt.srv.Close)
	return pt
}

func (pt *probeTarget) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	pt.mu.Lock()
	pt.dialed = append(pt.dialed, addr)
	pt.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, network, pt.srv.Listener.Addr().String())
}

func (pt *probeTarget) dials() []string {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return slices.Clone(pt.dialed)
}

type fixture struct {
	client *fake.Clientset
	net    *fakeNetwork
	probe  *probeTarget
	k      *Kubelet
	dir    string
}

func start(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest)
		ref := tr.Spec.BoundObjectRef
		return true, &authenticationv1.TokenRequest{Status: authenticationv1.TokenRequestStatus{
			Token: "token-for-" + ref.Kind + "-" + ref.Name}}, nil
	})
	f := &fixture{client: client, net: newFakeNetwork(), probe: newProbeTarget(t), dir: filepath.Join(t.TempDir(), "kubelet")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k, err := Start(ctx, Config{
		Client: client, NodeName: "node1", NodeIP: netip.MustParseAddr("198.18.0.11"),
		PodCIDR: netip.MustParsePrefix("10.244.1.0/24"), Network: f.net, Dial: f.probe.dial,
		Dir: f.dir, Drain: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.k = k
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return f
}

func eventually(t *testing.T, what string, timeout time.Duration, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, msg := f()
		if ok {
			return
		}
		last = msg
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not after %v: %s", what, timeout, last)
}

func makePod(name string, mut ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: k8stypes.UID("uid-" + name), Labels: map[string]string{"app": "getip"}},
		Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{
			Name: "getip", Image: "svcsim/getip:latest",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}},
	}
	for _, m := range mut {
		m(p)
	}
	return p
}

func (f *fixture) pod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	p, err := f.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		t.Fatal(err)
	}
	return p
}

func condition(p *corev1.Pod, typ corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

func (f *fixture) waitReady(t *testing.T, name string, want corev1.ConditionStatus) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	eventually(t, "pod "+name+" Ready="+string(want), 10*time.Second, func() (bool, string) {
		p = f.pod(t, name)
		if p == nil {
			return false, "no pod"
		}
		return p.Status.Phase == corev1.PodRunning && condition(p, corev1.PodReady) == want,
			string(p.Status.Phase) + " ready " + string(condition(p, corev1.PodReady))
	})
	return p
}

func TestRegisterNode(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	n, err := f.client.CoreV1().Nodes().Get(ctx, "node1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{LabelHostname: "node1", LabelOS: "linux", LabelArch: arch()} {
		if n.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, n.Labels[k], v)
		}
	}
	if n.Spec.PodCIDR != "10.244.1.0/24" || !slices.Equal(n.Spec.PodCIDRs, []string{"10.244.1.0/24"}) {
		t.Errorf("podCIDR %q %v", n.Spec.PodCIDR, n.Spec.PodCIDRs)
	}
	want := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.11"}, {Type: corev1.NodeHostName, Address: "node1"}}
	if !slices.Equal(n.Status.Addresses, want) {
		t.Errorf("addresses %v, want %v", n.Status.Addresses, want)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods} {
		if q, ok := n.Status.Allocatable[r]; !ok || q.IsZero() {
			t.Errorf("allocatable %s missing", r)
		}
	}
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue && !c.LastHeartbeatTime.IsZero()
		}
	}
	if !ready {
		t.Errorf("no Ready=True condition with a heartbeat: %v", n.Status.Conditions)
	}
	l, err := f.client.CoordinationV1().Leases(LeaseNamespace).Get(ctx, "node1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ptr.Deref(l.Spec.HolderIdentity, "") != "node1" || l.Spec.RenewTime == nil || len(l.OwnerReferences) != 1 || l.OwnerReferences[0].Kind != "Node" {
		t.Errorf("lease %+v", l)
	}
}

func TestRegisterAdoptsExistingNode(t *testing.T) {
	old := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{"isIngress": "true"}}}
	f := start(t, old)
	n, err := f.client.CoreV1().Nodes().Get(context.Background(), "node1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels["isIngress"] != "true" || n.Labels[LabelHostname] != "node1" || n.Spec.PodCIDR != "10.244.1.0/24" {
		t.Errorf("labels %v podCIDR %q", n.Labels, n.Spec.PodCIDR)
	}
}

func TestPodRunsWithIPAndStatus(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "getip-service", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", Selector: map[string]string{"app": "getip"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8081), Protocol: corev1.ProtocolTCP}}}}
	kubernetes := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}}}}
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "other"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.30", Ports: []corev1.ServicePort{{Port: 80}}}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conf", Namespace: "default"}, Data: map[string]string{"greeting": "hello", "Corefile": ".:53 {}"}}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "default"}, Data: map[string][]byte{"password": []byte("s3cret")}}
	rootCA := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: "default"}, Data: map[string]string{"ca.crt": "PEM"}}
	f := start(t, svc, kubernetes, other, cm, sec, rootCA)
	ctx := context.Background()

	p := makePod("getip-1", func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		c.Env = []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}, Key: "greeting"}}},
			{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
			{Name: "URL", Value: "http://$(GETIP_SERVICE_SERVICE_HOST):$(GETIP_SERVICE_SERVICE_PORT)/$(POD_NAME)/$(NOPE)/$$"},
		}
		c.VolumeMounts = []corev1.VolumeMount{
			{Name: "conf", MountPath: "/etc/coredns"},
			{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
		}
		p.Spec.Volumes = []corev1.Volume{
			{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"},
				Items: []corev1.KeyToPath{{Key: "Corefile", Path: "Corefile"}}}}},
			{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
			}}}},
		}
	})
	if _, err := f.client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A pod bound to another node is not ours.
	if _, err := f.client.CoreV1().Pods("default").Create(ctx, makePod("elsewhere", func(p *corev1.Pod) { p.Spec.NodeName = "node2" }), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := f.waitReady(t, "getip-1", corev1.ConditionTrue)
	if got.Status.PodIP != "10.244.1.2" || len(got.Status.PodIPs) != 1 || got.Status.HostIP != "198.18.0.11" {
		t.Errorf("podIP %q %v hostIP %q", got.Status.PodIP, got.Status.PodIPs, got.Status.HostIP)
	}
	for _, typ := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady, corev1.PodReadyToStartContainers} {
		if condition(got, typ) != corev1.ConditionTrue {
			t.Errorf("condition %s = %q", typ, condition(got, typ))
		}
	}
	cs := got.Status.ContainerStatuses
	if len(cs) != 1 || !cs[0].Ready || !ptr.Deref(cs[0].Started, false) || cs[0].State.Running == nil || cs[0].RestartCount != 0 || cs[0].ContainerID == "" {
		t.Errorf("container statuses %+v", cs)
	}
	sb := f.net.sandbox("default/getip-1")
	if sb == nil {
		t.Fatal("no sandbox for default/getip-1")
	}
	wantPorts := []topology.Port{{Port: 8080, Protocol: "TCP"}, {Port: 8081, Protocol: "TCP"}}
	if sb.spec.IP != netip.MustParseAddr("10.244.1.2") || sb.spec.Node != "node1" || !slices.Equal(sb.spec.Ports, wantPorts) {
		t.Errorf("sandbox spec %+v, want ports %v", sb.spec, wantPorts)
	}
	if f.net.sandbox("default/elsewhere") != nil {
		t.Error("a pod of node2 got a sandbox on node1")
	}

	info, ok := f.k.Pod("default", "getip-1")
	if !ok {
		t.Fatal("Pod: not found")
	}
	env := map[string]string{}
	for _, e := range info.Env {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	for k, v := range map[string]string{
		"POD_NAME": "getip-1", "POD_NAMESPACE": "default", "POD_IP": "10.244.1.2", "NODE_NAME": "node1", "APP": "getip",
		"GREETING": "hello", "PASSWORD": "s3cret", "URL": "http://10.96.0.20:80/getip-1/$(NOPE)/$",
		"GETIP_SERVICE_SERVICE_HOST": "10.96.0.20", "GETIP_SERVICE_SERVICE_PORT_HTTP": "80", "GETIP_SERVICE_PORT": "tcp://10.96.0.20:80",
		"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
	} {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["ELSEWHERE_SERVICE_HOST"]; ok {
		t.Error("a Service of another namespace is in the environment")
	}
	if info.Env[0] != "POD_NAME=getip-1" {
		t.Errorf("declared variables come first: %v", info.Env)
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got, want := read(info.ResolvConf), "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"; got != want {
		t.Errorf("resolv.conf %q, want %q", got, want)
	}
	if h := read(info.Hosts); !strings.HasPrefix(h, "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n") || !strings.HasSuffix(h, "10.244.1.2\tgetip-1\n") {
		t.Errorf("hosts %q", h)
	}
	mounts := map[string]string{}
	for _, m := range info.Mounts {
		mounts[m.Path] = m.Source
	}
	if got := read(filepath.Join(mounts["/etc/coredns"], "Corefile")); got != ".:53 {}" {
		t.Errorf("Corefile %q", got)
	}
	sa := mounts["/var/run/secrets/kubernetes.io/serviceaccount"]
	if got := read(filepath.Join(sa, "token")); got != "token-for-Pod-getip-1" {
		t.Errorf("token %q", got)
	}
	if read(filepath.Join(sa, "ca.crt")) != "PEM" || read(filepath.Join(sa, "namespace")) != "default" {
		t.Error("ca.crt or namespace wrong in the service-account volume")
	}

	// The second pod gets the next address; a Service added later moves
	// the built-in servers onto its targetPort.
	if _, err := f.client.CoreV1().Pods("default").Create(ctx, makePod("getip-2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := f.waitReady(t, "getip-2", corev1.ConditionTrue); got.Status.PodIP != "10.244.1.3" {
		t.Errorf("second pod IP %q, want 10.244.1.3", got.Status.PodIP)
	}
	late := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.40", Selector: map[string]string{"app": "getip"},
			Ports: []corev1.ServicePort{{Port: 9000, TargetPort: intstr.FromInt32(9090), Protocol: corev1.ProtocolTCP}}}}
	if _, err := f.client.CoreV1().Services("default").Create(ctx, late, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "servers on the late Service's targetPort", 5*time.Second, func() (bool, string) {
		sb.mu.Lock()
		defer sb.mu.Unlock()
		n := len(sb.setPorts)
		return n > 0 && slices.Contains(sb.setPorts[n-1], topology.Port{Port: 9090, Protocol: "TCP"}), ""
	})
}

func TestMissingConfigMapWaits(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	p := makePod("waits", func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "later"}}}}}
	})
	if _, err := f.client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod pending with ContainerCreating", 5*time.Second, func() (bool, string) {
		p := f.pod(t, "waits")
		cs := p.Status.ContainerStatuses
		return p.Status.Phase == corev1.PodPending && len(cs) == 1 && cs[0].State.Waiting != nil && cs[0].State.Waiting.Reason == "ContainerCreating", string(p.Status.Phase)
	})
	if f.net.sandbox("default/waits") != nil {
		t.Fatal("sandbox built before its ConfigMap exists")
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "later", Namespace: "default"}, Data: map[string]string{"a": "b"}}
	if _, err := f.client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitReady(t, "waits", corev1.ConditionTrue)
}

func httpProbe(port int32, period, failure int32) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(port)}},
		PeriodSeconds: period, FailureThreshold: failure, SuccessThreshold: 1, TimeoutSeconds: 1}
}

func TestReadinessProbe(t *testing.T) {
	f := start(t)
	f.probe.code.Store(500)
	p := makePod("probed", func(p *corev1.Pod) {
		p.Spec.Containers[0].ReadinessProbe = httpProbe(8080, 1, 1)
	})
	if _, err := f.client.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Running, but not Ready while the probe fails.
	got := f.waitReady(t, "probed", corev1.ConditionFalse)
	eventually(t, "a probe ran", 5*time.Second, func() (bool, string) { return len(f.probe.dials()) > 0, "" })
	if d := f.probe.dials()[0]; d != "10.244.1.2:8080" {
		t.Errorf("probe dialed %s, want the pod's 10.244.1.2:8080", d)
	}
	if cs := got.Status.ContainerStatuses; len(cs) != 1 || cs[0].Ready || cs[0].State.Running == nil {
		t.Errorf("container status %+v", cs)
	}
	time.Sleep(1500 * time.Millisecond)
	if got := f.pod(t, "probed"); condition(got, corev1.PodReady) != corev1.ConditionFalse {
		t.Fatal("Ready while the probe fails")
	}
	f.probe.code.Store(200)
	f.waitReady(t, "probed", corev1.ConditionTrue)
	f.probe.code.Store(503)
	f.waitReady(t, "probed", corev1.ConditionFalse)
}

func TestTCPProbeAgainstClosedPort(t *testing.T) {
	f := start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	f.k.cfg.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	p := makePod("tcp", func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports[0].Name = "web"
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("web")}},
			PeriodSeconds: 1, FailureThreshold: 1}
	})
	if _, err := f.client.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitReady(t, "tcp", corev1.ConditionFalse)
	time.Sleep(1200 * time.Millisecond)
	if got := f.pod(t, "tcp"); condition(got, corev1.PodReady) != corev1.ConditionFalse {
		t.Fatal("Ready although nothing listens")
	}
}

func TestLivenessRestarts(t *testing.T) {
	f := start(t)
	f.probe.code.Store(500)
	p := makePod("live", func(p *corev1.Pod) {
		p.Spec.Containers[0].LivenessProbe = httpProbe(8080, 1, 2)
	})
	if _, err := f.client.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "restartCount 1", 8*time.Second, func() (bool, string) {
		p := f.pod(t, "live")
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount >= 1 && cs[0].LastTerminationState.Terminated != nil, ""
	})
	f.probe.code.Store(200)
	sb := f.net.sandbox("default/live")
	sb.mu.Lock()
	starts := sb.starts
	sb.mu.Unlock()
	if starts < 2 || !sb.isRunning() {
		t.Errorf("servers started %d times, running %v; want a restart", starts, sb.isRunning())
	}
}

func TestDeletionWithGrace(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	if _, err := f.client.CoreV1().Pods("default").Create(ctx, makePod("doomed"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitReady(t, "doomed", corev1.ConditionTrue)
	sb := f.net.sandbox("default/doomed")
	// What the API server does on a graceful delete: set the deletion
	// timestamp and grace period, leave the pod to its kubelet.
	p := f.pod(t, "doomed")
	now := metav1.Now()
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, ptr.To[int64](30)
	begin := time.Now()
	if _, err := f.client.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// During the drain the pod still serves and is still Ready (a
	// terminating, serving endpoint).
	time.Sleep(100 * time.Millisecond)
	if got := f.pod(t, "doomed"); got == nil || condition(got, corev1.PodReady) != corev1.ConditionTrue || !sb.isRunning() {
		t.Fatal("pod stopped serving before its drain ended")
	}
	eventually(t, "pod deleted", 5*time.Second, func() (bool, string) { return f.pod(t, "doomed") == nil, "" })
	if d := time.Since(begin); d < 300*time.Millisecond {
		t.Errorf("deleted after %v, before the 300ms drain", d)
	}
	if sb.isRunning() || !sb.removed {
		t.Error("sandbox not stopped and removed")
	}
	if _, ok := f.k.Pod("default", "doomed"); ok {
		t.Error("kubelet still lists the pod")
	}
	// Its address is free again, but host-local hands out the next one first.
	if _, err := f.client.CoreV1().Pods("default").Create(ctx, makePod("next"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := f.waitReady(t, "next", corev1.ConditionTrue); got.Status.PodIP != "10.244.1.3" {
		t.Errorf("next pod IP %q, want 10.244.1.3", got.Status.PodIP)
	}
}

// TestSetReadyWhileTerminating: a terminating pod's readiness still moves
// (a server failing its probe after SIGTERM), so the endpoint controllers
// can take a serving, terminating endpoint to not serving.
func TestSetReadyWhileTerminating(t *testing.T) {
	f := start(t)
	f.k.cfg.Drain = 5 * time.Second
	ctx := context.Background()
	if _, err := f.client.CoreV1().Pods("default").Create(ctx, makePod("slow"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitReady(t, "slow", corev1.ConditionTrue)
	p := f.pod(t, "slow")
	now := metav1.Now()
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, ptr.To[int64](30)
	if _, err := f.client.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "draining", 2*time.Second, func() (bool, string) {
		var drain bool
		f.k.mu.Lock()
		for _, w := range f.k.workers {
			if w.name == "slow" {
				got, _ := w.current()
				drain = got.DeletionTimestamp != nil
			}
		}
		f.k.mu.Unlock()
		return drain, "the kubelet has not seen the deletion"
	})
	if err := f.k.SetReady("default", "slow", false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Ready=False while terminating", 2*time.Second, func() (bool, string) {
		got := f.pod(t, "slow")
		return got != nil && condition(got, corev1.PodReady) == corev1.ConditionFalse, "still ready"
	})
}

func TestShortGraceBoundsDrain(t *testing.T) {
	f := start(t)
	f.k.cfg.Drain = 10 * time.Second
	ctx := context.Background()
	if _, err := f.client.CoreV1().Pods("default").Create(ctx, makePod("quick"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitReady(t, "quick", corev1.ConditionTrue)
	p := f.pod(t, "quick")
	now := metav1.Now()
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, ptr.To[int64](1)
	if _, err := f.client.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod deleted within its 1s grace", 3*time.Second, func() (bool, string) { return f.pod(t, "quick") == nil, "" })
}

func TestHostNetworkPod(t *testing.T) {
	f := start(t)
	p := makePod("hostnet", func(p *corev1.Pod) {
		p.Spec.HostNetwork = true
		p.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	})
	if _, err := f.client.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := f.waitReady(t, "hostnet", corev1.ConditionTrue)
	if got.Status.PodIP != "198.18.0.11" {
		t.Errorf("hostNetwork pod IP %q, want the node's", got.Status.PodIP)
	}
	if sb := f.net.sandbox("default/hostnet"); sb == nil || !sb.spec.HostNetwork {
		t.Error("sandbox is not hostNetwork")
	}
	info, _ := f.k.Pod("default", "hostnet")
	b, _ := os.ReadFile(info.ResolvConf)
	if !strings.Contains(string(b), "nameserver 10.96.0.10") {
		t.Errorf("ClusterFirstWithHostNet resolv.conf %q", b)
	}
}

func TestCloseRemovesSandboxes(t *testing.T) {
	f := start(t)
	if _, err := f.client.CoreV1().Pods("default").Create(context.Background(), makePod("left"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitReady(t, "left", corev1.ConditionTrue)
	if err := f.k.Close(); err != nil {
		t.Fatal(err)
	}
	if f.net.sandbox("default/left") != nil {
		t.Error("sandbox left after Close")
	}
	if _, err := os.Stat(f.dir); !os.IsNotExist(err) {
		t.Errorf("%s left after Close: %v", f.dir, err)
	}
}
