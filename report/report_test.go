package report

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/report/results"
	e2emap "github.com/svcsim/svcsim/scenarios/conformance"
)

var update = flag.Bool("update", false, "rewrite testdata/report.golden.html from the fixture")

// fixtureNow is the fixed generation time of the golden report.
var fixtureNow = time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)

const fixtureDir = "testdata/results"

// fixtureUpstream is a fixed conformance map over the fixture's scenarios:
// covered, partly, not covered, not applying to one datapath, out of scope.
var fixtureUpstream = []e2emap.Test{
	{File: "network/service.go", Describe: "Services", Title: "should serve multiport endpoints from pods", Conformance: true,
		Coverage: e2emap.Covered, Scenarios: []string{"multiport-named"}, Note: "each named port reaches its targetPort"},
	{File: "network/service.go", Describe: "Services", Title: "should preserve source pod IP for traffic thru service cluster IP [LinuxOnly]",
		Coverage: e2emap.Partly, Scenarios: []string{"clusterip-basic"}, Except: map[string]string{"userspace": "relays from the node"}, Note: "UDP only"},
	{File: "network/service.go", Describe: "Services", Title: "should allow pods to hairpin back to themselves through services", Note: "not yet"},
	{File: "network/dns.go", Describe: "DNS", Title: "should provide DNS for services", Conformance: true,
		Coverage: e2emap.Covered, Scenarios: []string{"headless-dns", "discovery-env"}, Note: "A records"},
	{File: "network/service.go", Describe: "Services", Title: "should allow creating a basic SCTP service with pod and endpoints [LinuxOnly]",
		Scope: e2emap.SCTP, Note: "TCP and UDP only"},
}

func readFixture(t *testing.T) *results.Set {
	t.Helper()
	set, err := results.ReadDir(fixtureDir)
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return set
}

func renderFixture(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Render(&buf, readFixture(t), Options{Now: fixtureNow, Source: "testdata/results", Upstream: fixtureUpstream}); err != nil {
		t.Fatalf("Render: %v", err)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	got := renderFixture(t)
	golden := filepath.Join("testdata", "report.golden.html")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./report -run TestGolden -update)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("report differs from %s at line %d:\n got: %.300s\nwant: %.300s\n(run with -update if the change is intended)", golden, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("report differs from %s in length: %d vs %d lines (run with -update if intended)", golden, len(gl), len(wl))
	}
	// Deterministic: a second rendering is byte-identical.
	if again := renderFixture(t); !bytes.Equal(got, again) {
		t.Fatal("two renderings of the same results differ")
	}
}

