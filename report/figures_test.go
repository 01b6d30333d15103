package report

import (
	"reflect"
	"testing"

	"github.com/svcsim/svcsim/report/results"
)

// TestFigureGroups: a scenario's figures read across datapaths and both
// control planes, rows in the order recorded, a blank where a datapath did
// not record a figure; a scenario with figures on one datapath only is
// left to Details.
func TestFigureGroups(t *testing.T) {
	fig := func(name string, v float64, unit string) results.Figure {
		return results.Figure{Name: name, Value: v, Unit: unit}
	}
	set := &results.Set{Results: []results.Result{
		{Scenario: "ingress-performance", Title: "mode 2 vs mode 3", Mode: "nftables", ControlPlane: "embedded", Status: results.Pass, Info: &results.DatapathInfo{Order: 50},
			Figures: []results.Figure{fig("mode 2 req/s", 2100, "req/s"), fig("mode 3 req/s", 2400, "req/s"), fig("p", 0.05, "")}},
		{Scenario: "ingress-performance", Title: "mode 2 vs mode 3", Mode: "kube-proxy/nftables", ControlPlane: "kubernetes", Status: results.Pass, Info: &results.DatapathInfo{Order: 100},
			Figures: []results.Figure{fig("mode 2 req/s", 2150, "req/s"), fig("mode 3 req/s", 2366, "req/s"), fig("discarded", 0, "")}},
		{Scenario: "ingress-performance", Mode: "iptables/nft", Status: results.Skip},
		{Scenario: "loadbalancer", Title: "LB", Mode: "nftables", Status: results.Pass, Figures: []results.Figure{fig("reachable after", 0.002, "s")}},
	}}
	got := figureGroups(set)
	if len(got) != 1 || got[0].Scenario != "ingress-performance" {
		t.Fatalf("groups %+v, want ingress-performance alone", got)
	}
	g := got[0]
	wantCols := []figureCol{
		{Mode: "nftables", Anchor: anchor("ingress-performance", "nftables"), ControlPlane: "embedded"},
		{Mode: "kube-proxy/nftables", Anchor: anchor("ingress-performance", "kube-proxy/nftables"), ControlPlane: "kubernetes"},
	}
	if !reflect.DeepEqual(g.Cols, wantCols) {
		t.Errorf("columns %+v, want %+v", g.Cols, wantCols)
	}
	wantRows := []figureRow{
		{"mode 2 req/s", []string{"2100 req/s", "2150 req/s"}},
		{"mode 3 req/s", []string{"2400 req/s", "2366 req/s"}},
		{"p", []string{"0.05", ""}},
		{"discarded", []string{"", "0"}},
	}
	if !reflect.DeepEqual(g.Rows, wantRows) {
		t.Errorf("rows %+v, want %+v", g.Rows, wantRows)
	}
}
