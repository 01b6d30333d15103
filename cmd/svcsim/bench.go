package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/svcsim/svcsim/bench"
	"github.com/svcsim/svcsim/kernellane"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/report/results"
)

// svcsim is the kernel lane's /init (kernellane.Config.InitBin; a dynamically
// linked build brings its loader and libraries into the initramfs): it must
// then act as the guest's init before anything else runs.
func init() {
	if kernellane.IsGuest() {
		kernellane.GuestMain() // never returns
	}
}

// benchOpts are the flags of svcsim bench.
type benchOpts struct {
	quick, noVM, noTraffic bool
	noPlane, kubernetes    bool
	seed                   string
	datapaths              []string
	services               []int
	endpoints, reps        int
	out, kernel            string
	vmTimeout              time.Duration
}

func newBench() *cobra.Command {
	var o benchOpts
	cmd := &cobra.Command{
		Use:   "bench [--quick] [--datapaths DP,...] [--services N,...] [--endpoints E] [--reps R] [-o DIR] [--no-vm]",
		Short: "Measure rule-update cost, first-packet latency, convergence and throughput per datapath",
		Long: `svcsim bench programs N synthetic Services of E endpoints into private network
namespaces with every datapath this machine offers (userspace, iptables/legacy,
iptables/nft, ipvs, nftables) and measures, in one run so that ratios are
meaningful:

  full-sync        the first Sync of N services (Extra: rule/object counts, the
                   host-wide Slab delta, ratio to the floor)
  endpoint-change  one endpoint added to / removed from the last service with N present
  full-resync      the same change with a forced full resync (iptables, nftables)
  floor-*          the raw tool alone on the same input: iptables-*-restore of the
                   mode's text, nft -f of its table, one netlink IPVS call
  first-packet     connect() to the VIP of the service last in chain order vs to the
                   pod directly (floor-direct), percentiles
  convergence      endpoint change until the first request answered by the new pod
  rps-keepalive, rps-new-conn   requests/s through the VIP vs directly (bounded)
  plane-programmed a Deployment scaled by one through a two-node cluster's control
                   plane with N Services, until every node's proxy programmed it

Named in --datapaths, the genuine kube-proxy's datapaths (kube-proxy/nftables,
kube-proxy/iptables-legacy, kube-proxy/iptables-nft; bin/k8s needed) are measured
in the same run on a one-node kubernetes plane with the same Services and changes
(--iptables-min-sync-period=0s: svcsim's proxiers have no minimum period either):
full-sync and endpoint-change from kube-proxy's own histograms
(kubeproxy_sync_full_/partial_proxy_rules_duration_seconds, the _sum delta over
the _count delta of each sync), then a table of same-run ratios svcsim/kube-proxy
and kube-proxy's figures over the raw tool's floor.

With --kubernetes it measures the kubernetes plane instead (the genuine control
plane, kube-proxy/nftables, svcsim as kubelet; bin/k8s needed):

  kube-up-seed       svcsim up --control-plane kubernetes -f sim/testdata/seed until it
                     returns (every node Ready, every seed pod Running, programmed)
  kube-peak-memory   the largest PSS sum of the daemon and every process below it
                     during that up (RSS in the results file)
  kube-pods-running  pods/s: a Deployment of 200 replicas on 10 nodes until every pod
                     is Running; kube-controller-manager and kube-scheduler get
                     --kube-api-qps=200 --kube-api-burst=400 for it (their defaults,
                     20/30 and 50/100, hold it at about 20 pods/s)

Results are JSON files (package report/results) in -o (default
$SVCSIM_RESULTS_DIR, else results/ at the repository root); ` + "`svcsim report`" + ` renders them.
A short table is printed at the end. Nothing is asserted: the scenario
TestRuleUpdateScaling asserts the robust relative facts.

When the host kernel lacks IP_VS, the ipvs datapath runs in the qemu kernel lane
(package kernellane, Debian kernel --vm-kernel): this binary is run again inside the
guest with --datapaths ipvs --no-vm, the results directory shared read-write.
The guest's /init must be a static binary: this one if built with CGO_ENABLED=0,
else a static vmtest next to it or on PATH (CGO_ENABLED=0 go build -o bin/vmtest
./cmd/vmtest). The guest runs about 15x slower than the host for CPU-bound work
(TCG): its absolute figures are only comparable with each other.

Durations measured on a shared 2-core AMD EPYC (kernel 6.18, TCG guest):
  --quick           N=100,1000, 3 reps: about 1.5 minutes in all (55 s on the host,
                    35 s for ipvs in the kernel lane, boot included)
  default (full)    N=100,1000,5000,10000, 5 reps: about 35 minutes: 32 on the host
                    (iptables/nft 13: its full syncs and restores of 10,000
                    services take 30 s each; nftables 10: its forced full resync
                    of 10,000 services takes 80 s), 4 for ipvs in the lane
  --services 30000  plan for several hours (iptables/nft grows superlinearly);
                    --datapaths and --no-traffic narrow the sweep`,
		Example: `  sudo svcsim bench --quick
  sudo svcsim bench --kubernetes -o /tmp/results
  sudo svcsim bench --datapaths iptables/legacy,nftables --services 100,1000,10000 --reps 3
  sudo svcsim bench -o /tmp/results && svcsim report -i /tmp/results -o /tmp/report.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot("bench"); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runBench(ctx, cmd, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.quick, "quick", false, "CI sweep: N=100,1000, fewer repetitions and samples (under 2 minutes)")
	f.StringSliceVar(&o.datapaths, "datapaths", nil, "datapaths to measure (default: "+strings.Join(bench.Datapaths(), ",")+")")
	f.IntSliceVar(&o.services, "services", nil, fmt.Sprintf("service counts N (default 100,1000,5000,10000; --quick 100,1000; at most %d)", bench.MaxServices))
	f.IntVar(&o.endpoints, "endpoints", 2, "endpoints per service E")
	f.IntVar(&o.reps, "reps", 0, "fresh-namespace repetitions per N (default 5; --quick 3)")
	f.StringVarP(&o.out, "output", "o", "", "results directory (default $SVCSIM_RESULTS_DIR, else <repo>/results)")
	f.BoolVar(&o.noVM, "no-vm", false, "never use the kernel lane: skip datapaths the host kernel cannot run (ipvs without IP_VS)")
	f.BoolVar(&o.noTraffic, "no-traffic", false, "rule updates only: no first-packet, convergence or throughput")
	f.BoolVar(&o.noPlane, "no-plane", false, "no changes through a two-node cluster's control plane (plane-programmed)")
	f.BoolVar(&o.kubernetes, "kubernetes", false, "measure the kubernetes plane (up, peak memory, pods/s) instead of the datapaths")
	f.StringVar(&o.seed, "seed", "", "with --kubernetes: the manifests `up` applies (default sim/testdata/seed above the working directory)")
	f.StringVar(&o.kernel, "vm-kernel", "6.1", "kernel of the kernel lane (see vmtest --kernel)")
	f.DurationVar(&o.vmTimeout, "vm-timeout", 0, "bound on the kernel-lane run (default 10m with --quick, else 2h)")
	return cmd
}

// config turns the flags into a bench.Config.
func (o benchOpts) config() bench.Config {
	c := bench.Full()
	if o.quick {
		c = bench.Quick()
	}
	if len(o.datapaths) > 0 {
		c.Datapaths = o.datapaths
	}
	if len(o.services) > 0 {
		c.Services = o.services
	}
	c.Endpoints = o.endpoints
	if o.reps > 0 {
		c.Reps = o.reps
	}
	c.Traffic = !o.noTraffic
	c.Plane = !o.noPlane
	if o.quick && strings.HasPrefix(c.Lane, "vm:") {
		// The guest runs under TCG: fewer samples keep --quick quick.
		c.Conns, c.RPSTime, c.RPSReps, c.ConvergeReps = 100, 300*time.Millisecond, 1, 2
	}
	return c
}

func runBench(ctx context.Context, cmd *cobra.Command, o benchOpts) error {
	out, err := benchResultsDir(o.out)
	if err != nil {
		return err
	}
	if o.kubernetes {
		return runKubeBench(ctx, cmd, o, out)
	}
	cfg := o.config()
	cfg.ResultsDir, cfg.Log = out, cmd.ErrOrStderr()
	var vm []string // datapaths only the kernel lane can run
	var why []string
	if !o.noVM {
		for _, dp := range cfg.Datapaths {
			if d, ok := modes.Lookup(dp); ok {
				if lane, err := d.Where(); lane == modes.LaneKernel {
					vm = append(vm, dp)
					why = append(why, fmt.Sprintf("%s: %v", dp, err))
				}
			}
		}
		cfg.Datapaths = slices.DeleteFunc(slices.Clone(cfg.Datapaths), func(d string) bool { return slices.Contains(vm, d) })
	}
	start := time.Now()
	w := cmd.OutOrStdout()
	var errs []error
	if len(cfg.Datapaths) > 0 {
		sum, err := bench.Run(ctx, cfg)
		if sum != nil {
			if terr := sum.WriteTable(w); terr != nil {
				errs = append(errs, terr)
			}
			if len(sum.Errors) > 0 {
				errs = append(errs, fmt.Errorf("%d measurements failed (see above)", len(sum.Errors)))
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(vm) > 0 && ctx.Err() == nil {
		fmt.Fprintf(w, "\n%s\nrunning %s in the kernel lane (%s)\n", strings.Join(why, "\n"), strings.Join(vm, ", "), o.kernel)
		if err := benchInVM(ctx, cmd, o, out, vm); err != nil {
			errs = append(errs, fmt.Errorf("kernel lane: %w", err))
		}
	}
	fmt.Fprintf(w, "\nresults: %s (%s)\n", out, time.Since(start).Round(time.Second))
	return errors.Join(errs...)
}

// benchResultsDir is -o, else defaultResultsDir(); always absolute (the
// kernel lane shares it by path).
func benchResultsDir(flag string) (string, error) {
	dir := flag
	if dir == "" {
		dir = defaultResultsDir()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("results dir %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("create results dir: %w", err)
	}
	return abs, nil
}

// benchInVM runs this binary with --datapaths <datapaths> --no-vm inside the
// kernel lane, the results directory shared, then prints the table of what it
// wrote.
func benchInVM(ctx context.Context, cmd *cobra.Command, o benchOpts, out string, datapaths []string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	lane := "vm:debian-" + o.kernel
	argv := []string{exe, "bench", "--datapaths", strings.Join(datapaths, ","), "--no-vm", "-o", out,
		"--endpoints", strconv.Itoa(o.endpoints)}
	if o.quick {
		argv = append(argv, "--quick")
	}
	if len(o.services) > 0 {
		ns := make([]string, len(o.services))
		for i, n := range o.services {
			ns[i] = strconv.Itoa(n)
		}
		argv = append(argv, "--services", strings.Join(ns, ","))
	}
	if o.reps > 0 {
		argv = append(argv, "--reps", strconv.Itoa(o.reps))
	}
	if o.noTraffic {
		argv = append(argv, "--no-traffic")
	}
	if o.noPlane {
		argv = append(argv, "--no-plane")
	}
	timeout := o.vmTimeout
	if timeout == 0 {
		timeout = 2 * time.Hour
		if o.quick {
			timeout = 10 * time.Minute
		}
	}
	start := time.Now().UTC()
	code, err := kernellane.Run(ctx, kernellane.Config{
		Kernel: o.kernel, Share: out, Argv: argv, InitBin: exe, Timeout: timeout,
		Env:    []string{"SVCSIM_LANE=" + lane, "SVCSIM_RESULTS_DIR=" + out},
		Stdout: cmd.OutOrStdout(), Log: cmd.ErrOrStderr(), Prefix: "[vm] ",
	})
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("svcsim bench in the guest exited with status %d", code)
	}
	return printLaneTable(cmd.OutOrStdout(), out, lane, start)
}

// printLaneTable prints the table of the benches lane wrote into dir since start.
func printLaneTable(w io.Writer, dir, lane string, start time.Time) error {
	set, err := results.ReadDir(dir)
	if err != nil {
		return err
	}
	sum := &bench.Summary{Load: "(see the guest's log)"}
	for _, b := range set.Benches {
		if b.Env.Lane == lane && !b.Env.Time.Before(start.Add(-time.Minute)) {
			sum.Benches = append(sum.Benches, b)
			sum.Env = b.Env
		}
	}
	if len(sum.Benches) == 0 {
		return fmt.Errorf("the guest wrote no %s results into %s", lane, dir)
	}
	fmt.Fprintln(w)
	return sum.WriteTable(w)
}

// runKubeBench is `svcsim bench --kubernetes`.
func runKubeBench(ctx context.Context, cmd *cobra.Command, o benchOpts, out string) error {
	cfg := bench.DefaultKube()
	if o.quick {
		cfg.UpReps, cfg.PodReps = 1, 1
	}
	if o.reps > 0 {
		cfg.UpReps, cfg.PodReps = o.reps, o.reps
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Svcsim, cfg.Seed, cfg.ResultsDir, cfg.Log = self, o.seed, out, cmd.ErrOrStderr()
	if cfg.Seed == "" {
		if cfg.Seed, err = findSeed(); err != nil {
			return err
		}
	}
	start := time.Now()
	benches, err := bench.Kube(ctx, cfg)
	w := cmd.OutOrStdout()
	for _, b := range benches {
		for _, p := range b.Points {
			fmt.Fprintf(w, "%-18s %-20s N=%-4d median %.2f %s (min %.2f, max %.2f, %d reps)\n", b.Metric, b.Datapath, p.N, p.Median, b.Unit, p.Min, p.Max, p.Reps)
		}
	}
	fmt.Fprintf(w, "\nresults: %s (%s)\n", out, time.Since(start).Round(time.Second))
	return err
}

// findSeed is sim/testdata/seed in the working directory or above it.
func findSeed() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		p := filepath.Join(d, "sim", "testdata", "seed")
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no sim/testdata/seed above %s: give --seed", wd)
		}
	}
}
