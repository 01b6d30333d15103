// Package harness runs svcsim scenarios: one simulated cluster per scenario
// and datapath, real traffic from pod and external namespaces, assertions
// recorded into a results file for the report.
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
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/controlplane"
	"github.com/svcsim/svcsim/internal/hostinfo"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/sim"
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

// Datapaths is the mode table: every registered datapath (aliases such as
// "iptables" left out: it is one of the two backends), in the report's
// order, or the names in the SVCSIM_MODES environment variable
// (comma-separated) when set; an unknown name fails at start, naming the
// known ones. Skip comes from the descriptor's probes of what it needs.
func Datapaths() []Datapath {
	var out []Datapath
	if env := os.Getenv("SVCSIM_MODES"); env != "" {
		for _, n := range strings.Split(env, ",") {
			if n = strings.TrimSpace(n); n != "" {
				d, ok := modes.Lookup(n)
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
	T    *testing.T
	Ctx  context.Context
	CP   *controlplane.ControlPlane
	Mode string
	// Desc is the datapath's descriptor: scenarios ask its Traits and Kernel
	// rather than comparing mode names.
	Desc   modes.Datapath
	Result *results.Result
}

// Options tune the cluster a scenario gets.
type Options struct {
	Nodes     int
	Scheduler string
	// Manifests are applied before the scenario body runs.
	Manifests []string
}

// Run runs body once per datapath as subtests named after the mode, each on
// a fresh cluster, and writes each subtest's Result (pass, fail or skip with
// its reason) into ResultsDir.
func Run(t *testing.T, sc Scenario, opts Options, body func(h *H)) {
	for _, dp := range Datapaths() {
		t.Run(strings.ReplaceAll(dp.Mode, "/", "-"), func(t *testing.T) {
			RunOne(t, sc, dp, opts, body)
		})
	}
}

// RunOne runs body on one datapath.
func RunOne(t *testing.T, sc Scenario, dp Datapath, opts Options, body func(h *H)) {
	res := &results.Result{Scenario: sc.Name, Title: sc.Title, Group: sc.Group, Mode: dp.Mode,
		Started: time.Now().UTC(), Env: hostinfo.Collect(hostinfo.Lane()), Info: DatapathInfo(dp.Desc)}
	h := &H{T: t, Mode: dp.Mode, Desc: dp.Desc, Result: res}
	t.Cleanup(func() { h.finish() })
	if os.Geteuid() != 0 {
		res.Reason = "needs root: run `sudo go test ./scenarios/...`"
		t.Skip(res.Reason)
	}
	if dp.Skip != "" {
		res.Reason = dp.Skip
		t.Skip(dp.Skip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	h.Ctx = ctx
	nodes := opts.Nodes
	if nodes == 0 {
		nodes = 2
	}
	cfg := controlplane.DefaultConfig(dp.Mode, nodes)
	cfg.Scheduler = opts.Scheduler
	cfg.Log = testLog{t}
	cp, err := controlplane.Start(ctx, cfg)
	if err != nil {
		h.Fatalf("start cluster: %v", err)
	}
	h.CP = cp
	t.Cleanup(func() {
		if err := cp.Close(); err != nil {
			t.Errorf("tear down cluster: %v", err)
		}
	})
	if rep := cp.LastSync(); len(rep) > 0 {
		for _, r := range rep {
			res.Mode = r.Mode
			break
		}
	}
	if d, ok := modes.Lookup(res.Mode); ok && res.Mode != dp.Mode {
		// An alias ran as the datapath it picked: describe that one.
		h.Desc, res.Info = d, DatapathInfo(d)
	}
	if len(opts.Manifests) > 0 {
		h.Apply(opts.Manifests...)
	}
	body(h)
}

func (h *H) finish() {
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
	if h.CP != nil && r.KernelState == "" && r.Status != results.Skip {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if dump, err := h.CP.Dump(ctx, "node1"); err == nil {
			r.KernelState = excerpt(dump, 200)
		}
		cancel()
	}
	if err := results.WriteResult(ResultsDir(), *r); err != nil {
		h.T.Errorf("write result: %v", err)
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

// Apply applies manifest texts (YAML, possibly multi-document).
func (h *H) Apply(manifests ...string) {
	h.T.Helper()
	var objs []sim.Object
	for i, m := range manifests {
		o, err := sim.Decode([]byte(m), fmt.Sprintf("%s-manifest-%d", h.T.Name(), i))
		if err != nil {
			h.Fatalf("decode manifest %d: %v", i, err)
		}
		objs = append(objs, o...)
	}
	if _, err := h.CP.Apply(h.Ctx, objs); err != nil {
		h.Fatalf("apply: %v", err)
	}
}

// ApplyFiles applies manifest files or directories.
func (h *H) ApplyFiles(paths ...string) {
	h.T.Helper()
	objs, err := sim.Load(paths...)
	if err != nil {
		h.Fatalf("load %v: %v", paths, err)
	}
	if _, err := h.CP.Apply(h.Ctx, objs); err != nil {
		h.Fatalf("apply %v: %v", paths, err)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Decode parses manifest text, failing the scenario on a syntax error.
func (h *H) Decode(manifest string) []sim.Object {
	h.T.Helper()
	objs, err := sim.Decode([]byte(manifest), h.T.Name())
	if err != nil {
		h.Fatalf("decode manifest: %v", err)
	}
	return objs
}
