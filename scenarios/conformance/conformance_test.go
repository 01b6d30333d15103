package conformance

import (
	"bytes"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/svcsim/svcsim/modes"
	_ "github.com/svcsim/svcsim/modes/all" // the datapaths Except may name
)

var update = flag.Bool("update", false, "rewrite ../CONFORMANCE.md from the table")

// upstreamIts is how many It calls each file has at Version (for pods.go:
// the one Service test listed). A test added or removed upstream, or a row
// lost here, changes a count.
var upstreamIts = map[string]int{
	"network/service.go": 51, "network/dns.go": 18, "network/networking.go": 27, "network/conntrack.go": 7,
	"network/kube_proxy.go": 2, "network/loadbalancer.go": 17, "network/localhost_nodeports.go": 3,
	"network/no_snat.go": 1, "network/endpoints.go": 3, "network/endpointslice.go": 5,
	"network/endpointslicemirroring.go": 2, "network/traffic_distribution.go": 6,
	"network/topology_hints.go": 1, "common/node/pods.go": 1,
}

func TestTableIsConsistent(t *testing.T) {
	known := map[string]bool{}
	for _, d := range modes.Table() {
		known[d.Name] = true
	}
	seen := map[string]bool{}
	files := map[string]bool{}
	for _, f := range Files {
		files[f] = true
	}
	last := -1
	for _, tc := range Tests() {
		k := tc.Key()
		require.False(t, seen[k], "duplicate row %s", k)
		seen[k] = true
		require.True(t, files[tc.File], "%s: file not in Files", k)
		i := indexOf(Files, tc.File)
		require.GreaterOrEqual(t, i, last, "%s: rows out of Files' order", k)
		last = i
		require.NotEmpty(t, tc.Title, k)
		require.NotEmpty(t, tc.Describe, k)
		require.NotEmpty(t, strings.TrimSpace(tc.Note), "%s: every row says what is checked, what is left or why not", k)
		if tc.Scope != Applies {
			require.Equal(t, Not, tc.Coverage, "%s: out of scope (%s) but marked %s", k, tc.Scope, tc.Coverage)
			require.Empty(t, tc.Scenarios, "%s: out of scope but names scenarios", k)
			require.Empty(t, tc.Except, k)
			continue
		}
		if tc.Coverage == Not {
			require.Empty(t, tc.Scenarios, "%s: not covered but names scenarios (Partly?)", k)
		} else {
			require.NotEmpty(t, tc.Scenarios, "%s: %s without a scenario", k, tc.Coverage)
		}
		dup := map[string]bool{}
		for _, s := range tc.Scenarios {
			require.False(t, dup[s], "%s: scenario %s twice", k, s)
			dup[s] = true
		}
		for dp, why := range tc.Except {
			require.True(t, known[dp] || strings.HasPrefix(dp, "kube-proxy/"), "%s: Except names unknown datapath %q", k, dp)
			require.NotEmpty(t, strings.TrimSpace(why), "%s: Except %s without a reason", k, dp)
		}
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestCountsAddUp(t *testing.T) {
	tests := Tests()
	per := map[string]int{}
	for _, tc := range tests {
		per[tc.File]++
	}
	require.Equal(t, upstreamIts, per, "rows per file")
	c := Count(tests)
	want := 0
	for _, n := range upstreamIts {
		want += n
	}
	require.Equal(t, want, c.Total)
	require.Equal(t, c.Applies, c.Covered+c.Partly+c.Not)
	out := 0
	for s, n := range c.Out {
		require.NotEqual(t, Applies, s)
		out += n
	}
	require.Equal(t, c.Total, c.Applies+out)
	require.LessOrEqual(t, c.ConformanceCovered, c.Conformance)
	require.LessOrEqual(t, c.ConformanceCovered, c.Covered)
	// Count itself, on a table whose answer is known.
	small := Count([]Test{{Coverage: Covered, Conformance: true}, {Coverage: Partly}, {}, {Scope: API}, {Scope: SCTP}})
	require.Equal(t, Counts{Total: 5, Applies: 3, Covered: 1, Partly: 1, Not: 1, Conformance: 1, ConformanceCovered: 1,
		Out: map[Scope]int{API: 1, SCTP: 1}}, small)
}

// TestScenariosExist: every scenario a row names is a harness.Scenario
// literal in package scenarios (read from its sources).
func TestScenariosExist(t *testing.T) {
	names := scenarioNames(t, "..")
	require.NotEmpty(t, names)
	for _, tc := range Tests() {
		for _, s := range tc.Scenarios {
			require.True(t, names[s], "%s names scenario %q, which package scenarios does not define (known: %v)", tc.Key(), s, sortedSet(names))
		}
	}
}

// scenarioNames collects the Name of every harness.Scenario{...} literal in
// dir's Go files.
func scenarioNames(t *testing.T, dir string) map[string]bool {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	require.NoError(t, err)
	fset := token.NewFileSet()
	names := map[string]bool{}
	for _, p := range paths {
		f, err := parser.ParseFile(fset, p, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			sel, ok := cl.Type.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Scenario" {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "harness" {
				return true
			}
			for _, e := range cl.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
					if lit, ok := kv.Value.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						s, err := strconv.Unquote(lit.Value)
						require.NoError(t, err)
						names[s] = true
					}
				}
			}
			return true
		})
	}
	return names
}

