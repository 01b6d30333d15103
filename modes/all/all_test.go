package all_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/modes"
	_ "github.com/svcsim/svcsim/modes/all"
)

// The table of datapaths has svcsim's own in the seed's order (userspace,
// iptables, IPVS), then nftables, and leaves the "iptables" alias out. A
// datapath added later may stand anywhere its Report.Order puts it: adding
// one is its own package and its import line in all.go, nothing here.
func TestTableOrder(t *testing.T) {
	var names []string
	for _, d := range modes.Table() {
		names = append(names, d.Name)
	}
	want := []string{"userspace", "iptables/legacy", "iptables/nft", "ipvs", "nftables"}
	var known []string
	for _, n := range names {
		if slices.Contains(want, n) {
			known = append(known, n)
		}
	}
	if !slices.Equal(known, want) {
		t.Fatalf("Table() = %v: svcsim's own datapaths in the order %v, want %v", names, known, want)
	}
	if slices.Contains(names, "iptables") {
		t.Fatalf("Table() = %v lists the iptables alias", names)
	}
	alias, ok := modes.Lookup("iptables")
	if !ok || !slices.Equal(alias.AliasOf, []string{"iptables/legacy", "iptables/nft"}) {
		t.Fatalf("iptables alias: %+v %v", alias, ok)
	}
	for _, a := range alias.AliasOf {
		if _, ok := modes.Lookup(a); !ok {
			t.Errorf("alias names unregistered %s", a)
		}
	}
}

// Traits the scenarios rely on, stated once per datapath.
func TestTraits(t *testing.T) {
	for name, want := range map[string]struct {
		choice   modes.Choice
		affinity modes.Affinity
		relay    bool
		resync   bool
	}{
		"userspace":       {modes.RoundRobin, modes.AffinityIdle, true, false},
		"iptables/legacy": {modes.Random, modes.AffinityIdle, false, true},
		"iptables/nft":    {modes.Random, modes.AffinityIdle, false, true},
		"ipvs":            {modes.RoundRobin, modes.AffinityTemplate, false, false},
		"nftables":        {modes.Random, modes.AffinityIdle, false, true},
	} {
		d, ok := modes.Lookup(name)
		if !ok {
			t.Fatalf("%s not registered", name)
		}
		tr := d.Traits
		if tr.Choice != want.choice || tr.Affinity != want.affinity || tr.Relay != want.relay || (tr.FullResync != nil) != want.resync {
			t.Errorf("%s traits %+v, want %+v", name, tr, want)
		}
	}
}

// No code outside modes/ (tests aside) decides anything by a datapath's
// name: it asks the descriptor. The test parses every non-test Go file of
// the module outside modes/ and testdata/ and reports comparisons (==, !=,
// switch cases) and prefix, suffix or containment calls with a literal that
// is a registered name or a prefix of one ("iptables/"). plane/kube is not
// exempt: the kubernetes plane reads kube-proxy's flags, iptables backend,
// kernel and dump from the modes/kubeproxy descriptors.
func TestNoModeNameComparisons(t *testing.T) {
	root := moduleRoot(t)
	names := map[string]bool{}
	for _, n := range modes.Names() {
		names[n] = true
	}
	isName := func(e ast.Expr) (string, bool) {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil || s == "" {
			return "", false
		}
		if names[s] {
			return s, true
		}
		for n := range names {
			if strings.HasPrefix(n, s) && strings.HasSuffix(s, "/") {
				return s, true
			}
		}
		return "", false
	}
	calls := map[string]bool{"HasPrefix": true, "HasSuffix": true, "CutPrefix": true, "TrimPrefix": true,
		"Contains": true, "EqualFold": true, "Index": true}
	var found []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == "modes" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		report := func(n ast.Node, lit string) {
			found = append(found, fmt.Sprintf("%s: %q", fset.Position(n.Pos()), lit))
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BinaryExpr:
				if n.Op == token.EQL || n.Op == token.NEQ {
					for _, e := range []ast.Expr{n.X, n.Y} {
						if s, ok := isName(e); ok {
							report(n, s)
						}
					}
				}
			case *ast.CaseClause:
				for _, e := range n.List {
					if s, ok := isName(e); ok {
						report(e, s)
					}
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && calls[sel.Sel.Name] {
					for _, a := range n.Args {
						if s, ok := isName(a); ok {
							report(n, s)
						}
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Errorf("mode names compared outside modes/ (ask the descriptor, modes.Lookup(name).Traits/Kernel/..., instead):\n%s", strings.Join(found, "\n"))
	}
}

// moduleRoot is the directory of go.mod above the working directory.
func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	t.Fatalf("no go.mod above %s", dir)
	return ""
}
