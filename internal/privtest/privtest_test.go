package privtest_test

import (
	"os"
	"slices"
	"testing"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/topology"
)

// TestNSIsFoundByGC: a test's namespaces carry its run's ID, the prefix
// `svcsim down` (topology.GC) looks for, and are gone with the run directory
// once the test ends.
func TestNSIsFoundByGC(t *testing.T) {
	privtest.RequireRoot(t)
	var name, dir string
	t.Run("inner", func(t *testing.T) {
		a, b := privtest.NS(t, "node"), privtest.NS(t, "pod/x")
		run := privtest.Run(t)
		name, dir = a.Name(), run.Dir
		for _, ns := range []*netns.NS{a, b} {
			if got := topology.RunOfNamespace(ns.Name()); got != run.ID {
				t.Errorf("namespace %s: run %q, want %q", ns.Name(), got, run.ID)
			}
		}
		if b.Name() != run.ID+"-pod_x" {
			t.Errorf("namespace %s, want %s-pod_x", b.Name(), run.ID)
		}
	})
	names, err := netns.List()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, name) {
		t.Errorf("namespace %s outlived its test", name)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("run directory %s outlived its test (%v)", dir, err)
	}
}
