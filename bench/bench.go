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
	"net/netip"
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
	"github.com/svcsim/svcsim/modes"
	_ "github.com/svcsim/svcsim/modes/all" // every mode
	"github.com/svcsim/svcsim/modes/iptables"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/sim/state"
	"github.com/svcsim/svcsim/topology"
)

// Metric names: report.Metric*, and report.FloorPrefix / RPSPrefix for the
// floors (drawn dashed on the charts their FloorFor names) and throughputs.
const (
	MetricFullSync       = "full-sync"
	MetricEndpointChange = "endpoint-change"
	MetricFloorRestore   = "floor-restore"
	MetricFloorNft       = "floor-nft"
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
	// NoFloor skips the raw-tool floors (for tests that do not use them).
	NoFloor bool
	// ResultsDir receives the Bench files ("" writes nothing).
	ResultsDir string
	// Lane is "host" or "vm:<kernel>".
	Lane string
	// Log receives progress lines (nil: discarded).
	Log io.Writer
}

// Full is the default sweep.
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
	for _, n := range r.cfg.Services {
		if ctx.Err() != nil {
			return
		}
		if err := r.rules(ctx, dp, n, s); err != nil {
			r.fail(dp, fmt.Sprintf("rule updates at N=%d", n), err)
		}
	}
	if r.cfg.Traffic && ctx.Err() == nil {
		if err := r.traffic(ctx, dp, s); err != nil {
			r.fail(dp, "traffic", err)
		}
	}
	if r.cfg.Plane && ctx.Err() == nil {
		if err := r.plane(ctx, dp, s); err != nil {
			r.fail(dp, "changes through the plane", err)
		}
	}
	r.logf("bench: %s done in %s", dp, time.Since(start).Round(time.Millisecond))
	floor, floorFor := FloorMetric(dp)
	for _, m := range []string{MetricFullSync, MetricEndpointChange, MetricFullResync, floor, MetricFirstPacket,
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
		case MetricFloorDirect:
			b.FloorFor = []string{MetricFirstPacket}
		}
		r.sum.Benches = append(r.sum.Benches, b)
	}
}

