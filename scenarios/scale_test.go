package scenarios

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/bench"
	"github.com/svcsim/svcsim/internal/hostinfo"
	"github.com/svcsim/svcsim/plane/kube/cluster"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// Sweep of TestRuleUpdateScaling: synthetic Services of 2 endpoints (the
// address plan of package bench: ClusterIPs 10.100.0.0/16, endpoints that
// exist only as rules), each datapath in fresh private namespaces.
const (
	scaleSmall = 100
	scaleLarge = 5000
)

// TestRuleUpdateScaling measures, for every selected datapath in one run, one
// endpoint change with 100 and with 5,000 Services present, the full sync and
// a forced full resync, and asserts only relative facts of the same run and
// kernel with wide margins (verified repeatedly on a shared 2-core machine):
// the seed's claim that iptables updates are not incremental (iptables-legacy's
// one change grows more than 3x), nftables' partial updates (growing far
// slower than N and than iptables-legacy, far cheaper than its full resync,
// and within 2x of nft -f alone running the same change at 5,000: the
// floor, since nft's cache load and the kernel's validation of the whole
// table grow with N), and IPVS's incremental sync (the same number of
// netlink requests whatever N, one change growing less than 10x from 100 to
// 5,000, far cheaper than programming everything). Method: each figure is the
// median of 18 samples per N (3 fresh namespaces x 3 changes, each an
// endpoint added to the last Service and removed again, timed from the call
// of Sync to its return), both Ns and every datapath in the same run; the
// floor is the median of 18 replays of the recorded transactions. Speeds
// themselves are never asserted; the figures go into the result. It owns
// its namespaces (package bench builds them) and never runs on a shared
// cluster: other scenarios' rules would be in what it measures.
// On the kubernetes plane it is an exception: the benchmark drives svcsim's
// proxiers in-process, and kube-proxy measures its own syncs
// (kubeproxy_sync_proxy_rules_duration_seconds in pkg/proxy/metrics).
func TestRuleUpdateScaling(t *testing.T) {
	sc := harness.Scenario{Name: "rule-update-scaling", Title: "One endpoint change as Services grow from 100 to 5,000",
		Group: results.GroupScale}
	dps := harness.Datapaths()
	env := hostinfo.Collect(hostinfo.Lane())
	var measure []string
	for _, dp := range dps {
		if dp.Skip == "" && !harness.OnKube(dp.Desc) {
			measure = append(measure, dp.Mode)
		}
	}
	var sum *bench.Summary
	var runErr error
	if os.Geteuid() == 0 && len(measure) > 0 {
		cfg := bench.Quick()
		cfg.Datapaths, cfg.Services, cfg.Traffic, cfg.Plane = measure, []int{scaleSmall, scaleLarge}, false, false
		cfg.Reps, cfg.Changes, cfg.NoFloor = 3, 3, true
		cfg.Lane = env.Lane
		var log strings.Builder
		cfg.Log = &log
		// A generous bound: on a loaded 2-core host iptables/nft alone took
		// almost 6 minutes at 5,000 Services; the bound only stops a hang.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		sum, runErr = bench.Run(ctx, cfg)
		cancel()
		t.Log(log.String())
		if sum != nil {
			var tbl strings.Builder
			_ = sum.WriteTable(&tbl)
			t.Log(tbl.String())
		}
	}
	for _, dp := range dps {
		t.Run(strings.ReplaceAll(dp.Mode, "/", "-"), func(t *testing.T) {
			res := &results.Result{Scenario: sc.Name, Title: sc.Title, Group: sc.Group, Mode: dp.Mode, Info: harness.DatapathInfo(dp.Desc),
				Started: time.Now().UTC(), Env: env}
			h := &harness.H{T: t, Mode: dp.Mode, Desc: dp.Desc, Result: res}
			t.Cleanup(func() { writeScaleResult(t, res) })
			if os.Geteuid() != 0 {
				res.Reason = "needs root: run `sudo go test ./scenarios/...`"
				t.Skip(res.Reason)
			}
			if dp.Skip != "" {
				res.Reason = dp.Skip
				t.Skip(dp.Skip)
			}
			// The benchmark times svcsim's proxiers' Sync in-process; the
			// genuine kube-proxy times its own syncs
			// (kubeproxy_sync_proxy_rules_duration_seconds, pkg/proxy/metrics).
			h.KubeException("the benchmark drives svcsim's in-process proxiers; kube-proxy reports its sync durations itself (pkg/proxy/metrics: kubeproxy_sync_proxy_rules_duration_seconds)")
			if harness.OnKube(dp.Desc) {
				// svcsim's datapath on the kubernetes plane: the benchmark
				// runs its proxier in-process on namespaces of its own, with
				// no control plane, so its figures are the embedded run's.
				res.ControlPlane = cluster.ControlPlaneName
				res.Reason = "the benchmark drives svcsim's proxier in-process without a control plane (package bench): the same measurement as on the embedded plane"
				t.Skip(res.Reason)
			}
			if runErr != nil {
				h.Fatalf("benchmark run: %v", runErr)
			}
			for _, e := range sum.Errors {
				if strings.HasPrefix(e, dp.Mode+":") {
					h.Fatalf("measurement failed: %s", e)
				}
			}
			scaleChecks(h, sum, dp.Mode)
		})
	}
}

// scaleFigures are one datapath's medians at one N.
type scaleFigures struct {
	change, full, resync float64
	ipvsOps              float64
}