func sortedSet(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var itCall = regexp.MustCompile(`^\s*(framework\.ConformanceIt|ginkgo\.It|f\.It|framework\.It)\("((?:[^"\\]|\\.)*)"`)

// TestUpstreamTitles compares the table with upstream's sources at Version
// in the Go module cache (k8s.io/kubernetes is required by upstream/go.mod,
// so `make deps` puts it there): the same titles, [Conformance] marks and
// counts, file by file.
func TestUpstreamTitles(t *testing.T) {
	root := upstreamRoot(t)
	for _, file := range Files {
		src, err := os.ReadFile(filepath.Join(root, file))
		require.NoError(t, err)
		var got []string
		for _, line := range strings.Split(string(src), "\n") {
			m := itCall.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			title, err := strconv.Unquote(`"` + m[2] + `"`)
			require.NoError(t, err)
			got = append(got, mark(title, m[1] == "framework.ConformanceIt"))
		}
		var want []string
		for _, tc := range Tests() {
			if tc.File == file {
				want = append(want, mark(tc.Title, tc.Conformance))
			}
		}
		if file == "common/node/pods.go" {
			// Only the Service environment test is listed; it must be there.
			require.Len(t, want, 1)
			require.Contains(t, got, want[0], "pods.go at %s", Version)
			continue
		}
		require.Equal(t, got, want, "It titles of test/e2e/%s at %s, in order", file, Version)
	}
}

func mark(title string, conformance bool) string {
	if conformance {
		return title + " [Conformance]"
	}
	return title
}

func upstreamRoot(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("GOMODCACHE")
	if cache == "" {
		out, err := exec.Command("go", "env", "GOMODCACHE").Output()
		if err != nil {
			t.Skipf("cannot locate the Go module cache (go env GOMODCACHE: %v): upstream titles not compared", err)
		}
		cache = strings.TrimSpace(string(out))
	}
	root := filepath.Join(cache, "k8s.io", "kubernetes@"+Version, "test", "e2e")
	if _, err := os.Stat(root); err != nil {
		t.Skipf("k8s.io/kubernetes@%s is not in the module cache (%v): `make deps` downloads it; upstream titles not compared", Version, err)
	}
	return root
}

// TestMarkdown keeps scenarios/CONFORMANCE.md what the table renders.
func TestMarkdown(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, Markdown(&b, Tests()))
	path := filepath.Join("..", "CONFORMANCE.md")
	if *update {
		require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./scenarios/conformance -run TestMarkdown -update")
	require.Equal(t, string(want), b.String(), "scenarios/CONFORMANCE.md is stale: go test ./scenarios/conformance -run TestMarkdown -update")
}
