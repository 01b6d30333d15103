// Package harness runs svcsim scenarios: each in its own namespace of a
// simulated cluster (a fresh one per scenario and datapath, or one shared
// by many scenarios), driven through package plane, with real traffic from
// pod and external namespaces and assertions recorded into a results file
// for the report.
//
// Address plan used by every scenario (the defaults of sim and topology):
//
//	underlay     198.18.0.0/24   node1 198.18.0.11, node2 198.18.0.12, external 198.18.0.100
//	pods         10.244.<i>.0/24 on node i, gateway (cni0) 10.244.<i>.1
//	services     10.96.0.0/12    NodePorts 30000-32767
package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/hostinfo"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/embedded"
	"github.com/svcsim/svcsim/plane/kube/cluster"
	"github.com/svcsim/svcsim/report/results"
)

// Scenario names one scenario and its place in the report.
type Scenario struct {
	Name  string // file-name friendly, e.g. "clusterip-distribution"
	Title string
	Group string // one of results.Group*
}

// Datapath is one column of the mode table.
type Datapath struct {
	// Mode is the name registered with package modes ("iptables/nft").
	Mode string
	// Desc is the datapath's registered descriptor (traits, kernel).
	Desc modes.Datapath
	// Skip, when set, says why this machine cannot run the datapath and how
	// to run it elsewhere.
	Skip string
}

// RequireRoot skips t unless running as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("scenarios program real kernels and need root: run `sudo go test ./scenarios/...` (or `sudo make test`)")
	}
}

// CheckModes refuses SVCSIM_MODES entries that name no datapath, listing
// the names there are, so a typo ("iptables-nft") stops the run before any
// scenario rather than failing each at proxy start.
func CheckModes() error {
	var unknown []string
	for n := range strings.SplitSeq(os.Getenv("SVCSIM_MODES"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			if _, ok := lookup(n); !ok {
				unknown = append(unknown, strconv.Quote(n))
			}
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	var names []string
	for _, d := range cluster.Datapaths() {
		if _, own := cluster.OwnMode(d.Name); own {
			names = append(names, d.Name)
		}
	}
	return fmt.Errorf("SVCSIM_MODES names no datapath %s: the datapaths are %s",
		strings.Join(unknown, ", "), strings.Join(append(modes.Names(), names...), ", "))
}

// lookup is the descriptor of a datapath name: one registered with package
// modes, or svcsim's own on the kubernetes plane ("nftables@kubernetes").
func lookup(name string) (modes.Datapath, bool) {
	if d, ok := modes.Lookup(name); ok {
		return d, true
	}
	return cluster.Lookup(name)
}

// Datapaths is the mode table: every registered datapath (aliases such as
// "iptables" left out: it is one of the two backends), in the report's
// order, or the names in the SVCSIM_MODES environment variable
// (comma-separated) when set (CheckModes refuses unknown names), among them
// svcsim's datapaths on the kubernetes plane ("nftables@kubernetes"). Skip comes
// from the descriptor's probes of what it needs.
func Datapaths() []Datapath {
	var out []Datapath
	if env := os.Getenv("SVCSIM_MODES"); env != "" {
		for _, n := range strings.Split(env, ",") {
			if n = strings.TrimSpace(n); n != "" {
				d, ok := lookup(n)
				if !ok {
					out = append(out, Datapath{Mode: n})
					continue
				}
				out = append(out, Datapath{Mode: n, Desc: d, Skip: d.Unsupported()})
			}
		}
		return out
	}
	for _, d := range modes.Table() {
		if external(d) && !withKube() {
			continue // the kubernetes plane's: SVCSIM_KUBE=1 or SVCSIM_MODES
		}
		out = append(out, Datapath{Mode: d.Name, Desc: d, Skip: d.Unsupported()})
	}
	return out
}

// DatapathInfo is what the report needs of a datapath's descriptor, recorded
// in its results (the report does not link the datapaths).
func DatapathInfo(d modes.Datapath) *results.DatapathInfo {
	if d.Name == "" {
		return nil
	}
	return &results.DatapathInfo{Order: d.Report.Order, Claim: string(d.Report.Claim)}
}

// ResultsDir is where results are written: $SVCSIM_RESULTS_DIR, else the
// results directory at the repository root.
func ResultsDir() string {
	if d := os.Getenv("SVCSIM_RESULTS_DIR"); d != "" {
		return d
	}
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "results")
		}
	}
	return filepath.Join(dir, "results")
}

