package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/progress"
	"github.com/svcsim/svcsim/internal/reexec"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/daemon"
	"github.com/svcsim/svcsim/plane/embedded"
	"github.com/svcsim/svcsim/topology"
)

// clusterFlags are shared by up and the hidden daemon verb.
type clusterFlags struct {
	nodes     int
	mode      string
	scheduler string
	network   string
	// controlPlane is "embedded" (svcsim's model) or "kubernetes".
	controlPlane string
}

func (f *clusterFlags) add(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.nodes, "nodes", 2, "number of nodes (node1..nodeN)")
	cmd.Flags().StringVar(&f.mode, "mode", "iptables", "proxy mode: "+strings.Join(modes.Names(), ", "))
	cmd.Flags().StringVar(&f.scheduler, "scheduler", "", "IPVS scheduler (rr, wrr, lc, sh, ...)")
	cmd.Flags().StringVar(&f.controlPlane, "control-plane", controlPlaneEmbedded, "control plane: embedded (svcsim's model) or kubernetes (genuine API server, controllers, scheduler, kube-proxy and CoreDNS; needs `make kube`)")
	cmd.Flags().StringVar(&f.network, "node-network", "198.18.0.0/24", "node (underlay) network; node i gets host .10+i, the external client .100 (e.g. the seed's 172.188.2.0/24)")
}

func (f *clusterFlags) config() (embedded.Config, error) {
	if f.nodes < 1 || f.nodes > 200 {
		return embedded.Config{}, fmt.Errorf("--nodes must be 1..200, got %d", f.nodes)
	}
	pfx, err := netip.ParsePrefix(f.network)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() > 24 {
		return embedded.Config{}, fmt.Errorf("--node-network must be an IPv4 prefix of /24 or wider, got %q", f.network)
	}
	pfx = pfx.Masked()
	cfg := embedded.DefaultConfig(f.mode, f.nodes)
	cfg.Scheduler = f.scheduler
	cfg.Underlay = pfx
	base := pfx.Addr().As4()
	at := func(host int) netip.Addr {
		a := base
		a[3] = byte(host)
		return netip.AddrFrom4(a)
	}
	cfg.ExternalIP = at(100)
	for i := range cfg.Sim.Nodes {
		cfg.Sim.Nodes[i].IP = at(11 + i)
	}
	return cfg, nil
}

