package report

import (
	"fmt"
	"strings"

	"github.com/svcsim/svcsim/report/results"
	e2emap "github.com/svcsim/svcsim/scenarios/conformance"
)

// upstreamView is the conformance map (package scenarios/conformance)
// joined with the run's results: one row per applicable upstream test, one
// cell per datapath, from the results of the scenarios that check it.
type upstreamView struct {
	Version string
	Summary string
	Modes   []string
	Files   []upstreamFile
	// Out lists the tests out of scope, with why.
	Out []upstreamOut
}

type upstreamFile struct {
	File string
	Rows []upstreamRow
}

type upstreamRow struct {
	Title       string
	Conformance bool
	Coverage    string // covered, partly, not covered
	Scenarios   string
	Note        string
	Cells       []cell
}

type upstreamOut struct {
	File, Title, Scope, Note string
	Conformance              bool
}

// upstream builds the matrix. A cell passes when every scenario of the row
// passed on that datapath; it fails when one failed; it says n/a where the
// row says the behaviour does not apply to the datapath, and "—" when no
// scenario checks the test or none of them ran there.
func upstream(set *results.Set, tests []e2emap.Test) upstreamView {
	v := upstreamView{Version: e2emap.Version, Summary: e2emap.Count(tests).Summary(), Modes: modesOf(set)}
	by := pick(set)
	for _, t := range tests {
		if t.Scope != e2emap.Applies {
			v.Out = append(v.Out, upstreamOut{File: t.File, Title: t.Title, Scope: t.Scope.String(), Note: t.Note, Conformance: t.Conformance})
			continue
		}
		if len(v.Files) == 0 || v.Files[len(v.Files)-1].File != t.File {
			v.Files = append(v.Files, upstreamFile{File: t.File})
		}
		row := upstreamRow{Title: t.Title, Conformance: t.Conformance, Coverage: t.Coverage.String(),
			Scenarios: strings.Join(t.Scenarios, ", "), Note: t.Note}
		for _, m := range v.Modes {
			row.Cells = append(row.Cells, upstreamCell(t, m, by))
		}
		f := &v.Files[len(v.Files)-1]
		f.Rows = append(f.Rows, row)
	}
	return v
}

func upstreamCell(t e2emap.Test, mode string, by map[[2]string]results.Result) cell {
	// svcsim's datapath on another control plane ("userspace@kubernetes")
	// is excepted as the datapath itself.
	base, _, _ := strings.Cut(mode, "@")
	if why, ok := t.Except[base]; ok {
		return cell{Status: "none", Label: "n/a", Tooltip: "does not apply to " + mode + ": " + why}
	}
	if len(t.Scenarios) == 0 {
		return cell{Status: "none", Label: "—", Tooltip: "no svcsim scenario checks this yet: " + t.Note}
	}
	var passed, missing, skipped, failed []string
	var first results.Result
	for _, sc := range t.Scenarios {
		r, ok := by[[2]string{sc, mode}]
		switch {
		case !ok:
			missing = append(missing, sc)
			continue
		case r.Status == results.Pass:
			passed = append(passed, sc)
		case r.Status == results.Skip:
			skipped = append(skipped, sc+" ("+orDefault(r.Reason, "no reason given")+")")
		default:
			failed = append(failed, sc+" ("+orDefault(r.Reason, "failed")+")")
		}
		if first.Scenario == "" || (r.Status != results.Pass && first.Status == results.Pass) {
			first = r
		}
	}
	c := cell{}
	if first.Scenario != "" {
		c.Anchor = anchor(first.Scenario, first.Mode)
	}
	switch {
	case len(failed) > 0:
		c.Status, c.Label, c.Tooltip = "fail", "fail", "failed: "+strings.Join(failed, "; ")
	case len(skipped) > 0:
		c.Status, c.Label, c.Tooltip = "skip", "skip", "skipped: "+strings.Join(skipped, "; ")
	case len(missing) > 0:
		c.Status, c.Label, c.Anchor = "none", "—", ""
		c.Tooltip = "not run on " + mode + ": " + strings.Join(missing, ", ")
	default:
		c.Status, c.Label = "pass", "pass"
		c.Tooltip = fmt.Sprintf("%s passed", strings.Join(passed, ", "))
		if t.Coverage == e2emap.Partly {
			c.Label = "partly"
			c.Tooltip += "; partly covered: " + t.Note
		}
	}
	return c
}
