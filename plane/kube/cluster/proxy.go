package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/plane/kube"
)

// nodeProxy is one node's running proxy: the genuine kube-proxy
// (kubeProxy) or svcsim's node proxy with its feed (ownProxy).
type nodeProxy interface {
	// kill ends it at once (SIGKILL, a crash); its rules stay.
	kill() error
	// stop ends it in order: svcsim's node proxy removes its rules,
	// kube-proxy leaves them for its kind's cleanup.
	stop() error
	// programmed reports whether its datapath holds the barrier's port
	// named port, when known is true (else the barrier reads its rules,
	// as for kube-proxy); an error says it never will.
	programmed(port string) (ok, known bool, err error)
	// dump is its rules as the datapath's dump command prints them.
	dump(ctx context.Context) (string, error)
}

// proxyKind starts one datapath's proxies and cleans up after them.
type proxyKind interface {
	// start starts the datapath's proxy on node.
	start(ctx context.Context, node string) (nodeProxy, error)
	// cleanup removes what the datapath left on node once its proxy has
	// ended; stopped says it was just stopped in order (else it was
	// killed, or never ran).
	cleanup(ctx context.Context, node string, stopped bool) error
}

// switchProxies is the switch sequence of a shared plane's nodes: every
// running proxy is stopped (all of them before anything else), then old's
// cleanup runs on every node, then next starts on every node. It returns
// the proxies it started, by node, also when a later start failed.
func switchProxies(ctx context.Context, nodes []string, running map[string]nodeProxy, old, next proxyKind) (map[string]nodeProxy, error) {
	stopped := map[string]bool{}
	var errs []error
	for _, n := range nodes {
		if p := running[n]; p != nil {
			if err := p.stop(); err != nil {
				errs = append(errs, fmt.Errorf("stop the proxy on %s: %w", n, err))
			}
			stopped[n] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return map[string]nodeProxy{}, err
	}
	for _, n := range nodes {
		if err := old.cleanup(ctx, n, stopped[n]); err != nil {
			return map[string]nodeProxy{}, err
		}
	}
	started := map[string]nodeProxy{}
	for _, n := range nodes {
		p, err := next.start(ctx, n)
		if err != nil {
			return started, err
		}
		started[n] = p
	}
	return started, nil
}

// kindOf is the proxyKind of datapath d on this plane.
func (c *Cluster) kindOf(d modes.Datapath) proxyKind {
	if mode, ok := OwnMode(d.Name); ok {
		return &ownKind{c: c, mode: mode, startAgent: c.startAgent, runFeed: c.runFeed}
	}
	return kubeProxyKind{c: c, d: d}
}

// kubeProxyKind is the genuine kube-proxy of datapath d.
type kubeProxyKind struct {
	c *Cluster
	d modes.Datapath
}

func (k kubeProxyKind) start(ctx context.Context, node string) (nodeProxy, error) {
	n := k.c.topo.Node(node)
	if n == nil {
		return nil, fmt.Errorf("no node %q", node)
	}
	args := append(slices.Clone(k.d.Start.Args), k.c.opts.KubeProxyArgs...)
	p, err := k.c.cp.StartKubeProxy(ctx, kube.KubeProxyConfig{Node: node, NS: n.NS, Args: args, IPTables: k.d.Start.IPTablesBackend})
	if err != nil {
		return nil, err
	}
	return &kubeProxy{p: p, node: node, c: k.c}, nil
}

// cleanup runs `kube-proxy --cleanup` on node: kube-proxy leaves its rules
// when it exits, stopped or killed.
func (k kubeProxyKind) cleanup(ctx context.Context, node string, _ bool) error {
	n := k.c.topo.Node(node)
	if n == nil {
		return fmt.Errorf("no node %q", node)
	}
	return k.c.cp.KubeProxyCleanup(ctx, n.NS, k.d.Start.IPTablesBackend)
}

// kubeProxy is a running kube-proxy.
type kubeProxy struct {
	p    *kube.Process
	node string
	c    *Cluster
}

func (k *kubeProxy) kill() error { return sigkill(k.p, k.node) }

func (k *kubeProxy) stop() error {
	if err := k.p.Stop(5 * time.Second); err != nil {
		return fmt.Errorf("stop kube-proxy on %s: %w", k.node, err)
	}
	return nil
}

// programmed: kube-proxy's rules say (WaitProgrammed reads its dump).
func (k *kubeProxy) programmed(string) (bool, bool, error) { return false, false, nil }

func (k *kubeProxy) dump(ctx context.Context) (string, error) {
	n := k.c.topo.Node(k.node)
	if n == nil {
		return "", fmt.Errorf("no node %q", k.node)
	}
	k.c.proxyMu.Lock()
	dp := k.c.datapath
	k.c.proxyMu.Unlock()
	return runIn(ctx, n.NS, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, dp.Dump...)
}

// startProxy starts the current datapath's proxy on node. The caller
// holds no lock.
func (c *Cluster) startProxy(ctx context.Context, node string) error {
	if c.topo.Node(node) == nil {
		return fmt.Errorf("no node %q", node)
	}
	c.proxyMu.Lock()
	defer c.proxyMu.Unlock()
	if c.proxies[node] != nil {
		return fmt.Errorf("node %s: a proxy is already running", node)
	}
	p, err := c.kindOf(c.datapath).start(ctx, node)
	if err != nil {
		return err
	}
	c.proxies[node] = p
	return nil
}

func (c *Cluster) takeProxy(node string) (nodeProxy, modes.Datapath, error) {
	c.proxyMu.Lock()
	defer c.proxyMu.Unlock()
	p := c.proxies[node]
	if p == nil {
		return nil, c.datapath, fmt.Errorf("no proxy running on node %q", node)
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
	return p.kill()
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

// StopProxy implements plane.Plane: kube-proxy gets SIGTERM, then
// `kube-proxy --cleanup` (it leaves its rules when it exits); svcsim's node
// proxy removes its rules itself when it stops.
func (c *Cluster) StopProxy(ctx context.Context, node string) error {
	p, dp, err := c.takeProxy(node)
	if err != nil {
		return err
	}
	if err := p.stop(); err != nil {
		return err
	}
	return c.kindOf(dp).cleanup(ctx, node, true)
}

// StartProxy implements plane.Plane.
func (c *Cluster) StartProxy(ctx context.Context, node string) error {
	return c.startProxy(ctx, node)
}

// SetDatapath switches every node to the datapath registered as name: a
// kube-proxy datapath ("kube-proxy/iptables-legacy") or svcsim's own
// ("nftables@kubernetes", see Datapaths). The two kinds cannot program one
// node at once (the same KUBE-* chains, the same kube-proxy table), so the
// switch is done in turn (switchProxies): every running proxy is stopped,
// the old datapath's cleanup runs on every node (`kube-proxy --cleanup`;
// svcsim's proxies removed their rules as they stopped, and a killed one's
// are removed by its datapath's one-shot cleanup), then the new datapath
// starts on every node. It returns once every node has programmed.
func (c *Cluster) SetDatapath(ctx context.Context, name string) error {
	dp, err := Get(name)
	if err != nil {
		return err
	}
	if why := dp.Unsupported(); why != "" {
		return fmt.Errorf("datapath %s cannot run here: %s", dp.Name, why)
	}
	c.proxyMu.Lock()
	if c.datapath.Name == dp.Name {
		c.proxyMu.Unlock()
		return c.WaitProgrammed(ctx)
	}
	old := c.datapath
	running := c.proxies
	c.proxies = map[string]nodeProxy{}
	c.datapath = dp
	c.proxyMu.Unlock()
	var nodes []string
	for _, n := range c.topo.Nodes() {
		nodes = append(nodes, n.Name)
	}
	c.logf("switching %s -> %s on %d nodes", old.Name, dp.Name, len(nodes))
	started, err := switchProxies(ctx, nodes, running, c.kindOf(old), c.kindOf(dp))
	c.proxyMu.Lock()
	for n, p := range started {
		c.proxies[n] = p
	}
	c.proxyMu.Unlock()
	if err != nil {
		return err
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

// Dump implements plane.Plane: what the node's proxy programmed, less
// the plane's barrier Service (dump.go): for the iptables datapaths the
// KUBE-* chains, their rules and the jumps to them from the backend's
// iptables-save, for nftables `nft list table ip kube-proxy`, for svcsim's
// userspace proxy its portal rules and listeners.
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
	case modes.KernelUserspace:
		return withoutBarrierLines(out), nil
	}
	return out, nil
}

// rawDump is the output of the datapath's dump on node (kube-proxy's: its
// descriptor's Dump command; svcsim's node proxy: its own dump, narrowed
// to its rules), and the datapath it was taken of.
func (c *Cluster) rawDump(ctx context.Context, node string) (string, modes.Datapath, error) {
	if c.topo.Node(node) == nil {
		return "", modes.Datapath{}, fmt.Errorf("no node %q", node)
	}
	c.proxyMu.Lock()
	dp := c.datapath
	p := c.proxies[node]
	c.proxyMu.Unlock()
	if p == nil {
		// A killed proxy's rules stay: read them with the datapath's tool.
		p = &kubeProxy{node: node, c: c}
	}
	out, err := p.dump(ctx)
	return out, dp, err
}
