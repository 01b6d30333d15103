package report

import (
	"sort"

	"github.com/svcsim/svcsim/report/results"
)

// ruleDiffView is one dump command's comparison of svcsim's rules with
// kube-proxy's (results.RuleDiff), from one or both sides' results.
type ruleDiffView struct {
	Dump    string
	Modes   []ruleDiffMode
	Missing []string
	// Groups are the differences by mark and reason, Unmarked the lines no
	// known difference explains (the scenario failed on them).
	Groups   []ruleDiffGroup
	Unmarked []results.RuleDiffLine
	Settled  []results.RuleDiffLine
}

type ruleDiffMode struct{ Mode, Anchor string }

type ruleDiffGroup struct {
	Mark, Reason, Test string
	Lines              []results.RuleDiffLine
}

// ruleDiffs gathers every result's RuleDiff by dump command. Both sides of
// one comparison report the same lines (each compares its live rules with
// the other's recording), so lines are kept once.
func ruleDiffs(set *results.Set) []ruleDiffView {
	by := map[string]*ruleDiffView{}
	seen := map[string]map[string]bool{}
	for _, r := range set.Results {
		d := r.RuleDiff
		if d == nil {
			continue
		}
		v := by[d.Dump]
		if v == nil {
			v = &ruleDiffView{Dump: d.Dump}
			by[d.Dump] = v
			seen[d.Dump] = map[string]bool{}
		}
		v.Modes = append(v.Modes, ruleDiffMode{Mode: r.Mode, Anchor: anchor(r.Scenario, r.Mode)})
		if d.Missing != "" {
			v.Missing = append(v.Missing, r.Mode+": "+d.Missing)
		}
		for _, l := range d.Differences {
			k := l.Side + "\x00" + l.Text
			if seen[d.Dump][k] {
				continue
			}
			seen[d.Dump][k] = true
			if l.Mark == "" {
				v.Unmarked = append(v.Unmarked, l)
				continue
			}
			var g *ruleDiffGroup
			for i := range v.Groups {
				if v.Groups[i].Mark == l.Mark && v.Groups[i].Reason == l.Reason {
					g = &v.Groups[i]
				}
			}
			if g == nil {
				v.Groups = append(v.Groups, ruleDiffGroup{Mark: l.Mark, Reason: l.Reason, Test: l.Test})
				g = &v.Groups[len(v.Groups)-1]
			}
			g.Lines = append(g.Lines, l)
		}
		for _, l := range d.Settled {
			k := "settled\x00" + l.Text
			if !seen[d.Dump][k] {
				seen[d.Dump][k] = true
				v.Settled = append(v.Settled, l)
			}
		}
	}
	out := make([]ruleDiffView, 0, len(by))
	for _, v := range by {
		sort.SliceStable(v.Groups, func(i, j int) bool { return markOrder(v.Groups[i].Mark) < markOrder(v.Groups[j].Mark) })
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dump < out[j].Dump })
	return out
}

func markOrder(m string) int {
	switch m {
	case "open":
		return 0
	case "intentional":
		return 1
	}
	return 2
}
