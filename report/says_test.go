package report

import (
	"strings"
	"testing"

	"github.com/svcsim/svcsim/report/results"
)

// infos is what the datapaths' descriptors record in their results.
var infos = map[string]*results.DatapathInfo{
	"userspace":       {Order: 10},
	"iptables/legacy": {Order: 21, Claim: results.ClaimNotIncremental},
	"iptables/nft":    {Order: 22, Claim: results.ClaimNotIncremental},
	"ipvs":            {Order: 30, Claim: results.ClaimIncremental},
	"nftables":        {Order: 40},
}

// sweep builds a bench whose medians at N=100, 1000, 10000 are vs.
func sweep(dp, metric string, vs ...float64) results.Bench {
	b := results.Bench{Datapath: dp, Metric: metric, Unit: "ms", XLabel: "Services", Info: infos[dp]}
	for i, v := range vs {
		b.Points = append(b.Points, results.Point{N: []int{100, 1000, 10000}[i], Reps: 3, Median: v, Min: v, Max: v})
	}
	return b
}

func texts(ss []Sentence) string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteString(s.Kind + ": " + s.Text + "\n")
	}
	return b.String()
}

func requireLine(t *testing.T, got, kind, substr string) {
	t.Helper()
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(l, kind+": ") && strings.Contains(l, substr) {
			return
		}
	}
	t.Errorf("no %s sentence containing %q in:\n%s", kind, substr, got)
}

func TestSaysSeedClaimsHold(t *testing.T) {
	set := &results.Set{Benches: []results.Bench{
		sweep("iptables/legacy", MetricEndpointChange, 10, 100, 1230),
		sweep("ipvs", MetricEndpointChange, 2, 2.1, 2.2),
		sweep("nftables", MetricEndpointChange, 3, 3.1, 3.3),
	}}
	got := texts(Says(set))
	requireLine(t, got, KindFact, "One endpoint change: iptables/legacy grows 123x from 100 to 10000 Services (≈N^1.04); ipvs grows 1.1x")
	requireLine(t, got, KindOK, "Consistent with the seed (iptables updates are not incremental): iptables/legacy's one endpoint change grows 123x")
	requireLine(t, got, KindOK, "Consistent with the seed (IPVS updates are incremental): ipvs's one endpoint change grows 1.1x")
	requireLine(t, got, KindOK, "IPVS is 559x faster, as the seed says")
	requireLine(t, got, KindFact, "Fastest one endpoint change at N=10000: ipvs (2.2 ms), then nftables (3.3 ms), iptables/legacy (1230 ms).")
	if strings.Contains(got, "Contradicts") {
		t.Errorf("contradiction reported where the figures agree with the seed:\n%s", got)
	}
}

func TestSaysSeedClaimsContradicted(t *testing.T) {
	set := &results.Set{Benches: []results.Bench{
		sweep("iptables/nft", MetricEndpointChange, 8, 9, 11),
		sweep("ipvs", MetricEndpointChange, 5, 40, 300),
	}}
	got := texts(Says(set))
	requireLine(t, got, KindWarn, "Contradicts the seed's claim that iptables updates are not incremental: iptables/nft's one endpoint change grows only 1.38x from 100 to 10000 Services.")
	requireLine(t, got, KindWarn, "Contradicts the seed's claim that IPVS updates are incremental: ipvs's one endpoint change grows 60x")
	requireLine(t, got, KindWarn, "Contradicts the seed's claim that IPVS fixes the iptables update cost: at N=10000 one endpoint change takes 300 ms on ipvs but 11 ms on iptables/nft.")
}

func TestSaysUncheckable(t *testing.T) {
	// IPVS skipped with a reason and no endpoint-change figures: say why the
	// claim could not be checked rather than guessing.
	set := &results.Set{
		Results: []results.Result{
			{Scenario: "a", Mode: "ipvs", Status: results.Skip, Reason: "kernel lacks IP_VS", Info: infos["ipvs"]},
			{Scenario: "a", Mode: "nftables", Status: results.Pass, Info: infos["nftables"]},
		},
		Benches: []results.Bench{{Datapath: "iptables/legacy", Info: infos["iptables/legacy"], Metric: MetricEndpointChange, Unit: "ms",
			Points: []results.Point{{N: 100, Median: 10}, {N: 500, Median: 20}}}},
	}
	got := texts(Says(set))
	requireLine(t, got, KindFact, "IPVS updates are incremental could not be checked: no ipvs endpoint-change figures (ipvs: kernel lacks IP_VS)")
	requireLine(t, got, KindFact, "could not be checked on iptables/legacy: its sweep covers less than 10x in N")
	requireLine(t, got, KindWarn, "ipvs could not run: kernel lacks IP_VS (1 scenario skipped)")
	requireLine(t, got, KindOK, "Conformance: 1 passed, 0 failed, 1 skipped (1 scenario × 2 modes).")

	got = texts(Says(&results.Set{}))
	requireLine(t, got, KindWarn, "No scenario results in this run.")
	requireLine(t, got, KindFact, "No benchmarks in this run")
}