func newUp() *cobra.Command {
	var cf clusterFlags
	var files []string
	cmd := &cobra.Command{
		Use:   "up [-f manifests]",
		Short: "Start a simulated cluster in the background and apply manifests",
		Example: `  sudo svcsim up -f sim/testdata/seed
  sudo svcsim up --mode nftables --nodes 3 -f my-app.yaml
  sudo svcsim up --node-network 172.188.2.0/24 -f sim/testdata/seed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot("up"); err != nil {
				return err
			}
			if _, err := cf.config(); err != nil {
				return err
			}
			switch cf.controlPlane {
			case controlPlaneEmbedded:
				d, err := modes.Get(cf.mode)
				if err != nil {
					return err
				}
				if why := d.Unsupported(); why != "" {
					return fmt.Errorf("proxy mode %s cannot run here: %s", cf.mode, why)
				}
				if d.Start.Factory == nil {
					return fmt.Errorf("datapath %s runs on the kubernetes plane: add --control-plane kubernetes", cf.mode)
				}
			case controlPlaneKubernetes:
				if _, err := cf.kubeDatapath(cmd.Flags().Changed("mode")); err != nil {
					return err
				}
			default:
				return fmt.Errorf("--control-plane is %s or %s, not %q", controlPlaneEmbedded, controlPlaneKubernetes, cf.controlPlane)
			}
			// Refuse to start over a live simulation.
			if id, err := daemon.Current(); err == nil {
				if run, err := rundir.Open(id); err == nil && run.Alive() {
					return fmt.Errorf("simulation %s is already running: use `svcsim apply`, or `svcsim down` first", id)
				}
			}
			// Read and decode manifests first: bad input starts nothing.
			ms, err := plane.ReadManifests(cmd.InOrStdin(), files...)
			if err != nil {
				return err
			}
			if cf.controlPlane == controlPlaneEmbedded {
				// The kubernetes plane's API server validates instead.
				if _, err := embedded.Decode("", ms...); err != nil {
					return err
				}
			}
			id, err := startDaemon(cmd.Context(), cf, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if len(ms) == 0 {
				return nil
			}
			c, err := daemon.Dial(cmd.Context(), id)
			if err != nil {
				return err
			}
			out, err := c.Apply(cmd.Context(), daemon.ApplyRequest{Manifests: ms})
			if err != nil {
				return fmt.Errorf("%w\n(the cluster is up with nothing applied; fix the manifests and run `svcsim apply -f`)", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), out)
			return nil
		},
	}
	cf.add(cmd)
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file or directory (repeatable)")
	return cmd
}

// startDaemon re-executes svcsim as a detached daemon, shows its progress
// until it is ready, and returns the run ID.
func startDaemon(ctx context.Context, cf clusterFlags, out io.Writer) (string, error) {
	if err := os.MkdirAll(rundir.Root(), 0o755); err != nil {
		return "", err
	}
	logf, err := os.CreateTemp(rundir.Root(), "daemon-*.log")
	if err != nil {
		return "", fmt.Errorf("create daemon log: %w", err)
	}
	defer logf.Close()
	cmd, err := reexec.Command("svcsim-daemon", "--nodes", fmt.Sprint(cf.nodes), "--mode", cf.mode,
		"--scheduler", cf.scheduler, "--node-network", cf.network, "--control-plane", cf.controlPlane, "--log", logf.Name())
	if err != nil {
		return "", err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start daemon: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Follow the log until "ready" or the daemon's exit; on a terminal a
	// status line under it says what the daemon last did and for how long.
	bar := progress.New(out)
	defer bar.Done()
	bar.Set("starting the simulation: %d nodes, %s", cf.nodes, cf.mode)
	printed := 0
	deadline := time.Now().Add(2 * time.Minute)
	for {
		bar.Tick()
		b, _ := os.ReadFile(logf.Name())
		if i := strings.LastIndexByte(string(b), '\n'); i >= printed {
			chunk := string(b[printed : i+1])
			printed = i + 1
			bar.Print(chunk)
			if lines := strings.Split(strings.TrimSpace(chunk), "\n"); lines[len(lines)-1] != "" {
				bar.Set("starting the simulation: %s", lines[len(lines)-1])
			}
			for _, line := range strings.Split(chunk, "\n") {
				// "run <id>: ready (<mode> mode, <n> nodes)"
				if f := strings.Fields(line); len(f) > 2 && f[0] == "run" && f[2] == "ready" {
					return strings.TrimSuffix(f[1], ":"), nil
				}
			}
		}
		select {
		case werr := <-exited:
			b, _ := os.ReadFile(logf.Name())
			bar.Print(string(b[printed:]))
			return "", fmt.Errorf("the simulation failed to start (%v); log: %s", werr, logf.Name())
		case <-ctx.Done():
			// Interrupted: the daemon tears down what it built, and exits.
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-exited
			return "", fmt.Errorf("interrupted; the simulation was stopped: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return "", fmt.Errorf("the simulation did not become ready within 2 minutes; log: %s", logf.Name())
		}
	}
}

func init() {
	reexec.Register("svcsim-daemon", func() {
		cmd := newDaemon()
		cmd.SetArgs(os.Args[1:])
		if err := cmd.Execute(); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
	})
}

func newDaemon() *cobra.Command {
	var cf clusterFlags
	var logPath string
	cmd := &cobra.Command{
		Use:    "daemon",
		Short:  "Run a simulation in the foreground (what `up` starts in the background)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot("daemon"); err != nil {
				return err
			}
			cfg, err := cf.config()
			if err != nil {
				return err
			}
			cfg.Log = cmd.OutOrStdout()
			if cf.controlPlane == controlPlaneKubernetes {
				err = serveKubernetes(cf, cmd)
			} else {
				err = daemon.Serve(context.Background(), cfg)
			}
			if err == nil && logPath != "" {
				_ = os.Remove(logPath) // a clean exit leaves no log behind
			}
			return err
		},
	}
	cf.add(cmd)
	cmd.Flags().StringVar(&logPath, "log", "", "log file to remove on a clean exit")
	return cmd
}

func newDown() *cobra.Command {
	var all, verbose bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the running simulation and remove leftovers of killed runs",
		Long: `down stops the current simulation (its proxies clean up their rules, its
namespaces are removed) and then garbage-collects whatever runs that were killed
left behind: namespaces, processes and run directories named with a svcsim run ID
whose owner is dead. Runs of live processes are left alone unless --all is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot("down"); err != nil {
				return err
			}
			ctx := cmd.Context()
			if id, err := daemon.Current(); err == nil {
				if c, err := daemon.Dial(ctx, id); err == nil {
					if err := c.Down(ctx); err != nil {
						return err
					}
					// Wait for the daemon to finish tearing down.
					for i := 0; i < 600; i++ {
						run, err := rundir.Open(id)
						if err != nil || !run.Alive() {
							break
						}
						time.Sleep(50 * time.Millisecond)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "simulation %s stopped\n", id)
				}
				_ = os.Remove(daemon.CurrentPath())
			}
			runs, err := topology.GCRuns(ctx, all)
			printRemoved(cmd.OutOrStdout(), runs, removeStaleLogs(), verbose)
			// svcsim's mount point of /run/netns goes with the last namespace.
			if rerr := netns.ReleaseMountPoint(); rerr != nil {
				err = errors.Join(err, rerr)
			}
			if c, cerr := netns.Covered(); cerr == nil && c != nil {
				// The removals it made fail say only EBUSY: name the cause and
				// the remedy once, after them.
				err = errors.Join(err, c)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "also remove live runs of other svcsim processes (running tests, say)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "name every namespace, process and file removed")
	return cmd
}

// printRemoved says what down removed: one line per run with counts (a
// 1,000-pod run has hundreds of namespaces), or every item with verbose.
func printRemoved(w io.Writer, runs []topology.RunRemoval, logs []string, verbose bool) {
	for _, r := range runs {
		if verbose {
			for _, item := range r.Removed {
				fmt.Fprintf(w, "removed %s\n", item)
			}
			continue
		}
		counts := map[string]int{}
		var order []string
		for _, item := range r.Removed {
			// "namespace <name>", "process <pid>", "run dir <dir>": what it
			// is, before its name.
			what := item
			if i := strings.LastIndex(item, " "); i > 0 {
				what = item[:i]
			}
			if counts[what] == 0 {
				order = append(order, what)
			}
			counts[what]++
		}
		var parts []string
		for _, what := range order {
			parts = append(parts, countOf(counts[what], what))
		}
		fmt.Fprintf(w, "removed run %s: %s\n", r.ID, strings.Join(parts, ", "))
	}
	if len(logs) > 0 {
		if verbose {
			for _, l := range logs {
				fmt.Fprintf(w, "removed %s\n", l)
			}
		} else {
			fmt.Fprintf(w, "removed %s\n", countOf(len(logs), "stale daemon log"))
		}
	}
}

// countOf is "1 namespace", "3 namespaces", "1 process", "2 processes".
func countOf(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "s") {
		return fmt.Sprintf("%d %ses", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// removeStaleLogs deletes logs of daemons that no process holds open any
// more (daemons killed before they could remove their own).
func removeStaleLogs() []string {
	var removed []string
	for _, l := range staleLogs() {
		if os.Remove(l) == nil {
			removed = append(removed, l)
		}
	}
	return removed
}

// staleLogs lists the daemon logs no process holds open.
func staleLogs() []string {
	logs, _ := filepath.Glob(filepath.Join(rundir.Root(), "daemon-*.log"))
	if len(logs) == 0 {
		return nil
	}
	open := map[string]bool{}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil {
			open[target] = true
		}
	}
	var stale []string
	for _, l := range logs {
		if !open[l] {
			stale = append(stale, l)
		}
	}
	return stale
}

func newLeaks() *cobra.Command {
	var save, baseline string
	cmd := &cobra.Command{
		Use:   "leaks",
		Short: "List what svcsim runs that are no longer alive left behind; exit 1 if anything",
		Long: `leaks lists, without removing anything, what svcsim down would remove: the run
directories, processes, namespaces and daemon logs of runs whose owner is dead,
namespace mounts hidden under a cover of /run/netns, and svcsim's mount point of
/run/netns with nothing under it. Live runs (other svcsim processes, running
tests) are not listed. It exits 1 when anything is listed. --save writes the
list to a file; --baseline leaves out what such a file lists (make test saves
one at its start and checks against it at its end).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot("leaks"); err != nil {
				return err
			}
			items, err := topology.Leaks()
			if err != nil {
				return err
			}
			for _, l := range staleLogs() {
				items = append(items, "daemon log "+l)
			}
			if save != "" {
				if err := os.WriteFile(save, []byte(strings.Join(append(items, ""), "\n")), 0o644); err != nil {
					return fmt.Errorf("save leaks: %w", err)
				}
				return nil
			}
			if baseline != "" {
				b, err := os.ReadFile(baseline)
				if err != nil {
					return fmt.Errorf("read baseline: %w", err)
				}
				known := map[string]bool{}
				for _, l := range strings.Split(string(b), "\n") {
					known[l] = true
				}
				items = slices.DeleteFunc(items, func(l string) bool { return known[l] })
			}
			for _, l := range items {
				fmt.Fprintln(cmd.OutOrStdout(), "leaked:", l)
			}
			if len(items) > 0 {
				return fmt.Errorf("%d leftovers of dead svcsim runs (svcsim down removes them)", len(items))
			}
			fmt.Fprintln(cmd.OutOrStdout(), "no leftovers of dead svcsim runs")
			return nil
		},
	}
	cmd.Flags().StringVar(&save, "save", "", "write the list to this file and exit 0")
	cmd.Flags().StringVar(&baseline, "baseline", "", "leave out what this file (from --save) lists")
	return cmd
}
