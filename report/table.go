package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/svcsim/svcsim/report/results"
)

// noteWidth bounds a reason quoted under the table; the full text is in the
// results file, the JUnit file and the HTML report.
const noteWidth = 200

// Table writes the scenario results of set as a plain-text matrix for a
// terminal: one row per scenario (in the report's order), one column per
// datapath, each cell pass, FAIL or skip; a fail or skip carries a note number
// whose reason is printed once below the table, so fifteen skips for one
// missing kernel feature cost one line. Header rows name the control plane
// and the lane of each column when results carry one other than the
// defaults (the embedded plane, the host). A totals line ends it.
func Table(w io.Writer, set *results.Set) error {
	if set == nil || len(set.Results) == 0 {
		_, err := fmt.Fprintln(w, "no scenario results")
		return err
	}
	cols := modesOf(set)
	by := pick(set)
	scs := scenarios(set)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(first string, cells []string) {
		fmt.Fprintln(tw, first+"\t"+strings.Join(cells, "\t"))
	}
	row("scenario", cols)
	planes, lanes := columnFacts(set, cols, by)
	if planes != nil {
		row("  control plane", planes)
	}
	if lanes != nil {
		row("  lane", lanes)
	}

	var notes []string
	noteOf := map[string]int{}
	note := func(text string) int {
		if n, ok := noteOf[text]; ok {
			return n
		}
		notes = append(notes, text)
		noteOf[text] = len(notes)
		return len(notes)
	}
	var t totals
	t.Scenarios, t.Modes = len(scs), len(cols)
	for _, sc := range scs {
		cells := make([]string, len(cols))
		for i, m := range cols {
			r, ok := by[[2]string{sc.Name, m}]
			switch {
			case !ok:
				t.Missing++
				cells[i] = "-"
			case r.Status == results.Pass:
				t.Pass++
				cells[i] = "pass"
			case r.Status == results.Skip:
				t.Skip++
				cells[i] = fmt.Sprintf("skip [%d]", note("skip: "+oneLine(orDefault(r.Reason, "no reason given"))))
			case r.Status == results.Fail:
				t.Fail++
				cells[i] = fmt.Sprintf("FAIL [%d]", note("FAIL: "+oneLine(failText(r))))
			default:
				t.Fail++
				cells[i] = fmt.Sprintf("FAIL [%d]", note("FAIL: unknown status "+string(r.Status)))
			}
		}
		row(sc.Name, cells)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	for i, n := range notes {
		fmt.Fprintf(w, "[%d] %s\n", i+1, n)
	}
	fmt.Fprintf(w, "%d scenarios x %d datapaths: %d pass, %d fail, %d skip", t.Scenarios, t.Modes, t.Pass, t.Fail, t.Skip)
	if t.Missing > 0 {
		fmt.Fprintf(w, ", %d not run (-)", t.Missing)
	}
	_, err := fmt.Fprintln(w)
	return err
}

// columnFacts returns, per column, the control planes and the lanes of the
// results it shows; nil when every result ran on the default (no control
// plane recorded or "embedded"; lane "host" or none).
func columnFacts(set *results.Set, cols []string, by map[[2]string]results.Result) (planes, lanes []string) {
	ps := map[string]map[string]bool{}
	ls := map[string]map[string]bool{}
	var anyPlane, anyLane bool
	for _, r := range by {
		if ps[r.Mode] == nil {
			ps[r.Mode], ls[r.Mode] = map[string]bool{}, map[string]bool{}
		}
		p := orDefault(r.ControlPlane, "embedded")
		ps[r.Mode][p] = true
		anyPlane = anyPlane || p != "embedded"
		l := orDefault(r.Env.Lane, "host")
		ls[r.Mode][l] = true
		anyLane = anyLane || l != "host"
	}
	join := func(m map[string]bool) string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	for _, c := range cols {
		if anyPlane {
			planes = append(planes, join(ps[c]))
		}
		if anyLane {
			lanes = append(lanes, join(ls[c]))
		}
	}
	return planes, lanes
}

// columnPlanes is columnFacts' control planes alone.
func columnPlanes(set *results.Set, cols []string, by map[[2]string]results.Result) []string {
	planes, _ := columnFacts(set, cols, by)
	return planes
}

// failText is a failed result's reason, or its first failed assertion when
// it recorded no reason.
func failText(r results.Result) string {
	if r.Reason != "" {
		return r.Reason
	}
	for _, a := range r.Assertions {
		if !a.OK {
			return a.Name + ": " + a.Detail
		}
	}
	return "failed (no reason recorded)"
}

// oneLine is the first line of s, cut to noteWidth runes.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i]) + " ..."
	}
	if utf8.RuneCountInString(s) > noteWidth {
		s = string([]rune(s)[:noteWidth-3]) + "..."
	}
	return s
}