// note describes how a metric was measured, with the run's load average.
func (r *runner) note(dp, m string) string {
	load := "; host load average at start " + r.sum.Load
	e := r.cfg.Endpoints
	switch m {
	case MetricFullSync:
		return fmt.Sprintf("first Sync of N services x %d endpoints in a fresh namespace, until Sync returns; Extra: the mode's own sync figures, rule counts, host-wide Slab and VmallocUsed deltas over the sync (KiB, /proc/meminfo: other processes allocate and free meanwhile, so on a busy host they are noise, even negative; iptables-legacy tables live in vmalloc), ratio to the floor%s", e, load)
	case MetricEndpointChange:
		return "one endpoint added to / removed from the last service with N present, until Sync returns (the mode's partial or incremental path); Extra: add and remove medians, full-sync/change and full-resync/change ratios" + load
	case MetricFullResync:
		return "the same one endpoint change with N present, but with the mode told to resync everything (iptables: ForceFullSync, iptables-save + a complete restore; nftables: RequestFullSync)" + load
	case MetricFloorRestore:
		restore := "iptables-restore"
		if b, ok := iptables.BackendOfDatapath(dp); ok {
			_, restore, _ = b.Binaries()
		}
		return "raw " + restore + " --noflush of the exact text the mode restored in its full sync, into a fresh namespace (the mode's full sync also runs iptables-save and builds the text)" + load
	case MetricFloorNft:
		return "raw nft -f of the mode's table (nft list table ip kube-proxy after the full sync), into a fresh namespace" + load
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

// rules measures full sync, endpoint changes, a forced full resync, counts
// and the floor at n.
func (r *runner) rules(ctx context.Context, dp string, n int, s series) error {
	st, err := Synthetic(n, r.cfg.Endpoints)
	if err != nil {
		return err
	}
	tgt := Target(st)
	withExtra := WithTargetEndpoints(st, append(slices.Clone(tgt.Endpoints), extraEndpoint(n, r.cfg.Endpoints))...)
	var full, adds, removes, resyncs, slab, vmalloc, floor, floorSvc []float64
	var fullExtra, changeExtra, counts map[string]float64
	for rep := range r.cfg.Reps {
		ns, err := r.newNS("bench")
		if err != nil {
			return err
		}
		var input []byte
		var dump string
		err = ns.Do(func() error {
			in, err := newInstance(dp)
			if err != nil {
				return err
			}
			defer func() {
				if cerr := in.close(); cerr != nil {
					r.fail(dp, "cleanup", cerr)
				}
			}()
			s0, v0 := slabKiB(), vmallocKiB()
			t0 := time.Now()
			if err := in.p.Sync(ctx, st); err != nil {
				return fmt.Errorf("full sync: %w", err)
			}
			full = append(full, ms(time.Since(t0)))
			slab, vmalloc = append(slab, slabKiB()-s0), append(vmalloc, vmallocKiB()-v0)
			if rep == 0 {
				fullExtra = in.syncExtra()
				if counts, err = ruleCounts(ctx, dp); err != nil {
					return fmt.Errorf("count rules: %w", err)
				}
			}
			if in.rec != nil {
				input = in.rec.lastInput()
			}
			if describe(dp).Kernel == modes.KernelNftables {
				out, err := execOut(ctx, "nft", "list", "table", "ip", "kube-proxy")
				if err != nil {
					return err
				}
				dump = out
			}
			for range r.cfg.Changes {
				t0 := time.Now()
				if err := in.p.Sync(ctx, withExtra); err != nil {
					return fmt.Errorf("endpoint add: %w", err)
				}
				adds = append(adds, ms(time.Since(t0)))
				changeExtra = in.syncExtra()
				t0 = time.Now()
				if err := in.p.Sync(ctx, st); err != nil {
					return fmt.Errorf("endpoint remove: %w", err)
				}
				removes = append(removes, ms(time.Since(t0)))
			}
			if in.requestFull() {
				t0 := time.Now()
				if err := in.p.Sync(ctx, withExtra); err != nil {
					return fmt.Errorf("endpoint add with a full resync: %w", err)
				}
				resyncs = append(resyncs, ms(time.Since(t0)))
				if err := in.p.Sync(ctx, st); err != nil {
					return fmt.Errorf("endpoint remove after a full resync: %w", err)
				}
			}
			if describe(dp).Kernel == modes.KernelIPVS && !r.cfg.NoFloor {
				// The raw call runs with the N services still present.
				svc, dst, err := floorIPVSSamples(ns, r.cfg.IPVSFloorReps)
				if err != nil {
					return err
				}
				floor, floorSvc = append(floor, dst...), append(floorSvc, svc...)
			}
			return nil
		})
		if derr := ns.Delete(); derr != nil {
			err = errors.Join(err, derr)
		}
		if err != nil {
			return err
		}
		if (input != nil || dump != "") && !r.cfg.NoFloor {
			d, err := r.floorOnce(ctx, dp, input, dump)
			if err != nil {
				return fmt.Errorf("floor: %w", err)
			}
			floor = append(floor, ms(d))
		}
	}
	fp := point(n, full, false, merge(fullExtra, counts))
	fp.Extra = merge(fp.Extra, map[string]float64{"slab_delta_kib": stats.Summarize(slab).Median,
		"vmalloc_delta_kib": stats.Summarize(vmalloc).Median})
	changes := append(slices.Clone(adds), removes...)
	cp := point(n, changes, false, merge(prefixed("last_", changeExtra), map[string]float64{
		"add_median_ms": stats.Summarize(adds).Median, "remove_median_ms": stats.Summarize(removes).Median}))
	if cp.Median > 0 {
		cp.Extra["full_over_change"] = fp.Median / cp.Median
	}
	if len(resyncs) > 0 {
		rp := point(n, resyncs, false, nil)
		if cp.Median > 0 {
			cp.Extra["full_resync_over_change"] = rp.Median / cp.Median
		}
		s.add(MetricFullResync, rp)
	}
	if fm, _ := FloorMetric(dp); fm != "" && len(floor) > 0 {
		flp := point(n, floor, false, nil)
		if len(floorSvc) > 0 {
			flp.Extra = map[string]float64{"add_service_median_ms": stats.Summarize(floorSvc).Median}
		}
		if flp.Median > 0 {
			if describe(dp).Kernel == modes.KernelIPVS {
				cp.Extra["ratio_to_floor"] = cp.Median / flp.Median
			} else {
				fp.Extra["ratio_to_floor"] = fp.Median / flp.Median
			}
		}
		s.add(fm, flp)
	}
	s.add(MetricFullSync, fp)
	s.add(MetricEndpointChange, cp)
	r.logf("bench: %-16s N=%-6d full %9.2f ms  change %8.3f ms  %s", dp, n, fp.Median, cp.Median, ratioText(fp, cp))
	return nil
}

func ratioText(fp, cp results.Point) string {
	if v, ok := fp.Extra["ratio_to_floor"]; ok {
		return fmt.Sprintf("full/floor %.2fx", v)
	}
	if v, ok := cp.Extra["ratio_to_floor"]; ok {
		return fmt.Sprintf("change/floor %.2fx", v)
	}
	return ""
}

// floorOnce replays the mode's full-sync input with the raw tool into a
// fresh namespace.
func (r *runner) floorOnce(ctx context.Context, dp string, input []byte, dump string) (time.Duration, error) {
	ns, err := r.newNS("floor")
	if err != nil {
		return 0, err
	}
	var d time.Duration
	if input != nil {
		d, err = floorRestore(ctx, ns, dp, input)
	} else {
		d, err = floorNft(ctx, ns, dump, r.tmp)
	}
	if derr := ns.Delete(); derr != nil {
		err = errors.Join(err, derr)
	}
	return d, err
}

func merge(a, b map[string]float64) map[string]float64 {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := make(map[string]float64, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func prefixed(p string, m map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[p+k] = v
	}
	return out
}

// Backend pods of the traffic topology.
var (
	podA = netip.MustParseAddr("10.244.1.10")
	podB = netip.MustParseAddr("10.244.1.11")
	podC = netip.MustParseAddr("10.244.1.20") // the client
	// podD answers the direct measurements. It is never a Service backend:
	// IPVS keeps its own connection table, and a direct connection whose
	// client port an earlier VIP connection to the same pod used would have
	// its replies rewritten to the VIP by that stale entry.
	podD = netip.MustParseAddr("10.244.1.12")
)

// ensureTopology builds the one-node topology with two backend pods, the
// direct target and a client pod, once per Run.
func (r *runner) ensureTopology(ctx context.Context) error {
	if r.topo != nil {
		return nil
	}
	t, err := topology.Build(ctx, topology.DefaultSpec(r.run, 1))
	if err != nil {
		return err
	}
	r.topo = t
	port := []topology.Port{{Port: TargetPort}}
	for i, ip := range []netip.Addr{podA, podB, podD} {
		p, err := t.AddPod(ctx, topology.PodSpec{Name: fmt.Sprintf("bench/backend-%c", 'a'+i), Node: "node1", IP: ip, Ports: port})
		if err != nil {
			return err
		}
		r.pods[i] = p
	}
	r.cli, err = t.AddPod(ctx, topology.PodSpec{Name: "bench/client", Node: "node1", IP: podC})
	return err
}

// traffic measures first-packet latency, convergence and throughput at
// every n on node1 of the topology.
func (r *runner) traffic(ctx context.Context, dp string, s series) error {
	if err := r.ensureTopology(ctx); err != nil {
		return fmt.Errorf("build topology: %w", err)
	}
	node := r.topo.Node("node1").NS
	var in *instance
	if err := node.Do(func() error {
		var err error
		in, err = newInstance(dp)
		return err
	}); err != nil {
		return err
	}
	defer func() {
		if err := node.Do(in.close); err != nil {
			r.fail(dp, "cleanup on node1", err)
		}
	}()
	epOf := func(p *topology.Pod) state.Endpoint {
		return state.Endpoint{IP: p.IP, Port: TargetPort, Node: "node1", Pod: p.Name}
	}
	sync := func(st *state.NodeState) error { return node.Do(func() error { return in.p.Sync(ctx, st) }) }
	cli := r.cli.NS
	direct := hostPort(podD, TargetPort)
	var errs []error
	for _, n := range r.cfg.Services {
		base, err := Synthetic(n, r.cfg.Endpoints)
		if err != nil {
			return err
		}
		stA := WithTargetEndpoints(base, epOf(r.pods[0]))
		stB := WithTargetEndpoints(base, epOf(r.pods[1]))
		if err := sync(stA); err != nil {
			return fmt.Errorf("sync %d services: %w", n, err)
		}
		vip := hostPort(Target(stA).ClusterIP, int(Target(stA).Port))
		budget := 30 * time.Second

		viaVIP, err := connectTimes(ctx, cli, vip, r.cfg.Conns, budget)
		if err != nil {
			errs = append(errs, fmt.Errorf("first-packet N=%d: %w", n, err))
		}
		viaPod, derr := connectTimes(ctx, cli, direct, r.cfg.Conns, budget)
		if derr != nil {
			errs = append(errs, fmt.Errorf("first-packet direct N=%d: %w", n, derr))
		}
		if err == nil && derr == nil {
			dsum := stats.Summarize(viaPod)
			fp := point(n, viaVIP, true, map[string]float64{"direct_median_ms": dsum.Median, "direct_p99_ms": dsum.P99})
			if dsum.Median > 0 {
				fp.Extra["ratio_to_direct"] = fp.Median / dsum.Median
			}
			s.add(MetricFirstPacket, fp)
			s.add(MetricFloorDirect, point(n, viaPod, true, nil))
		}

		var conv, tries []float64
		cur, states := 0, [2]*state.NodeState{stA, stB}
		for range r.cfg.ConvergeReps {
			next := 1 - cur
			d, k, err := convergeTime(ctx, cli, vip, r.pods[next].Name, func() error { return sync(states[next]) }, 10*time.Second)
			if err != nil {
				errs = append(errs, fmt.Errorf("convergence N=%d: %w", n, err))
				break
			}
			conv, tries = append(conv, ms(d)), append(tries, float64(k))
			cur = next
		}
		if cur != 0 {
			if err := sync(stA); err != nil {
				return fmt.Errorf("sync back to pod A: %w", err)
			}
		}
		if len(conv) > 0 {
			s.add(MetricConvergence, point(n, conv, false, map[string]float64{"requests_median": stats.Summarize(tries).Median}))
		}

		for _, m := range []struct {
			metric string
			keep   bool
		}{{MetricRPSKeepAlive, true}, {MetricRPSNewConn, false}} {
			var via, dir []float64
			for range r.cfg.RPSReps {
				v, err := rps(ctx, cli, vip, m.keep, r.cfg.RPSMax, r.cfg.RPSTime)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s N=%d: %w", m.metric, n, err))
					break
				}
				d, err := rps(ctx, cli, direct, m.keep, r.cfg.RPSMax, r.cfg.RPSTime)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s direct N=%d: %w", m.metric, n, err))
					break
				}
				via, dir = append(via, v), append(dir, d)
			}
			if len(via) > 0 {
				dm := stats.Summarize(dir).Median
				p := point(n, via, false, map[string]float64{"direct_median_rps": dm})
				if dm > 0 {
					p.Extra["ratio_to_direct"] = p.Median / dm
				}
				s.add(m.metric, p)
			}
		}
		if fp, ok := lastPoint(s[MetricFirstPacket], n); ok {
			r.logf("bench: %-16s N=%-6d first-packet p50 %.3f ms p99 %.3f ms (direct %.3f ms)", dp, n, fp.Median, fp.P99, fp.Extra["direct_median_ms"])
		}
	}
	return errors.Join(errs...)
}

func lastPoint(ps []results.Point, n int) (results.Point, bool) {
	for _, p := range ps {
		if p.N == n {
			return p, true
		}
	}
	return results.Point{}, false
}

// execOut runs a command in the calling thread's namespace and returns its
// standard output.
func execOut(ctx context.Context, name string, args ...string) (string, error) {
	cmd := execCommand(ctx, name, args...)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}
