package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/sim/state"
	"github.com/svcsim/svcsim/topology"
)

// leftovers lists the namespaces whose names start with the run's ID.
func leftovers(t *testing.T, runID string) []string {
	t.Helper()
	ents, err := os.ReadDir(netns.Dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), runID) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestRunKernel runs a tiny sweep on every datapath this kernel offers and
// checks that each produced its figures, files and nothing left behind.
func TestRunKernel(t *testing.T) {
	privtest.RequireRoot(t)
	c := Quick()
	c.Services = []int{50, 200}
	c.Reps, c.Changes, c.IPVSFloorReps = 2, 2, 3
	c.Conns, c.ConvergeReps, c.RPSReps, c.RPSTime = 30, 2, 1, 100*time.Millisecond
	c.ResultsDir = t.TempDir()
	var log strings.Builder
	c.Log = &log
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := Run(ctx, c)
	t.Log(log.String())
	require.NoError(t, err)
	var table strings.Builder
	require.NoError(t, s.WriteTable(&table))
	t.Log(table.String())
	require.Empty(t, s.Errors)
	require.Empty(t, leftovers(t, s.Run), "namespaces of the run left behind")

	set, err := results.ReadDir(c.ResultsDir)
	require.NoError(t, err)
	require.Len(t, set.Envs, 1)
	files := map[string]results.Bench{}
	for _, b := range set.Benches {
		files[b.Datapath+" "+b.Metric] = b
		require.Equal(t, s.Env.Kernel, b.Env.Kernel, "Env on every result")
		require.NotEmpty(t, b.Note)
	}
	measured := 0
	for _, dp := range Datapaths() {
		if _, skipped := s.Skipped[dp]; skipped {
			continue
		}
		measured++
		metrics := []string{MetricFullSync, MetricEndpointChange, MetricFirstPacket, MetricFloorDirect,
			MetricConvergence, MetricRPSKeepAlive, MetricRPSNewConn, MetricPlaneProgrammed}
		if fm, _ := FloorMetric(dp); fm != "" {
			metrics = append(metrics, fm)
		}
		if dp == "nftables" || strings.HasPrefix(dp, "iptables/") {
			metrics = append(metrics, MetricFullResync)
		}
		for _, m := range metrics {
			b, ok := files[dp+" "+m]
			require.True(t, ok, "%s %s written", dp, m)
			require.Len(t, b.Points, 2, "%s %s", dp, m)
			for _, p := range b.Points {
				require.Positive(t, p.Median, "%s %s N=%d", dp, m, p.N)
				require.LessOrEqual(t, p.Min, p.Median)
				require.LessOrEqual(t, p.Median, p.Max)
			}
		}
		fs, _ := s.Point(dp, MetricFullSync, 200)
		switch {
		case strings.HasPrefix(dp, "iptables/"):
			require.Positive(t, fs.Extra["rules"], "%s counts rules", dp)
			require.Positive(t, fs.Extra["ratio_to_floor"])
		case dp == "nftables":
			require.Positive(t, fs.Extra["nft_elements"])
			require.Positive(t, fs.Extra["ratio_to_floor"])
		case dp == "ipvs":
			require.Equal(t, 200.0, fs.Extra["ipvs_services"])
			require.Equal(t, 400.0, fs.Extra["ipvs_dests"])
			cp, _ := s.Point(dp, MetricEndpointChange, 200)
			require.Positive(t, cp.Extra["ratio_to_floor"])
		}
		fp, _ := s.Point(dp, MetricFirstPacket, 200)
		require.Positive(t, fp.P99)
	}
	require.Positive(t, measured)
	_, err = os.Stat(filepath.Join(c.ResultsDir, "bench-iptables_legacy--full-sync.json"))
	if _, skipped := s.Skipped["iptables/legacy"]; !skipped {
		require.NoError(t, err, "file name layout of package results")
	}
}

// BenchmarkEndpointChange measures one endpoint change (an endpoint added to
// or removed from the last service, alternately) with 100, 1,000 and 10,000
// services of 2 endpoints present, per datapath this kernel offers, each in
// a fresh namespace:
//
//	sudo go test -run '^$' -bench EndpointChange ./bench/
func BenchmarkEndpointChange(b *testing.B) {
	privtest.RequireRoot(b)
	run, err := rundir.New()
	require.NoError(b, err)
	b.Cleanup(func() { _ = run.Remove() })
	ctx := context.Background()
	seq := 0
	for _, dp := range Datapaths() {
		for _, n := range []int{100, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/services=%d", strings.ReplaceAll(dp, "/", "-"), n), func(b *testing.B) {
				if why := Unsupported(dp); why != "" {
					b.Skip(why)
				}
				st, err := Synthetic(n, 2)
				require.NoError(b, err)
				changed := WithTargetEndpoints(st, append(Target(st).Endpoints[:2:2], extraEndpoint(n, 2))...)
				seq++
				ns, err := netns.New(topology.NSName(run.ID, fmt.Sprintf("bench-%d", seq)))
				require.NoError(b, err)
				b.Cleanup(func() {
					if err := ns.Delete(); err != nil {
						b.Errorf("delete namespace: %v", err)
					}
				})
				err = ns.Do(func() error {
					in, err := newInstance(dp)
					if err != nil {
						return err
					}
					defer func() {
						if cerr := in.close(); cerr != nil {
							b.Errorf("cleanup %s: %v", dp, cerr)
						}
					}()
					if err := in.p.Sync(ctx, st); err != nil {
						return fmt.Errorf("full sync: %w", err)
					}
					states := [2]*state.NodeState{changed, st}
					b.ResetTimer()
					for i := range b.N {
						if err := in.p.Sync(ctx, states[i%2]); err != nil {
							return fmt.Errorf("change %d: %w", i, err)
						}
					}
					b.StopTimer()
					return nil
				})
				require.NoError(b, err)
			})
		}
	}
}
