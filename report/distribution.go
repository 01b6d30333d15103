package report

import (
	"fmt"
	"html/template"
	"math"
	"strconv"

	"github.com/svcsim/svcsim/report/chart"
	"github.com/svcsim/svcsim/report/results"
)

type distGroup struct {
	Scenario, Title string
	Cards           []distCard
}

type distCard struct {
	Mode     string
	Anchor   string
	Chart    template.HTML
	Stats    string
	Verdict  string
	OK       bool
	RR       string
	Requests int
}

type affGroup struct {
	Scenario, Title string
	Rows            []affRow
}

type affRow struct {
	Mode, Anchor         string
	Requests, OnPinned   int
	Stickiness           string
	StickPct             string
	Timeout, Expiry, Off string
	OK                   bool
}

func distributions(set *results.Set, colors map[string]int) ([]distGroup, error) {
	var out []distGroup
	by := pick(set)
	for _, sc := range scenarios(set) {
		g := distGroup{Scenario: sc.Name, Title: sc.Title}
		for _, m := range modesOf(set) {
			r, ok := by[[2]string{sc.Name, m}]
			if !ok || r.Distribution == nil || len(r.Distribution.Backends) == 0 {
				continue
			}
			d := r.Distribution
			var bars []chart.Bar
			for _, b := range d.Backends {
				bars = append(bars, chart.Bar{Label: b.Backend, Value: float64(b.Count), Expected: b.Expected})
			}
			id := "dist-" + slug(sc.Name) + "-" + slug(m)
			svg, err := chart.Bars{
				ID: id, Title: fmt.Sprintf("%s: requests per backend on %s", sc.Title, m),
				Desc:   fmt.Sprintf("%d requests over %d backends; dashed lines mark the expected count.", d.Requests, len(d.Backends)),
				YLabel: "requests", ExpectedLabel: "expected", Color: colors[m], Bars: bars,
			}.SVG()
			if err != nil {
				return nil, fmt.Errorf("distribution chart: %w", err)
			}
			card := distCard{Mode: m, Anchor: anchor(sc.Name, m), Chart: svg, Requests: d.Requests}
			card.Stats = distStats(d)
			card.OK, card.Verdict = distVerdict(d)
			if d.RoundRobin {
				if d.Exact {
					card.RR = "round-robin: exact (counts within one, in rotation)"
				} else {
					card.RR = "round-robin: NOT exact"
					card.OK = false
				}
			}
			g.Cards = append(g.Cards, card)
		}
		if len(g.Cards) > 0 {
			out = append(out, g)
		}
	}
	return out, nil
}

// DefaultAlpha is the significance level assumed when a distribution does
// not record the one its scenario asserted against.
const DefaultAlpha = 0.001

func alphaOf(d *results.Distribution) float64 {
	if d.Alpha > 0 {
		return d.Alpha
	}
	return DefaultAlpha
}

// tested reports whether d records a statistical test.
func tested(d *results.Distribution) bool {
	return d.Test != "" || d.DF != 0 || d.Statistic != 0 || d.PValue != 0
}

func distStats(d *results.Distribution) string {
	if !tested(d) {
		return fmt.Sprintf("%d requests; no statistical test recorded", d.Requests)
	}
	return fmt.Sprintf("χ² = %s, df = %d, p = %s (α = %s), %d requests", fmtNum(d.Statistic), d.DF, fmtP(d.PValue), fmtP(alphaOf(d)), d.Requests)
}

func distVerdict(d *results.Distribution) (bool, string) {
	if !tested(d) {
		return true, "not tested"
	}
	if d.PValue >= alphaOf(d) {
		return true, "consistent (p ≥ α)"
	}
	return false, "inconsistent (p < α)"
}

func affinity(set *results.Set) []affGroup {
	var out []affGroup
	by := pick(set)
	for _, sc := range scenarios(set) {
		g := affGroup{Scenario: sc.Name, Title: sc.Title}
		for _, m := range modesOf(set) {
			r, ok := by[[2]string{sc.Name, m}]
			if !ok || r.Affinity == nil {
				continue
			}
			a := r.Affinity
			row := affRow{Mode: m, Anchor: anchor(sc.Name, m), Requests: a.Requests, OnPinned: a.OnPinned,
				Stickiness: fmtPct(a.Stickiness), StickPct: fmt.Sprintf("%.1f", 100*clamp01(a.Stickiness)),
				Timeout: strconv.Itoa(a.TimeoutSeconds) + " s", Expiry: "not measured", Off: "—", OK: a.Stickiness >= 1}
			if a.ObservedExpirySeconds > 0 {
				row.Expiry = fmtNum(a.ObservedExpirySeconds) + " s"
				row.Off = fmt.Sprintf("%+.1f s", a.ObservedExpirySeconds-float64(a.TimeoutSeconds))
			}
			g.Rows = append(g.Rows, row)
		}
		if len(g.Rows) > 0 {
			out = append(out, g)
		}
	}
	return out
}

func clamp01(v float64) float64 { return math.Max(0, math.Min(1, v)) }
