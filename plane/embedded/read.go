package embedded

import (
	"context"
	"fmt"
	"io"
	"net/netip"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/sim/kubeview"
	"github.com/svcsim/svcsim/sim/podfiles"
	"github.com/svcsim/svcsim/sim/printer"
	"github.com/svcsim/svcsim/topology"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// Get implements plane.Plane.
func (cp *ControlPlane) Get(_ context.Context, r plane.Ref) (runtime.Object, error) {
	return cp.cluster.Get(r.Kind, r.Namespace, r.Name)
}

// List implements plane.Plane.
func (cp *ControlPlane) List(_ context.Context, kind, namespace, selector string) ([]runtime.Object, error) {
	k, err := sim.CanonicalKind(kind)
	if err != nil {
		return nil, err
	}
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, fmt.Errorf("parse selector %q: %w", selector, err)
	}
	if namespace == "" {
		namespace = "default"
	}
	all, ok := kubeview.List(cp.cluster, k)
	if !ok {
		return nil, fmt.Errorf("list %s: not supported by the embedded plane", kind)
	}
	clusterScoped := k == "Namespace" || k == "Node"
	out := all[:0]
	for _, o := range all {
		m, err := meta.Accessor(o)
		if err != nil {
			return nil, err
		}
		if (clusterScoped || m.GetNamespace() == namespace) && sel.Matches(labels.Set(m.GetLabels())) {
			out = append(out, o)
		}
	}
	return out, nil
}

// Nodes implements plane.Plane.
func (cp *ControlPlane) Nodes() []plane.Node {
	var out []plane.Node
	for _, n := range cp.topo.Nodes() {
		out = append(out, plane.Node{Name: n.Name, IP: n.IP, Gateway: n.Gateway, NS: n.NS})
	}
	return out
}

// Pods implements plane.Plane: the model's pods that the reconciler has
// created in the topology.
func (cp *ControlPlane) Pods(_ context.Context, namespace string) ([]plane.Pod, error) {
	var out []plane.Pod
	for _, p := range cp.cluster.Pods() {
		if namespace != "" && p.Namespace != namespace {
			continue
		}
		tp := cp.topo.Pod(p.Key())
		if tp == nil || tp.IP != p.IP {
			continue // not made yet, or an older pod of that name
		}
		out = append(out, plane.Pod{Namespace: p.Namespace, Name: p.Name, Node: p.Node, IP: p.IP,
			HostNetwork: p.HostNetwork, Ready: p.Ready, Labels: p.Labels, NS: tp.NS})
	}
	return out, nil
}

// Target implements plane.Plane.
func (cp *ControlPlane) Target(_ context.Context, namespace, name string) (plane.Target, error) {
	if name == plane.ExternalTarget {
		return plane.Target{Name: name, NS: cp.topo.External()}, nil
	}
	if n := cp.topo.Node(name); n != nil {
		return plane.Target{Name: name, NS: n.NS}, nil
	}
	if namespace == "" {
		namespace = "default"
	}
	p := cp.topo.Pod(namespace + "/" + name)
	if p == nil {
		return plane.Target{}, fmt.Errorf("no pod, node or %q named %q (namespace %q)", plane.ExternalTarget, name, namespace)
	}
	t := plane.Target{Name: namespace + "/" + name, NS: p.NS}
	for _, e := range cp.cluster.PodEnv(namespace, name) {
		t.Env = append(t.Env, e.Name+"="+e.Value)
	}
	// The files the kubelet would write for the pod (package sim/podfiles,
	// as the kubernetes plane's kubelet writes them).
	if o, err := cp.cluster.Get("pod", namespace, name); err == nil {
		pod := o.(*corev1.Pod)
		domain := cp.cluster.Config().DNSDomain
		t.ResolvConf = podfiles.ResolvConf(pod, podfiles.DNS{ClusterDNS: netip.MustParseAddr(DNSServiceIP), ClusterDomain: domain})
		t.Hosts = podfiles.Hosts(pod, p.IP.String(), pod.Spec.NodeName, domain)
	}
	return t, nil
}

// AddHost implements plane.Plane.
func (cp *ControlPlane) AddHost(ctx context.Context, name string, ip netip.Addr, ports []topology.Port) (*netns.NS, error) {
	return cp.topo.AddHost(ctx, name, ip, ports)
}

// RemoveHost implements plane.Plane.
func (cp *ControlPlane) RemoveHost(ctx context.Context, name string) error {
	return cp.topo.RemoveHost(ctx, name)
}

// StopPodServers implements plane.Plane.
func (cp *ControlPlane) StopPodServers(_ context.Context, namespace, name string) error {
	if namespace == "" {
		namespace = "default"
	}
	p := cp.topo.Pod(namespace + "/" + name)
	if p == nil {
		return fmt.Errorf("no running pod %s/%s", namespace, name)
	}
	return p.StopServers()
}

// Print writes the model's objects as kubectl get does (daemon.Printer).
func (cp *ControlPlane) Print(w io.Writer, r printer.Request) error {
	return printer.Print(w, cp.cluster, r)
}
