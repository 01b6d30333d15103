package sim

import (
	"github.com/svcsim/svcsim/sim/desired"
	"github.com/svcsim/svcsim/sim/state"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeState returns the desired state of node's proxy, derived from the
// cluster's Services, EndpointSlices and the node by desired.NodeState,
// as kube-proxy derives it: every Service port with a ClusterIP (not
// headless, not ExternalName), its ready endpoints and its not-ready ones.
// The value is fresh, sorted and never changed afterwards. It returns nil
// for an unknown node.
func (c *Cluster) NodeState(node string) *state.NodeState {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[node]
	if !ok {
		return nil
	}
	nodeObj := c.nodeObject(*n)
	svcs := make([]*corev1.Service, 0, len(c.st.Services))
	for _, k := range sortedKeys(c.st.Services) {
		svcs = append(svcs, c.st.Services[k])
	}
	slices := make([]*discoveryv1.EndpointSlice, 0, len(c.st.EndpointSlices))
	for _, k := range sortedKeys(c.st.EndpointSlices) {
		slices = append(slices, c.st.EndpointSlices[k])
	}
	return desired.NodeState(&nodeObj, svcs, slices, desired.Options{
		ClusterCIDR: c.cfg.ClusterCIDR, ServiceCIDR: c.cfg.ServiceCIDR, Generation: c.st.Generation,
	})
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
	if since, lost := c.st.NodeLost[n.Name]; lost {
		lostNode(&node, since)
	}
	return node
}

// KubernetesVersion is the version svcsim's nodes report.
const KubernetesVersion = "v1.37.2-svcsim"
