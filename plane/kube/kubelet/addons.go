package kubelet

import (
	"context"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/sim/state"
)

// Registry adapts the add-on registry to Config.Workloads: a container
// whose image has a workload with a Start of its own (cluster DNS for the
// kube-dns image, say) runs it in the pod's namespace with
// Config.WorkloadClient; every other image keeps the built-in servers.
func Registry(r *addons.Registry) func(pod *corev1.Pod, c *corev1.Container) (Workload, bool) {
	return func(pod *corev1.Pod, c *corev1.Container) (Workload, bool) {
		w := r.Lookup(c.Image)
		if w.Start == nil {
			return Workload{}, false
		}
		sp, sc := simPod(pod, netip.Addr{}), simContainer(c)
		return Workload{
			Name:   w.Name,
			Serves: w.Ports(sp, sc),
			Start: func(ctx context.Context, ct Container) (Instance, error) {
				idx := 0
				for i := range ct.Pod.Spec.Containers {
					if ct.Pod.Spec.Containers[i].Name == ct.Container.Name {
						idx = i
					}
				}
				return w.Start(ctx, addons.Env{Pod: simPod(ct.Pod, ct.IP), Container: idx, NS: ct.Sandbox.Netns(),
					Client: ct.Client, Gateway: ct.Gateway, Log: ct.Log, Dir: ct.Dir, OnStart: ct.OnStart, OnExit: ct.OnExit})
			},
		}, true
	}
}

func simContainer(c *corev1.Container) sim.Container {
	out := sim.Container{Name: c.Name, Image: c.Image}
	for _, p := range c.Ports {
		proto := state.Protocol(p.Protocol)
		if proto == "" {
			proto = state.TCP
		}
		out.Ports = append(out.Ports, sim.ContainerPort{Name: p.Name, Port: p.ContainerPort, Protocol: proto})
	}
	return out
}

// simPod is the add-on seam's view of an API pod.
func simPod(p *corev1.Pod, ip netip.Addr) sim.Pod {
	out := sim.Pod{Namespace: p.Namespace, Name: p.Name, Node: p.Spec.NodeName, IP: ip, HostNetwork: p.Spec.HostNetwork,
		Labels: p.Labels, Created: p.CreationTimestamp.Time}
	if out.Created.IsZero() {
		out.Created = time.Now()
	}
	for i := range p.Spec.Containers {
		c := simContainer(&p.Spec.Containers[i])
		out.Containers = append(out.Containers, c)
		out.Ports = append(out.Ports, c.Ports...)
	}
	if ref := metav1.GetControllerOf(p); ref != nil {
		out.Owner = strings.ToLower(ref.Kind) + "/" + ref.Name
	}
	return out
}
