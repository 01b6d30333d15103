package sim

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Node loss, as the node lifecycle controller of kube-controller-manager
// handles it, with no grace period: the model has no kubelet heartbeat to
// miss, so the caller says when a node is lost (SetNodeReady) and when it is
// gone for good (DeleteNode).

// SetNodeReady marks node lost (ready false) or back. A lost node's Ready
// condition turns Unknown, it gets the unreachable taints (NoSchedule and
// NoExecute: the scheduler places no new pod on it), and every pod on it is
// marked not ready, so its endpoints stop being ready and the proxies drop
// them (the controller's MarkPodsNotReady). Back, the node is ready and its
// pods are ready again, as its kubelet would report them. The pods are not
// evicted: pods tolerate unreachable for 300 s by default; DeleteNode removes
// them.
func (c *Cluster) SetNodeReady(node string, ready bool) error {
	return c.change(func(t *txn) error {
		if _, ok := t.nodes[node]; !ok {
			return kinds["Node"].notFound(node)
		}
		if _, lost := t.s.NodeLost[node]; lost != ready {
			return nil // already so
		}
		if ready {
			delete(t.s.NodeLost, node)
		} else {
			if t.s.NodeLost == nil {
				t.s.NodeLost = map[string]metav1.Time{}
			}
			t.s.NodeLost[node] = metav1.NewTime(t.now)
		}
		for _, p := range t.s.Pods {
			if p.Spec.NodeName == node && p.Status.PodIP != "" && podReady(p) != ready {
				setPodReady(p, ready, t.now)
				p.ResourceVersion = t.s.nextRV()
			}
		}
		return nil
	})
}

// NodeLost reports whether node is marked lost (SetNodeReady false).
func (c *Cluster) NodeLost(node string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, lost := c.st.NodeLost[node]
	return lost
}

// DeleteNode removes node from the cluster, as a cloud's node controller
// deletes the Node of a machine that is gone: the pod garbage collector
// deletes the pods bound to it (orphaned pods), and their workloads replace
// them on the remaining nodes. The last node cannot be deleted.
func (c *Cluster) DeleteNode(node string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.nodes[node]; !ok {
		return kinds["Node"].notFound(node)
	}
	if len(c.nodes) == 1 {
		return fmt.Errorf("svcsim: node %q is the cluster's last node and cannot be deleted", node)
	}
	cfg := c.cfg
	cfg.Nodes = nil
	for _, n := range c.cfg.Nodes {
		if n.Name != node {
			cfg.Nodes = append(cfg.Nodes, n)
		}
	}
	nodes := make(map[string]*NodeConfig, len(cfg.Nodes))
	for i := range cfg.Nodes {
		nodes[cfg.Nodes[i].Name] = &cfg.Nodes[i]
	}
	t := &txn{cfg: &cfg, nodes: nodes, s: c.st.clone(), now: c.cfg.now()}
	var orphans []string
	for k, p := range t.s.Pods {
		if p.Spec.NodeName == node {
			orphans = append(orphans, k)
		}
	}
	sort.Strings(orphans)
	for _, k := range orphans {
		p := t.s.Pods[k]
		t.delete("Pod", p.Namespace, p.Name)
	}
	delete(t.s.NodeLabels, node)
	delete(t.s.NodeLost, node)
	delete(t.s.LastIP, node)
	if err := c.commit(t); err != nil {
		return err
	}
	c.cfg, c.nodes = cfg, nodes
	return nil
}

// lostNode renders a lost node's Ready condition and taints onto n.
func lostNode(n *corev1.Node, since metav1.Time) {
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown,
		Reason: "NodeStatusUnknown", Message: "Kubelet stopped posting node status.",
		LastTransitionTime: since, LastHeartbeatTime: n.Status.Conditions[0].LastHeartbeatTime}}
	n.Spec.Taints = []corev1.Taint{
		{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule, TimeAdded: &since},
		{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &since},
	}
}
