package scenarios

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	"github.com/svcsim/svcsim/topology/hostcheck"
)

// TestIsolation: a whole cluster with traffic through every datapath leaves
// the host exactly as it found it: its links, addresses, routes, rules and
// netfilter rulesets are byte-for-byte the same, and no namespace, process or
// run directory of the run remains.
func TestIsolation(t *testing.T) {
	sc := harness.Scenario{Name: "isolation", Title: "The host is untouched and nothing is left behind", Group: results.GroupIsolation}
	harness.RequireRoot(t)
	for _, dp := range harness.Datapaths() {
		t.Run(strings.ReplaceAll(dp.Mode, "/", "-"), func(t *testing.T) {
			// Taken before the cluster is built.
			before, err := hostcheck.Snapshot()
			if err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			var runID, runDir string
			harness.RunOne(t, sc, dp, harness.Options{OwnsCluster: true}, func(h *harness.H) {
				h.Apply(getipApp(2, "  type: NodePort\n"))
				runID = h.P.Info().RunID
				run, err := rundir.Open(runID)
				if err != nil {
					h.Fatalf("run %s: %v", runID, err)
				}
				runDir = run.Dir
				counts, _, err := client(h, h.NS, "client").Tally(h.Ctx, clusterIP(h, h.NS, "getip-service"), 20)
				h.Check(err == nil && len(counts) > 0, "traffic flows", "%v %v", counts, err)
				if err := h.P.Close(); err != nil {
					h.Fatalf("close: %v", err)
				}
				after, err := hostcheck.Snapshot()
				if err != nil {
					h.Fatalf("snapshot: %v", err)
				}
				d := hostcheck.Diff(before, after)
				h.Check(d == "", "host network state unchanged", "links, addresses, routes, rules, iptables-save (legacy and nft), nft list ruleset: %s", orNone(d))
				left, err := netns.List()
				if err != nil {
					h.Fatalf("list namespaces: %v", err)
				}
				var mine []string
				for _, n := range left {
					if strings.HasPrefix(n, runID) {
						mine = append(mine, n)
					}
				}
				h.Check(len(mine) == 0, "no namespace left", "namespaces of run %s: %v", runID, mine)
				procs := processesMentioning(runDir)
				h.Check(len(procs) == 0, "no process left", "processes of run %s: %v", runID, procs)
				_, err = os.Stat(runDir)
				h.Check(os.IsNotExist(err), "no run directory left", "%s: %v", runDir, err)
			})
		})
	}
}

func orNone(d string) string {
	if d == "" {
		return "identical"
	}
	return d
}

// processesMentioning lists processes whose command line contains s.
func processesMentioning(s string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(b), s) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}
