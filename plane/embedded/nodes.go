package embedded

import (
	"context"
	"errors"
	"fmt"
)

// NodeDown implements plane.Plane: the node's underlay link is cut, the
// model marks it lost (its pods not ready, so their endpoints go), and its
// proxy, still running, is pushed nothing more.
func (cp *ControlPlane) NodeDown(_ context.Context, node string) error {
	cp.recMu.Lock()
	defer cp.recMu.Unlock()
	if err := cp.topo.SetNodeLink(node, false); err != nil {
		return err
	}
	cp.lost[node] = true
	return cp.change(func() error { return cp.cluster.SetNodeReady(node, false) })
}

// NodeUp implements plane.Plane: the link is restored, the node and its
// pods are ready again, and its proxy gets the current state.
func (cp *ControlPlane) NodeUp(_ context.Context, node string) error {
	cp.recMu.Lock()
	defer cp.recMu.Unlock()
	if err := cp.topo.SetNodeLink(node, true); err != nil {
		return err
	}
	delete(cp.lost, node)
	cp.progMu.Lock()
	delete(cp.lastSync, node)
	cp.programmed = 0 // the node's proxy missed every change meanwhile
	cp.progMu.Unlock()
	return cp.change(func() error { return cp.cluster.SetNodeReady(node, true) })
}

// RemoveNode implements plane.Plane: the node's proxy is killed (a dead
// host cleans nothing up), its pods' workloads stopped, its namespace and
// pods removed from the topology; then the model deletes the Node, whose
// pods' workloads replace them elsewhere.
func (cp *ControlPlane) RemoveNode(ctx context.Context, node string) error {
	cp.recMu.Lock()
	defer cp.recMu.Unlock()
	if cp.topo.Node(node) == nil {
		return fmt.Errorf("remove node %q: no such node", node)
	}
	var errs []error
	if p := cp.proxies[node]; p != nil {
		delete(cp.proxies, node)
		errs = append(errs, p.Kill())
	}
	delete(cp.lost, node)
	cp.progMu.Lock()
	delete(cp.lastSync, node)
	cp.progMu.Unlock()
	for _, p := range cp.topo.Pods() {
		if p.Node == node {
			errs = append(errs, cp.stopWorkloads(p.Name))
		}
	}
	errs = append(errs, cp.topo.RemoveNode(ctx, node))
	errs = append(errs, cp.change(func() error { return cp.cluster.DeleteNode(node) }))
	return errors.Join(errs...)
}
