package report

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/svcsim/svcsim/report/results"
	e2emap "github.com/svcsim/svcsim/scenarios/conformance"
)

func TestUpstreamCells(t *testing.T) {
	set := &results.Set{Results: []results.Result{
		{Scenario: "a", Mode: "m1", Status: results.Pass},
		{Scenario: "b", Mode: "m1", Status: results.Pass},
		{Scenario: "a", Mode: "m2", Status: results.Pass},
		{Scenario: "b", Mode: "m2", Status: results.Fail, Reason: "boom"},
	}}
	tests := []e2emap.Test{
		{File: "f", Title: "both pass on m1", Coverage: e2emap.Covered, Scenarios: []string{"a", "b"}},
		{File: "f", Title: "partly", Coverage: e2emap.Partly, Scenarios: []string{"a"}, Except: map[string]string{"m2": "why"}},
		{File: "f", Title: "nothing", Note: "left"},
		{File: "g", Title: "not run", Coverage: e2emap.Covered, Scenarios: []string{"c"}},
		{File: "g", Title: "api", Scope: e2emap.API, Note: "crud"},
	}
	v := upstream(set, tests)
	require.Equal(t, []string{"m1", "m2"}, v.Modes)
	require.Len(t, v.Files, 2)
	require.Len(t, v.Out, 1)
	labels := func(r upstreamRow) (out []string) {
		for _, c := range r.Cells {
			out = append(out, c.Label)
		}
		return out
	}
	rows := append(v.Files[0].Rows, v.Files[1].Rows...)
	require.Equal(t, []string{"pass", "fail"}, labels(rows[0]))
	require.Contains(t, rows[0].Cells[1].Tooltip, "boom")
	require.Equal(t, anchor("b", "m2"), rows[0].Cells[1].Anchor, "a failing cell links to the failing result")
	require.Equal(t, []string{"partly", "n/a"}, labels(rows[1]))
	require.Equal(t, []string{"—", "—"}, labels(rows[2]))
	require.Equal(t, []string{"—", "—"}, labels(rows[3]))
	require.Contains(t, rows[3].Cells[0].Tooltip, "not run")
}

// TestUpstreamExceptOnAnotherPlane: a test that does not apply to a
// datapath does not apply to it on another control plane either
// ("m2@kubernetes" is m2 fed from the kubernetes plane's API server).
func TestUpstreamExceptOnAnotherPlane(t *testing.T) {
	set := &results.Set{Results: []results.Result{{Scenario: "a", Mode: "m2@kubernetes", ControlPlane: "kubernetes", Status: results.Pass}}}
	v := upstream(set, []e2emap.Test{{File: "f", Title: "partly", Coverage: e2emap.Partly, Scenarios: []string{"a"}, Except: map[string]string{"m2": "why"}}})
	require.Equal(t, "n/a", v.Files[0].Rows[0].Cells[0].Label)
}
