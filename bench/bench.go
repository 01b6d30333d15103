// Package bench is svcsim's scale benchmark: per datapath it programs N
// synthetic Services of E endpoints into a private network namespace and
// measures what the seed's central claim is about (iptables updates are not
// incremental, IPVS fixes it), side by side and in the same run:
//
//   - full-sync: the first Sync of N services, from handing the state to
//     Sync to its return;
//   - endpoint-change: one endpoint added to (and removed from) the last
//     service with N present: the mode's partial or incremental path
//     ("network programming latency");
//   - the physical floor: the raw tool alone on the same input
//     (iptables-*-restore of the text the mode generated, nft -f of the
//     mode's table, one moby/ipvs netlink call), each in a fresh namespace
//     except the IPVS call, which runs with the N services present;
//   - rule and object counts, and the host's Slab delta (host-wide: other
//     processes allocate too, so it is indicative only);
//   - with a real one-node topology (package topology): first-packet
//     latency (connect() to the VIP of the last service vs to the pod
//     directly), convergence (endpoint change until the first request
//     answered by the new backend) and requests per second through the VIP
//     vs directly, keep-alive and new connections.
//
// Results are results.Bench files, one per datapath and metric, in the
// results directory. The driver never asserts speeds; scenarios compare
// figures of one run relative to each other.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/svcsim/svcsim/internal/hostinfo"
	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/internal/stats"
	_ "github.com/svcsim/svcsim/modes/all" // every mode
	"github.com/svcsim/svcsim/modes/iptables"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/topology"
)

// Metric names: report.Metric*, and report.FloorPrefix / RPSPrefix for the
// floors (drawn dashed on the charts their FloorFor names) and throughputs.
const (
	MetricFullSync       = "full-sync"
	MetricEndpointChange = "endpoint-change"
	MetricFloorRestore   = "floor-restore"
	MetricFloorNft       = "floor-nft"
	// MetricFloorNftChange is nftables' one-change floor: the mode's own
	// add and remove transactions replayed with nft -f at the same N.
	MetricFloorNftChange = "floor-nft-change"
	MetricFloorIPVS      = "floor-ipvs"
	MetricFirstPacket    = "first-packet"
	MetricConvergence    = "convergence"
	// MetricFullResync is one endpoint change applied by a forced full
	// resync with N present (iptables and nftables: what the partial path
	// saves); the "partial vs full" target compares it to
	// endpoint-change.
	MetricFullResync = "full-resync"
	// MetricFloorDirect is connect() straight to the pod IP, measured beside
	// first-packet: the floor of its chart (Bench.FloorFor).
	MetricFloorDirect  = "floor-direct"
	MetricRPSKeepAlive = "rps-keepalive"
	MetricRPSNewConn   = "rps-new-conn"
)

// Config says what to measure.
type Config struct {
	// Datapaths to measure; unsupported ones are reported as skipped.
	Datapaths []string
	// Services are the N values of the sweep.
	Services []int
	// Endpoints per service (E).
	Endpoints int
	// Reps is the number of fresh namespaces (full syncs) per N.
	Reps int
	// Changes is the number of add+remove endpoint changes per rep.
	Changes int
	// Traffic enables first-packet, convergence and throughput.
	Traffic bool
	// Plane enables MetricPlaneProgrammed: Changes scale-ups and downs
	// through a two-node embedded cluster (package plane) with N Services.
	Plane bool
	// Conns is the number of connect() samples per first-packet point.
	Conns int
	// ConvergeReps is the number of convergence samples per N.
	ConvergeReps int
	// RPSMax and RPSTime bound each throughput sample; RPSReps samples.
	RPSMax  int
	RPSTime time.Duration
	RPSReps int
	// IPVSFloorReps is the number of raw netlink samples per N.
	IPVSFloorReps int
	// NoFloor skips the full-sync and IPVS floors (for tests that do not use
	// them); nftables' one-change floor, a few nft runs, always runs.
	NoFloor bool
	// ResultsDir receives the Bench files ("" writes nothing).
	ResultsDir string
	// Lane is "host" or "vm:<kernel>".
	Lane string
	// Log receives progress lines (nil: discarded).
	Log io.Writer
}

