package sim

import (
	"net/netip"

	"github.com/svcsim/svcsim/sim/state"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeState returns the desired state of node's proxy: every Service port
// with a ClusterIP (not headless, not ExternalName) and its ready
// endpoints. The value is fresh, sorted and never changed afterwards. It
// returns nil for an unknown node.
func (c *Cluster) NodeState(node string) *state.NodeState {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[node]
	if !ok {
		return nil
	}
	ns := &state.NodeState{
		Node:        node,
		Generation:  c.st.Generation,
		NodeIPs:     []netip.Addr{n.IP},
		PodCIDR:     n.PodCIDR,
		ClusterCIDR: c.cfg.ClusterCIDR,
		ServiceCIDR: c.cfg.ServiceCIDR,
		Services:    []state.ServicePort{},
	}
	for _, k := range sortedKeys(c.st.Services) {
		svc := c.st.Services[k]
		ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue // headless or ExternalName: nothing to proxy
		}
		var extIPs []netip.Addr
		for _, s := range svc.Spec.ExternalIPs {
			if a, err := netip.ParseAddr(s); err == nil {
				extIPs = append(extIPs, a)
			}
		}
		ep := c.st.Endpoints[k]
		for _, p := range svc.Spec.Ports {
			sp := state.ServicePort{
				Namespace:   svc.Namespace,
				Name:        svc.Name,
				PortName:    p.Name,
				Protocol:    state.Protocol(p.Protocol),
				ClusterIP:   ip,
				Port:        p.Port,
				NodePort:    p.NodePort,
				ExternalIPs: extIPs,
				Scheduler:   svc.Annotations[SchedulerAnnotation],
				Endpoints:   []state.Endpoint{},
			}
			if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
				sp.SessionAffinity = true
				sp.AffinityTimeout = state.DefaultAffinityTimeout
				if cfg := svc.Spec.SessionAffinityConfig; cfg != nil && cfg.ClientIP != nil && cfg.ClientIP.TimeoutSeconds != nil {
					sp.AffinityTimeout = *cfg.ClientIP.TimeoutSeconds
				}
			}
			if ep != nil {
				sp.Endpoints = endpointsFor(ep, p)
			}
			ns.Services = append(ns.Services, sp)
		}
	}
	ns.Sort()
	return ns
}

// endpointsFor lists the ready addresses of the Endpoints port that
// matches the Service port (by name, as kube-proxy does).
func endpointsFor(ep *corev1.Endpoints, p corev1.ServicePort) []state.Endpoint {
	out := []state.Endpoint{}
	seen := map[state.Endpoint]bool{}
	for _, ss := range ep.Subsets {
		for _, epp := range ss.Ports {
			proto := epp.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			if epp.Name != p.Name || proto != p.Protocol {
				continue
			}
			for _, a := range ss.Addresses {
				ip, err := netip.ParseAddr(a.IP)
				if err != nil || !ip.Is4() {
					continue
				}
				e := state.Endpoint{IP: ip, Port: epp.Port}
				if a.NodeName != nil {
					e.Node = *a.NodeName
				}
				if a.TargetRef != nil && a.TargetRef.Kind == "Pod" {
					e.Pod = a.TargetRef.Name
				}
				if !seen[e] {
					seen[e] = true
					out = append(out, e)
				}
			}
		}
	}
	return out
}

// nodeObject renders a node as the API would show it. Called with mu held.
func (c *Cluster) nodeObject(n NodeConfig) corev1.Node {
	ts := metav1.NewTime(c.created)
	node := corev1.Node{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name, Labels: copyLabels(c.st.NodeLabels[n.Name]), CreationTimestamp: ts,
		},
		Spec: corev1.NodeSpec{PodCIDR: n.PodCIDR.String(), PodCIDRs: []string{n.PodCIDR.String()}},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: n.IP.String()},
				{Type: corev1.NodeHostName, Address: n.Name},
			},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
				Reason: "KubeletReady", Message: "svcsim node is ready", LastTransitionTime: ts, LastHeartbeatTime: ts}},
			Capacity: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110")},
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion:          KubernetesVersion,
				KubeProxyVersion:        KubernetesVersion,
				OSImage:                 "svcsim",
				KernelVersion:           "host",
				ContainerRuntimeVersion: "svcsim://netns",
				OperatingSystem:         "linux",
				Architecture:            "amd64",
			},
		},
	}
	return node
}

// KubernetesVersion is the version svcsim's nodes report.
const KubernetesVersion = "v1.37.2-svcsim"
