package kubelet

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/topology"
	"github.com/svcsim/svcsim/topology/topotest"
)

// TestOnTopology runs the kubelet against the fake API on a real topology:
// the sandbox is a namespace with the built-in servers, the readiness probe
// really reaches them from the node, a Service's targetPort added later is
// served, and deletion removes the namespace.
func TestOnTopology(t *testing.T) {
	topo := topotest.NewTestTopology(t, 1)
	tn := &TopologyNetwork{T: topo}
	dial, err := tn.NodeDialer("node1")
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k, err := Start(ctx, Config{Client: client, NodeName: "node1", NodeIP: topo.Node("node1").IP,
		PodCIDR: topo.Node("node1").PodCIDR, Network: tn, Dial: dial, Dir: filepath.Join(t.TempDir(), "kubelet"),
		Drain: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := k.Close(); err != nil {
			t.Error(err)
		}
	}()
	f := &fixture{client: client}
	pod := makePod("web", func(p *corev1.Pod) {
		p.Spec.Containers[0].ReadinessProbe = httpProbe(8080, 1, 1)
		p.Spec.Containers[0].ReadinessProbe.HTTPGet.Path = "/info"
		p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1}
	})
	if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := f.waitReady(t, "web", corev1.ConditionTrue)
	if got.Status.PodIP != "10.244.1.2" {
		t.Fatalf("pod IP %q", got.Status.PodIP)
	}
	info, ok := k.Pod("default", "web")
	if !ok || !netns.Exists(info.Netns) {
		t.Fatalf("no sandbox namespace: %+v", info)
	}
	get := func(addr string) (string, error) {
		c := topology.HTTPClient(topo.Node("node1").NS, false, 2*time.Second)
		resp, err := c.Get("http://" + addr + "/name")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if name, err := get("10.244.1.2:8080"); err != nil || name != "default/web" {
		t.Fatalf("GET 8080/name: %q %v", name, err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.40", Selector: map[string]string{"app": "getip"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(9090), Protocol: corev1.ProtocolTCP}}}}
	if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "servers on 9090", 5*time.Second, func() (bool, string) {
		name, err := get("10.244.1.2:9090")
		return err == nil && name == "default/web", ""
	})
	// Still Ready after the restart onto the new ports.
	f.waitReady(t, "web", corev1.ConditionTrue)

	p := f.pod(t, "web")
	now := metav1.Now()
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, ptr.To[int64](5)
	if _, err := client.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod deleted", 5*time.Second, func() (bool, string) { return f.pod(t, "web") == nil, "" })
	if netns.Exists(info.Netns) {
		t.Error("sandbox namespace left after deletion")
	}
	if topo.Pod("default/web") != nil {
		t.Error("topology still has the pod")
	}
}