func TestSaysDistributionAndAffinity(t *testing.T) {
	dist := func(mode string, p float64, rr, exact bool) results.Result {
		return results.Result{Scenario: "dist", Mode: mode, Status: results.Pass, Distribution: &results.Distribution{
			Requests: 200, Backends: []results.BackendCount{{Backend: "a", Count: 100, Expected: 100}, {Backend: "b", Count: 100, Expected: 100}},
			Test: "chi-square", DF: 1, Statistic: 1, PValue: p, Alpha: 0.001, RoundRobin: rr, Exact: exact}}
	}
	aff := func(mode string, stick, expiry float64) results.Result {
		return results.Result{Scenario: "aff", Mode: mode, Status: results.Pass, Affinity: &results.Affinity{
			Requests: 100, OnPinned: int(stick * 100), Stickiness: stick, TimeoutSeconds: 10, ObservedExpirySeconds: expiry}}
	}
	set := &results.Set{Results: []results.Result{
		dist("iptables/legacy", 0.4, false, false), dist("nftables", 0.0002, false, false), dist("userspace", 1, true, false),
		aff("iptables/legacy", 1, 11.5), aff("nftables", 0.97, 10.2),
	}}
	got := texts(Says(set))
	requireLine(t, got, KindWarn, "Distribution (dist): all modes are consistent with the expected shares at α=0.001 except nftables (p=0.0002).")
	requireLine(t, got, KindWarn, "Round-robin (dist): userspace did not rotate exactly.")
	requireLine(t, got, KindWarn, "Session affinity (aff): stickiness below 100%: nftables 97%.")
	requireLine(t, got, KindFact, "Affinity expiry observed (aff) with timeoutSeconds 10: iptables/legacy 11.5 s, nftables 10.2 s.")

	set.Results = set.Results[:1]
	requireLine(t, texts(Says(set)), KindOK, "Distribution (dist): the one mode is consistent with the expected shares at α=0.001 (chi-square).")
}

func TestSaysFloors(t *testing.T) {
	floor := sweep("iptables/legacy", "floor-restore", 8, 80, 800)
	set := &results.Set{Benches: []results.Bench{
		sweep("iptables/legacy", MetricFullSync, 10, 100, 1000),
		sweep("iptables/legacy", MetricEndpointChange, 1, 1, 4),
		floor,
	}}
	got := texts(Says(set))
	requireLine(t, got, KindFact, "Full sync against the raw floor: iptables/legacy 1.25x its floor-restore (1000 ms vs 800 ms at N=10000).")
	requireLine(t, got, KindFact, "One endpoint change against the raw floor: iptables/legacy 0.5% of its floor-restore")
	// A floor restricted to full-sync is not compared with endpoint changes.
	set.Benches[2].FloorFor = []string{MetricFullSync}
	if got := texts(Says(set)); strings.Contains(got, "One endpoint change against the raw floor") {
		t.Errorf("floor drawn on a metric it is not for:\n%s", got)
	}
}

func TestFormatting(t *testing.T) {
	for v, want := range map[float64]string{1980: "1980", 12.34: "12.3", 1.5: "1.5", 0.0312: "0.0312", 77.27: "77.3", 21300: "21300", 0: "0"} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
	for v, want := range map[float64]string{0.001: "0.001", 7.6e-05: "7.6e-05", 0.626: "0.626", 1: "1"} {
		if got := fmtP(v); got != want {
			t.Errorf("fmtP(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestSaysComparesOnlyWithinALane(t *testing.T) {
	ipvs := sweep("ipvs", MetricEndpointChange, 20, 100, 500)
	ipvs.Env.Lane = "vm:debian-6.1"
	ipt := sweep("iptables/legacy", MetricEndpointChange, 5, 30, 400)
	ipt.Env.Lane = "host"
	got := texts(Says(&results.Set{Benches: []results.Bench{ipvs, ipt}}))
	requireLine(t, got, KindFact, "ipvs (lane vm:debian-6.1) and iptables/legacy (lane host) were measured on different kernels")
	if strings.Contains(got, "IPVS fixes the iptables update cost") || strings.Contains(got, "Fastest one endpoint change") {
		t.Errorf("figures from different lanes were compared:\n%s", got)
	}
}