// H is one scenario running on one datapath.
type H struct {
	T   *testing.T
	Ctx context.Context
	// P is the cluster. Changes made through it return once accepted;
	// call Programmed before traffic that must see them.
	P    plane.Plane
	Mode string
	// Desc is the datapath's descriptor: scenarios ask its Traits and Kernel
	// rather than comparing mode names.
	Desc modes.Datapath
	// NS is the scenario's own namespace: Apply puts objects there, and
	// several scenarios can share one cluster (see Run).
	NS     string
	Result *results.Result
}

// Options tune the cluster a scenario gets.
type Options struct {
	Nodes     int
	Scheduler string
	// Manifests are applied in the scenario's namespace before the
	// scenario body runs.
	Manifests []string
	// OwnsCluster says the scenario needs a cluster of its own: it tears
	// the cluster down, stops a node's proxy or measures the whole host.
	// It never runs on a shared cluster.
	OwnsCluster bool
	// NodeFaults says the scenario takes nodes off the network
	// (plane.Plane.NodeDown) on a cluster of its own: the kubernetes plane
	// then notices a silent node within KubeNodeGracePeriod instead of
	// upstream's 50 s.
	NodeFaults bool
	// Needs, when set, says why this machine cannot run the scenario (a
	// missing tool or test input) and how to get it; a non-empty answer
	// skips the scenario with that reason before any cluster starts.
	Needs func() string
	// NotOnKube, when set, says what svcsim's kubernetes plane still lacks
	// for this scenario (a gap of svcsim's, not an upstream difference:
	// those are H.KubeException): there the scenario skips, with this
	// reason, before any cluster starts.
	NotOnKube string
	// KubeProxyException, when set, says why the scenario's assertions
	// hold for svcsim's node proxy but not for the genuine kube-proxy
	// (naming the upstream code): on kube-proxy's datapaths it skips, with
	// this reason, before any cluster starts; svcsim's datapaths run it on
	// either plane.
	KubeProxyException string
}

// Case is one scenario with its options and body, for RunShared.
type Case struct {
	Scenario Scenario
	Options  Options
	Body     func(h *H)
}

// Run runs body once per datapath as subtests named after the mode and
// writes each subtest's Result (pass, fail or skip with its reason) into
// ResultsDir. Each run gets a fresh cluster, unless SVCSIM_SHARE=1 is
// set: then every scenario that does not own its cluster runs on one
// cluster per datapath (and node count and scheduler) of the test binary,
// in its own namespace, deleted at its end; CloseShared tears those
// clusters down.
func Run(t *testing.T, sc Scenario, opts Options, body func(h *H)) {
	for _, dp := range Datapaths() {
		t.Run(strings.ReplaceAll(dp.Mode, "/", "-"), func(t *testing.T) {
			RunOne(t, sc, dp, opts, body)
		})
	}
}

// RunOne runs body on one datapath.
func RunOne(t *testing.T, sc Scenario, dp Datapath, opts Options, body func(h *H)) {
	var sh *Shared
	if !opts.OwnsCluster && os.Getenv("SVCSIM_SHARE") == "1" {
		sh = pool.get(dp, opts)
	}
	runOn(t, sc, dp, opts, body, sh, true)
}

// RunShared runs cases one after another on one cluster per datapath, each
// in its own namespace, and tears each cluster down once at the end. It
// writes no result files (the cases write theirs when run alone); every
// case must leave the cluster as it found it, which RunShared checks: a
// case's namespace is gone, with its pods, before the next case starts.
func RunShared(t *testing.T, cases ...Case) {
	for _, dp := range Datapaths() {
		t.Run(strings.ReplaceAll(dp.Mode, "/", "-"), func(t *testing.T) {
			RequireRoot(t)
			if dp.Skip != "" {
				t.Skip(dp.Skip)
			}
			var opts Options
			for _, c := range cases {
				if c.Options.OwnsCluster {
					t.Fatalf("%s owns its cluster and cannot share one", c.Scenario.Name)
				}
				opts.Nodes, opts.Scheduler = max(opts.Nodes, c.Options.Nodes), c.Options.Scheduler
			}
			sh := &Shared{dp: dp, opts: opts}
			t.Cleanup(func() {
				if err := sh.Close(); err != nil {
					t.Errorf("tear down shared cluster: %v", err)
				}
			})
			for _, c := range cases {
				t.Run(c.Scenario.Name, func(t *testing.T) {
					runOn(t, c.Scenario, dp, c.Options, c.Body, sh, false)
				})
			}
		})
	}
}

