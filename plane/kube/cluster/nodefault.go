package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/svcsim/svcsim/internal/netns"
)

// NodeDown implements plane.Plane: the node's link to the underlay is cut,
// so its kubelet can no longer renew its Lease nor kube-proxy reach the API
// server; the genuine node lifecycle controller then marks the Node's
// Ready condition Unknown and its pods not ready (after
// Options.NodeMonitorGracePeriod, 50 s by default), and the other nodes'
// kube-proxies drop their endpoints. It returns once the API shows both.
func (c *Cluster) NodeDown(ctx context.Context, node string) error {
	if err := c.topo.SetNodeLink(node, false); err != nil {
		return err
	}
	c.proxyMu.Lock()
	c.lost[node] = true
	c.proxyMu.Unlock()
	return poll(ctx, 200*time.Millisecond, "node "+node+" and its pods marked not ready", func() (bool, string, error) {
		return c.nodeReadiness(ctx, node, false)
	})
}

// NodeUp implements plane.Plane: the link is restored; the kubelet renews
// its Lease and posts its status again, the node turns Ready and its pods
// ready. It returns once the API shows both.
func (c *Cluster) NodeUp(ctx context.Context, node string) error {
	if err := c.topo.SetNodeLink(node, true); err != nil {
		return err
	}
	err := poll(ctx, 200*time.Millisecond, "node "+node+" and its pods ready again", func() (bool, string, error) {
		return c.nodeReadiness(ctx, node, true)
	})
	if err == nil {
		c.proxyMu.Lock()
		delete(c.lost, node)
		c.proxyMu.Unlock()
	}
	return err
}

// podsOn lists the pods bound to node.
func (c *Cluster) podsOn(ctx context.Context, node string) (*corev1.PodList, error) {
	return c.admin.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
}

// nodeReadiness reports whether node's Ready condition and the Ready
// condition of every running pod on it are all ready (want true) or all
// not (want false), and if not, what differs.
func (c *Cluster) nodeReadiness(ctx context.Context, node string, want bool) (bool, string, error) {
	n, err := c.admin.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return false, err.Error(), nil
	}
	ready := false
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			ready = cond.Status == corev1.ConditionTrue
		}
	}
	if ready != want {
		return false, fmt.Sprintf("node %s ready=%v", node, ready), nil
	}
	pods, err := c.podsOn(ctx, node)
	if err != nil {
		return false, err.Error(), nil
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && podReady(p) != want {
			return false, fmt.Sprintf("pod %s/%s ready=%v", p.Namespace, p.Name, !want), nil
		}
	}
	return true, "", nil
}

// RemoveNode implements plane.Plane: the node's kube-proxy is killed (a
// dead host cleans nothing up), its kubelet closed (its pods' sandboxes
// torn down), its namespace removed and the Node deleted; the genuine pod
// garbage collector then deletes the pods still bound to it (after its 40 s
// quarantine of orphans) and their ReplicaSets replace them elsewhere. It
// returns once no pod is bound to the node any more.
//
// One thing a powered-off host would not do: a lost node's link comes back
// while its processes close their connections, and RemoveNode waits until
// the API server holds none from the node or its pods (CoreDNS's, say), so
// the API server is not left writing to peers that vanished (it would then
// wait out its shutdown timeout on them when the plane stops).
func (c *Cluster) RemoveNode(ctx context.Context, node string) error {
	n := c.topo.Node(node)
	if n == nil {
		return fmt.Errorf("remove node %q: no such node", node)
	}
	var errs []error
	c.proxyMu.Lock()
	p := c.proxies[node]
	delete(c.proxies, node)
	wasLost := c.lost[node]
	delete(c.lost, node)
	c.proxyMu.Unlock()
	if p != nil {
		errs = append(errs, p.kill())
	}
	if wasLost {
		errs = append(errs, c.topo.SetNodeLink(node, true))
	}
	for i, k := range c.kubelets {
		if k.NodeName() == node {
			errs = append(errs, k.Close())
			c.kubelets = append(c.kubelets[:i:i], c.kubelets[i+1:]...)
			break
		}
	}
	if conns := c.kubeletConns[node]; conns != nil {
		conns.closeAll()
	}
	fromNode := func(a netip.Addr) bool { return a == n.IP || n.PodCIDR.Contains(a) }
	errs = append(errs, poll(ctx, 100*time.Millisecond, "the API server's connections from node "+node+" to close", func() (bool, string, error) {
		k, err := openTCPFrom(c.topo.ControlPlane(), fromNode)
		return err == nil && k == 0, fmt.Sprintf("%d open (%v)", k, err), nil
	}))
	errs = append(errs, c.topo.RemoveNode(ctx, node))
	if err := c.admin.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete Node %s: %w", node, err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove node %s: %w", node, err)
	}
	return poll(ctx, 500*time.Millisecond, "the pods of removed node "+node+" to be deleted", func() (bool, string, error) {
		pods, err := c.podsOn(ctx, node)
		if err != nil {
			return false, err.Error(), nil
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pods left", len(pods.Items)), nil
	})
}

// openTCPFrom counts the TCP sockets in ns (IPv4 and IPv6 tables: the API
// server's are v4-mapped) whose peer matches and that are not yet closed
// (every state but TIME_WAIT and CLOSE).
func openTCPFrom(ns *netns.NS, peer func(netip.Addr) bool) (int, error) {
	var tables [2][]byte
	if err := ns.Do(func() error {
		for i, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			tables[i] = b
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("read %s's TCP tables: %w", ns.Name(), err)
	}
	return countTCP(string(tables[0]), peer) + countTCP(string(tables[1]), peer), nil
}

// countTCP counts the rows of a /proc/net/tcp or tcp6 table whose remote
// address matches, in a state other than TIME_WAIT (06) and CLOSE (07).
// The kernel prints addresses as 32-bit words in host (little-endian)
// order; a v4-mapped IPv6 address counts as its IPv4 address.
func countTCP(table string, peer func(netip.Addr) bool) int {
	k := 0
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] == "06" || f[3] == "07" {
			continue
		}
		hexAddr, _, _ := strings.Cut(f[2], ":")
		if a, ok := procAddr(hexAddr); ok && peer(a) {
			k++
		}
	}
	return k
}

// procAddr decodes an address of /proc/net/tcp{,6}: 8 or 32 hex digits,
// each group of 8 one little-endian 32-bit word.
func procAddr(h string) (netip.Addr, bool) {
	if len(h) != 8 && len(h) != 32 {
		return netip.Addr{}, false
	}
	b := make([]byte, len(h)/2)
	for w := 0; w < len(h)/8; w++ {
		for i := 0; i < 4; i++ {
			var v byte
			if _, err := fmt.Sscanf(h[w*8+(3-i)*2:w*8+(3-i)*2+2], "%02X", &v); err != nil {
				return netip.Addr{}, false
			}
			b[w*4+i] = v
		}
	}
	a, ok := netip.AddrFromSlice(b)
	return a.Unmap(), ok
}
