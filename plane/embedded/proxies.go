package embedded

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/svcsim/svcsim/modes/agent"
)

func (cp *ControlPlane) startProxy(ctx context.Context, node string) error {
	n := cp.topo.Node(node)
	if n == nil {
		return fmt.Errorf("no node %q in topology", node)
	}
	fmt.Fprintf(cp.log, "run %s: starting %s proxy on %s\n", cp.run.ID, cp.cfg.Mode, node)
	p, err := agent.Start(ctx, n.NS, agent.StartOptions{
		Node: node, Mode: cp.cfg.Mode, Scheduler: cp.cfg.Scheduler, IPTablesBackend: cp.cfg.IPTablesBackend,
		Socket:  filepath.Join(cp.run.Dir, "proxy-"+node+".sock"),
		Log:     cp.log,
		OnStart: cp.run.RecordPID,
	})
	if err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	cp.proxies[node] = p
	return nil
}

// Proxy returns node's proxy process (nil when it is not running).
func (cp *ControlPlane) Proxy(node string) *agent.Process {
	cp.recMu.Lock()
	defer cp.recMu.Unlock()
	return cp.proxies[node]
}

// Dump returns node's kernel state as the mode's real tool prints it.
func (cp *ControlPlane) Dump(ctx context.Context, node string) (string, error) {
	p := cp.Proxy(node)
	if p == nil {
		return "", fmt.Errorf("no proxy on node %q", node)
	}
	return p.Dump(ctx)
}

// KillProxy kills node's proxy with SIGKILL, as a crash would, leaving its
// kernel state in place.
func (cp *ControlPlane) KillProxy(_ context.Context, node string) error {
	cp.recMu.Lock()
	defer cp.recMu.Unlock()
	p := cp.proxies[node]
	if p == nil {
		return fmt.Errorf("no proxy on node %q", node)
	}
	delete(cp.proxies, node)
	return p.Kill()
}

// StopProxy stops node's proxy with SIGTERM; it removes everything it
// programmed before it exits.
func (cp *ControlPlane) StopProxy(_ context.Context, node string) error {
	cp.recMu.Lock()
	defer cp.recMu.Unlock()
	p := cp.proxies[node]
	if p == nil {
		return fmt.Errorf("no proxy on node %q", node)
	}
	delete(cp.proxies, node)
	return p.Stop(15 * time.Second)
}

// StartProxy starts a proxy on node (after KillProxy or StopProxy) and
// returns once it answers; the reconciler then programs it, and
// WaitProgrammed waits for that.
func (cp *ControlPlane) StartProxy(ctx context.Context, node string) error {
	cp.recMu.Lock()
	defer cp.recMu.Unlock()
	if cp.proxies[node] != nil {
		return fmt.Errorf("node %s: a proxy is already running", node)
	}
	if err := cp.startProxy(ctx, node); err != nil {
		return err
	}
	cp.progMu.Lock()
	delete(cp.lastSync, node)
	// The new proxy has programmed nothing: what was programmed is no
	// longer true of every node.
	cp.programmed = 0
	cp.progMu.Unlock()
	cp.wake()
	return nil
}
