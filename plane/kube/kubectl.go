package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/rundir"
)

// KubectlOptions are where a kubectl run works: its working directory (""
// is the caller's, so relative -f paths mean what the user typed) and its
// standard streams (nil In reads nothing; nil Out or Err write into
// kube/logs/kubectl.log).
type KubectlOptions struct {
	Dir      string
	In       io.Reader
	Out, Err io.Writer
}

// Client reaches a running control plane from any process of the machine
// (`svcsim kubectl` and `svcsim shell` run in processes other than the one
// that started it): the admin kubeconfig, kubectl, and the environment for
// a shell. Open makes one from the run directory; ControlPlane.Client
// returns the starter's.
type Client struct {
	run    *rundir.Run
	ns     *netns.NS
	l      layout
	binary string
	server string
	ownNS  bool // opened by Open: Close closes the handle
}

// stateFile, in kube/, tells Open where a running control plane is.
const stateFile = "plane.json"

type state struct {
	Server    string `json:"server"`
	Binary    string `json:"binary"`
	Namespace string `json:"namespace"`
}

func (c *Client) writeState() error {
	b, err := json.MarshalIndent(state{Server: c.server, Binary: c.binary, Namespace: c.ns.Name()}, "", "  ")
	if err != nil {
		return fmt.Errorf("kube: encode state: %w", err)
	}
	return writeFile(c.l.path(stateFile), b, 0o644)
}

// Open returns a Client of the control plane running in run. Close it to
// release its handle of the control-plane namespace.
func Open(run *rundir.Run) (*Client, error) {
	l := layout(run.Path(DirName))
	b, err := os.ReadFile(l.path(stateFile))
	if err != nil {
		return nil, fmt.Errorf("kube: no control plane in run %s: %w", run.ID, err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("kube: parse %s: %w", l.path(stateFile), err)
	}
	ns, err := netns.Get(s.Namespace)
	if err != nil {
		return nil, fmt.Errorf("kube: control plane of run %s: %w", run.ID, err)
	}
	return &Client{run: run, ns: ns, l: l, binary: s.Binary, server: s.Server, ownNS: true}, nil
}

// Close releases what Open acquired; the control plane keeps running.
func (c *Client) Close() error {
	if c.ownNS {
		return c.ns.Close()
	}
	return nil
}

// NS is the control-plane namespace, the one place outside the nodes from
// which the API server is reachable: kubectl and shells run there.
func (c *Client) NS() *netns.NS { return c.ns }

// Server is the API server's URL.
func (c *Client) Server() string { return c.server }

// AdminKubeconfig is the administrator's kubeconfig (system:masters).
func (c *Client) AdminKubeconfig() string { return c.l.kubeconfig(Admin) }

// binDir holds a `kubectl` symlink to the multi-call binary, for PATH.
func (c *Client) binDir() string { return c.l.path("bin") }

func (c *Client) linkKubectl() error {
	if err := os.MkdirAll(c.binDir(), 0o755); err != nil {
		return fmt.Errorf("kube: %w", err)
	}
	if err := os.Symlink(c.binary, filepath.Join(c.binDir(), Kubectl)); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("kube: %w", err)
	}
	return nil
}

// KubectlEnv is the environment kubectl (or a shell for it) runs with: the
// admin kubeconfig, HOME and kubectl's cache directory inside kube/, so
// nothing is written under the user's home, and `kubectl` first on PATH.
func (c *Client) KubectlEnv() []string {
	env := append(baseEnv(c.l.home()), "KUBECONFIG="+c.AdminKubeconfig(), "KUBECACHEDIR="+c.l.kubeCache())
	for i, e := range env {
		if p, ok := strings.CutPrefix(e, "PATH="); ok {
			env[i] = "PATH=" + c.binDir() + ":" + p
		}
	}
	return env
}

// Kubectl runs the genuine kubectl with args against the cluster, inside
// the control-plane namespace, and waits for it. A non-zero exit is an
// *exec.ExitError; kubectl's own message is on o.Err. Cancelling ctx kills
// it.
func (c *Client) Kubectl(ctx context.Context, o KubectlOptions, args ...string) error {
	wd := o.Dir
	if wd == "" {
		var err error
		if wd, err = os.Getwd(); err != nil {
			return fmt.Errorf("kubectl: working directory: %w", err)
		}
	}
	p, err := startProcess(c.ns, c.run, processSpec{
		Binary: c.binary, Name: Kubectl, Args: args, Env: c.KubectlEnv(), Dir: wd,
		Log: c.l.log(Kubectl), Stdin: o.In, Stdout: o.Out, Stderr: o.Err,
	})
	if err != nil {
		return fmt.Errorf("kubectl: %w", err)
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		_ = p.Stop(time.Second)
		return fmt.Errorf("kubectl %v: %w", args, ctx.Err())
	}
	return p.Err()
}

// Client is the starter's Client (not to be closed separately).
func (c *ControlPlane) Client() *Client { return c.client }

// KubectlEnv is Client().KubectlEnv().
func (c *ControlPlane) KubectlEnv() []string { return c.client.KubectlEnv() }

// Kubectl runs kubectl as Client().Kubectl does, refusing once Close began.
func (c *ControlPlane) Kubectl(ctx context.Context, o KubectlOptions, args ...string) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return errors.New("kubectl: control plane closed")
	}
	return c.client.Kubectl(ctx, o, args...)
}
