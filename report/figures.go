package report

import "github.com/svcsim/svcsim/report/results"

// figureGroup is one scenario's figures side by side: a row per figure
// name, a column per datapath that recorded any (kube-proxy's on the
// kubernetes plane beside svcsim's), so that a measurement such as
// ingress-performance's mode 2 against mode 3 reads across every datapath
// and both control planes at once.
type figureGroup struct {
	Scenario, Title string
	Cols            []figureCol
	Rows            []figureRow
}

type figureCol struct {
	Mode, Anchor, ControlPlane string
}

type figureRow struct {
	Name string
	// Cells are the row's values by column ("" where the datapath did not
	// record it).
	Cells []string
}

// figureGroups returns, in matrix order, every scenario whose results on
// two or more datapaths carry figures (on one alone, Details says it all);
// rows keep the order the scenario recorded them in.
func figureGroups(set *results.Set) []figureGroup {
	var out []figureGroup
	by := pick(set)
	for _, sc := range scenarios(set) {
		g := figureGroup{Scenario: sc.Name, Title: sc.Title}
		var rs []results.Result
		for _, m := range modesOf(set) {
			r, ok := by[[2]string{sc.Name, m}]
			if !ok || len(r.Figures) == 0 {
				continue
			}
			rs = append(rs, r)
			g.Cols = append(g.Cols, figureCol{Mode: m, Anchor: anchor(sc.Name, m), ControlPlane: orDefault(r.ControlPlane, "embedded")})
		}
		if len(rs) < 2 {
			continue
		}
		row := map[string]int{}
		for i, r := range rs {
			for _, f := range r.Figures {
				k, ok := row[f.Name]
				if !ok {
					k = len(g.Rows)
					row[f.Name] = k
					g.Rows = append(g.Rows, figureRow{Name: f.Name, Cells: make([]string, len(rs))})
				}
				v := fmtNum(f.Value)
				if f.Unit != "" {
					v += " " + f.Unit
				}
				g.Rows[k].Cells[i] = v
			}
		}
		out = append(out, g)
	}
	return out
}
