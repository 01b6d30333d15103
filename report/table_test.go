package report

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/report/results"
)

// tableSet is a small run: two scenarios on three datapaths, one of them
// skipped on the host and passed in the kernel lane, one failure, one
// scenario not run on one datapath, one datapath on the kubernetes plane.
func tableSet() *results.Set {
	at := time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)
	host := results.Env{Lane: "host"}
	vm := results.Env{Lane: "vm:debian-6.1"}
	info := func(o int) *results.DatapathInfo { return &results.DatapathInfo{Order: o} }
	return &results.Set{Results: []results.Result{
		{Scenario: "nodeport", Group: results.GroupPublishing, Mode: "nftables", Status: results.Pass, Seconds: 2.5, Started: at, Env: host, Info: info(20)},
		{Scenario: "nodeport", Group: results.GroupPublishing, Mode: "ipvs", Status: results.Skip, Reason: "kernel lacks IP_VS", Env: host, Info: info(30)},
		{Scenario: "nodeport", Group: results.GroupPublishing, Mode: "ipvs", Status: results.Pass, Seconds: 9, Started: at.Add(time.Minute), Env: vm, Info: info(30)},
		{Scenario: "nodeport", Group: results.GroupPublishing, Mode: "kube-proxy/nftables", ControlPlane: "kubernetes", Status: results.Fail,
			Reason: "curl 198.18.0.11:30080: timeout\nmore detail", Env: host, Info: info(40),
			Assertions: []results.Assertion{{Name: "allocated", OK: true, Detail: "30080"}, {Name: "answers", OK: false, Detail: "timeout after 3 s"}}},
		{Scenario: "clusterip-distribution", Group: results.GroupService, Mode: "nftables", Status: results.Pass, Seconds: 1, Started: at, Env: host, Info: info(20)},
		{Scenario: "clusterip-distribution", Group: results.GroupService, Mode: "ipvs", Status: results.Skip, Reason: "kernel lacks IP_VS", Env: host, Info: info(30)},
	}}
}

func TestTable(t *testing.T) {
	var buf bytes.Buffer
	if err := Table(&buf, tableSet()); err != nil {
		t.Fatal(err)
	}
	want := `scenario                nftables  ipvs                kube-proxy/nftables
  control plane         embedded  embedded            kubernetes
  lane                  host      host,vm:debian-6.1  host
clusterip-distribution  pass      skip [1]            -
nodeport                pass      pass                FAIL [2]
[1] skip: kernel lacks IP_VS
[2] FAIL: curl 198.18.0.11:30080: timeout ...
2 scenarios x 3 datapaths: 3 pass, 1 fail, 1 skip, 1 not run (-)
`
	if got := buf.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

// TestTableDefaults: results of the embedded plane on the host (the usual
// run, and files written before the control-plane field existed) get no
// plane or lane rows.
func TestTableDefaults(t *testing.T) {
	set := &results.Set{Results: []results.Result{
		{Scenario: "udp", Mode: "iptables", Status: results.Pass, Env: results.Env{Lane: "host"}},
		{Scenario: "udp", Mode: "userspace", ControlPlane: "embedded", Status: results.Skip, Reason: strings.Repeat("x", 300)},
	}}
	var buf bytes.Buffer
	if err := Table(&buf, set); err != nil {
		t.Fatal(err)
	}
	got := buf.String()
	if strings.Contains(got, "control plane") || strings.Contains(got, "lane") {
		t.Errorf("default plane and lane shown:\n%s", got)
	}
	if !strings.Contains(got, "[1] skip: "+strings.Repeat("x", noteWidth-3)+"...\n") {
		t.Errorf("long reason not cut to %d runes:\n%s", noteWidth, got)
	}
	buf.Reset()
	if err := Table(&buf, &results.Set{}); err != nil || buf.String() != "no scenario results\n" {
		t.Errorf("empty set: %q, %v", buf.String(), err)
	}
}

// TestTableFixture: the fixture's totals agree with the summary's.
func TestTableFixture(t *testing.T) {
	var buf bytes.Buffer
	if err := Table(&buf, readFixture(t)); err != nil {
		t.Fatal(err)
	}
	got := buf.String()
	for _, want := range []string{
		"9 scenarios x 6 datapaths: 42 pass, 1 fail, 10 skip, 1 not run (-)\n",
		"  control plane            embedded   embedded         embedded      embedded  embedded  kubernetes\n",
		"skip: kernel lacks IP_VS",
		"FAIL: distribution not uniform",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	// One note per distinct reason: nine ipvs skips share one.
	if n := strings.Count(got, "kernel lacks IP_VS"); n != 1 {
		t.Errorf("IP_VS reason printed %d times:\n%s", n, got)
	}
}

func TestJUnit(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, tableSet()); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), xml.Header) {
		t.Errorf("no XML header:\n%s", buf.String())
	}
	var doc junitSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("parse own output: %v\n%s", err, buf.String())
	}
	if doc.Tests != 5 || doc.Failures != 1 || doc.Skipped != 1 || doc.Errors != 0 {
		t.Errorf("totals: tests %d failures %d skipped %d errors %d", doc.Tests, doc.Failures, doc.Skipped, doc.Errors)
	}
	var names []string
	cases := map[string]junitCase{}
	for _, s := range doc.Suites {
		names = append(names, s.Name)
		for _, c := range s.Cases {
			if c.Classname != s.Name {
				t.Errorf("case %s in suite %s has class %s", c.Name, s.Name, c.Classname)
			}
			cases[c.Name+"@"+c.Classname] = c
		}
	}
	if got := strings.Join(names, " "); got != "nftables ipvs kube-proxy/nftables" {
		t.Errorf("suites %q", got)
	}
	if len(cases) != 5 {
		t.Errorf("%d testcases, want 5 (one per scenario and datapath with a result)", len(cases))
	}
	if c := cases["nodeport@nftables"]; c.Skipped != nil || c.Failure != nil || c.Time != "2.500" {
		t.Errorf("pass: %+v", c)
	}
	if c := cases["nodeport@ipvs"]; c.Skipped != nil || c.Failure != nil {
		t.Errorf("the kernel lane's pass should win over the host's skip: %+v", c)
	}
	if c := cases["clusterip-distribution@ipvs"]; c.Skipped == nil || c.Skipped.Message != "kernel lacks IP_VS" {
		t.Errorf("skip: %+v", c)
	}
	c := cases["nodeport@kube-proxy/nftables"]
	if c.Failure == nil || c.Failure.Message != "curl 198.18.0.11:30080: timeout ..." ||
		!strings.Contains(c.Failure.Text, "more detail") || !strings.Contains(c.Failure.Text, "failed: answers: timeout after 3 s") {
		t.Errorf("failure: %+v", c.Failure)
	}
	if c.SystemOut == nil || !strings.Contains(c.SystemOut.Text, "ok: allocated: 30080\n") {
		t.Errorf("system-out: %q", c.SystemOut)
	}
	for _, s := range doc.Suites {
		if s.Name == "kube-proxy/nftables" && (len(s.Properties) != 2 || s.Properties[0].Value != "kubernetes") {
			t.Errorf("properties: %+v", s.Properties)
		}
	}
}

func TestWriteJUnitFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "junit.xml")
	if err := WriteJUnitFile(readFixture(t), out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Tests != 53 || doc.Failures != 1 || doc.Skipped != 10 {
		t.Errorf("fixture: tests %d failures %d skipped %d", doc.Tests, doc.Failures, doc.Skipped)
	}
	ents, _ := os.ReadDir(filepath.Dir(out))
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}
