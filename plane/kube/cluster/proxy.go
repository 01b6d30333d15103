package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/kubeproxy"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/topology"
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
	return c.kubeProxyKindOf(d)
}

// kubeProxyKind is the genuine kube-proxy of datapath d, run from bin
// ("": the control plane's binary; binErr says why d's own build is
// missing).
type kubeProxyKind struct {
	c      *Cluster
	d      modes.Datapath
	bin    string
	binErr error
}

// kubeProxyKindOf is d's kube-proxy as the plane runs it now: from
// datapathBinary's executable.
func (c *Cluster) kubeProxyKindOf(d modes.Datapath) kubeProxyKind {
	bin, err := c.datapathBinary(d)
	return kubeProxyKind{c: c, d: d, bin: bin, binErr: err}
}

func (k kubeProxyKind) start(ctx context.Context, node string) (nodeProxy, error) {
	n := k.c.topo.Node(node)
	if n == nil {
		return nil, fmt.Errorf("no node %q", node)
	}
	if k.binErr != nil {
		return nil, k.binErr
	}
	cfg := proxyConfig(n, k.d, k.bin)
	cfg.Args = append(cfg.Args, k.c.opts.KubeProxyArgs...)
	p, err := k.c.cp.StartKubeProxy(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &kubeProxy{p: p, node: node, c: k.c}, nil
}

// cleanup runs `kube-proxy --cleanup` on node, of the build that ran:
// kube-proxy leaves its rules when it exits, stopped or killed.
func (k kubeProxyKind) cleanup(ctx context.Context, node string, _ bool) error {
	n := k.c.topo.Node(node)
	if n == nil {
		return fmt.Errorf("no node %q", node)
	}
	if k.binErr != nil {
		return k.binErr
	}
	return k.c.cp.KubeProxyCleanup(ctx, proxyConfig(n, k.d, k.bin))
}

// proxyConfig is node n's kube-proxy on datapath dp, run from binary bin
// ("": the control plane's), with modes.NodeIPArg in its flags replaced by
// the node's address.
func proxyConfig(n *topology.Node, dp modes.Datapath, bin string) kube.KubeProxyConfig {
	args := make([]string, len(dp.Start.Args))
	for i, a := range dp.Start.Args {
		args[i] = strings.ReplaceAll(a, modes.NodeIPArg, n.IP.String())
	}
	return kube.KubeProxyConfig{Node: n.Name, NS: n.NS, Args: args, IPTables: dp.Start.IPTablesBackend, Binary: bin, UserNS: dp.Start.UserNamespace}
}

// datapathBinary is the executable dp's kube-proxy runs from: for
// bin/k8s's datapaths the plane's KubeProxyBinary, or the last
// SetKubeProxyBinary's, when one was given; else the descriptor's own build
// (Start.Binary, beside the multi-call binary), or "" for the control
// plane's.
func (c *Cluster) datapathBinary(dp modes.Datapath) (string, error) {
	if dp.Start.Binary == "" {
		c.binMu.Lock()
		defer c.binMu.Unlock()
		return c.k8sProxyBin, nil
	}
	p := filepath.Join(filepath.Dir(c.opts.Binary), dp.Start.Binary)
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		return "", fmt.Errorf("datapath %s runs %s, not found beside %s: %v", dp.Name, dp.Start.Binary, c.opts.Binary, err)
	}
	return p, nil
}

// setProxyBinary records the version bin reports as kube-proxy's ("": the
// control plane's).
func (c *Cluster) setProxyBinary(ctx context.Context, bin string) error {
	v := c.versions["kubernetes"]
	if bin != "" {
		vs, err := kube.Versions(ctx, bin)
		if err != nil {
			return fmt.Errorf("kube-proxy binary: %w", err)
		}
		v = vs["kubernetes"]
	}
	c.proxyMu.Lock()
	c.proxyVersion = v
	c.proxyMu.Unlock()
	return nil
}

// KubeProxyVersion is the version the running kube-proxy's binary reports.
func (c *Cluster) KubeProxyVersion() string {
	c.proxyMu.Lock()
	defer c.proxyMu.Unlock()
	return c.proxyVersion
}

