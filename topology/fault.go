package topology

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// SetNodeLink cuts (up false) or restores node's link to the underlay: the
// underlay end of the node's eth0 veth is set down or up
// (`ip -n <run>-underlay link set n-<node> down`), so no frame crosses it
// either way, as with a pulled cable. The node's namespace, its pods and
// their processes keep running.
func (t *Topology) SetNodeLink(node string, up bool) error {
	t.ops.RLock()
	defer t.ops.RUnlock()
	if t.Node(node) == nil {
		return fmt.Errorf("set link of node %q: no such node", node)
	}
	h, err := handle(t.underlay)
	if err != nil {
		return err
	}
	defer h.Close()
	name := underlayVethName("n", node)
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", name, t.underlay.Name(), err)
	}
	if up {
		err = h.LinkSetUp(l)
	} else {
		err = h.LinkSetDown(l)
	}
	if err != nil {
		return fmt.Errorf("set %s in %s up=%v: %w", name, t.underlay.Name(), up, err)
	}
	return nil
}

// RemoveNode tears node down as a dying host goes: its pods are removed,
// every process inside its namespace is killed, its underlay veth and its
// namespace are deleted. The other nodes keep their routes to its pod CIDR
// (host-gw routes of a dead node stay until something removes them);
// they leave with the topology.
func (t *Topology) RemoveNode(ctx context.Context, node string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.ops.RLock()
	defer t.ops.RUnlock()
	t.mu.Lock()
	n := t.byName[node]
	if n == nil || t.closed {
		t.mu.Unlock()
		return fmt.Errorf("remove node %q: no such node", node)
	}
	var pods []*Pod
	for name, p := range t.pods {
		if p.Node == node {
			pods = append(pods, p)
			delete(t.pods, name)
		}
	}
	delete(t.byName, node)
	t.nodes = slices.DeleteFunc(t.nodes, func(m *Node) bool { return m == n })
	delete(t.ips, n.IP)
	t.mu.Unlock()

	var errs []error
	for _, p := range pods {
		errs = append(errs, t.dispose(p))
	}
	errs = append(errs, killInside(n.NS))
	errs = append(errs, deleteLink(t.underlay, underlayVethName("n", node)))
	// The namespace's removal stays among Build's undo steps too: deleting
	// it twice is harmless.
	errs = append(errs, n.NS.Delete())
	errs = append(errs, t.writeState())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove node %s: %w", node, err)
	}
	return nil
}
