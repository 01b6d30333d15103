package report

import (
	"fmt"
	"html/template"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/svcsim/svcsim/report/chart"
	"github.com/svcsim/svcsim/report/results"
	e2emap "github.com/svcsim/svcsim/scenarios/conformance"
)

// page is the typed data the template renders; everything is computed here
// so the template only lays it out.
type page struct {
	Title     string
	Generated string
	Source    string
	RunWindow string
	Lanes     []laneView
	Modes     []modeView
	Totals    totals
	Says      []Sentence // every sentence
	Key       []Sentence // the findings that matter, for the summary
	Rest      []Sentence // the others
	Matrix    matrixView
	Upstream  upstreamView
	Dists     []distGroup
	Affinity  []affGroup
	Benches   []benchSection
	Kernel    []kernelMode
	Details   []detailGroup
}

type totals struct {
	Pass, Fail, Skip, Missing int
	Scenarios, Modes          int
}

type laneView struct {
	Lane, Kernel, CPU, CPUs, Iptables, Nft, Ipvsadm, Time string
}

// modeView says whether a mode ran, where, and why it was skipped.
type modeView struct {
	Mode                    string
	Color                   int
	Ran, Passed, Failed, Sk int
	Lanes                   string
	Skips                   []reasonCount
	State                   string // "ran", "partial", "skipped"
	// ControlPlane is the plane its results ran on ("embedded",
	// "kubernetes"), Versions its components' versions as they recorded
	// them ("etcd 3.7.3", ...).
	ControlPlane string
	Versions     []string
}

type reasonCount struct {
	Reason string
	Count  int
}

type matrixView struct {
	Modes []string
	// Planes is each column's control plane, when a column ran on one
	// other than the embedded model (nil otherwise).
	Planes []string
	Groups []matrixGroup
}

type matrixGroup struct {
	Name string
	Rows []matrixRow
}

type matrixRow struct {
	Scenario, Title string
	Cells           []cell
}

type cell struct {
	Status  string // pass, fail, skip, none
	Label   string
	Tooltip string
	Anchor  string
}

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

type benchSection struct {
	ID, Title, Intro string
	Charts           []benchChart
}

type benchChart struct {
	ID, Title, Desc string
	SVG             template.HTML
	Table           benchTable
	Notes           []string
}

type benchTable struct {
	Unit    string
	Caption string
	Ns      []string
	Rows    []benchRow
}

type benchRow struct {
	Name  string
	Of    string // a floor's datapath
	Color int
	Floor bool
	Cells []benchCell
}

type benchCell struct {
	Median, Spread, Title string
}

type kernelMode struct {
	Mode     string
	Excerpts []kernelExcerpt
}

type kernelExcerpt struct {
	Scenario, Title, Anchor, Text, Note string
}

type detailGroup struct {
	Scenario, Title, Group string
	Items                  []detailItem
}

type detailItem struct {
	Anchor, Mode, Status, Reason, Lane, Started, Seconds string
	Open                                                 bool
	Assertions                                           []results.Assertion
	Figures                                              []figureView
	Dist, Aff                                            string
}

type figureView struct{ Name, Value string }

func build(set *results.Set, opts Options) (*page, error) {
	p := &page{
		Title:     opts.Title,
		Generated: opts.Now.UTC().Format("2006-01-02 15:04:05 UTC"),
		Source:    opts.Source,
	}
	if p.Title == "" {
		p.Title = "svcsim report"
	}
	colors := palette(set)
	p.Lanes, p.RunWindow = lanes(set)
	p.Modes = modeViews(set, colors)
	p.Matrix, p.Totals = matrix(set)
	if opts.Upstream == nil {
		opts.Upstream = e2emap.Tests()
	}
	p.Upstream = upstream(set, opts.Upstream)
	p.Says = Says(set)
	var err error
	if p.Dists, err = distributions(set, colors); err != nil {
		return nil, err
	}
	p.Affinity = affinity(set)
	if p.Benches, err = benchSections(set, colors); err != nil {
		return nil, err
	}
	p.Kernel = kernel(set)
	p.Details = details(set)
	// Link a sentence only to what the page has.
	ids := map[string]bool{"conformance": true}
	for _, b := range p.Benches {
		for _, c := range b.Charts {
			ids[c.ID] = true
		}
	}
	for _, st := range p.Says {
		if !ids[st.Anchor] {
			st.Anchor = ""
		}
		if st.Key {
			p.Key = append(p.Key, st)
		} else {
			p.Rest = append(p.Rest, st)
		}
	}
	return p, nil
}

