package report

import (
	"fmt"
	"strings"

	"github.com/svcsim/svcsim/report/results"
)

// Summary is a short plain-text account of set for a terminal: totals, the
// failures, the modes that could not run, and what the run says.
func Summary(set *results.Set) string {
	var b strings.Builder
	if set == nil {
		return "no results\n"
	}
	_, t := matrix(set)
	fmt.Fprintf(&b, "svcsim: %d scenarios x %d modes: %d pass, %d fail, %d skip", t.Scenarios, t.Modes, t.Pass, t.Fail, t.Skip)
	if t.Missing > 0 {
		fmt.Fprintf(&b, ", %d not run", t.Missing)
	}
	b.WriteString("\n")
	by := pick(set)
	for _, sc := range scenarios(set) {
		for _, m := range modesOf(set) {
			if r, ok := by[[2]string{sc.Name, m}]; ok && r.Status != results.Pass && r.Status != results.Skip {
				fmt.Fprintf(&b, "  FAIL %-28s %-16s %s\n", sc.Name, m, r.Reason)
			}
		}
	}
	for _, mv := range modeViews(set, nil) {
		for _, s := range mv.Skips {
			fmt.Fprintf(&b, "  SKIP %-28s %-16s %s\n", "("+count(s.Count, "scenario")+")", mv.Mode, s.Reason)
		}
	}
	says := Says(set)
	if len(says) > 0 {
		b.WriteString("What this run says:\n")
		for _, s := range says {
			mark := "-"
			switch s.Kind {
			case KindWarn:
				mark = "!"
			case KindOK:
				mark = "+"
			}
			fmt.Fprintf(&b, "  %s %s\n", mark, s.Text)
		}
	}
	return b.String()
}
