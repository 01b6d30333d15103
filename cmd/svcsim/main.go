// Command svcsim runs a simulated Kubernetes cluster's Service networking on
// this host's real kernel, with kubectl's verbs: up, apply, get, patch,
// scale, delete, label, exec, down; plus report and the hidden daemon.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/svcsim/svcsim/internal/reexec"
	_ "github.com/svcsim/svcsim/modes/agent" // node proxy entry point and every mode
	"github.com/svcsim/svcsim/plane/daemon"
)

func main() {
	if reexec.Init() {
		return
	}
	root := newRoot()
	// Ctrl-C cancels the verb's context: `up` then stops the half-started
	// simulation, `exec` ends its command.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		var ue *usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a bad flag or flag value: exit status 2, like flag's.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// exitError carries a command's exit status through cobra (svcsim exec).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "svcsim",
		Short: "Kubernetes Service networking on real kernel datapaths, on one host",
		Long: `svcsim builds a simulated cluster out of network namespaces (nodes, pods and an
external client), runs a real proxy datapath (iptables, nftables, IPVS, userspace)
inside every node, and lets you drive it with kubectl's verbs.

  sudo svcsim up -f sim/testdata/seed
  sudo svcsim get pods -o wide
  sudo svcsim exec external -- curl http://198.18.0.11:30080/info
  sudo svcsim down

Exit status:
  0    success
  1    an error, printed as "error: ..." on standard error; a missing
       prerequisite names what is missing and how to get it (root: run with
       sudo; a tool or kernel module: see svcsim datapaths, make deps)
  2    an unknown flag or a bad flag value
  N    svcsim exec: the command's own exit status; 126 when it could not
       be started, 127 when it was not found`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.PersistentFlags().String("run", "", "ID of the simulation to talk to (default: the current one)")
	root.PersistentFlags().String("name", os.Getenv(daemon.NameEnv), "name of the cluster: named clusters run side by side, each verb works on the one named (default: the unnamed one; $"+daemon.NameEnv+")")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		name, _ := cmd.Flags().GetString("name")
		if err := daemon.ValidName(name); err != nil {
			return &usageError{err}
		}
		// The daemon `up` starts inherits it.
		return os.Setenv(daemon.NameEnv, name)
	}
	root.AddCommand(newUp(), newDaemon(), newApply(), newGet(), newDescribe(), newPatch(), newScale(), newDelete(),
		newLabel(), newExec(), newKubectl(), newShell(), newDump(), newDown(), newLeaks(), newReport(), newResults(), newBench(), newDatapaths(), newKubeProxyDiff())
	return root
}

func needRoot(verb string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("svcsim %s needs root (it manages network namespaces): run it with sudo", verb)
	}
	return nil
}

// runStatus turns a finished command's error into svcsim's exit status.
func runStatus(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &exitError{code: ee.ExitCode()}
	}
	return err
}