// SetKubeProxyBinary restarts kube-proxy on every node from bin ("": the
// control plane's binary) on the same datapath, one of bin/k8s's: each
// running one is stopped and `kube-proxy --cleanup` of the build that ran
// removes its rules first. It returns once every node has programmed.
// Comparing the rules of two builds for one cluster state (svcsim
// kube-proxy-diff) is what it is for.
func (c *Cluster) SetKubeProxyBinary(ctx context.Context, bin string) error {
	if bin == "" {
		bin = c.cp.Binary()
	}
	c.proxyMu.Lock()
	dp := c.datapath
	c.proxyMu.Unlock()
	if _, own := OwnMode(dp.Name); own || dp.Start.Binary != "" {
		return fmt.Errorf("datapath %s does not run bin/k8s's kube-proxy; switch to one that does first", dp.Name)
	}
	old := c.kubeProxyKindOf(dp)
	c.binMu.Lock()
	c.k8sProxyBin = bin
	c.binMu.Unlock()
	c.proxyMu.Lock()
	running := c.proxies
	c.proxies = map[string]nodeProxy{}
	c.proxyMu.Unlock()
	if err := c.setProxyBinary(ctx, bin); err != nil {
		return err
	}
	return c.switchAll(ctx, running, old, c.kubeProxyKindOf(dp))
}

// datapathNotes are what a result must say about how dp's kube-proxy ran,
// beside the components' versions: for kube-proxy v1.25's userspace
// proxier, that it is outside the supported version skew and, when it ran
// in a user namespace, how and why.
func (c *Cluster) datapathNotes(dp modes.Datapath) map[string]string {
	if dp.Name != kubeproxy.Userspace {
		return nil
	}
	notes := map[string]string{"skew": kubeproxy.SkewNote}
	raisable, why := kubeproxy.NoFileRaisable()
	if dp.Start.UserNamespace {
		notes["kube-proxy run"] = "in a user namespace (uid_map 0 0 1) that owns the node's network namespace, configured from the initial one; " +
			"--feature-gates=KubeletInUserNamespace=true, so the refused setrlimit(RLIMIT_NOFILE, 64000) is logged and ignored (" + why + ")"
	} else if raisable {
		notes["kube-proxy run"] = "as root in the node's network namespace, as on a node (" + why + ")"
	}
	return notes
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
	// Root of the initial user namespace administers a node of a child
	// one as any other, so every datapath runs on such nodes; one that
	// runs in the node's user namespace needs nodes made so.
	if dp.Start.UserNamespace && !c.topo.Spec().Nodes[0].UserNS {
		return fmt.Errorf("datapath %s runs in a user namespace owning the node's network namespace; these nodes were made without: start a plane with it instead", dp.Name)
	}
	bin, err := c.datapathBinary(dp)
	if err != nil {
		return err
	}
	c.proxyMu.Lock()
	if c.datapath.Name == dp.Name {
		c.proxyMu.Unlock()
		return c.WaitProgrammed(ctx)
	}
	c.proxyMu.Unlock()
	if err := c.setProxyBinary(ctx, bin); err != nil {
		return err
	}
	c.proxyMu.Lock()
	old := c.datapath
	running := c.proxies
	c.proxies = map[string]nodeProxy{}
	c.datapath = dp
	c.proxyMu.Unlock()
	c.logf("switching %s -> %s on %d nodes", old.Name, dp.Name, len(c.topo.Nodes()))
	return c.switchAll(ctx, running, c.kindOf(old), c.kindOf(dp))
}

// switchAll replaces the running proxies of every node (taken out of
// c.proxies by the caller) by next's, records what started and waits for
// the barrier.
func (c *Cluster) switchAll(ctx context.Context, running map[string]nodeProxy, old, next proxyKind) error {
	var nodes []string
	for _, n := range c.topo.Nodes() {
		nodes = append(nodes, n.Name)
	}
	started, err := switchProxies(ctx, nodes, running, old, next)
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
// userspace proxy its portal rules and listeners, for kube-proxy v1.25's
// userspace proxier its KUBE-* chains as for iptables.
func (c *Cluster) Dump(ctx context.Context, node string) (string, error) {
	out, dp, err := c.rawDump(ctx, node)
	if err != nil {
		return "", err
	}
	switch {
	case dp.Kernel == modes.KernelIptables,
		dp.Kernel == modes.KernelUserspace && dp.Start.Program != "": // kube-proxy v1.25's iptables-save
		return iptablesView(out), nil
	case dp.Kernel == modes.KernelNftables:
		c.barrierIPMu.Lock()
		ip := c.barrierIP
		c.barrierIPMu.Unlock()
		return nftablesView(out, ip), nil
	case dp.Kernel == modes.KernelUserspace:
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