func scaleAt(h *harness.H, s *bench.Summary, dp string, n int) scaleFigures {
	h.T.Helper()
	cp, ok := s.Point(dp, bench.MetricEndpointChange, n)
	fp, ok2 := s.Point(dp, bench.MetricFullSync, n)
	if !ok || !ok2 {
		h.Fatalf("no %s figures at N=%d", dp, n)
	}
	f := scaleFigures{change: cp.Median, full: fp.Median, ipvsOps: cp.Extra["last_ipvs_netlink_ops"]}
	if rp, ok := s.Point(dp, bench.MetricFullResync, n); ok {
		f.resync = rp.Median
	}
	h.Figure(fmt.Sprintf("one endpoint change, %d services", n), f.change, "ms")
	h.Figure(fmt.Sprintf("full sync, %d services", n), f.full, "ms")
	if f.resync > 0 {
		h.Figure(fmt.Sprintf("forced full resync of one change, %d services", n), f.resync, "ms")
	}
	return f
}

// scaleChecks asserts dp's relative facts.
func scaleChecks(h *harness.H, s *bench.Summary, dp string) {
	small, large := scaleAt(h, s, dp, scaleSmall), scaleAt(h, s, dp, scaleLarge)
	growth := large.change / small.change
	h.Figure(fmt.Sprintf("one-change growth %d to %d services", scaleSmall, scaleLarge), growth, "x")
	span := fmt.Sprintf("%.3g ms at %d services, %.3g ms at %d: %.2fx", small.change, scaleSmall, large.change, scaleLarge, growth)
	switch dp {
	case "iptables/legacy":
		h.Check(growth > 3, "one change grows with the number of services (the seed: iptables updates are not incremental)",
			"more than 3x expected; %s", span)
	case "iptables/nft":
		h.Check(growth > 3, "one change grows with the number of services, even with partial restores",
			"more than 3x expected; %s", span)
		h.Check(large.resync > 2*large.change, "a partial sync beats a full resync",
			"at %d services: partial %.3g ms, full resync %.3g ms (%.2fx), more than 2x expected", scaleLarge, large.change, large.resync, large.resync/large.change)
	case "nftables":
		// Not flat: nft reads the table back into its cache before each
		// transaction, so one change grows about as sqrt(N) here (5.5x from
		// 100 to 5,000 on the development machine), far below linear.
		h.Check(growth < 15, "one change grows far slower than the number of services (50x)", "less than 15x expected; %s", span)
		if fl, ok := s.Point(dp, bench.MetricFloorNftChange, scaleLarge); ok && fl.Median > 0 {
			h.Figure(fmt.Sprintf("nft -f of the same one change, %d services", scaleLarge), fl.Median, "ms")
			h.Check(large.change < 2*fl.Median, "one change costs less than 2x nft -f alone running the same change (same N, same run)",
				"at %d services: svcsim %.3g ms, nft -f of its transactions %.3g ms (%.2fx)", scaleLarge, large.change, fl.Median, large.change/fl.Median)
		} else {
			h.Fatalf("no one-change floor of nftables at %d services", scaleLarge)
		}
		h.Check(large.resync > 5*large.change, "one change costs far less than a full resync",
			"at %d services: change %.3g ms, full resync %.3g ms (%.2fx), more than 5x expected", scaleLarge, large.change, large.resync, large.resync/large.change)
		if leg, ok := s.Point("iptables/legacy", bench.MetricEndpointChange, scaleLarge); ok {
			if legSmall, ok := s.Point("iptables/legacy", bench.MetricEndpointChange, scaleSmall); ok && legSmall.Median > 0 {
				lg := leg.Median / legSmall.Median
				h.Check(growth < lg/2, "grows less than half as much as iptables-legacy's one change (same run)",
					"nftables %.2fx, iptables-legacy %.2fx from %d to %d services", growth, lg, scaleSmall, scaleLarge)
			}
		}
	case "ipvs":
		h.Check(small.ipvsOps > 0 && large.ipvsOps == small.ipvsOps, "one change takes the same IPVS netlink requests whatever N (incremental)",
			"%.0f requests at %d services, %.0f at %d", small.ipvsOps, scaleSmall, large.ipvsOps, scaleLarge)
		// Nothing is dumped and only changed ports are translated, but
		// every port of the state is still compared with the last one
		// (the feed hands Sync the whole state): 5.4x from 100 to 5,000
		// in the TCG kernel lane, where those 5,000 comparisons (0.4 ms
		// natively) cost about 14 ms against 3 ms for the change itself;
		// 27x when every sync dumped the virtual servers.
		h.Check(growth < 10, "one change grows far slower than the number of services (50x), the kernel's part not at all",
			"less than 10x expected; %s", span)
		h.Check(large.full > 5*large.change, "one change costs far less than programming every service",
			"at %d services: change %.3g ms, full sync %.3g ms (%.2fx), more than 5x expected", scaleLarge, large.change, large.full, large.full/large.change)
	case "userspace":
		h.Check(growth > 3, "one change grows with the number of services (the portal rules are rewritten whole)",
			"more than 3x expected; %s", span)
	default:
		h.Check(large.full > small.full, "full sync grows with the number of services",
			"%.3g ms at %d, %.3g ms at %d", small.full, scaleSmall, large.full, scaleLarge)
	}
}

// writeScaleResult stores the result as harness.RunOne does.
func writeScaleResult(t *testing.T, r *results.Result) {
	r.Seconds = time.Since(r.Started).Seconds()
	switch {
	case t.Failed():
		r.Status = results.Fail
		if r.Reason == "" {
			r.Reason = "see the test log"
		}
	case t.Skipped():
		r.Status = results.Skip
	default:
		r.Status = results.Pass
	}
	if err := results.WriteResult(harness.ResultsDir(), *r); err != nil {
		t.Errorf("write result: %v", err)
	}
}
