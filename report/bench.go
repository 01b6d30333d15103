package report

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/svcsim/svcsim/report/chart"
	"github.com/svcsim/svcsim/report/results"
)

// Metric names the benchmarks write (results.Bench.Metric).
const (
	MetricFullSync       = "full-sync"
	MetricEndpointChange = "endpoint-change"
	MetricFirstPacket    = "first-packet"
	MetricConvergence    = "convergence"
	// Prefixes: "floor-*" is the raw cost of the tool alone; "rps-*" is a
	// throughput in requests per second.
	FloorPrefix = "floor-"
	RPSPrefix   = "rps-"
)

// ruleUpdateMetrics get the floors that do not say otherwise (Bench.FloorFor).
var ruleUpdateMetrics = []string{MetricFullSync, MetricEndpointChange}

// metricTitle is a chart heading for a metric.
func metricTitle(m string) string {
	switch m {
	case MetricFullSync:
		return "Full sync of all Services"
	case MetricEndpointChange:
		return "One endpoint change"
	case MetricFirstPacket:
		return "First-packet latency"
	case MetricConvergence:
		return "Convergence after an API change"
	}
	if s, ok := strings.CutPrefix(m, RPSPrefix); ok {
		return "Requests per second (" + s + ")"
	}
	return m
}

// metricPhrase is a metric in running text ("one endpoint change").
func metricPhrase(m string) string {
	switch m {
	case MetricFullSync:
		return "full sync"
	case MetricEndpointChange:
		return "one endpoint change"
	case MetricFirstPacket:
		return "first-packet latency"
	case MetricConvergence:
		return "convergence"
	}
	if s, ok := strings.CutPrefix(m, RPSPrefix); ok {
		return "throughput (" + s + ")"
	}
	return m
}

func metricDesc(m string) string {
	switch m {
	case MetricFullSync:
		return "Time to program every Service into the kernel from scratch."
	case MetricEndpointChange:
		return "Time to apply one endpoint change with N Services already programmed. Flat means incremental updates."
	case MetricFirstPacket:
		return "Latency of a new connection's first packet; solid: median, dotted: p99."
	case MetricConvergence:
		return "Time from an API change until every node serves the new state."
	}
	if strings.HasPrefix(m, RPSPrefix) {
		return "Throughput through the Service VIP; higher is better."
	}
	return ""
}

// higherIsBetter reports whether a larger value of the metric is better.
func higherIsBetter(m, unit string) bool {
	return strings.HasPrefix(m, RPSPrefix) || strings.HasSuffix(unit, "/s")
}

type sectionSpec struct {
	id, title, intro string
	match            func(string) bool
}

var sectionSpecs = []sectionSpec{
	{"rule-update", "Rule-update latency and scale", "How long each datapath takes to put Services into the kernel as their number grows. Dashed lines are the raw floor: the tool alone (iptables-restore, nft -f) loading the same ruleset, without the proxy's own work.",
		func(m string) bool { return m == MetricFullSync || m == MetricEndpointChange }},
	{"first-packet", "First-packet latency", "",
		func(m string) bool { return m == MetricFirstPacket }},
	{"convergence", "Convergence", "",
		func(m string) bool { return m == MetricConvergence }},
	{"throughput", "Throughput", "",
		func(m string) bool { return strings.HasPrefix(m, RPSPrefix) }},
	{"other-benches", "Other measurements", "",
		func(string) bool { return true }},
}

// metricOrder orders metrics inside a section.
var metricOrder = []string{MetricFullSync, MetricEndpointChange, MetricFirstPacket, MetricConvergence}

// benchesByMetric groups benches by metric, datapaths in column order, and
// returns the floors separately.
func benchesByMetric(set *results.Set) (map[string][]results.Bench, []results.Bench) {
	by := map[string][]results.Bench{}
	var floors []results.Bench
	for _, b := range set.Benches {
		if len(b.Points) == 0 {
			continue
		}
		b.Points = append([]results.Point(nil), b.Points...)
		sort.Slice(b.Points, func(i, j int) bool { return b.Points[i].N < b.Points[j].N })
		if strings.HasPrefix(b.Metric, FloorPrefix) {
			floors = append(floors, b)
			continue
		}
		by[b.Metric] = append(by[b.Metric], b)
	}
	for _, bs := range by {
		sortBenches(bs)
	}
	sortBenches(floors)
	return by, floors
}

func sortBenches(bs []results.Bench) {
	order := datapathOrder(nil, bs)
	sort.SliceStable(bs, func(i, j int) bool {
		if bs[i].Datapath != bs[j].Datapath {
			return datapathLess(order, bs[i].Datapath, bs[j].Datapath)
		}
		return bs[i].Metric < bs[j].Metric
	})
}

