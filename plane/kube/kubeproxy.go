package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
)

// IPTables backends for kube-proxy's iptables and ipvs modes. kube-proxy
// runs `iptables`, `iptables-save` and `iptables-restore` from PATH (as do
// ip6tables), so the backend is chosen by what those names resolve to.
const (
	IPTablesLegacy = "legacy"
	IPTablesNFT    = "nft"
)

// KubeProxyConfig describes one node's kube-proxy.
type KubeProxyConfig struct {
	// Node is the Node object's name (--hostname-override). kube-proxy
	// waits until that Node has an InternalIP before it programs anything.
	Node string
	// NS is the node's network namespace.
	NS *netns.NS
	// Args are its flags beyond --kubeconfig and --hostname-override,
	// which the control plane sets: --proxy-mode and the rest, as the
	// datapath's descriptor says (modes/kubeproxy).
	Args []string
	// IPTables is the iptables backend put first on its PATH (IPTablesLegacy,
	// IPTablesNFT; "": whatever `iptables` on PATH is).
	IPTables string
	// Binary is the executable kube-proxy runs from, dispatching on its
	// first argument as bin/k8s does ("": the control plane's multi-call
	// binary): a build of a local kubernetes tree, or another release's.
	Binary string
	// UserNS: kube-proxy runs in the user namespace that owns NS (a node
	// made with topology.NodeSpec.UserNS), root there.
	UserNS bool
}

// proxyBinary is the executable k runs from.
func (c *ControlPlane) proxyBinary(k KubeProxyConfig) string {
	if k.Binary != "" {
		return k.Binary
	}
	return c.binary
}

func (k KubeProxyConfig) validate() error {
	var errs []error
	if k.Node == "" || k.NS == nil {
		errs = append(errs, errors.New("kube-proxy: Node and NS are needed"))
	}
	for _, a := range k.Args {
		for _, own := range []string{"--kubeconfig", "--hostname-override"} {
			if a == own || strings.HasPrefix(a, own+"=") {
				errs = append(errs, fmt.Errorf("kube-proxy: %s is the control plane's to set", own))
			}
		}
	}
	switch k.IPTables {
	case "", IPTablesLegacy, IPTablesNFT:
	default:
		errs = append(errs, fmt.Errorf("kube-proxy: iptables backend %q: want %q or %q", k.IPTables, IPTablesLegacy, IPTablesNFT))
	}
	return errors.Join(errs...)
}

// KubeProxyMetricsAddr is where kube-proxy serves metrics inside its node's
// namespace (its default): kubeproxy_sync_proxy_rules_last_timestamp_seconds
// tells when it last programmed.
const KubeProxyMetricsAddr = "127.0.0.1:10249"

// kubeProxyArgs: its kubeconfig and Node name, then k.Args.
func kubeProxyArgs(kubeconfig string, k KubeProxyConfig) []string {
	return append([]string{"--kubeconfig=" + kubeconfig, "--hostname-override=" + k.Node}, k.Args...)
}

// iptablesPath returns a directory whose iptables, ip6tables and their -save
// and -restore commands are the given backend's, to put first on PATH.
func (c *ControlPlane) iptablesPath(backend string) (string, error) {
	dir := c.l.path("iptables-" + backend)
	for _, fam := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			target, err := exec.LookPath(fam + "-" + backend + suffix)
			if err != nil {
				return "", fmt.Errorf("kube-proxy: the %s backend needs %s: %w", backend, fam+"-"+backend+suffix, err)
			}
			link := filepath.Join(dir, fam+suffix)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return "", fmt.Errorf("kube-proxy: %w", err)
			}
			if err := os.Symlink(target, link); err != nil && !errors.Is(err, os.ErrExist) {
				return "", fmt.Errorf("kube-proxy: %w", err)
			}
		}
	}
	return dir, nil
}

// PrivateRunSource is the source name of the tmpfs every kube-proxy of
// the run gets as its own /run (and `kube-proxy --cleanup` too): a real
// node's /run is its own, and iptables-legacy serializes every writer of
// the host through one lock file there, /run/xtables.lock, although each
// network namespace has its own tables; with the host's /run, nodes would
// queue behind each other and behind the host. The name tells the mount
// apart in /proc/<pid>/mountinfo (it never appears in the host's).
func (c *ControlPlane) PrivateRunSource() string { return "svcsim-run-" + c.cfg.Run.ID }

