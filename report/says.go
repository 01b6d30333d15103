package report

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/svcsim/svcsim/report/results"
)

// Sentence is one generated statement of "what this run says".
type Sentence struct {
	// Kind is "fact", "ok" (a figure agrees with a claim of the seed) or
	// "warn" (a failure, or a figure that contradicts the seed).
	Kind string
	Text string
	// Key marks the findings that matter, which the report's summary
	// shows first: conformance (totals, failures, datapaths that could not
	// run) and the seed's claims.
	Key bool
	// Anchor is the id of the report's section or chart the sentence is
	// about ("" for none).
	Anchor string
}

// Sentence kinds.
const (
	KindFact = "fact"
	KindOK   = "ok"
	KindWarn = "warn"
)

// Thresholds for judging the seed's claims about rule updates. Over a sweep
// spanning at least minSweep (e.g. 100 to 10000 Services), a one-change time
// that grows by notIncremental or more tracks the ruleset size; one that
// grows by at most incremental does not.
const (
	minSweep       = 10
	notIncremental = 3.0
	incremental    = 2.0
	maxListed      = 5
)

// Says derives short statements from the figures in set: conformance
// totals, modes that could not run, distribution and affinity verdicts,
// how each benchmark scales, and whether the figures bear out the seed's
// claims (iptables updates are not incremental; IPVS updates are). It
// states only what the figures show; nothing is hand-written per run.
func Says(set *results.Set) []Sentence {
	var out []Sentence
	add := func(kind, format string, args ...any) {
		out = append(out, Sentence{Kind: kind, Text: fmt.Sprintf(format, args...)})
	}
	key := func(anchor string) addFunc {
		return func(kind, format string, args ...any) {
			out = append(out, Sentence{Kind: kind, Text: fmt.Sprintf(format, args...), Key: true, Anchor: anchor})
		}
	}
	by, floors := benchesByMetric(set)
	conformance(set, key("conformance"))
	seedAnchor := ""
	if len(by[MetricEndpointChange]) > 0 {
		seedAnchor = chartID(MetricEndpointChange)
	}
	seedSays(set, by, key(seedAnchor))
	distributionSays(set, add)
	affinitySays(set, add)
	if len(by) == 0 {
		add(KindFact, "No benchmarks in this run: rule-update latency and scale were not measured.")
	}
	metrics := sortedKeys(by)
	sortByOrder(metrics, metricOrder)
	for _, m := range metrics {
		growthSays(m, by[m], add)
		for _, lane := range lanesOf(by[m]) {
			rankingSays(m, lane, add)
		}
		floorSays(m, by[m], floorsFor(m, floors), add)
	}
	return out
}

type addFunc func(kind, format string, args ...any)

func conformance(set *results.Set, add addFunc) {
	if len(set.Results) == 0 {
		add(KindWarn, "No scenario results in this run.")
		return
	}
	_, t := matrix(set)
	kind := KindOK
	if t.Fail > 0 {
		kind = KindWarn
	}
	text := fmt.Sprintf("Conformance: %d passed, %d failed, %d skipped", t.Pass, t.Fail, t.Skip)
	if t.Missing > 0 {
		text += fmt.Sprintf(", %d not run", t.Missing)
	}
	add(kind, "%s (%s × %s).", text, count(t.Scenarios, "scenario"), count(t.Modes, "mode"))
	var fails []string
	by := pick(set)
	for _, sc := range scenarios(set) {
		for _, m := range modesOf(set) {
			if r, ok := by[[2]string{sc.Name, m}]; ok && r.Status != results.Pass && r.Status != results.Skip {
				fails = append(fails, fmt.Sprintf("%s on %s (%s)", sc.Name, m, orDefault(r.Reason, "no reason given")))
			}
		}
	}
	if len(fails) > 0 {
		add(KindWarn, "Failed: %s.", listCapped(fails))
	}
	for _, mv := range modeViews(set, nil) {
		switch mv.State {
		case "skipped":
			add(KindWarn, "%s could not run: %s (%s skipped).", mv.Mode, reasons(mv.Skips), count(mv.Sk, "scenario"))
		case "partial":
			add(KindFact, "%s skipped %d of %d scenarios: %s.", mv.Mode, mv.Sk, mv.Sk+mv.Ran, reasons(mv.Skips))
		}
	}
}

func reasons(rs []reasonCount) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, r.Reason)
	}
	return listCapped(parts)
}

func listCapped(items []string) string {
	if len(items) > maxListed {
		return strings.Join(items[:maxListed], "; ") + fmt.Sprintf("; and %d more", len(items)-maxListed)
	}
	return strings.Join(items, "; ")
}

