// Package scenarios holds svcsim's conformance scenarios: each runs per
// datapath in a namespace of its own (on a fresh cluster, or with
// SVCSIM_SHARE=1 on one cluster per datapath shared by every scenario that
// does not own its cluster), applies manifests, sends real traffic and
// asserts what a user of Kubernetes Services would see. Run as root:
//
//	sudo go test ./scenarios/...
//
// Without root every scenario skips with a message saying so. SVCSIM_MODES
// narrows the datapaths (e.g. SVCSIM_MODES=iptables/nft); results land in
// $SVCSIM_RESULTS_DIR (default: results/ at the repository root).
package scenarios

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/hostinfo"
	"github.com/svcsim/svcsim/internal/reexec"
	"github.com/svcsim/svcsim/internal/rundir"
	_ "github.com/svcsim/svcsim/modes/agent" // the node proxy entry point
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	"github.com/svcsim/svcsim/topology"
	"github.com/svcsim/svcsim/topology/hostcheck"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	if err := harness.CheckModes(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		os.Exit(m.Run())
	}
	before, err := hostcheck.Snapshot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "snapshot host network state: %v\n", err)
		os.Exit(1)
	}
	if err := results.WriteEnv(harness.ResultsDir(), hostinfo.Collect(hostinfo.Lane())); err != nil {
		fmt.Fprintf(os.Stderr, "write env: %v\n", err)
		os.Exit(1)
	}
	go removeRunsOnSignal()
	code := m.Run()
	if err := harness.CloseShared(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: tear down shared clusters: %v\n", err)
		code = 1
	}
	after, err := hostcheck.Snapshot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "snapshot host network state: %v\n", err)
		os.Exit(1)
	}
	if d := hostcheck.Diff(before, after); d != "" {
		fmt.Fprintf(os.Stderr, "FAIL: the host's own network state changed during the run:\n%s\n", d)
		code = 1
	}
	os.Exit(code)
}

// removeRunsOnSignal makes Ctrl-C (or a CI timeout's SIGTERM) leave nothing
// behind: t.Cleanup never runs for a killed test binary, so on a signal the
// runs this process owns are removed before it exits.
func removeRunsOnSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	s := <-sig
	fmt.Fprintf(os.Stderr, "\n%v: removing this test run's clusters\n", s)
	runs, _ := rundir.List()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range runs {
		if o, err := r.Owner(); err == nil && o.PID == os.Getpid() {
			if _, err := topology.RemoveRun(ctx, r.ID); err != nil {
				fmt.Fprintf(os.Stderr, "remove run %s: %v\n", r.ID, err)
			}
		}
	}
	os.Exit(130)
}
