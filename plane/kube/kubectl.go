package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
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

// KubectlEnv is the environment kubectl runs with: the admin kubeconfig,
// and HOME and kubectl's cache directory inside kube/, so nothing is
// written under the user's home (for `svcsim shell`).
func (c *ControlPlane) KubectlEnv() []string {
	return append(baseEnv(c.l.home()), "KUBECONFIG="+c.AdminKubeconfig(), "KUBECACHEDIR="+c.l.kubeCache())
}

// Kubectl runs the genuine kubectl with args against the cluster, inside
// the control-plane namespace (the only place the API server is reachable
// from outside a node), and waits for it. A non-zero exit is an
// *exec.ExitError; kubectl's own message is on o.Err. Cancelling ctx kills
// it.
func (c *ControlPlane) Kubectl(ctx context.Context, o KubectlOptions, args ...string) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return errors.New("kubectl: control plane closed")
	}
	wd := o.Dir
	if wd == "" {
		var err error
		if wd, err = os.Getwd(); err != nil {
			return fmt.Errorf("kubectl: working directory: %w", err)
		}
	}
	p, err := startProcess(c.cfg.NS, c.cfg.Run, processSpec{
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
