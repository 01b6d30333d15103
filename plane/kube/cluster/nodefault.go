package cluster

import (
	"context"
	"errors"
	"fmt"
)

// ErrNodeFaults is returned by the node fault hooks on the kubernetes
// plane, which does not have them yet: a lost node there is noticed by the
// genuine node lifecycle controller only after --node-monitor-grace-period
// (tens of seconds by default), which the plane would have to shorten for a
// scenario, and the kubelet of the node would have to stop renewing its
// Lease once its link is cut (issue #19).
var ErrNodeFaults = errors.New("node faults (NodeDown, NodeUp, RemoveNode) are not implemented on the kubernetes plane yet")

// NodeDown implements plane.Plane: not yet (ErrNodeFaults).
func (c *Cluster) NodeDown(_ context.Context, node string) error {
	return fmt.Errorf("node %s down: %w", node, ErrNodeFaults)
}

// NodeUp implements plane.Plane: not yet (ErrNodeFaults).
func (c *Cluster) NodeUp(_ context.Context, node string) error {
	return fmt.Errorf("node %s up: %w", node, ErrNodeFaults)
}

// RemoveNode implements plane.Plane: not yet (ErrNodeFaults).
func (c *Cluster) RemoveNode(_ context.Context, node string) error {
	return fmt.Errorf("remove node %s: %w", node, ErrNodeFaults)
}