func distributionSays(set *results.Set, add addFunc) {
	by := pick(set)
	for _, sc := range scenarios(set) {
		var ok, bad, exact, inexact []string
		alphas := map[float64]bool{}
		for _, m := range modesOf(set) {
			r, found := by[[2]string{sc.Name, m}]
			if !found || r.Distribution == nil {
				continue
			}
			d := r.Distribution
			if d.RoundRobin {
				if d.Exact {
					exact = append(exact, m)
				} else {
					inexact = append(inexact, m)
				}
			}
			if !tested(d) {
				continue
			}
			alphas[alphaOf(d)] = true
			if d.PValue >= alphaOf(d) {
				ok = append(ok, m)
			} else {
				bad = append(bad, fmt.Sprintf("%s (p=%s)", m, fmtP(d.PValue)))
			}
		}
		at := "at their α"
		if len(alphas) == 1 {
			for a := range alphas {
				at = "at α=" + fmtP(a)
			}
		}
		switch {
		case len(ok)+len(bad) == 0:
		case len(bad) == 0:
			add(KindOK, "Distribution (%s): %s consistent with the expected shares %s (chi-square).", sc.Name, allOf(len(ok)), at)
		case len(ok) == 0:
			add(KindWarn, "Distribution (%s): no mode consistent with the expected shares %s: %s.", sc.Name, at, strings.Join(bad, ", "))
		default:
			add(KindWarn, "Distribution (%s): all modes are consistent with the expected shares %s except %s.", sc.Name, at, strings.Join(bad, ", "))
		}
		if len(exact) > 0 {
			add(KindOK, "Round-robin (%s): %s rotated exactly.", sc.Name, strings.Join(exact, ", "))
		}
		if len(inexact) > 0 {
			add(KindWarn, "Round-robin (%s): %s did not rotate exactly.", sc.Name, strings.Join(inexact, ", "))
		}
	}
}

func affinitySays(set *results.Set, add addFunc) {
	for _, g := range affinity(set) {
		by := pick(set)
		var loose, expiry []string
		timeouts := map[int]bool{}
		for _, row := range g.Rows {
			if a := by[[2]string{g.Scenario, row.Mode}].Affinity; a.ObservedExpirySeconds > 0 {
				timeouts[a.TimeoutSeconds] = true
			}
		}
		for _, row := range g.Rows {
			a := by[[2]string{g.Scenario, row.Mode}].Affinity
			if a.Stickiness < 1 {
				loose = append(loose, fmt.Sprintf("%s %s", row.Mode, fmtPct(a.Stickiness)))
			}
			if a.ObservedExpirySeconds > 0 {
				e := fmt.Sprintf("%s %s s", row.Mode, fmtNum(a.ObservedExpirySeconds))
				if len(timeouts) > 1 {
					e += fmt.Sprintf(" (timeoutSeconds %d)", a.TimeoutSeconds)
				}
				expiry = append(expiry, e)
			}
		}
		if len(loose) == 0 {
			add(KindOK, "Session affinity (%s): every mode kept 100%% of requests on the pinned backend.", g.Scenario)
		} else {
			add(KindWarn, "Session affinity (%s): stickiness below 100%%: %s.", g.Scenario, strings.Join(loose, ", "))
		}
		switch {
		case len(expiry) == 0:
		case len(timeouts) == 1:
			for t := range timeouts {
				add(KindFact, "Affinity expiry observed (%s) with timeoutSeconds %d: %s.", g.Scenario, t, strings.Join(expiry, ", "))
			}
		default:
			add(KindFact, "Affinity expiry observed (%s): %s.", g.Scenario, strings.Join(expiry, ", "))
		}
	}
}

// growth is how a series changes from its smallest to its largest N.
type growth struct {
	n0, n1 int
	v0, v1 float64
}

func (g growth) ratio() float64 { return g.v1 / g.v0 }
func (g growth) sweep() float64 { return float64(g.n1) / float64(g.n0) }

// exponent is k in v ∝ N^k between the two ends.
func (g growth) exponent() float64 { return math.Log(g.ratio()) / math.Log(g.sweep()) }

func growthOf(b results.Bench) (growth, bool) {
	var pts []results.Point
	for _, p := range b.Points {
		if p.N > 0 && p.Median > 0 {
			pts = append(pts, p)
		}
	}
	if len(pts) < 2 {
		return growth{}, false
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].N < pts[j].N })
	f, l := pts[0], pts[len(pts)-1]
	if f.N == l.N {
		return growth{}, false
	}
	return growth{f.N, l.N, f.Median, l.Median}, true
}

func ratioText(r float64) string {
	switch {
	case r >= 1.1:
		return "grows " + fmtNum(r) + "x"
	case r <= 0.9:
		return "falls to " + fmtNum(r) + "x"
	}
	return "stays flat (" + fmtNum(r) + "x)"
}