// floorsFor returns the floors drawn on metric's chart.
func floorsFor(metric string, floors []results.Bench) []results.Bench {
	var out []results.Bench
	for _, f := range floors {
		targets := f.FloorFor
		if len(targets) == 0 {
			targets = ruleUpdateMetrics
		}
		for _, t := range targets {
			if t == metric {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

func benchSections(set *results.Set, colors map[string]int) ([]benchSection, error) {
	by, floors := benchesByMetric(set)
	metrics := sortedKeys(by)
	sortByOrder(metrics, metricOrder)
	done := map[string]bool{}
	var out []benchSection
	for _, spec := range sectionSpecs {
		sec := benchSection{ID: spec.id, Title: spec.title, Intro: spec.intro}
		for _, m := range metrics {
			if done[m] || !spec.match(m) {
				continue
			}
			done[m] = true
			c, err := metricChart(m, by[m], floorsFor(m, floors), colors)
			if err != nil {
				return nil, err
			}
			sec.Charts = append(sec.Charts, c)
		}
		if len(sec.Charts) > 0 {
			out = append(out, sec)
		}
	}
	return out, nil
}

func metricChart(metric string, bs, floors []results.Bench, colors map[string]int) (benchChart, error) {
	unit := bs[0].Unit
	xlabel := orDefault(bs[0].XLabel, "Services")
	c := benchChart{ID: chartID(metric), Title: metricTitle(metric), Desc: metricDesc(metric)}
	var series []chart.Series
	var xs, ys []float64
	nset := map[int]bool{}
	tbl := benchTable{Unit: unit}
	type rowSrc struct {
		name  string
		b     results.Bench
		floor bool
	}
	var rows []rowSrc
	for _, b := range bs {
		if b.Unit != unit {
			return c, fmt.Errorf("metric %s: %s is in %q, %s in %q", metric, bs[0].Datapath, unit, b.Datapath, b.Unit)
		}
		label := laneLabel(b)
		s := chart.Series{Name: label, Color: colors[b.Datapath], Marker: true}
		var p99 chart.Series
		hasP99 := false
		for _, p := range b.Points {
			xy := chart.XY{X: float64(p.N), Y: p.Median, Lo: p.Min, Hi: p.Max}
			if p.P99 > 0 {
				// Latency percentiles: the dotted p99 line shows the tail;
				// min–max whiskers of single packets would only add noise.
				xy.Lo, xy.Hi = 0, 0
			}
			s.Points = append(s.Points, xy)
			if p.P99 > 0 {
				hasP99 = true
				p99.Points = append(p99.Points, chart.XY{X: float64(p.N), Y: p.P99})
				ys = append(ys, p.P99)
			}
			xs = append(xs, float64(p.N))
			ys = append(ys, p.Median)
			if xy.Lo < xy.Hi {
				ys = append(ys, p.Min, p.Max)
			}
			nset[p.N] = true
		}
		series = append(series, s)
		if hasP99 && metric == MetricFirstPacket {
			p99.Name, p99.Color, p99.Style = label+" p99", colors[b.Datapath], chart.Dotted
			series = append(series, p99)
		}
		rows = append(rows, rowSrc{label, b, false})
		if b.Note != "" {
			c.Notes = append(c.Notes, b.Datapath+": "+b.Note)
		}
	}
	if note := mixedLanes(bs); note != "" {
		c.Notes = append([]string{note}, c.Notes...)
	}
	for _, f := range floors {
		if f.Unit != unit {
			continue
		}
		name := f.Datapath + " " + f.Metric
		// The floor's table row follows its datapath's row.
		at := len(rows)
		for i, r := range rows {
			if !r.floor && r.b.Datapath == f.Datapath {
				at = i + 1
				for at < len(rows) && rows[at].floor {
					at++
				}
			}
		}
		rows = append(rows[:at], append([]rowSrc{{f.Metric, f, true}}, rows[at:]...)...)
		s := chart.Series{Name: name, Color: colors[f.Datapath], Style: chart.Dashed}
		for _, p := range f.Points {
			s.Points = append(s.Points, chart.XY{X: float64(p.N), Y: p.Median})
			xs = append(xs, float64(p.N))
			ys = append(ys, p.Median)
			nset[p.N] = true
		}
		series = append(series, s)
		if f.Note != "" {
			c.Notes = append(c.Notes, name+": "+f.Note)
		}
	}
	sort.Strings(c.Notes)
	ns := make([]int, 0, len(nset))
	for n := range nset {
		ns = append(ns, n)
	}
	sort.Ints(ns)
	for _, n := range ns {
		tbl.Ns = append(tbl.Ns, strconv.Itoa(n))
	}
	reps := map[int]bool{}
	for _, r := range rows {
		row := benchRow{Name: r.name, Color: colors[r.b.Datapath] % 8, Floor: r.floor}
		if r.floor {
			row.Of = r.b.Datapath
		}
		byN := map[int]results.Point{}
		for _, p := range r.b.Points {
			byN[p.N] = p
		}
		for _, n := range ns {
			p, ok := byN[n]
			if !ok {
				row.Cells = append(row.Cells, benchCell{Median: "—"})
				continue
			}
			bc := benchCell{Median: fmtNum(p.Median)}
			switch {
			case p.P99 > 0:
				bc.Spread = "p99 " + fmtNum(p.P99)
			case p.Min < p.Max:
				bc.Spread = fmtNum(p.Min) + "–" + fmtNum(p.Max)
			}
			bc.Title = pointTitle(p, unit)
			reps[p.Reps] = true
			row.Cells = append(row.Cells, bc)
		}
		tbl.Rows = append(tbl.Rows, row)
	}
	tbl.Caption = tableCaption(metric, reps)
	c.Table = tbl
	lo, hi := minMax(xs)
	ylo, yhi := minMax(ys)
	ylabel := unit
	if ylabel == "" {
		ylabel = metric
	}
	svg, err := chart.Line{
		ID: c.ID, Title: c.Title + " vs " + strings.ToLower(xlabel),
		Desc:   fmt.Sprintf("%s, one line per datapath; %d datapaths, %d floors. %s", metricTitle(metric), len(bs), len(floors), c.Desc),
		XLabel: xlabel, YLabel: ylabel,
		XLog: chart.WantLog(lo, hi), YLog: chart.WantLog(ylo, yhi),
		Series: series,
	}.SVG()
	if err != nil {
		return c, fmt.Errorf("metric %s: %w", metric, err)
	}
	c.SVG = svg
	return c, nil
}

func minMax(vs []float64) (float64, float64) {
	if len(vs) == 0 {
		return 0, 0
	}
	lo, hi := vs[0], vs[0]
	for _, v := range vs {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

// pointTitle is the tooltip of a table cell: every figure of the point.
func pointTitle(p results.Point, unit string) string {
	parts := []string{fmt.Sprintf("median %s", withUnit(p.Median, unit))}
	if p.Min < p.Max {
		parts = append(parts, fmt.Sprintf("min %s, max %s", fmtNum(p.Min), fmtNum(p.Max)))
	}
	if p.P90 > 0 {
		parts = append(parts, "p90 "+fmtNum(p.P90))
	}
	if p.P99 > 0 {
		parts = append(parts, "p99 "+fmtNum(p.P99))
	}
	if p.Reps > 0 {
		parts = append(parts, fmt.Sprintf("%d reps", p.Reps))
	}
	for _, k := range sortedKeys(p.Extra) {
		parts = append(parts, k+" "+fmtNum(p.Extra[k]))
	}
	return strings.Join(parts, "; ")
}

func tableCaption(metric string, reps map[int]bool) string {
	r := "repetitions vary (hover a cell)"
	if len(reps) == 1 {
		for n := range reps {
			r = fmt.Sprintf("%d repetitions per point", n)
		}
	}
	if metric == MetricFirstPacket {
		return "Median; small: p99. " + capitalize(r) + "."
	}
	return "Median; small: min–max. " + capitalize(r) + "."
}

// laneLabel names a bench's datapath, with its lane when it was not measured
// on the host: figures from the qemu lane share a chart but not a kernel.
func laneLabel(b results.Bench) string {
	if l := b.Env.Lane; l != "" && l != "host" {
		return b.Datapath + " (" + l + ")"
	}
	return b.Datapath
}

// chartID is the id of a metric's chart in the report.
func chartID(metric string) string { return "bench-" + slug(metric) }

// mixedLanes is the chart's warning when its lines come from more than one
// lane (the host's kernel and a kernel under qemu, which runs many times
// slower): their absolute figures share the axis but not a machine.
func mixedLanes(bs []results.Bench) string {
	kernels := map[string]string{}
	for _, b := range bs {
		kernels[orDefault(b.Env.Lane, "host")] = b.Env.Kernel
	}
	if len(kernels) < 2 {
		return ""
	}
	var parts []string
	for _, l := range sortedKeys(kernels) {
		if k := kernels[l]; k != "" {
			parts = append(parts, l+" (kernel "+k+")")
		} else {
			parts = append(parts, l)
		}
	}
	return "This chart mixes lanes: " + strings.Join(parts, ", ") +
		". Lines from different lanes ran on different kernels and machines (the qemu lane is emulated and much slower): compare their shapes, not their values."
}
