package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/report/results"
)

// TestRuleDiffSection: both sides' results of one comparison show once,
// grouped by mark and reason (open first), an unmarked line is flagged,
// settled ones name their test, and a missing recording is said.
func TestRuleDiffSection(t *testing.T) {
	line := func(side, text, mark, reason string) results.RuleDiffLine {
		return results.RuleDiffLine{Side: side, Text: text, Mark: mark, Reason: reason}
	}
	diff := &results.RuleDiff{Dump: "iptables-nft-save", Lines: 40, Differences: []results.RuleDiffLine{
		line("kube-proxy", "filter: :KUBE-FIREWALL -", "open", "localhost NodePorts"),
		line("kube-proxy", "filter: :KUBE-PROXY-FIREWALL -", "intentional", "only with source ranges"),
		line("svcsim", "nat: -A X", "", ""),
	}, Settled: []results.RuleDiffLine{{Side: "kube-proxy", Text: "KUBE-PROXY-CANARY", Mark: "fixed-by-test", Reason: "canary", Test: "TestCanaryRepairsFlush"}}}
	set := &results.Set{Results: []results.Result{
		{Scenario: "rule-diff", Mode: "iptables/nft", Status: results.Fail, RuleDiff: diff},
		{Scenario: "rule-diff", Mode: "kube-proxy/iptables-nft", Status: results.Fail, RuleDiff: diff},
		{Scenario: "rule-diff", Mode: "ipvs", Status: results.Pass, RuleDiff: &results.RuleDiff{Dump: "ipvsadm-ln", Missing: "no recording of kube-proxy's ipvsadm-ln yet"}},
	}}
	views := ruleDiffs(set)
	if len(views) != 2 || views[0].Dump != "iptables-nft-save" || len(views[0].Modes) != 2 || len(views[0].Groups) != 2 ||
		views[0].Groups[0].Mark != "open" || len(views[0].Unmarked) != 1 || len(views[0].Settled) != 1 || len(views[1].Missing) != 1 {
		t.Fatalf("ruleDiffs = %+v", views)
	}
	var buf bytes.Buffer
	if err := Render(&buf, set, Options{Now: fixtureNow}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{`id="rule-diff"`, `href="#rule-diff"`, "only kube-proxy: filter: :KUBE-FIREWALL -", "localhost NodePorts",
		">unmarked<", "only svcsim: nat: -A X", "TestCanaryRepairsFlush", "no recording of kube-proxy&#39;s ipvsadm-ln yet"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if n := strings.Count(out, "only kube-proxy: filter: :KUBE-FIREWALL -"); n != 1 {
		t.Errorf("a line both sides report shows %d times", n)
	}
}
