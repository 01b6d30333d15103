package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/svcsim/svcsim/report/results"
)

// The JUnit XML shape CI systems read (GitHub test reporters, GitLab,
// Jenkins): testsuites > testsuite > testcase, with skipped and failure
// children.
type (
	junitSuites struct {
		XMLName  xml.Name     `xml:"testsuites"`
		Name     string       `xml:"name,attr"`
		Tests    int          `xml:"tests,attr"`
		Failures int          `xml:"failures,attr"`
		Errors   int          `xml:"errors,attr"`
		Skipped  int          `xml:"skipped,attr"`
		Time     string       `xml:"time,attr"`
		Suites   []junitSuite `xml:"testsuite"`
	}
	junitSuite struct {
		Name       string          `xml:"name,attr"`
		Tests      int             `xml:"tests,attr"`
		Failures   int             `xml:"failures,attr"`
		Errors     int             `xml:"errors,attr"`
		Skipped    int             `xml:"skipped,attr"`
		Time       string          `xml:"time,attr"`
		Timestamp  string          `xml:"timestamp,attr,omitempty"`
		Properties []junitProperty `xml:"properties>property,omitempty"`
		Cases      []junitCase     `xml:"testcase"`
	}
	junitProperty struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	}
	junitCase struct {
		Name      string        `xml:"name,attr"`
		Classname string        `xml:"classname,attr"`
		Time      string        `xml:"time,attr"`
		Skipped   *junitMessage `xml:"skipped"`
		Failure   *junitMessage `xml:"failure"`
		SystemOut *junitText    `xml:"system-out"`
	}
	junitMessage struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr,omitempty"`
		Text    string `xml:",cdata"`
	}
	// junitText keeps its line breaks readable in the file.
	junitText struct {
		Text string `xml:",cdata"`
	}
)

// WriteJUnit writes the scenario results of set as JUnit XML: one testsuite
// per datapath (in the report's column order), one testcase per scenario
// that has a result on it, named by the scenario with the datapath as its
// class; a skip carries its reason as the message, a failure its reason and
// the failed assertions. Scenarios without a result on a datapath are not
// testcases (the terminal table shows them as "-"). Each suite's properties
// name the control planes and lanes its results ran on.
func WriteJUnit(w io.Writer, set *results.Set) error {
	doc := junitSuites{Name: "svcsim scenarios"}
	if set != nil {
		by := pick(set)
		scs := scenarios(set)
		var total float64
		for _, m := range modesOf(set) {
			s := junitSuite{Name: m}
			var secs float64
			var first time.Time
			planes, lanes := map[string]bool{}, map[string]bool{}
			for _, sc := range scs {
				r, ok := by[[2]string{sc.Name, m}]
				if !ok {
					continue
				}
				c := junitCase{Name: sc.Name, Classname: m, Time: fmt.Sprintf("%.3f", r.Seconds)}
				switch r.Status {
				case results.Pass:
				case results.Skip:
					s.Skipped++
					c.Skipped = &junitMessage{Message: orDefault(r.Reason, "no reason given")}
				case results.Fail:
					s.Failures++
					c.Failure = &junitMessage{Message: oneLine(failText(r)), Type: "fail", Text: failBody(r)}
				default:
					s.Failures++
					c.Failure = &junitMessage{Message: "unknown status " + string(r.Status), Type: "fail"}
				}
				if log := assertionLog(r); log != "" {
					c.SystemOut = &junitText{log}
				}
				s.Cases = append(s.Cases, c)
				s.Tests++
				secs += r.Seconds
				if !r.Started.IsZero() && (first.IsZero() || r.Started.Before(first)) {
					first = r.Started
				}
				planes[orDefault(r.ControlPlane, "embedded")] = true
				lanes[orDefault(r.Env.Lane, "host")] = true
			}
			s.Time = fmt.Sprintf("%.3f", secs)
			if !first.IsZero() {
				s.Timestamp = first.UTC().Format("2006-01-02T15:04:05")
			}
			s.Properties = []junitProperty{
				{Name: "control-plane", Value: strings.Join(sortedKeys(planes), ",")},
				{Name: "lane", Value: strings.Join(sortedKeys(lanes), ",")},
			}
			doc.Tests += s.Tests
			doc.Failures += s.Failures
			doc.Skipped += s.Skipped
			total += secs
			doc.Suites = append(doc.Suites, s)
		}
		doc.Time = fmt.Sprintf("%.3f", total)
	} else {
		doc.Time = "0.000"
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	return nil
}

// failBody is the full text of a failure: the reason and every failed
// assertion.
func failBody(r results.Result) string {
	var b strings.Builder
	b.WriteString(failText(r))
	for _, a := range r.Assertions {
		if !a.OK {
			fmt.Fprintf(&b, "\nfailed: %s: %s", a.Name, a.Detail)
		}
	}
	return b.String()
}

// assertionLog lists a result's assertions, one per line, for system-out.
func assertionLog(r results.Result) string {
	var b strings.Builder
	for _, a := range r.Assertions {
		mark := "ok"
		if !a.OK {
			mark = "FAILED"
		}
		fmt.Fprintf(&b, "%s: %s: %s\n", mark, a.Name, a.Detail)
	}
	return b.String()
}
