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

	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/kubeproxy"
	"github.com/svcsim/svcsim/plane/daemon"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/plane/kube/cluster"
)

// Control planes `up --control-plane` takes.
const (
	controlPlaneEmbedded   = "embedded"
	controlPlaneKubernetes = cluster.ControlPlaneName
)

// kubeDatapath resolves --mode for the kubernetes plane: a kube-proxy
// datapath's modes name ("kube-proxy/nftables") or svcsim's own datapath
// there, by its name on that plane ("nftables@kubernetes") or its own
// ("nftables"); an unchanged --mode means kubeproxy.Default.
func (f *clusterFlags) kubeDatapath(changed bool) (modes.Datapath, error) {
	name := f.mode
	if !changed {
		name = kubeproxy.Default
	}
	if _, ok := cluster.Lookup(name); !ok {
		if _, ok := cluster.OwnMode(name + cluster.OnPlane); ok {
			name += cluster.OnPlane
		}
	}
	d, err := cluster.Get(name)
	if err != nil {
		return modes.Datapath{}, fmt.Errorf("--control-plane kubernetes: %w", err)
	}
	if why := d.Unsupported(); why != "" {
		return modes.Datapath{}, fmt.Errorf("datapath %s cannot run here: %s", d.Name, why)
	}
	f.mode = d.Name
	return d, nil
}

// serveKubernetes runs the kubernetes plane in the daemon until `down`.
func serveKubernetes(cf clusterFlags, cmd *cobra.Command) error {
	d, err := cluster.Get(cf.mode)
	if err != nil {
		return err
	}
	if cf.network != "198.18.0.0/24" {
		return errors.New("--control-plane kubernetes uses the default node network 198.18.0.0/24")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	c, err := cluster.Start(ctx, cluster.Options{Nodes: cf.nodes, Datapath: d.Name, Log: cmd.OutOrStdout()})
	if err != nil {
		return err
	}
	return daemon.ServePlane(ctx, c, cmd.OutOrStdout())
}

// openKube opens the kubernetes plane's control plane of the current (or
// --run) simulation.
func openKube(cmd *cobra.Command) (*kube.Client, error) {
	id, _ := cmd.Flags().GetString("run")
	if id == "" {
		var err error
		if id, err = daemon.Current(); err != nil {
			return nil, fmt.Errorf("no simulation is running (`svcsim up --control-plane kubernetes` starts one): %w", err)
		}
	}
	run, err := rundir.Open(id)
	if err != nil {
		return nil, err
	}
	c, err := kube.Open(run)
	if err != nil {
		return nil, fmt.Errorf("%w (kubectl and shell need `svcsim up --control-plane kubernetes`)", err)
	}
	return c, nil
}

func newKubectl() *cobra.Command {
	return &cobra.Command{
		Use:   "kubectl [ARGS...]",
		Short: "Run the genuine kubectl against the kubernetes plane",
		Long: `kubectl runs the genuine kubectl (v1.37, from bin/k8s) against the cluster that
` + "`svcsim up --control-plane kubernetes`" + ` started, with its administrator's
kubeconfig and kubectl's cache inside the run directory (nothing is written under
your home). Errors are the API server's own.`,
		Example: `  sudo svcsim kubectl create -f ./myhttp-v2-service.yaml
  sudo svcsim kubectl get svc -o wide`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needRoot("kubectl"); err != nil {
				return err
			}
			c, err := openKube(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			return runStatus(c.Kubectl(cmd.Context(), kube.KubectlOptions{In: cmd.InOrStdin(), Out: cmd.OutOrStdout(), Err: cmd.ErrOrStderr()}, args...))
		},
	}
}

func newShell() *cobra.Command {
	return &cobra.Command{
		Use:   "shell",
		Short: "Open a shell with kubectl for the kubernetes plane",
		Long: `shell opens $SHELL (or /bin/sh) in the control-plane network namespace, where the
API server is reachable, with KUBECONFIG set, the genuine kubectl first on PATH,
and HOME and kubectl's cache inside the run directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot("shell"); err != nil {
				return err
			}
			c, err := openKube(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			sh := os.Getenv("SHELL")
			if sh == "" {
				sh = "/bin/sh"
			}
			x := exec.CommandContext(cmd.Context(), sh)
			x.Env = append(c.KubectlEnv(), "TERM="+os.Getenv("TERM"), "PS1=(svcsim kubernetes) \\w$ ")
			x.Stdin, x.Stdout, x.Stderr = os.Stdin, os.Stdout, os.Stderr
			return runStatus(c.NS().Do(x.Run))
		},
	}
}
