package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/svcsim/svcsim/modes/agent"
	"github.com/svcsim/svcsim/modes/kubeproxy"
	"github.com/svcsim/svcsim/sim/desired"
	"github.com/svcsim/svcsim/sim/feed"
	"github.com/svcsim/svcsim/sim/state"
)

// svcsim's own node proxy on this plane: on each node the node proxy of
// modes/agent (the svcsim binary re-executed in the node's namespace, as
// the embedded plane starts it) and a feed (sim/feed) in this process that
// watches the genuine API server from the node's namespace with
// kube-proxy's identity and pushes the node's state to it over its socket
// (PUT /v1/state) whenever Services, EndpointSlices or the Node change. The
// barrier needs no dump: a push returns once the node proxy has
// programmed, so the last pushed state is what the node holds.

// agentProc is what the plane uses of a running node proxy (agent.Process).
type agentProc interface {
	Push(ctx context.Context, st *state.NodeState) (agent.SyncReply, error)
	Dump(ctx context.Context) (string, error)
	Stop(timeout time.Duration) error
	Kill() error
}

// feedStopWait bounds the wait for a feed to end once cancelled.
const feedStopWait = 10 * time.Second

// ownKind starts svcsim's node proxy of datapath mode with its feed; its
// seams are the cluster's methods (fakes in the unit test).
type ownKind struct {
	c    *Cluster
	mode string
	// startAgent starts the node proxy on node.
	startAgent func(ctx context.Context, node, mode string) (agentProc, error)
	// runFeed feeds push with node's state until ctx ends.
	runFeed func(ctx context.Context, node string, push func(context.Context, *state.NodeState) error) error
	// leftovers is the datapath's one-shot cleanup on node
	// (agent.CleanupLeftovers), after a killed node proxy (nil: the
	// cluster's).
	leftovers func(ctx context.Context, node, mode string) error
}

func (k *ownKind) start(ctx context.Context, node string) (nodeProxy, error) {
	a, err := k.startAgent(ctx, node, k.mode)
	if err != nil {
		return nil, err
	}
	// The feed lives until the proxy is stopped or killed, not as long
	// as the call that started it.
	fctx, cancel := context.WithCancel(context.Background())
	p := &ownProxy{node: node, agent: a, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		err := k.runFeed(fctx, node, p.push)
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		p.mu.Lock()
		p.feedErr = err
		p.mu.Unlock()
	}()
	return p, nil
}

// cleanup: a node proxy stopped in order removed its rules itself; after a
// killed one the datapath's one-shot cleanup removes what it left.
func (k *ownKind) cleanup(ctx context.Context, node string, stopped bool) error {
	if stopped {
		return nil
	}
	leftovers := k.leftovers
	if leftovers == nil {
		leftovers = k.c.agentLeftovers
	}
	return leftovers(ctx, node, k.mode)
}

// ownProxy is svcsim's node proxy on one node and its feed.
type ownProxy struct {
	node   string
	agent  agentProc
	cancel context.CancelFunc
	done   chan struct{} // closed when the feed has ended

	mu      sync.Mutex
	last    *state.NodeState // the last state the node proxy programmed
	feedErr error            // why the feed ended early
}

// push is the feed's Push: the node proxy's PUT /v1/state, which returns
// once the state is programmed.
func (p *ownProxy) push(ctx context.Context, st *state.NodeState) error {
	if _, err := p.agent.Push(ctx, st); err != nil {
		return err
	}
	p.mu.Lock()
	p.last = st
	p.mu.Unlock()
	return nil
}

// endFeed cancels the feed and waits (feedStopWait at most) until it ends.
func (p *ownProxy) endFeed() error {
	p.cancel()
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.feedErr
	case <-time.After(feedStopWait):
		return fmt.Errorf("the feed of %s did not end within %v", p.node, feedStopWait)
	}
}

