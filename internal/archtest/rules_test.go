package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/svcsim/svcsim/"

// allow lists, per room (a path and everything below it; the longest
// matching room wins), the svcsim packages its non-test files may import
// besides its own room: a room and everything below it, or one package
// alone when written "=path". docs/ARCHITECTURE.md explains each line.
var allow = []struct {
	room    string
	imports []string
}{
	// The model is pure Go: no kernel, no plane, no datapath.
	{"sim", nil},
	// The node proxy's feed: every datapath reads it, it reads nothing.
	{"sim/state", nil},
	// The ground floor reaches nothing above it; hostinfo fills the
	// results schema's Host.
	{"internal", nil},
	{"internal/hostinfo", []string{"report/results"}},
	// The kernel side: namespaces, links, pods.
	{"topology", []string{"internal"}},
	// Datapaths and the node proxy see only the feed, never the model,
	// a control plane or the topology.
	{"modes", []string{"sim/state", "internal"}},
	// The genuine kube-proxy's datapaths are run by the kubernetes plane.
	{"modes/kubeproxy", []string{"modes", "sim/state", "internal", "plane/kube"}},
	// Add-ons see the model's objects and a pod's namespace.
	{"addons", []string{"sim", "topology", "internal"}},
	// The plane interface.
	{"plane", []string{"sim", "topology", "internal"}},
	// svcsim's own control plane ties model, topology, node proxies and
	// add-ons together; it asks a datapath's descriptor (package modes),
	// never a datapath package.
	{"plane/embedded", []string{"plane", "sim", "topology", "=modes", "modes/agent", "addons", "internal"}},
	{"plane/kube", []string{"plane", "sim", "topology", "addons", "internal"}},
	// The kubernetes plane reads kube-proxy's descriptors (its flags,
	// iptables backend, kernel and dump) from modes/kubeproxy, and runs
	// svcsim's own node proxies (modes/agent, as the embedded plane does),
	// fed from the API server by sim/feed: svcsim's datapaths on the same
	// objects as kube-proxy's. It never imports a datapath package.
	{"plane/kube/cluster", []string{"plane", "sim", "topology", "addons", "internal", "=modes", "modes/kubeproxy", "modes/agent"}},
	{"plane/daemon", []string{"plane", "sim/printer", "internal"}},
	{"plane/planetest", []string{"plane", "sim", "topology", "internal"}},
	// The results schema reads nothing; the report reads results and
	// the conformance map it shows.
	{"report/results", nil},
	{"report", []string{"scenarios/conformance"}},
	{"scenarios/conformance", nil},
	// The drivers.
	{"bench", []string{"plane", "modes", "topology", "report/results", "sim/state", "internal"}},
	{"kernellane", []string{"internal"}},
	{"scenarios", []string{"plane", "modes", "topology", "report", "sim", "bench", "addons", "internal"}},
	{"cmd", []string{""}}, // anything
}

// reachedOnlyBy lists rooms that only the named rooms (and their own) may
// import: the embedded plane, the daemon, the bench and the kernel lane are
// driven from the top, never reached from below.
var reachedOnlyBy = []struct {
	room string
	by   []string
}{
	{"plane/embedded", []string{"plane/daemon", "plane/planetest", "bench", "scenarios", "cmd"}},
	{"plane/daemon", []string{"cmd"}},
	{"bench", []string{"scenarios", "cmd"}},
	{"kernellane", []string{"cmd"}},
	{"scenarios", []string{"report"}}, // report shows scenarios/conformance
}

// within reports whether pkg is room or below it ("" is everything; "=p"
// is p alone).
func within(pkg, room string) bool {
	if p, ok := strings.CutPrefix(room, "="); ok {
		return pkg == p
	}
	return room == "" || pkg == room || strings.HasPrefix(pkg, room+"/")
}

// roomOf is the longest room of allow that holds pkg, and its index.
func roomOf(pkg string) (int, bool) {
	best, ok := -1, false
	for i, r := range allow {
		if within(pkg, r.room) && (!ok || len(r.room) > len(allow[best].room)) {
			best, ok = i, true
		}
	}
	return best, ok
}

// violations checks a package graph (package -> svcsim packages it
// imports, paths relative to the module) against the rules.
func violations(graph map[string][]string) []string {
	var out []string
	for pkg, imps := range graph {
		i, ok := roomOf(pkg)
		if !ok {
			out = append(out, pkg+": in no room of the rules (add it to allow and to docs/ARCHITECTURE.md)")
			continue
		}
		r := allow[i]
		for _, imp := range imps {
			if within(imp, r.room) {
				continue
			}
			allowed := false
			for _, a := range r.imports {
				allowed = allowed || within(imp, a)
			}
			if !allowed {
				out = append(out, pkg+" imports "+imp+": room "+r.room+" may import only "+strings.Join(r.imports, ", "))
			}
		}
	}
	for pkg, imps := range graph {
		for _, imp := range imps {
			for _, o := range reachedOnlyBy {
				if !within(imp, o.room) || within(pkg, o.room) {
					continue
				}
				allowed := false
				for _, b := range o.by {
					allowed = allowed || within(pkg, b)
				}
				if !allowed {
					out = append(out, pkg+" imports "+imp+": only "+strings.Join(o.by, ", ")+" may import "+o.room)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// moduleGraph parses the imports of every non-test Go file of the module
// (upstream/, a module of its own, and testdata left out).
func moduleGraph(t *testing.T) map[string][]string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	graph := map[string][]string{}
	seen := map[string]map[string]bool{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "upstream" || name == "testdata" || strings.HasPrefix(name, ".") || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		if seen[pkg] == nil {
			seen[pkg] = map[string]bool{}
			graph[pkg] = nil
		}
		for _, s := range f.Imports {
			p, _ := strconv.Unquote(s.Path.Value)
			if rest, ok := strings.CutPrefix(p, module); ok && !seen[pkg][rest] {
				seen[pkg][rest] = true
				graph[pkg] = append(graph[pkg], rest)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return graph
}

// TestImportRules: the tree keeps the arrows of docs/ARCHITECTURE.md.
func TestImportRules(t *testing.T) {
	graph := moduleGraph(t)
	if len(graph) < 40 || graph["plane/embedded"] == nil {
		t.Fatalf("read %d packages, plane/embedded among them: %v; the walk missed the tree", len(graph), graph["plane/embedded"] != nil)
	}
	for _, v := range violations(graph) {
		t.Error(v)
	}
}

// TestRulesCatch: the checker finds an arrow pointing the wrong way, a
// room reached from below and a package in no room.
func TestRulesCatch(t *testing.T) {
	got := violations(map[string][]string{
		"sim":            {"topology"},
		"modes/nftables": {"sim", "sim/state"},
		"plane/embedded": {"modes", "modes/agent", "modes/nftables"},
		"topology":       {"plane/embedded"},
		"sim/state":      nil,
		"elsewhere":      nil,
	})
	want := []string{
		"elsewhere: in no room",
		"modes/nftables imports sim: room modes",
		"plane/embedded imports modes/nftables: room plane/embedded",
		"sim imports topology: room sim",
		"topology imports plane/embedded: only",
		"topology imports plane/embedded: room topology",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d violations, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("violation %d = %q, want it to start with %q", i, got[i], want[i])
		}
	}
}
