package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
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
	pods, err := c.admin.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
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
// One thing a powered-off host would not do: before its namespace goes, a
// lost node's link comes back for the moment its closed connections need
// to say goodbye, so the API server is not left writing to peers that
// vanished (it would then wait out its 60 s shutdown timeout on them).
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
		if err := syscall.Kill(p.PID(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill kube-proxy on %s: %w", node, err))
		}
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("kube-proxy on %s (pid %d) survived SIGKILL for 10s", node, p.PID()))
		}
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
	if wasLost {
		errs = append(errs, c.topo.SetNodeLink(node, true))
		apiIP := c.topo.Spec().ControlPlaneIP
		errs = append(errs, poll(ctx, 100*time.Millisecond, "node "+node+"'s connections to the API server to close", func() (bool, string, error) {
			k, err := openTCPTo(n.NS, apiIP)
			return err == nil && k == 0, fmt.Sprintf("%d open (%v)", k, err), nil
		}))
	}
	errs = append(errs, c.topo.RemoveNode(ctx, node))
	if err := c.admin.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete Node %s: %w", node, err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove node %s: %w", node, err)
	}
	return poll(ctx, 500*time.Millisecond, "the pods of removed node "+node+" to be deleted", func() (bool, string, error) {
		pods, err := c.admin.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
		if err != nil {
			return false, err.Error(), nil
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d pods left", len(pods.Items)), nil
	})
}

// openTCPTo counts the TCP sockets in ns whose peer is ip and that still
// wait for that peer (every state but TIME_WAIT and CLOSE), from the
// namespace's /proc/net/tcp.
func openTCPTo(ns *netns.NS, ip netip.Addr) (int, error) {
	var table []byte
	if err := ns.Do(func() (err error) {
		table, err = os.ReadFile("/proc/thread-self/net/tcp")
		return err
	}); err != nil {
		return 0, fmt.Errorf("read %s's TCP table: %w", ns.Name(), err)
	}
	return countTCPTo(string(table), ip), nil
}

// countTCPTo counts the rows of a /proc/net/tcp table whose remote address
// is ip in a state other than TIME_WAIT (06) and CLOSE (07).
func countTCPTo(table string, ip netip.Addr) int {
	b := ip.As4()
	want := fmt.Sprintf("%02X%02X%02X%02X:", b[3], b[2], b[1], b[0]) // little-endian, as the kernel prints it
	k := 0
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasPrefix(f[2], want) && f[3] != "06" && f[3] != "07" {
			k++
		}
	}
	return k
}
