package conformance

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Markdown writes the table as scenarios/CONFORMANCE.md: the counts, then
// one section per upstream file with every test's status.
func Markdown(w io.Writer, tests []Test) error {
	var b strings.Builder
	c := Count(tests)
	fmt.Fprintf(&b, "# Upstream conformance map\n\n")
	fmt.Fprintf(&b, "Generated from `scenarios/conformance` (do not edit; `go test ./scenarios/conformance -run TestMarkdown -update` rewrites it).\n")
	fmt.Fprintf(&b, "Every behaviour test (`It`) of kubernetes/kubernetes %s's Service-networking e2e files (test/e2e/network, and the Service\n", Version)
	fmt.Fprintf(&b, "environment test of test/e2e/common/node/pods.go), with the svcsim scenarios that check it. A test applies when it observes\n")
	fmt.Fprintf(&b, "Service networking of one cluster through traffic, DNS or the objects' state. \"Covered\" means on every datapath\n")
	fmt.Fprintf(&b, "(userspace, iptables/legacy, iptables/nft, ipvs, nftables) but those listed as not applying; the HTML report shows\n")
	fmt.Fprintf(&b, "each run's results per upstream test and datapath.\n\n")
	fmt.Fprintf(&b, "%s.\n\n", c.Summary())
	b.WriteString("| | tests |\n| --- | --- |\n")
	fmt.Fprintf(&b, "| apply | %d |\n| covered | %d |\n| partly | %d |\n| not covered | %d |\n", c.Applies, c.Covered, c.Partly, c.Not)
	var out []Scope
	for s := range c.Out {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	for _, s := range out {
		fmt.Fprintf(&b, "| out of scope: %s | %d |\n", s, c.Out[s])
	}
	fmt.Fprintf(&b, "| [Conformance] tests that apply, covered | %d of %d |\n", c.ConformanceCovered, c.Conformance)
	file := ""
	for _, t := range tests {
		if t.File != file {
			file = t.File
			fc := Count(filter(tests, file))
			fmt.Fprintf(&b, "\n## test/e2e/%s\n\n%d tests: %d apply (%d covered, %d partly, %d not)\n\n", file, fc.Total, fc.Applies, fc.Covered, fc.Partly, fc.Not)
			b.WriteString("| test | status | scenarios | notes |\n| --- | --- | --- | --- |\n")
		}
		title := cell(t.Title)
		if t.Conformance {
			title += " **[Conformance]**"
		}
		for _, l := range t.Labels {
			title += " [" + cell(l) + "]"
		}
		status := t.Coverage.String()
		if t.Scope != Applies {
			status = "out of scope: " + t.Scope.String()
		}
		var scs []string
		for _, s := range t.Scenarios {
			scs = append(scs, "`"+s+"`")
		}
		note := cell(t.Note)
		for _, dp := range sortedKeys(t.Except) {
			note += fmt.Sprintf("; not on %s: %s", dp, cell(t.Except[dp]))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", title, status, strings.Join(scs, ", "), note)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func filter(tests []Test, file string) []Test {
	var out []Test
	for _, t := range tests {
		if t.File == file {
			out = append(out, t)
		}
	}
	return out
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