func lanes(set *results.Set) ([]laneView, string) {
	envs := append([]results.Env(nil), set.Envs...)
	sort.Slice(envs, func(i, j int) bool { return envs[i].Lane < envs[j].Lane })
	var out []laneView
	var first, last time.Time
	note := func(t time.Time) {
		if t.IsZero() {
			return
		}
		if first.IsZero() || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	for _, e := range envs {
		out = append(out, laneView{
			Lane: e.Lane, Kernel: e.Kernel, CPU: e.CPU, CPUs: strconv.Itoa(e.CPUs),
			Iptables: orDash(e.Iptables), Nft: orDash(e.Nft), Ipvsadm: orDash(e.Ipvsadm),
			Time: fmtTime(e.Time),
		})
		note(e.Time)
	}
	for _, r := range set.Results {
		note(r.Started)
		if !r.Started.IsZero() {
			note(r.Started.Add(time.Duration(r.Seconds * float64(time.Second))))
		}
	}
	window := "unknown"
	if !first.IsZero() {
		window = fmtTime(first)
		if last.Sub(first) >= time.Second {
			window += " – " + last.UTC().Format("15:04:05") + " (" + last.Sub(first).Round(time.Second).String() + ")"
		}
	}
	return out, window
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func modeViews(set *results.Set, colors map[string]int) []modeView {
	var out []modeView
	for _, m := range modesOf(set) {
		v := modeView{Mode: m, Color: colors[m] % 8}
		lanes := map[string]bool{}
		reasons := map[string]int{}
		planes := map[string]bool{}
		versions := map[string]map[string]bool{}
		for _, r := range set.Results {
			if r.Mode != m {
				continue
			}
			if r.ControlPlane != "" {
				planes[r.ControlPlane] = true
			}
			for comp, v := range r.Versions {
				if versions[comp] == nil {
					versions[comp] = map[string]bool{}
				}
				versions[comp][v] = true
			}
			switch r.Status {
			case results.Skip:
				v.Sk++
				reasons[orDefault(r.Reason, "no reason given")]++
				continue
			case results.Pass:
				v.Passed++
			default:
				v.Failed++
			}
			v.Ran++
			if r.Env.Lane != "" {
				lanes[r.Env.Lane] = true
			}
		}
		v.Lanes = strings.Join(sortedKeys(lanes), ", ")
		v.ControlPlane = strings.Join(sortedKeys(planes), ", ")
		for _, comp := range sortedKeys(versions) {
			v.Versions = append(v.Versions, comp+" "+strings.Join(sortedKeys(versions[comp]), ", "))
		}
		for _, reason := range sortedKeys(reasons) {
			v.Skips = append(v.Skips, reasonCount{reason, reasons[reason]})
		}
		sort.SliceStable(v.Skips, func(i, j int) bool { return v.Skips[i].Count > v.Skips[j].Count })
		switch {
		case v.Ran == 0:
			v.State = "skipped"
		case v.Sk > 0:
			v.State = "partial"
		default:
			v.State = "ran"
		}
		out = append(out, v)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// pick returns the results per (scenario, mode); when a pair appears twice
// (two lanes), a result that ran wins over a skip.
func pick(set *results.Set) map[[2]string]results.Result {
	m := map[[2]string]results.Result{}
	for _, r := range set.Results {
		k := [2]string{r.Scenario, r.Mode}
		if old, ok := m[k]; ok && old.Status != results.Skip {
			continue
		}
		m[k] = r
	}
	return m
}

// scenarioInfo is a scenario's title and group, in matrix order.
type scenarioInfo struct{ Name, Title, Group string }

func scenarios(set *results.Set) []scenarioInfo {
	seen := map[string]bool{}
	var out []scenarioInfo
	for _, r := range set.Results {
		if seen[r.Scenario] {
			continue
		}
		seen[r.Scenario] = true
		out = append(out, scenarioInfo{r.Scenario, orDefault(r.Title, r.Scenario), orDefault(r.Group, "Other")})
	}
	sort.SliceStable(out, func(i, j int) bool {
		gi, gj := rank(groupOrder, out[i].Group), rank(groupOrder, out[j].Group)
		if gi != gj {
			return gi < gj
		}
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func matrix(set *results.Set) (matrixView, totals) {
	mv := matrixView{Modes: modesOf(set)}
	by := pick(set)
	mv.Planes = columnPlanes(set, mv.Modes, by)
	var t totals
	scs := scenarios(set)
	t.Scenarios, t.Modes = len(scs), len(mv.Modes)
	for _, sc := range scs {
		if len(mv.Groups) == 0 || mv.Groups[len(mv.Groups)-1].Name != sc.Group {
			mv.Groups = append(mv.Groups, matrixGroup{Name: sc.Group})
		}
		row := matrixRow{Scenario: sc.Name, Title: sc.Title}
		for _, m := range mv.Modes {
			r, ok := by[[2]string{sc.Name, m}]
			c := cell{Status: "none", Label: "—", Tooltip: "no result: " + sc.Name + " did not run on " + m}
			if ok {
				c.Status, c.Anchor = string(r.Status), anchor(r.Scenario, r.Mode)
				switch r.Status {
				case results.Pass:
					t.Pass++
					c.Label, c.Tooltip = "pass", fmt.Sprintf("passed in %s s", fmtNum(r.Seconds))
				case results.Fail:
					t.Fail++
					c.Label, c.Tooltip = "fail", orDefault(r.Reason, "failed")
				case results.Skip:
					t.Skip++
					c.Label, c.Tooltip = "skip", "skipped: "+orDefault(r.Reason, "no reason given")
				default:
					c.Status, c.Label, c.Tooltip = "fail", string(r.Status), "unknown status "+string(r.Status)
					t.Fail++
				}
			} else {
				t.Missing++
			}
			row.Cells = append(row.Cells, c)
		}
		g := &mv.Groups[len(mv.Groups)-1]
		g.Rows = append(g.Rows, row)
	}
	return mv, t
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

const maxKernelLines = 80

func kernel(set *results.Set) []kernelMode {
	var out []kernelMode
	by := pick(set)
	for _, m := range modesOf(set) {
		km := kernelMode{Mode: m}
		for _, sc := range scenarios(set) {
			r, ok := by[[2]string{sc.Name, m}]
			if !ok || strings.TrimSpace(r.KernelState) == "" {
				continue
			}
			text := strings.TrimRight(r.KernelState, "\n")
			lines := strings.Split(text, "\n")
			ex := kernelExcerpt{Scenario: sc.Name, Title: sc.Title, Anchor: anchor(sc.Name, m)}
			if len(lines) > maxKernelLines {
				ex.Note = fmt.Sprintf("first %d of %d lines", maxKernelLines, len(lines))
				lines = lines[:maxKernelLines]
			}
			ex.Text = strings.Join(lines, "\n")
			km.Excerpts = append(km.Excerpts, ex)
		}
		if len(km.Excerpts) > 0 {
			out = append(out, km)
		}
	}
	return out
}

func details(set *results.Set) []detailGroup {
	var out []detailGroup
	by := pick(set)
	for _, sc := range scenarios(set) {
		g := detailGroup{Scenario: sc.Name, Title: sc.Title, Group: sc.Group}
		for _, m := range modesOf(set) {
			r, ok := by[[2]string{sc.Name, m}]
			if !ok {
				continue
			}
			it := detailItem{Anchor: anchor(sc.Name, m), Mode: m, Status: string(r.Status), Reason: r.Reason,
				Lane: r.Env.Lane, Started: fmtTime(r.Started), Seconds: fmtNum(r.Seconds) + " s",
				Open: r.Status == results.Fail, Assertions: r.Assertions}
			if r.Env.Kernel != "" {
				it.Lane += " (kernel " + r.Env.Kernel + ")"
			}
			for _, f := range r.Figures {
				v := fmtNum(f.Value)
				if f.Unit != "" {
					v += " " + f.Unit
				}
				it.Figures = append(it.Figures, figureView{f.Name, v})
			}
			if d := r.Distribution; d != nil {
				var parts []string
				for _, b := range d.Backends {
					parts = append(parts, fmt.Sprintf("%s %d (expected %s)", b.Backend, b.Count, fmtNum(b.Expected)))
				}
				it.Dist = distStats(d) + "; " + strings.Join(parts, ", ")
			}
			if a := r.Affinity; a != nil {
				it.Aff = fmt.Sprintf("%d of %d requests on the pinned backend (%s); timeoutSeconds %d; observed expiry %s",
					a.OnPinned, a.Requests, fmtPct(a.Stickiness), a.TimeoutSeconds, orDefault(fmtSec(a.ObservedExpirySeconds), "not measured"))
			}
			g.Items = append(g.Items, it)
		}
		out = append(out, g)
	}
	return out
}

func fmtSec(v float64) string {
	if v <= 0 {
		return ""
	}
	return fmtNum(v) + " s"
}

// fmtNum prints v with three significant digits, without exponent for
// everyday magnitudes: 0.0312, 1.25, 12.3, 1980, 21500.
func fmtNum(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	a := math.Abs(v)
	if a >= 1e7 || a < 1e-4 {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	digits := 2 - int(math.Floor(math.Log10(a)))
	if digits < 0 {
		digits = 0
	}
	p := math.Pow10(digits)
	r := math.Round(v*p) / p
	s := strconv.FormatFloat(r, 'f', digits, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// fmtP prints a p-value or significance level.
func fmtP(v float64) string {
	if v != 0 && math.Abs(v) < 1e-3 {
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
	return strings.TrimSuffix(strings.TrimRight(strconv.FormatFloat(v, 'f', 3, 64), "0"), ".")
}

func fmtPct(v float64) string {
	s := strconv.FormatFloat(100*v, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + "%"
}
