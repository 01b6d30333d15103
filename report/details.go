package report

import (
	"fmt"
	"strings"

	"github.com/svcsim/svcsim/report/results"
)

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

type figureView struct{ Name, Value string }
