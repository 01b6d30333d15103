// Package topotest builds topologies for tests: each gets its own run
// (privtest.Run) and is removed by tb.Cleanup. Tests that need one are
// skipped without root.
package topotest

import (
	"context"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/topology"
)

// RequireRoot is privtest.RequireRoot (kept for tests written before it).
func RequireRoot(tb testing.TB) { tb.Helper(); privtest.RequireRoot(tb) }

// NewRun is privtest.NewRun (kept for tests written before it).
func NewRun(tb testing.TB) *rundir.Run { tb.Helper(); return privtest.NewRun(tb) }

// NewTestTopology builds the default topology with n nodes in a fresh run
// and closes it when the test ends.
func NewTestTopology(tb testing.TB, nodes int) *topology.Topology {
	tb.Helper()
	return Build(tb, topology.DefaultSpec(privtest.NewRun(tb), nodes))
}

// Build builds spec (whose Run the caller made, e.g. with privtest.Run) and
// closes the topology when the test ends.
func Build(tb testing.TB, spec topology.Spec) *topology.Topology {
	tb.Helper()
	privtest.RequireRoot(tb)
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