// Full is the default sweep of svcsim's datapaths; the genuine kube-proxy's
// (KubeProxyDatapaths) are measured when named.
func Full() Config {
	return Config{
		Datapaths: Datapaths(), Services: []int{100, 1000, 5000, 10000}, Endpoints: 2,
		Reps: 5, Changes: 3, Traffic: true, Plane: true, Conns: 300, ConvergeReps: 5,
		RPSMax: 20000, RPSTime: 2 * time.Second, RPSReps: 3, IPVSFloorReps: 20,
		Lane: hostinfo.Lane(),
	}
}

// Quick is the CI sweep: under two minutes on a 2-core machine.
func Quick() Config {
	c := Full()
	c.Services = []int{100, 1000}
	c.Reps, c.Changes = 3, 2
	c.Conns, c.ConvergeReps = 200, 3
	c.RPSMax, c.RPSTime, c.RPSReps = 5000, 500*time.Millisecond, 2
	c.IPVSFloorReps = 10
	return c
}

func (c Config) validate() error {
	var errs []error
	if len(c.Datapaths) == 0 {
		errs = append(errs, errors.New("no datapaths"))
	}
	if len(c.Services) == 0 {
		errs = append(errs, errors.New("no service counts"))
	}
	for _, n := range c.Services {
		if n < 1 || n > MaxServices {
			errs = append(errs, fmt.Errorf("services %d: want 1..%d", n, MaxServices))
		} else if n*c.Endpoints >= synthCount {
			errs = append(errs, fmt.Errorf("%d services x %d endpoints exceed the synthetic address pool", n, c.Endpoints))
		}
	}
	if c.Endpoints < 1 || c.Endpoints > 64 {
		errs = append(errs, fmt.Errorf("endpoints %d: want 1..64", c.Endpoints))
	}
	if c.Reps < 1 || c.Changes < 1 {
		errs = append(errs, errors.New("reps and changes must be at least 1"))
	}
	if c.Traffic && (c.Conns < 1 || c.ConvergeReps < 1 || c.RPSReps < 1 || c.RPSMax < 1 || c.RPSTime <= 0) {
		errs = append(errs, errors.New("traffic sample counts and times must be positive"))
	}
	return errors.Join(errs...)
}

// Summary is what one Run measured, for printing.
type Summary struct {
	// Run is the run ID prefixing every namespace the run made.
	Run     string
	Env     results.Env
	Load    string
	Benches []results.Bench
	// Skipped maps a datapath to why it was not measured.
	Skipped map[string]string
	// Errors are failures of single measurements (the rest went on).
	Errors []string
}

// Bench returns the bench of dp and metric, if measured.
func (s *Summary) Bench(dp, metric string) (results.Bench, bool) {
	for _, b := range s.Benches {
		if b.Datapath == dp && b.Metric == metric {
			return b, true
		}
	}
	return results.Bench{}, false
}

// Point returns the point at n of dp's metric.
func (s *Summary) Point(dp, metric string, n int) (results.Point, bool) {
	b, ok := s.Bench(dp, metric)
	if !ok {
		return results.Point{}, false
	}
	for _, p := range b.Points {
		if p.N == n {
			return p, true
		}
	}
	return results.Point{}, false
}

// runner holds one Run's shared state.
type runner struct {
	cfg   Config
	env   results.Env
	run   *rundir.Run
	seq   atomic.Int64
	topo  *topology.Topology
	pods  [3]*topology.Pod // backends A and B, and the direct target
	cli   *topology.Pod
	sum   *Summary
	notes map[string]string // per datapath+metric
	tmp   string
}

func (r *runner) logf(format string, args ...any) {
	if r.cfg.Log != nil {
		fmt.Fprintf(r.cfg.Log, format+"\n", args...)
	}
}

