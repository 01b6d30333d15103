package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/kube/kubelet"
	"github.com/svcsim/svcsim/topology"
)

func (c *Cluster) kubeletOf(node string) *kubelet.Kubelet {
	for _, k := range c.kubelets {
		if k.NodeName() == node {
			return k
		}
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Pods implements plane.Plane: the API's pods whose kubelet has built their
// sandbox.
func (c *Cluster) Pods(ctx context.Context, namespace string) ([]plane.Pod, error) {
	l, err := c.admin.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	var out []plane.Pod
	for i := range l.Items {
		p := &l.Items[i]
		k := c.kubeletOf(p.Spec.NodeName)
		if k == nil {
			continue
		}
		info, ok := k.Pod(p.Namespace, p.Name)
		if !ok || info.UID != p.UID {
			continue
		}
		tp := c.topo.Pod(p.Namespace + "/" + p.Name)
		if tp == nil {
			continue
		}
		out = append(out, plane.Pod{Namespace: p.Namespace, Name: p.Name, Node: p.Spec.NodeName, IP: info.IP,
			HostNetwork: p.Spec.HostNetwork, Ready: podReady(p), Labels: p.Labels, NS: tp.NS})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}

// Target implements plane.Plane: a pod's environment and resolv.conf are
// what its kubelet gave its first container.
func (c *Cluster) Target(ctx context.Context, namespace, name string) (plane.Target, error) {
	if name == plane.ExternalTarget {
		return plane.Target{Name: name, NS: c.topo.External()}, nil
	}
	if n := c.topo.Node(name); n != nil {
		return plane.Target{Name: name, NS: n.NS}, nil
	}
	namespace = namespaceOr(namespace)
	p, err := c.admin.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return plane.Target{}, fmt.Errorf("no pod, node or %q named %q (namespace %q): %w", plane.ExternalTarget, name, namespace, err)
	}
	k := c.kubeletOf(p.Spec.NodeName)
	var info kubelet.PodInfo
	ok := false
	if k != nil {
		info, ok = k.Pod(namespace, name)
	}
	tp := c.topo.Pod(namespace + "/" + name)
	if !ok || tp == nil {
		return plane.Target{}, fmt.Errorf("pod %s/%s is not running (phase %s)", namespace, name, p.Status.Phase)
	}
	t := plane.Target{Name: namespace + "/" + name, NS: tp.NS, Env: info.Env}
	for _, f := range []struct {
		path string
		into *string
	}{{info.ResolvConf, &t.ResolvConf}, {info.Hosts, &t.Hosts}} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return plane.Target{}, fmt.Errorf("pod %s/%s: %w", namespace, name, err)
		}
		*f.into = string(b)
	}
	return t, nil
}

// AddHost implements plane.Plane.
func (c *Cluster) AddHost(ctx context.Context, name string, ip netip.Addr, ports []topology.Port) (*netns.NS, error) {
	return c.topo.AddHost(ctx, name, ip, ports)
}

// RemoveHost implements plane.Plane.
func (c *Cluster) RemoveHost(ctx context.Context, name string) error {
	return c.topo.RemoveHost(ctx, name)
}

// StopPodServers implements plane.Plane. The pod's kubelet keeps probing
// it: a pod with a readiness probe goes unready, as on a real node.
func (c *Cluster) StopPodServers(_ context.Context, namespace, name string) error {
	p := c.topo.Pod(namespaceOr(namespace) + "/" + name)
	if p == nil {
		return fmt.Errorf("no running pod %s/%s", namespaceOr(namespace), name)
	}
	return p.StopServers()
}