// stop ends the feed first (no push may race the node proxy's cleanup),
// then the node proxy, which removes what it programmed.
func (p *ownProxy) stop() error {
	ferr := p.endFeed()
	return errors.Join(ferr, p.agent.Stop(15*time.Second))
}

// kill ends the feed and SIGKILLs the node proxy: its rules stay.
func (p *ownProxy) kill() error {
	ferr := p.endFeed()
	return errors.Join(ferr, p.agent.Kill())
}

// programmed reports whether the last programmed state holds the barrier
// Service's port named port with its endpoint; an error when the feed
// ended (it cannot program anything more).
func (p *ownProxy) programmed(port string) (bool, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.feedErr != nil {
		return false, true, fmt.Errorf("the feed of %s ended: %w", p.node, p.feedErr)
	}
	return hasBarrier(p.last, port), true, nil
}

// hasBarrier reports whether st holds the barrier's port named port with
// an endpoint.
func hasBarrier(st *state.NodeState, port string) bool {
	if st == nil {
		return false
	}
	for _, sp := range st.Services {
		if sp.Namespace == BarrierNamespace && sp.Name == barrierName && sp.PortName == port {
			return len(sp.Endpoints) > 0
		}
	}
	return false
}

func (p *ownProxy) dump(ctx context.Context) (string, error) { return p.agent.Dump(ctx) }

// startAgent starts svcsim's node proxy of mode in node's namespace,
// its feed socket in the run directory (as on the embedded plane).
func (c *Cluster) startAgent(ctx context.Context, node, mode string) (agentProc, error) {
	n := c.topo.Node(node)
	if n == nil {
		return nil, fmt.Errorf("no node %q", node)
	}
	c.logf("starting svcsim's %s node proxy on %s", mode, node)
	p, err := agent.Start(ctx, n.NS, agent.StartOptions{
		Node: node, Mode: mode, Socket: c.run.Path("proxy-" + node + ".sock"),
		Log: prefixWriter{"node-proxy " + node + ": ", c.log}, OnStart: c.run.RecordPID,
	})
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	return p, nil
}

// agentLeftovers runs mode's one-shot cleanup in node's namespace.
func (c *Cluster) agentLeftovers(ctx context.Context, node, mode string) error {
	n := c.topo.Node(node)
	if n == nil {
		return fmt.Errorf("no node %q", node)
	}
	return agent.CleanupLeftovers(ctx, n.NS, agent.StartOptions{Node: node, Mode: mode, OnStart: c.run.RecordPID})
}

// runFeed feeds node's state from the API server to push until ctx ends:
// kube-proxy's identity, its connections made from the node's namespace
// (so a node off the network loses its feed, as kube-proxy its watches)
// and closed when the feed ends.
func (c *Cluster) runFeed(ctx context.Context, node string, push func(context.Context, *state.NodeState) error) error {
	n := c.topo.Node(node)
	if n == nil {
		return fmt.Errorf("no node %q", node)
	}
	kc, err := c.cp.KubeProxyKubeconfig()
	if err != nil {
		return err
	}
	conns := newConnSet()
	defer conns.closeAll()
	cs, err := clientTracked(kc, n.NS, conns)
	if err != nil {
		return err
	}
	err = feed.Run(ctx, feed.Config{
		Client: cs, Node: node, Push: push,
		Options: desired.Options{ClusterCIDR: netip.MustParsePrefix(kubeproxy.ClusterCIDR), ServiceCIDR: c.serviceCIDR()},
	})
	if err != nil && ctx.Err() == nil {
		c.logf("the feed of %s ended: %v", node, err)
	}
	return err
}

// serviceCIDR is the range ClusterIPs come from (the topology's plan).
func (c *Cluster) serviceCIDR() netip.Prefix {
	if p := c.topo.Spec().ServiceCIDR; p.IsValid() {
		return p
	}
	return netip.MustParsePrefix("10.96.0.0/12")
}