// Run measures every datapath of cfg and writes the results. A datapath
// this machine lacks is skipped (Summary.Skipped); a failed measurement is
// recorded in Summary.Errors and the rest goes on. The error is for what
// stops the whole run (bad config, no namespace, results not written).
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if cfg.Lane == "" {
		cfg.Lane = hostinfo.Lane()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the benchmark programs real kernels in network namespaces and needs root")
	}
	ns := slices.Clone(cfg.Services)
	sort.Ints(ns)
	cfg.Services = slices.Compact(ns)
	r := &runner{cfg: cfg, env: hostinfo.Collect(cfg.Lane), notes: map[string]string{},
		sum: &Summary{Skipped: map[string]string{}, Load: loadAvg()}}
	r.sum.Env = r.env
	run, err := rundir.New()
	if err != nil {
		return nil, fmt.Errorf("new run: %w", err)
	}
	r.run = run
	r.sum.Run = run.ID
	if r.tmp, err = os.MkdirTemp(run.Dir, "bench"); err != nil {
		_ = run.Remove()
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer func() {
		if r.topo != nil {
			if err := r.topo.Close(); err != nil {
				r.sum.Errors = append(r.sum.Errors, fmt.Sprintf("close topology: %v", err))
			}
		}
		if err := run.Remove(); err != nil {
			r.sum.Errors = append(r.sum.Errors, fmt.Sprintf("remove run dir: %v", err))
		}
	}()
	r.logf("bench: lane %s, kernel %s, %d CPUs, load average %s; N=%v, E=%d, %d reps",
		r.env.Lane, r.env.Kernel, r.env.CPUs, r.sum.Load, cfg.Services, cfg.Endpoints, cfg.Reps)
	for _, dp := range cfg.Datapaths {
		if err := ctx.Err(); err != nil {
			return r.sum, err
		}
		if why := Unsupported(dp); why != "" {
			r.sum.Skipped[dp] = why
			r.logf("bench: %s skipped: %s", dp, why)
			continue
		}
		r.datapath(ctx, dp)
	}
	if cfg.ResultsDir != "" {
		if err := results.WriteEnv(cfg.ResultsDir, r.env); err != nil {
			return r.sum, err
		}
		for _, b := range r.sum.Benches {
			if err := results.WriteBench(cfg.ResultsDir, b); err != nil {
				return r.sum, err
			}
		}
	}
	return r.sum, nil
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (r *runner) fail(dp, what string, err error) {
	msg := fmt.Sprintf("%s: %s: %v", dp, what, err)
	r.sum.Errors = append(r.sum.Errors, msg)
	r.logf("bench: error: %s", msg)
}

// series accumulates the points of one datapath's metrics.
type series map[string][]results.Point

func (s series) add(metric string, p results.Point) { s[metric] = append(s[metric], p) }

// point summarises samples at n; percentiles are kept for latencies.
func point(n int, samples []float64, pct bool, extra map[string]float64) results.Point {
	sm := stats.Summarize(samples)
	p := results.Point{N: n, Reps: sm.N, Median: sm.Median, Min: sm.Min, Max: sm.Max}
	if pct {
		p.P90, p.P99 = sm.P90, sm.P99
	}
	if len(extra) > 0 {
		p.Extra = extra
	}
	return p
}

// datapath measures one datapath over the sweep and adds its benches.
func (r *runner) datapath(ctx context.Context, dp string) {
	s := series{}
	start := time.Now()
	if isKubeProxy(dp) {
		if err := r.kubeProxy(ctx, dp, s); err != nil {
			r.fail(dp, "kube-proxy's syncs", err)
		}
	} else {
		for _, n := range r.cfg.Services {
			if ctx.Err() != nil {
				return
			}
			if err := r.rules(ctx, dp, n, s); err != nil {
				r.fail(dp, fmt.Sprintf("rule updates at N=%d", n), err)
			}
		}
	}
	if r.cfg.Traffic && ctx.Err() == nil && !isKubeProxy(dp) {
		if err := r.traffic(ctx, dp, s); err != nil {
			r.fail(dp, "traffic", err)
		}
	}
	if r.cfg.Plane && ctx.Err() == nil && !isKubeProxy(dp) {
		if err := r.plane(ctx, dp, s); err != nil {
			r.fail(dp, "changes through the plane", err)
		}
	}
	r.logf("bench: %s done in %s", dp, time.Since(start).Round(time.Millisecond))
	floor, floorFor := FloorMetric(dp)
	for _, m := range []string{MetricFullSync, MetricEndpointChange, MetricFullResync, floor, MetricFloorNftChange, MetricFirstPacket,
		MetricFloorDirect, MetricConvergence, MetricRPSKeepAlive, MetricRPSNewConn, MetricPlaneProgrammed} {
		pts := s[m]
		if m == "" || len(pts) == 0 {
			continue
		}
		b := results.Bench{Datapath: dp, Metric: m, Unit: "ms", XLabel: "Services", Env: r.env, Points: pts,
			Note: r.note(dp, m), Info: info(dp)}
		switch m {
		case MetricRPSKeepAlive, MetricRPSNewConn:
			b.Unit = "req/s"
		case floor:
			b.FloorFor = floorFor
		case MetricFloorNftChange:
			b.FloorFor = []string{MetricEndpointChange}
		case MetricFloorDirect:
			b.FloorFor = []string{MetricFirstPacket}
		}
		r.sum.Benches = append(r.sum.Benches, b)
	}
}

// note describes how a metric was measured, with the run's load average.
func (r *runner) note(dp, m string) string {
	load := "; host load average at start " + r.sum.Load
	if isKubeProxy(dp) {
		return kubeProxyNote(m, load)
	}
	e := r.cfg.Endpoints
	switch m {
	case MetricFullSync:
		return fmt.Sprintf("first Sync of N services x %d endpoints in a fresh namespace, until Sync returns; Extra: the mode's own sync figures, rule counts, host-wide Slab and VmallocUsed deltas over the sync (KiB, /proc/meminfo: other processes allocate and free meanwhile, so on a busy host they are noise, even negative; iptables-legacy tables live in vmalloc), ratio to the floor%s", e, load)
	case MetricEndpointChange:
		return "one endpoint added to / removed from the last service with N present, until Sync returns (the mode's partial or incremental path); Extra: add and remove medians, full-sync/change and full-resync/change ratios" + load
	case MetricFullResync:
		return "the same one endpoint change with N present, but with the mode told to resync everything (iptables: ForceFullSync, iptables-save + a complete restore; nftables: ForceFullSync)" + load
	case MetricFloorRestore:
		restore := "iptables-restore"
		if b, ok := iptables.BackendOfDatapath(dp); ok {
			_, restore, _ = b.Binaries()
		}
		return "raw " + restore + " --noflush of the exact text the mode restored in its full sync, into a fresh namespace (the mode's full sync also runs iptables-save and builds the text)" + load
	case MetricFloorNft:
		return "raw nft -f of the mode's table (nft list table ip kube-proxy after the full sync), into a fresh namespace" + load
	case MetricFloorNftChange:
		return "raw nft -f - of the mode's own last one-change transactions (the endpoint add, then its remove), replayed in the same namespace with the N services present: the change through the nft binary alone (its cache load and the kernel's validation of the whole table included); Extra of endpoint-change: ratio_to_change_floor" + load
	case MetricFloorIPVS:
		return "one raw moby/ipvs AddDestination (one netlink request) with the N services present; Extra: AddService" + load
	case MetricFirstPacket:
		return "connect() time (SYN to SYN-ACK, the only packet that walks the NAT rules) from a pod to the VIP of the last service (last in iptables chain order) with N present, node-local backend; Extra: direct connect() to the pod IP in the same run" + load
	case MetricFloorDirect:
		return "connect() time from the same pod to a pod IP on the same node directly (a pod that backs no Service; the datapath's rules are still installed and still walked by iptables' nat chains), measured beside first-packet" + load
	case MetricConvergence:
		return "from handing the state with the target's endpoint replaced to Sync, until the first new connection is answered by the new pod" + load
	case MetricRPSKeepAlive, MetricRPSNewConn:
		return "sequential HTTP GETs from one client pod through the VIP; Extra: direct to the pod IP in the same run" + load
	case MetricPlaneProgrammed:
		return fmt.Sprintf("a Deployment scaled by one (up, then down) through the control plane (package plane) on a fresh two-node cluster with N-1 selectorless Services of %d endpoints present, from the call until WaitProgrammed returned (both nodes' proxies programmed it); Extra: until the change was accepted%s", e, load)
	}
	return ""
}

// newNS creates a namespace of this run.
func (r *runner) newNS(role string) (*netns.NS, error) {
	return netns.New(topology.NSName(r.run.ID, fmt.Sprintf("%s-%d", role, r.seq.Add(1))))
}
