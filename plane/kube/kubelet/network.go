package kubelet

import (
	"context"
	"fmt"
	"net"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/topology"
)

// Network is the CNI seam: it makes and removes pod sandboxes (a network
// namespace with eth0 on the node's bridge, or the node's own namespace for
// hostNetwork pods) and the built-in servers in them. *TopologyNetwork is
// the real one; tests use a fake.
type Network interface {
	// AddPod builds the sandbox; the built-in servers listen on spec.Ports.
	AddPod(ctx context.Context, spec topology.PodSpec) (Sandbox, error)
	// RemovePod stops the servers and removes the sandbox.
	RemovePod(ctx context.Context, name string) error
}

// Sandbox is a pod's network as the kubelet uses it.
type Sandbox interface {
	// Netns is the pod's network namespace (the node's for hostNetwork
	// pods); nil in tests without one.
	Netns() *netns.NS
	// StopServers and StartServers stop and (re)start the built-in
	// servers, for liveness restarts and deletion.
	StopServers() error
	StartServers() error
	// SetPorts restarts the built-in servers on ports when they differ
	// from the current ones.
	SetPorts(ports []topology.Port) error
}

// TopologyNetwork builds sandboxes with package topology.
type TopologyNetwork struct {
	T *topology.Topology
}

var _ Network = (*TopologyNetwork)(nil)

// AddPod implements Network with topology.AddPod.
func (n *TopologyNetwork) AddPod(ctx context.Context, spec topology.PodSpec) (Sandbox, error) {
	p, err := n.T.AddPod(ctx, spec)
	if err != nil {
		return nil, err
	}
	return topoSandbox{n.T, p}, nil
}

// RemovePod implements Network with topology.RemovePod.
func (n *TopologyNetwork) RemovePod(ctx context.Context, name string) error {
	return n.T.RemovePod(ctx, name)
}

// NodeDialer dials from inside node's namespace, as the real kubelet's
// probes run from the node.
func (n *TopologyNetwork) NodeDialer(node string) (DialFunc, error) {
	nd := n.T.Node(node)
	if nd == nil {
		return nil, fmt.Errorf("no node %q in the topology", node)
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return topology.DialContext(ctx, nd.NS, network, addr)
	}, nil
}

type topoSandbox struct {
	t *topology.Topology
	p *topology.Pod
}

func (s topoSandbox) Netns() *netns.NS    { return s.p.NS }
func (s topoSandbox) StopServers() error  { return s.p.StopServers() }
func (s topoSandbox) StartServers() error { return s.p.StartServers() }
func (s topoSandbox) SetPorts(ports []topology.Port) error {
	return s.t.SetPodPorts(context.Background(), s.p.Name, ports)
}

// DialFunc opens a connection the way net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)
