package embedded

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/svcsim/svcsim/modes"
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

// SetDatapath implements plane.Plane: every node's proxy is stopped (it
// removes what it programmed); on a node whose proxy was killed, a one-shot
// cleanup of the old datapath removes what the dead one left
// (agent.CleanupLeftovers, as `kube-proxy --cleanup`); then a proxy of
// mode starts on every node, and WaitProgrammed waits for them all.
func (cp *ControlPlane) SetDatapath(ctx context.Context, mode string) error {
	d, err := modes.Get(mode)
	if err != nil {
		return err
	}
	if d.Start.Factory == nil {
		return fmt.Errorf("datapath %s runs on the kubernetes plane", mode)
	}
	if why := d.Unsupported(); why != "" {
		return fmt.Errorf("datapath %s cannot run here: %s", mode, why)
	}
	cp.recMu.Lock()
	defer cp.recMu.Unlock()
	old := cp.cfg
	var errs []error
	for _, n := range cp.topo.Nodes() {
		if p := cp.proxies[n.Name]; p != nil {
			delete(cp.proxies, n.Name)
			errs = append(errs, p.Stop(15*time.Second))
			continue
		}
		fmt.Fprintf(cp.log, "run %s: cleaning up after the dead %s proxy on %s\n", cp.run.ID, old.Mode, n.Name)
		errs = append(errs, agent.CleanupLeftovers(ctx, n.NS, agent.StartOptions{
			Node: n.Name, Mode: old.Mode, Scheduler: old.Scheduler, IPTablesBackend: old.IPTablesBackend, OnStart: cp.run.RecordPID}))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop datapath %s: %w", old.Mode, err)
	}
	cp.progMu.Lock()
	cp.cfg.Mode = mode
	cp.lastSync = map[string]agent.SyncReply{}
	cp.programmed = 0
	cp.progMu.Unlock()
	for _, n := range cp.topo.Nodes() {
		if err := cp.startProxy(ctx, n.Name); err != nil {
			return err
		}
	}
	cp.wake()
	return nil
}
