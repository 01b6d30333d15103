// Package topotest builds topologies for tests: each gets its own run and is
// removed by tb.Cleanup. Tests that need one are skipped without root.
package topotest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/topology"
)

// RequireRoot skips the test unless it runs as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root (network namespaces): run with sudo go test ...")
	}
}

// NewRun creates a run for the test and removes its directory in cleanup.
func NewRun(tb testing.TB) *rundir.Run {
	tb.Helper()
	RequireRoot(tb)
	run, err := rundir.New()
	if err != nil {
		tb.Fatalf("new run: %v", err)
	}
	tb.Cleanup(func() {
		if err := run.Remove(); err != nil {
			tb.Errorf("remove run: %v", err)
		}
	})
	return run
}

// NewTestTopology builds the default topology with n nodes in a fresh run
// and closes it when the test ends.
func NewTestTopology(tb testing.TB, nodes int) *topology.Topology {
	tb.Helper()
	return Build(tb, topology.DefaultSpec(NewRun(tb), nodes))
}

// Build builds spec (whose Run the caller made, e.g. with NewRun) and
// closes the topology when the test ends.
func Build(tb testing.TB, spec topology.Spec) *topology.Topology {
	tb.Helper()
	RequireRoot(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t, err := topology.Build(ctx, spec)
	if err != nil {
		tb.Fatalf("build topology: %v", err)
	}
	tb.Cleanup(func() {
		if err := t.Close(); err != nil {
			tb.Errorf("close topology: %v", err)
		}
	})
	return t
}
