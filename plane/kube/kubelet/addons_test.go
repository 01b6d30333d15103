package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/topology"
)

type recordedInstance struct {
	mu      sync.Mutex
	env     *addons.Env
	stopped bool
}

func (r *recordedInstance) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	return nil
}

func TestRegistryWorkload(t *testing.T) {
	rec := &recordedInstance{}
	reg := addons.NewRegistry()
	if err := reg.Register("example.com/dns", addons.Workload{
		Name: "dns",
		Ports: func(sim.Pod, sim.Container) []topology.Port {
			return []topology.Port{{Port: 53, Protocol: "UDP"}, {Port: 53, Protocol: "TCP"}}
		},
		Start: func(_ context.Context, env addons.Env) (addons.Instance, error) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.env = &env
			return rec, nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Selector: map[string]string{"app": "getip"}, Ports: []corev1.ServicePort{
			{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(53), Protocol: corev1.ProtocolUDP},
			{Name: "metrics", Port: 9153, TargetPort: intstr.FromInt32(9153), Protocol: corev1.ProtocolTCP},
		}}}
	f := start(t, svc)
	f.k.cfg.Workloads = Registry(reg)
	f.k.cfg.WorkloadDir = filepath.Join(t.TempDir(), "workloads")
	p := makePod("dns", func(p *corev1.Pod) {
		p.Spec.Containers[0].Image = "example.com/dns:1.0"
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: "busybox"})
	})
	ctx := context.Background()
	if _, err := f.client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitReady(t, "dns", corev1.ConditionTrue)
	sb := f.net.sandbox("default/dns")
	// Port 53 is the DNS workload's; the sidecar's built-in servers take
	// the other targetPort.
	if want := []topology.Port{{Port: 9153, Protocol: "TCP"}}; !slices.Equal(sb.spec.Ports, want) {
		t.Errorf("built-in server ports %v, want %v", sb.spec.Ports, want)
	}
	rec.mu.Lock()
	env := rec.env
	rec.mu.Unlock()
	if env == nil || env.Pod.IP.String() != "10.244.1.2" || env.Pod.Name != "dns" || env.Container != 0 || env.Client == nil {
		t.Fatalf("workload env %+v", env)
	}
	// Its own directory, as the embedded plane names it, made before it
	// starts and removed with the pod.
	if want := filepath.Join(f.k.cfg.WorkloadDir, "default_dns_getip"); env.Dir != want {
		t.Errorf("workload dir %q, want %q", env.Dir, want)
	}
	if st, err := os.Stat(env.Dir); err != nil || !st.IsDir() {
		t.Errorf("workload dir %s: %v", env.Dir, err)
	}
	got := f.pod(t, "dns")
	now := metav1.Now()
	got.DeletionTimestamp, got.DeletionGracePeriodSeconds = &now, ptr.To[int64](1)
	if _, err := f.client.CoreV1().Pods("default").Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "workload stopped", 3*time.Second, func() (bool, string) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.stopped, ""
	})
	eventually(t, "workload dir removed", 3*time.Second, func() (bool, string) {
		_, err := os.Stat(env.Dir)
		return os.IsNotExist(err), fmt.Sprint(err)
	})
}
