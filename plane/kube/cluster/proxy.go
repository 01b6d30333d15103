package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/kubeproxy"
	"github.com/svcsim/svcsim/plane/kube"
)

// startProxy starts kube-proxy on node with the current datapath. The
// caller holds no lock.
func (c *Cluster) startProxy(ctx context.Context, node string) error {
	n := c.topo.Node(node)
	if n == nil {
		return fmt.Errorf("no node %q", node)
	}
	c.proxyMu.Lock()
	defer c.proxyMu.Unlock()
	if c.proxies[node] != nil {
		return fmt.Errorf("node %s: kube-proxy is already running", node)
	}
	p, err := c.cp.StartKubeProxy(ctx, kube.KubeProxyConfig{Node: node, NS: n.NS, Args: c.datapath.Start.Args, IPTables: c.datapath.Start.IPTablesBackend})
	if err != nil {
		return err
	}
	c.proxies[node] = p
	return nil
}

func (c *Cluster) takeProxy(node string) (*kube.Process, modes.Datapath, error) {
	c.proxyMu.Lock()
	defer c.proxyMu.Unlock()
	p := c.proxies[node]
	if p == nil {
		return nil, c.datapath, fmt.Errorf("no kube-proxy running on node %q", node)
	}
	delete(c.proxies, node)
	return p, c.datapath, nil
}

// KillProxy implements plane.Plane: SIGKILL, its rules stay.
func (c *Cluster) KillProxy(_ context.Context, node string) error {
	p, _, err := c.takeProxy(node)
	if err != nil {
		return err
	}
	return sigkill(p, node)
}

// sigkill kills node's kube-proxy p with SIGKILL and waits (10 s at most)
// until it is gone.
func sigkill(p *kube.Process, node string) error {
	if err := syscall.Kill(p.PID(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill kube-proxy on %s: %w", node, err)
	}
	select {
	case <-p.Done():
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("kube-proxy on %s (pid %d) survived SIGKILL for 10s", node, p.PID())
	}
}

// StopProxy implements plane.Plane: SIGTERM, then `kube-proxy --cleanup`
// (kube-proxy leaves its rules when it exits).
func (c *Cluster) StopProxy(ctx context.Context, node string) error {
	p, dp, err := c.takeProxy(node)
	if err != nil {
		return err
	}
	if err := p.Stop(5 * time.Second); err != nil {
		return fmt.Errorf("stop kube-proxy on %s: %w", node, err)
	}
	return c.cp.KubeProxyCleanup(ctx, c.topo.Node(node).NS, dp.Start.IPTablesBackend)
}

// StartProxy implements plane.Plane.
func (c *Cluster) StartProxy(ctx context.Context, node string) error {
	return c.startProxy(ctx, node)
}

// SetDatapath restarts kube-proxy on every node with the datapath
// registered as name ("kube-proxy/iptables-legacy"): each running one is
// stopped and `kube-proxy --cleanup` removes its rules before the new mode
// starts. It returns once every node has programmed.
func (c *Cluster) SetDatapath(ctx context.Context, name string) error {
	dp, err := kubeproxy.Get(name)
	if err != nil {
		return err
	}
	c.proxyMu.Lock()
	if c.datapath.Name == dp.Name {
		c.proxyMu.Unlock()
		return c.WaitProgrammed(ctx)
	}
	old := c.datapath
	procs := c.proxies
	c.proxies = map[string]*kube.Process{}
	c.datapath = dp
	c.proxyMu.Unlock()
	for node, p := range procs {
		if p == nil {
			continue
		}
		if err := p.Stop(5 * time.Second); err != nil {
			return fmt.Errorf("stop kube-proxy on %s: %w", node, err)
		}
	}
	for _, n := range c.topo.Nodes() {
		if err := c.cp.KubeProxyCleanup(ctx, n.NS, old.Start.IPTablesBackend); err != nil {
			return err
		}
	}
	for _, n := range c.topo.Nodes() {
		if err := c.startProxy(ctx, n.Name); err != nil {
			return err
		}
	}
	return c.WaitProgrammed(ctx)
}

// runIn runs argv inside ns and returns its standard output.
func runIn(ctx context.Context, ns *netns.NS, env []string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + ns.Path(), "--"}, argv...)...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), ns.Name(), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Dump implements plane.Plane: what kube-proxy programmed on node, less
// the plane's barrier Service (dump.go): for the iptables datapaths the
// KUBE-* chains, their rules and the jumps to them from the backend's
// iptables-save, for nftables `nft list table ip kube-proxy`.
func (c *Cluster) Dump(ctx context.Context, node string) (string, error) {
	out, dp, err := c.rawDump(ctx, node)
	if err != nil {
		return "", err
	}
	switch dp.Kernel {
	case modes.KernelIptables:
		return iptablesView(out), nil
	case modes.KernelNftables:
		c.barrierIPMu.Lock()
		ip := c.barrierIP
		c.barrierIPMu.Unlock()
		return nftablesView(out, ip), nil
	}
	return out, nil
}

// rawDump is the output of the datapath's dump command (its descriptor's
// Dump) on node, and the datapath it was taken of.
func (c *Cluster) rawDump(ctx context.Context, node string) (string, modes.Datapath, error) {
	n := c.topo.Node(node)
	if n == nil {
		return "", modes.Datapath{}, fmt.Errorf("no node %q", node)
	}
	c.proxyMu.Lock()
	dp := c.datapath
	c.proxyMu.Unlock()
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	out, err := runIn(ctx, n.NS, env, dp.Dump...)
	return out, dp, err
}
