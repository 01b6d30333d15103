package report

import (
	"fmt"
	"html/template"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

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
	// FigureGroups are the scenarios' figures across datapaths.
	FigureGroups []figureGroup
	Benches      []benchSection
	Kernel       []kernelMode
	RuleDiffs    []ruleDiffView
	Details      []detailGroup
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
	p.FigureGroups = figureGroups(set)
	if p.Benches, err = benchSections(set, colors); err != nil {
		return nil, err
	}
	p.Kernel = kernel(set)
	p.RuleDiffs = ruleDiffs(set)
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