// TestSelfContained checks the report needs no network: no URL scheme at
// all, no resource attributes pointing anywhere but inside the page.
func TestSelfContained(t *testing.T) {
	out := string(renderFixture(t))
	for _, bad := range []string{"http://", "https://", "//cdn", "@import", "url("} {
		if strings.Contains(out, bad) {
			t.Errorf("report contains %q", bad)
		}
	}
	for _, m := range regexp.MustCompile(`(?i)\b(src|href|xlink:href|action|data)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(out, -1) {
		if m[1] != "href" || !strings.HasPrefix(m[2], "#") {
			t.Errorf("attribute %s=%q points outside the page", m[1], m[2])
		}
	}
	if n := strings.Count(out, "<script"); n != 1 {
		t.Errorf("%d scripts, want the one inline helper", n)
	}
	if strings.Contains(out, "<script src") || strings.Contains(out, "<link") {
		t.Error("report loads an external script or stylesheet")
	}
}

func TestSections(t *testing.T) {
	out := string(renderFixture(t))
	for _, want := range []string{
		// Header: lanes, tool versions, the mode that could not run and why.
		"6.18.0-svcsim", "Intel(R) Xeon(R) Platinum 8375C", "iptables v1.8.9 (nf_tables)", "nftables v1.0.6",
		"could not run", "kernel lacks IP_VS",
		// Matrix in the seed's group order, with a link to a failed cell's detail.
		`href="#r-distribution-uniform--nftables"`, `id="r-distribution-uniform--nftables" open`,
		// Distribution and affinity.
		"χ² = 19", "p = 7.6e-05", "round-robin: exact", "11.6 s", "&#43;1.6 s",
		// Bench charts with floors and their tables.
		`id="bench-full-sync"`, `id="bench-endpoint-change"`, `id="bench-first-packet"`, `id="bench-convergence"`, `id="bench-rps-keepalive"`,
		"iptables/legacy floor-restore", "nftables floor-nft", "(log scale)",
		// Kernel state and generated sentences.
		"KUBE-SVC-ULMVA6XWUVLBQ6IX", "numgen random mod 2",
		"Contradicts the seed", "grows 77.3x",
		// The genuine kube-proxy's column after svcsim's, with its control
		// plane and the components' versions.
		`<th class="mode">nftables</th><th class="mode">kube-proxy/nftables</th>`,
		`<th class="mode muted small">embedded</th><th class="mode muted small">kubernetes</th>`,
		"control plane kubernetes: coredns 1.15.0 · etcd 3.7.3 · kube-apiserver v1.37.2",
		"control plane embedded: svcsim (devel)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// Groups appear in the seed's order.
	last := -1
	for _, g := range []string{results.GroupService, results.GroupSelectorless, results.GroupProxyModes, results.GroupMultiPort, results.GroupDiscovery, results.GroupHeadless, results.GroupIngress} {
		i := strings.Index(out, `<tr class="grp"><th colspan="7">`+g)
		if i < 0 || i < last {
			t.Errorf("group %q missing or out of order", g)
		}
		last = i
	}
}

func TestRenderFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report.html")
	if err := RenderFile(fixtureDir, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("</html>")) {
		t.Error("report is truncated")
	}
	ents, _ := os.ReadDir(filepath.Dir(out))
	if len(ents) != 1 {
		t.Errorf("temporary files left beside the report: %v", ents)
	}
	// A broken results file fails the rendering and leaves no report behind.
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "scenario-x--y.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(t.TempDir(), "r.html")
	if err := RenderFile(bad, out2); err == nil {
		t.Error("RenderFile accepted a corrupt results file")
	}
	if _, err := os.Stat(out2); !os.IsNotExist(err) {
		t.Errorf("report written despite the error: %v", err)
	}
	// An unwritable destination is reported.
	if err := RenderFile(fixtureDir, filepath.Join(t.TempDir(), "missing", "r.html")); err == nil {
		t.Error("RenderFile into a missing directory succeeded")
	}
}

func TestRenderEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := Render(&buf, &results.Set{}, Options{Now: fixtureNow}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "No scenario results in this run.") {
		t.Error("empty report does not say it is empty")
	}
	if err := Render(&buf, nil, Options{}); err == nil {
		t.Error("Render(nil) succeeded")
	}
}

func TestSummary(t *testing.T) {
	s := Summary(readFixture(t))
	for _, want := range []string{
		"9 scenarios x 6 modes: 42 pass, 1 fail, 10 skip, 1 not run",
		"FAIL distribution-uniform",
		"kernel lacks IP_VS",
		"What this run says:",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}

func TestLaneLabel(t *testing.T) {
	b := results.Bench{Datapath: "ipvs"}
	if got := laneLabel(b); got != "ipvs" {
		t.Errorf("no lane: %q", got)
	}
	b.Env.Lane = "host"
	if got := laneLabel(b); got != "ipvs" {
		t.Errorf("host lane: %q", got)
	}
	b.Env.Lane = "vm:debian-6.1"
	if got := laneLabel(b); got != "ipvs (vm:debian-6.1)" {
		t.Errorf("vm lane: %q", got)
	}
}

// TestSummaryFirst: the page opens with the summary (counts, the
// conformance matrix, then the findings that matter, the seed's claims
// linking to their chart); the other sentences follow in their own section.
func TestSummaryFirst(t *testing.T) {
	out := string(renderFixture(t))
	main := out[strings.Index(out, "<main>"):]
	first := main[strings.Index(main, "<section"):]
	first = first[:strings.Index(first, "</section>")]
	for _, want := range []string{
		`<section id="conformance">`, "<h2>Summary</h2>", "<b>42</b> pass", `id="matrix"`, "<h3>What matters</h3>",
		`iptables/nft&#39;s one endpoint change grows only 1.42x from 100 to 10000 Services. <a href="#bench-endpoint-change">chart</a>`,
		`Failed: distribution-uniform on nftables`,
	} {
		if !strings.Contains(first, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if strings.Index(first, `id="matrix"`) > strings.Index(first, "What matters") {
		t.Error("the matrix should come before the findings")
	}
	says := main[strings.Index(main, `<section id="says">`):]
	says = says[:strings.Index(says, "</section>")]
	if strings.Contains(says, "Contradicts the seed") || !strings.Contains(says, "Fastest full sync") {
		t.Errorf("What this run says should hold the other sentences only:\n%s", says)
	}
	if !strings.Contains(out, `id="bench-endpoint-change"`) {
		t.Error("the chart the summary links to is missing")
	}
}

// TestMixedLanesSaid: a chart with lines from two lanes says so on the chart.
func TestMixedLanesSaid(t *testing.T) {
	pts := []results.Point{{N: 100, Reps: 3, Median: 1, Min: 1, Max: 1}, {N: 1000, Reps: 3, Median: 2, Min: 2, Max: 2}}
	set := &results.Set{Benches: []results.Bench{
		{Datapath: "nftables", Metric: MetricEndpointChange, Unit: "ms", Env: results.Env{Lane: "host", Kernel: "6.18"}, Points: pts},
		{Datapath: "ipvs", Metric: MetricEndpointChange, Unit: "ms", Env: results.Env{Lane: "vm:debian-6.1", Kernel: "6.1.0"}, Points: pts},
	}}
	c, err := metricChart(MetricEndpointChange, set.Benches, nil, palette(set))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Notes) == 0 || !strings.Contains(c.Notes[0], "mixes lanes: host (kernel 6.18), vm:debian-6.1 (kernel 6.1.0)") {
		t.Errorf("notes: %q", c.Notes)
	}
	c, err = metricChart(MetricEndpointChange, set.Benches[:1], nil, palette(set))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Notes {
		if strings.Contains(n, "mixes lanes") {
			t.Errorf("one lane, yet: %q", n)
		}
	}
}