// runOn runs body on dp, on sh's cluster (nil: a fresh one).
func runOn(t *testing.T, sc Scenario, dp Datapath, opts Options, body func(h *H), sh *Shared, write bool) {
	res := &results.Result{Scenario: sc.Name, Title: sc.Title, Group: sc.Group, Mode: dp.Mode,
		Started: time.Now().UTC(), Env: hostinfo.Collect(hostinfo.Lane()), Info: DatapathInfo(dp.Desc)}
	if external(dp.Desc) {
		// The kubernetes plane's, also when it skips or fails before the
		// plane says so itself (Info, below).
		res.ControlPlane = cluster.ControlPlaneName
	}
	h := &H{T: t, Mode: dp.Mode, Desc: dp.Desc, Result: res, NS: Namespace(sc, dp)}
	t.Cleanup(func() { h.finish(write) })
	if os.Geteuid() != 0 {
		res.Reason = "needs root: run `sudo go test ./scenarios/...`"
		t.Skip(res.Reason)
	}
	if dp.Skip != "" {
		res.Reason = dp.Skip
		t.Skip(dp.Skip)
	}
	if opts.Needs != nil {
		if why := opts.Needs(); why != "" {
			res.Reason = why
			t.Skip(why)
		}
	}
	if opts.NotOnKube != "" && external(dp.Desc) {
		res.Reason = "not yet on the kubernetes plane: " + opts.NotOnKube
		t.Skip(res.Reason)
	}
	if opts.KubeProxyException != "" && genuineKubeProxy(dp.Desc) {
		res.Reason = "svcsim-specific with the genuine kube-proxy: " + opts.KubeProxyException
		t.Skip(res.Reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	h.Ctx = ctx
	nodes := opts.Nodes
	if nodes == 0 {
		nodes = 2
	}
	switch {
	case external(dp.Desc) && !opts.OwnsCluster:
		p, err := kubePool.acquire(ctx, t, dp.Desc, nodes, h.NS)
		if err != nil {
			h.Fatalf("kubernetes plane: %v", err)
		}
		h.P = p
		t.Cleanup(func() { kubePool.release(t, h.NS) })
	case external(dp.Desc):
		p, err := startKube(ctx, t, dp.Desc, nodes, opts.NodeFaults)
		if err != nil {
			h.Fatalf("start kubernetes plane: %v", err)
		}
		h.P = p
		t.Cleanup(func() {
			if err := p.Close(); err != nil {
				t.Errorf("tear down kubernetes plane: %v", err)
			}
		})
	case sh != nil:
		p, err := sh.acquire(ctx, t)
		if err != nil {
			h.Fatalf("start shared cluster: %v", err)
		}
		h.P = p
		t.Cleanup(func() { sh.release(t, h.NS) })
	default:
		cfg := embedded.DefaultConfig(dp.Mode, nodes)
		cfg.Scheduler = opts.Scheduler
		cfg.Log = testLog{t}
		cp, err := embedded.Start(ctx, cfg)
		if err != nil {
			h.Fatalf("start cluster: %v", err)
		}
		h.P = cp
		t.Cleanup(func() {
			if err := cp.Close(); err != nil {
				t.Errorf("tear down cluster: %v", err)
			}
		})
	}
	// Cleanups run last-registered first: node1's state is kept before
	// the cluster is torn down or the namespace deleted.
	t.Cleanup(h.keepKernelState)
	info := h.P.Info()
	res.Mode, res.ControlPlane, res.Versions = info.Datapath, info.ControlPlane, info.Versions
	if d, ok := modes.Lookup(res.Mode); ok && res.Mode != dp.Mode {
		// An alias ran as the datapath it picked: describe that one.
		h.Desc, res.Info = d, DatapathInfo(d)
	}
	h.Apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + h.NS + "\n")
	if len(opts.Manifests) > 0 {
		h.Apply(opts.Manifests...)
	}
	body(h)
}

// Namespace is the namespace of scenario sc on datapath dp: its name and
// the datapath's, so that scenarios and datapaths can share a cluster (or,
// on a plane that keeps one control plane for every datapath, the API).
func Namespace(sc Scenario, dp Datapath) string {
	n := strings.ToLower(sc.Name + "-" + strings.NewReplacer("/", "-", "_", "-", ".", "-", "@", "-").Replace(dp.Mode))
	if len(n) > 63 {
		n = strings.TrimRight(n[:63], "-")
	}
	return n
}

func (h *H) finish(write bool) {
	r := h.Result
	r.Seconds = time.Since(r.Started).Seconds()
	switch {
	case h.T.Failed():
		r.Status = results.Fail
		if r.Reason == "" {
			r.Reason = "see the test log"
		}
	case h.T.Skipped():
		r.Status = results.Skip
	default:
		r.Status = results.Pass
	}
	if !write {
		return
	}
	if err := results.WriteResult(ResultsDir(), *r); err != nil {
		h.T.Errorf("write result: %v", err)
	}
}

// keepKernelState records node1's datapath state in the result, unless the
// scenario recorded its own.
func (h *H) keepKernelState() {
	if h.Result.KernelState != "" || h.T.Skipped() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if dump, err := h.P.Dump(ctx, "node1"); err == nil {
		h.Result.KernelState = excerpt(dump, 200)
	}
}

func excerpt(s string, maxLines int) string {
	lines := strings.Split(s, "\n")
	if len(lines) <= maxLines {
		return s
	}
	return strings.Join(lines[:maxLines], "\n") + fmt.Sprintf("\n... (%d more lines)", len(lines)-maxLines)
}

// Fatalf records the failure as the result's reason and stops the test.
func (h *H) Fatalf(format string, args ...any) {
	h.T.Helper()
	msg := fmt.Sprintf(format, args...)
	if h.Result.Reason == "" {
		h.Result.Reason = msg
	}
	h.T.Fatal(msg)
}

// Check records an assertion; a false one fails and stops the test.
func (h *H) Check(ok bool, name string, format string, args ...any) {
	h.T.Helper()
	detail := fmt.Sprintf(format, args...)
	h.Result.Assertions = append(h.Result.Assertions, results.Assertion{Name: name, OK: ok, Detail: detail})
	if !ok {
		h.Fatalf("%s: %s", name, detail)
	}
	h.T.Logf("ok: %s: %s", name, detail)
}

// Figure records a measured number.
func (h *H) Figure(name string, value float64, unit string) {
	h.Result.Figures = append(h.Result.Figures, results.Figure{Name: name, Value: value, Unit: unit})
	h.T.Logf("figure: %s = %g %s", name, value, unit)
}

// Apply applies manifest texts (YAML, possibly multi-document) and waits
// until every node has programmed them.
func (h *H) Apply(manifests ...string) {
	h.T.Helper()
	ms := make([]plane.Manifest, len(manifests))
	for i, m := range manifests {
		ms[i] = plane.Text(fmt.Sprintf("%s-manifest-%d", h.T.Name(), i), m)
	}
	if _, err := h.P.Apply(h.Ctx, h.NS, ms...); err != nil {
		h.Fatalf("apply: %v", err)
	}
	h.Programmed()
}

// ApplyFiles applies manifest files or directories and waits until every
// node has programmed them.
func (h *H) ApplyFiles(paths ...string) {
	h.T.Helper()
	ms, err := plane.ReadManifests(nil, paths...)
	if err != nil {
		h.Fatalf("read %v: %v", paths, err)
	}
	if _, err := h.P.Apply(h.Ctx, h.NS, ms...); err != nil {
		h.Fatalf("apply %v: %v", paths, err)
	}
	h.Programmed()
}

// Programmed is the barrier: it returns once every change made so far is
// programmed on every node (plane.Plane.WaitProgrammed). Call it after a
// change and before sending traffic that should see it.
func (h *H) Programmed() {
	h.T.Helper()
	if err := h.P.WaitProgrammed(h.Ctx); err != nil {
		h.Fatalf("wait until programmed: %v", err)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// RunCase is Run of one Case.
func RunCase(t *testing.T, c Case) { Run(t, c.Scenario, c.Options, c.Body) }
