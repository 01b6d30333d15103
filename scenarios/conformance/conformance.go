// Package conformance maps upstream Kubernetes' end-to-end tests of Service
// networking, pinned to one release (Version), onto svcsim's scenarios: for
// every behaviour test (each ginkgo It) of the files in Files, its exact
// title, file and [Conformance] mark, the scenarios that check it and the
// datapaths it does not apply to, or why the test is out of scope.
//
// The table is data for two readers: scenarios/CONFORMANCE.md is rendered
// from it (Markdown; a test keeps the file current) and the HTML report
// (package report) joins it with a run's results into a matrix of upstream
// tests by datapath. Only the titles come from upstream; the notes are
// svcsim's own words.
package conformance

import (
	"fmt"
	"slices"
	"strings"
)

// Version is the kubernetes/kubernetes release the table is pinned to.
const Version = "v1.37.2"

// Files are the upstream test files read, relative to test/e2e, in the
// table's order. Of common/node/pods.go only the Service environment test
// is listed: the file's other tests are about pods, not Services.
var Files = []string{
	"network/service.go", "network/dns.go", "network/networking.go", "network/conntrack.go",
	"network/kube_proxy.go", "network/loadbalancer.go", "network/localhost_nodeports.go",
	"network/no_snat.go", "network/endpoints.go", "network/endpointslice.go",
	"network/endpointslicemirroring.go", "network/traffic_distribution.go",
	"network/topology_hints.go", "common/node/pods.go",
}

// Scope says whether a test applies to svcsim: it applies when it observes
// Service-networking behaviour of one cluster through traffic, DNS or the
// objects' state. The other values say why not.
type Scope int

const (
	// Applies: svcsim should check it.
	Applies Scope = iota
	// IPv6: IPv6 or dual-stack (svcsim simulates IPv4).
	IPv6
	// SCTP: needs SCTP (svcsim simulates TCP and UDP).
	SCTP
	// Cloud: needs one cloud provider's machinery.
	Cloud
	// Outside: reaches the Internet; svcsim never sends a packet outside
	// the namespaces it made.
	Outside
	// Runtime: needs a container runtime (image pulls); svcsim's pods run
	// built-in servers.
	Runtime
	// API: pure API create/read/update/delete, no networking behaviour;
	// listed apart and not counted.
	API
)

var scopeNames = [...]string{"applies", "IPv6/dual-stack", "SCTP", "cloud-specific", "reaches outside", "container runtime", "API only"}

func (s Scope) String() string {
	if int(s) < len(scopeNames) {
		return scopeNames[s]
	}
	return fmt.Sprintf("Scope(%d)", int(s))
}

// Coverage is how much of an applicable test svcsim's scenarios check.
type Coverage int

const (
	// Not: no scenario checks it (Note says what is missing).
	Not Coverage = iota
	// Partly: scenarios check some of it (Note says what is left).
	Partly
	// Covered: scenarios check what it checks, on every datapath but the
	// Except ones.
	Covered
)

var coverageNames = [...]string{"not covered", "partly", "covered"}

func (c Coverage) String() string {
	if int(c) < len(coverageNames) {
		return coverageNames[c]
	}
	return fmt.Sprintf("Coverage(%d)", int(c))
}

// Test is one upstream behaviour test and what svcsim does with it.
type Test struct {
	// File is the upstream file, relative to test/e2e.
	File string
	// Describe is the enclosing Describe texts, outermost first.
	Describe string
	// Title is the It's title, exactly as upstream writes it.
	Title string
	// Labels are upstream's labels on the It and its Describe
	// (Feature:..., Slow, Disruptive, Provider:..., NodeConformance).
	Labels []string
	// Conformance: upstream marks it [Conformance] (framework.ConformanceIt).
	Conformance bool
	Scope       Scope
	Coverage    Coverage
	// Scenarios are the svcsim scenarios (harness.Scenario names) that
	// check it.
	Scenarios []string
	// Except names datapaths the behaviour does not apply to, each with
	// why; Covered means covered on every other datapath.
	Except map[string]string
	// Note says what the scenarios check, what is left, or why the test is
	// out of scope.
	Note string
}

// Key identifies a test: its file, title and labels (upstream repeats a
// title with other labels, e.g. for IPv4 and IPv6).
func (t Test) Key() string {
	k := t.File + ": " + t.Title
	if len(t.Labels) > 0 {
		k += " [" + strings.Join(t.Labels, "][") + "]"
	}
	return k
}

// Tests returns the table in upstream's order (Files, then line order).
func Tests() []Test { return slices.Clone(table) }

// Counts sums the table.
type Counts struct {
	// Total is every test listed, API ones included.
	Total int
	// Applies = Covered + Partly + Not.
	Applies, Covered, Partly, Not int
	// Conformance is how many applicable tests upstream marks
	// [Conformance], and ConformanceCovered how many of those are covered.
	Conformance, ConformanceCovered int
	// Out counts the tests out of scope by reason (API included).
	Out map[Scope]int
}

// Count sums tests.
func Count(tests []Test) Counts {
	c := Counts{Out: map[Scope]int{}}
	for _, t := range tests {
		c.Total++
		if t.Scope != Applies {
			c.Out[t.Scope]++
			continue
		}
		c.Applies++
		if t.Conformance {
			c.Conformance++
		}
		switch t.Coverage {
		case Covered:
			c.Covered++
			if t.Conformance {
				c.ConformanceCovered++
			}
		case Partly:
			c.Partly++
		default:
			c.Not++
		}
	}
	return c
}

// Summary is one sentence of the counts.
func (c Counts) Summary() string {
	return fmt.Sprintf("%d upstream tests: %d apply to svcsim (%d covered, %d partly, %d not), %d out of scope, %d API-only not counted; "+
		"%d of the %d applicable [Conformance] tests covered",
		c.Total, c.Applies, c.Covered, c.Partly, c.Not, c.Total-c.Applies-c.Out[API], c.Out[API], c.ConformanceCovered, c.Conformance)
}
