package sim

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

// Node loss on three nodes with a 3-replica Deployment (one pod per node,
// the scheduler spreading by pod count): node3 lost, then deleted.
func TestNodeLoss(t *testing.T) {
	c, _ := newCluster(t, 3)
	mustApply(t, c, makeDeployment("default", "web", 3), makeService("default", "web"))
	onNode := map[string]string{}
	for _, p := range podsOf(c, "deployment/web") {
		onNode[p.Node] = p.Key()
	}
	require.Len(t, onNode, 3, "one pod per node")
	readyIPs := func(node string) []string {
		var ips []string
		for _, s := range c.NodeState(node).Services {
			for _, e := range s.Endpoints {
				ips = append(ips, e.IP.String())
			}
		}
		return ips
	}
	require.Len(t, readyIPs("node1"), 3)

	require.NoError(t, c.SetNodeReady("node3", false))
	require.True(t, c.NodeLost("node3"))
	o, err := c.Get("node", "", "node3")
	require.NoError(t, err)
	n := o.(*corev1.Node)
	require.Equal(t, corev1.ConditionUnknown, n.Status.Conditions[0].Status)
	require.Len(t, n.Spec.Taints, 2)
	require.Equal(t, corev1.TaintNodeUnreachable, n.Spec.Taints[0].Key)
	for _, p := range podsOf(c, "deployment/web") {
		require.Equal(t, p.Node != "node3", p.Ready, "pod %s on %s", p.Name, p.Node)
	}
	require.Len(t, readyIPs("node1"), 2, "node3's endpoint is not ready")
	gen := c.Generation()
	require.NoError(t, c.SetNodeReady("node3", false), "twice is a no-op")
	require.Equal(t, gen, c.Generation())
	// Nothing new is scheduled on it.
	require.NoError(t, c.Scale("deployment", "default", "web", 5))
	for _, p := range podsOf(c, "deployment/web") {
		if p.Key() != onNode["node3"] {
			require.NotEqual(t, "node3", p.Node, "pod %s scheduled on a lost node", p.Name)
		}
	}
	require.NoError(t, c.Scale("deployment", "default", "web", 3))

	require.NoError(t, c.DeleteNode("node3"))
	_, err = c.Get("node", "", "node3")
	require.Error(t, err)
	require.Nil(t, c.NodeState("node3"))
	require.Len(t, c.Nodes(), 2)
	pods := podsOf(c, "deployment/web")
	require.Len(t, pods, 3, "the orphan is replaced")
	for _, p := range pods {
		require.NotEqual(t, "node3", p.Node)
		require.True(t, p.Ready)
		require.NotEqual(t, onNode["node3"], p.Key(), "the orphan is deleted")
	}
	require.Len(t, readyIPs("node1"), 3)
	require.Error(t, c.DeleteNode("node3"))
	require.NoError(t, c.DeleteNode("node2"))
	require.Error(t, c.DeleteNode("node1"), "the last node stays")
}

// A lost node that comes back is ready again, with its pods.
func TestNodeBack(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c, makeDeployment("default", "web", 2), makeService("default", "web"))
	require.NoError(t, c.SetNodeReady("node2", false))
	require.NoError(t, c.SetNodeReady("node2", true))
	require.False(t, c.NodeLost("node2"))
	for _, p := range podsOf(c, "deployment/web") {
		require.True(t, p.Ready, "pod %s", p.Name)
	}
	o, err := c.Get("node", "", "node2")
	require.NoError(t, err)
	require.Equal(t, corev1.ConditionTrue, o.(*corev1.Node).Status.Conditions[0].Status)
	require.Empty(t, o.(*corev1.Node).Spec.Taints)
	require.Error(t, c.SetNodeReady("node9", false))
}