func growthSays(metric string, bs []results.Bench, add addFunc) {
	var parts []string
	var span string
	for _, b := range bs {
		g, ok := growthOf(b)
		if !ok {
			continue
		}
		s := fmt.Sprintf("%s %s", b.Datapath, ratioText(g.ratio()))
		here := fmt.Sprintf("from %d to %d %s", g.n0, g.n1, xNoun(b))
		if span == "" || here != span {
			s += " " + here
			span = here
		}
		if g.sweep() >= minSweep && g.ratio() >= 1.1 {
			s += fmt.Sprintf(" (≈N^%.2f)", g.exponent())
		}
		parts = append(parts, s)
	}
	if len(parts) > 0 {
		add(KindFact, "%s: %s.", capitalize(metricPhrase(metric)), strings.Join(parts, "; "))
	}
}

func xNoun(b results.Bench) string {
	if b.XLabel == "" {
		return "Services"
	}
	return b.XLabel
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// atN returns each bench's median at the largest N, restricted to the
// benches that measured that N.
func atLargestN(bs []results.Bench) (int, []results.Bench, []float64) {
	largest := 0
	for _, b := range bs {
		for _, p := range b.Points {
			if p.N > largest {
				largest = p.N
			}
		}
	}
	var have []results.Bench
	var vals []float64
	for _, b := range bs {
		for _, p := range b.Points {
			if p.N == largest {
				have = append(have, b)
				vals = append(vals, p.Median)
				break
			}
		}
	}
	return largest, have, vals
}

// lanesOf splits benches by the lane that measured them, in order of first
// appearance: only figures from one kernel are ranked against each other.
func lanesOf(bs []results.Bench) [][]results.Bench {
	var order []string
	by := map[string][]results.Bench{}
	for _, b := range bs {
		if _, ok := by[b.Env.Lane]; !ok {
			order = append(order, b.Env.Lane)
		}
		by[b.Env.Lane] = append(by[b.Env.Lane], b)
	}
	out := make([][]results.Bench, 0, len(order))
	for _, l := range order {
		out = append(out, by[l])
	}
	return out
}

func rankingSays(metric string, bs []results.Bench, add addFunc) {
	n, have, vals := atLargestN(bs)
	if len(have) < 2 {
		return
	}
	idx := make([]int, len(have))
	for i := range idx {
		idx[i] = i
	}
	hib := higherIsBetter(metric, have[0].Unit)
	sort.SliceStable(idx, func(a, b int) bool {
		if hib {
			return vals[idx[a]] > vals[idx[b]]
		}
		return vals[idx[a]] < vals[idx[b]]
	})
	unit := have[0].Unit
	var parts []string
	for _, i := range idx {
		parts = append(parts, fmt.Sprintf("%s (%s)", have[i].Datapath, withUnit(vals[i], unit)))
	}
	word := "Fastest"
	if hib {
		word = "Highest"
	} else if metric == MetricFirstPacket {
		word = "Lowest"
	}
	add(KindFact, "%s %s at N=%d: %s, then %s.", word, metricPhrase(metric), n, parts[0], strings.Join(parts[1:], ", "))
}

func withUnit(v float64, unit string) string {
	if unit == "" {
		return fmtNum(v)
	}
	return fmtNum(v) + " " + unit
}

func floorSays(metric string, bs, floors []results.Bench, add addFunc) {
	var parts []string
	for _, f := range floors {
		for _, b := range bs {
			if b.Datapath != f.Datapath || b.Unit != f.Unit {
				continue
			}
			n, v, fv, ok := commonLargest(b, f)
			if !ok {
				continue
			}
			rel := fmtNum(v/fv) + "x"
			if v/fv < 0.1 {
				rel = fmtPct(v/fv) + " of"
			}
			parts = append(parts, fmt.Sprintf("%s %s its %s (%s vs %s at N=%d)", b.Datapath, rel, f.Metric, withUnit(v, b.Unit), withUnit(fv, f.Unit), n))
		}
	}
	if len(parts) > 0 {
		add(KindFact, "%s against the raw floor: %s.", capitalize(metricPhrase(metric)), strings.Join(parts, "; "))
	}
}

// commonLargest returns the largest N both benches measured and their medians.
func commonLargest(a, b results.Bench) (int, float64, float64, bool) {
	best := -1
	var va, vb float64
	for _, p := range a.Points {
		for _, q := range b.Points {
			if p.N == q.N && p.N > best && p.Median > 0 && q.Median > 0 {
				best, va, vb = p.N, p.Median, q.Median
			}
		}
	}
	return best, va, vb, best >= 0
}

// claimOf is the seed's claim recorded for a datapath ("" when none).
func claimOf(info *results.DatapathInfo) string {
	if info == nil {
		return ""
	}
	return info.Claim
}

// seedSays checks the seed's two claims about rule updates against the
// one-change figures: iptables updates are not incremental (the time grows
// with the number of Services), and IPVS updates are incremental (it does
// not), so IPVS fixes the cost.
func seedSays(set *results.Set, by map[string][]results.Bench, add addFunc) {
	changes := by[MetricEndpointChange]
	if len(changes) == 0 {
		if len(by) > 0 {
			add(KindFact, "The seed's claims about rule-update cost (iptables not incremental, IPVS incremental) could not be checked: no %s benchmark in this run.", MetricEndpointChange)
		}
		return
	}
	// Which claim applies to a datapath, its descriptor says (recorded in
	// its files as results.DatapathInfo.Claim).
	var ipt, ipvs []results.Bench
	for _, b := range changes {
		switch claimOf(b.Info) {
		case results.ClaimNotIncremental:
			ipt = append(ipt, b)
		case results.ClaimIncremental:
			ipvs = append(ipvs, b)
		}
	}
	const claimIpt = "iptables updates are not incremental"
	if len(ipt) == 0 {
		add(KindFact, "The seed's claim that %s could not be checked: no iptables %s figures.", claimIpt, MetricEndpointChange)
	}
	for _, b := range ipt {
		g, ok := growthOf(b)
		switch {
		case !ok || g.sweep() < minSweep:
			add(KindFact, "The seed's claim that %s could not be checked on %s: its sweep covers less than %dx in N.", claimIpt, b.Datapath, minSweep)
		case g.ratio() >= notIncremental:
			add(KindOK, "Consistent with the seed (%s): %s's one endpoint change grows %sx from %d to %d %s.", claimIpt, b.Datapath, fmtNum(g.ratio()), g.n0, g.n1, xNoun(b))
		default:
			add(KindWarn, "Contradicts the seed's claim that %s: %s's one endpoint change grows only %sx from %d to %d %s.", claimIpt, b.Datapath, fmtNum(g.ratio()), g.n0, g.n1, xNoun(b))
		}
	}
	const claimIPVS = "IPVS updates are incremental"
	if len(ipvs) == 0 {
		why := ""
		incremental := map[string]bool{}
		for _, r := range set.Results {
			if claimOf(r.Info) == results.ClaimIncremental {
				incremental[r.Mode] = true
			}
		}
		for _, mv := range modeViews(set, nil) {
			if incremental[mv.Mode] && mv.Ran == 0 && len(mv.Skips) > 0 {
				why = " (" + mv.Mode + ": " + mv.Skips[0].Reason + ")"
			}
		}
		add(KindFact, "The seed's claim that %s could not be checked: no ipvs %s figures%s.", claimIPVS, MetricEndpointChange, why)
		return
	}
	for _, b := range ipvs {
		g, ok := growthOf(b)
		switch {
		case !ok || g.sweep() < minSweep:
			add(KindFact, "The seed's claim that %s could not be checked on %s: its sweep covers less than %dx in N.", claimIPVS, b.Datapath, minSweep)
		case g.ratio() <= incremental:
			add(KindOK, "Consistent with the seed (%s): %s's one endpoint change %s from %d to %d %s.", claimIPVS, b.Datapath, ratioText(g.ratio()), g.n0, g.n1, xNoun(b))
		default:
			add(KindWarn, "Contradicts the seed's claim that %s: %s's one endpoint change grows %sx from %d to %d %s.", claimIPVS, b.Datapath, fmtNum(g.ratio()), g.n0, g.n1, xNoun(b))
		}
		for _, i := range ipt {
			if i.Env.Lane != b.Env.Lane {
				// Absolute times from different kernels (the qemu lane runs
				// about 15x slower) say nothing about each other.
				add(KindFact, "%s (lane %s) and %s (lane %s) were measured on different kernels: their absolute times are not compared.", b.Datapath, b.Env.Lane, i.Datapath, i.Env.Lane)
				continue
			}
			n, v, iv, ok := commonLargest(b, i)
			if !ok {
				continue
			}
			if v < iv {
				add(KindOK, "At N=%d one endpoint change takes %s on %s and %s on %s: IPVS is %sx faster, as the seed says.", n, withUnit(v, b.Unit), b.Datapath, withUnit(iv, i.Unit), i.Datapath, fmtNum(iv/v))
			} else {
				add(KindWarn, "Contradicts the seed's claim that IPVS fixes the iptables update cost: at N=%d one endpoint change takes %s on %s but %s on %s.", n, withUnit(v, b.Unit), b.Datapath, withUnit(iv, i.Unit), i.Datapath)
			}
		}
	}
}

// count is "1 scenario", "2 scenarios".
func count(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// allOf is "the one mode is", "all 3 modes are".
func allOf(n int) string {
	if n == 1 {
		return "the one mode is"
	}
	return fmt.Sprintf("all %d modes are", n)
}
