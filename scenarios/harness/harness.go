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
	"os/exec"
	"path/filepath"
	"slices"
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

// Datapaths is the mode table: every registered mode, narrowed by the
// SVCSIM_MODES environment variable (comma-separated) when set. The plain
// "iptables" alias is left out because it is one of the two backends.
func Datapaths() []Datapath {
	names := modes.Names()
	if env := os.Getenv("SVCSIM_MODES"); env != "" {
		names = nil
		for _, n := range strings.Split(env, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	} else {
		names = slices.DeleteFunc(names, func(n string) bool { return n == "iptables" })
	}
	out := make([]Datapath, 0, len(names))
	for _, n := range names {
		out = append(out, Datapath{Mode: n, Skip: unsupported(n)})
	}
	return out
}

// unsupported says why the host cannot run mode, or "".
func unsupported(mode string) string {
	switch {
	case mode == "ipvs":
		if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
			_ = exec.Command("modprobe", "ip_vs").Run()
			if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
				return "kernel lacks IP_VS (/proc/net/ip_vs missing): `make vm-test` runs this datapath in the qemu kernel lane"
			}
		}
	case strings.HasPrefix(mode, "iptables/"):
		bin := "iptables-" + strings.TrimPrefix(mode, "iptables/") + "-restore"
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " is not installed: `sudo make deps` installs it"
		}
	case mode == "nftables":
		if _, err := exec.LookPath("nft"); err != nil {
			return "nft is not installed: `sudo make deps` installs it"
		}
	}
	return ""
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
	T      *testing.T
	Ctx    context.Context
	CP     *controlplane.ControlPlane
	Mode   string
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
		Started: time.Now().UTC(), Env: hostinfo.Collect(hostinfo.Lane())}
	h := &H{T: t, Mode: dp.Mode, Result: res}
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