// kubeProxyEnv is the environment of kube-proxy and its --cleanup.
func (c *ControlPlane) kubeProxyEnv(backend string) ([]string, error) {
	env := baseEnv(c.l.home())
	if backend == "" {
		return env, nil
	}
	dir, err := c.iptablesPath(backend)
	if err != nil {
		return nil, err
	}
	for i, e := range env {
		if p, ok := strings.CutPrefix(e, "PATH="); ok {
			env[i] = "PATH=" + dir + ":" + p
		}
	}
	return env, nil
}

// StartKubeProxy starts the genuine kube-proxy inside k.NS with a
// system:kube-proxy kubeconfig, logging to kube/logs/kube-proxy-<node>.log.
// It returns once the process runs; whether it has programmed is for its
// metrics to say (KubeProxyMetricsAddr). Like a real kube-proxy it leaves
// its rules when it exits: KubeProxyCleanup removes them. Close stops it
// (first) if the caller has not.
func (c *ControlPlane) StartKubeProxy(ctx context.Context, k KubeProxyConfig) (*Process, error) {
	if err := k.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kc, err := c.KubeProxyKubeconfig()
	if err != nil {
		return nil, err
	}
	env, err := c.kubeProxyEnv(k.IPTables)
	if err != nil {
		return nil, err
	}
	p, err := startProcess(k.NS, c.cfg.Run, processSpec{
		Binary: c.proxyBinary(k), Name: KubeProxy, Args: kubeProxyArgs(kc, k),
		Env: env, Log: c.l.log(KubeProxy + "-" + k.Node), PrivateRun: c.PrivateRunSource(), UserNS: k.UserNS,
	})
	if err != nil {
		return nil, fmt.Errorf("kube-proxy on %s: %w", k.Node, err)
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// KubeProxyCleanup runs `kube-proxy --cleanup` in k.NS, from k.Binary and
// with k.IPTables as its iptables backend, which removes the rules of every
// mode that kube-proxy knows (iptables, nftables, ipvs; userspace for a
// release that has it). k.Node and k.Args are not used.
func (c *ControlPlane) KubeProxyCleanup(ctx context.Context, k KubeProxyConfig) error {
	ns := k.NS
	env, err := c.kubeProxyEnv(k.IPTables)
	if err != nil {
		return err
	}
	p, err := startProcess(ns, c.cfg.Run, processSpec{
		Binary: c.proxyBinary(k), Name: KubeProxy, Args: []string{"--cleanup"},
		Env: env, Log: c.l.log(KubeProxy + "-cleanup-" + ns.Name()), PrivateRun: c.PrivateRunSource(), UserNS: k.UserNS,
	})
	if err != nil {
		return fmt.Errorf("kube-proxy --cleanup in %s: %w", ns.Name(), err)
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		_ = p.Stop(time.Second)
		return fmt.Errorf("kube-proxy --cleanup in %s: %w", ns.Name(), ctx.Err())
	}
	if err := p.Err(); err != nil {
		return fmt.Errorf("kube-proxy --cleanup in %s: %w; end of %s:\n%s", ns.Name(), err, p.Log, tail(p.Log, 10))
	}
	return nil
}

// ProcessOptions describe a component started with StartProcess.
type ProcessOptions struct {
	// LogName names its log file, kube/logs/<LogName>.log ("": the
	// component's name).
	LogName string
	// Env is added to the minimal environment (HOME inside kube/, PATH).
	Env []string
	// Dir is the working directory ("": the caller's).
	Dir string
}

// StartProcess starts a component of the multi-call binary (CoreDNS for the
// kube-dns pods, for one) with args inside ns, recorded in the run like
// every component; Close stops it with the node components if the caller
// has not.
func (c *ControlPlane) StartProcess(ns *netns.NS, component string, args []string, o ProcessOptions) (*Process, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, errors.New("kube: control plane closed")
	}
	name := o.LogName
	if name == "" {
		name = component
	}
	p, err := startProcess(ns, c.cfg.Run, processSpec{
		Binary: c.binary, Name: component, Args: args,
		Env: append(baseEnv(c.l.home()), o.Env...), Dir: o.Dir, Log: c.l.log(name),
	})
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}
