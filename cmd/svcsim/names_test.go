package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/plane/daemon"
	"github.com/svcsim/svcsim/topology/topotest"
)

// TestNamedClustersSideBySide: `svcsim --name a up` and `svcsim --name b
// up` run two clusters at once (the seed on each, different datapaths);
// every verb works on the one it names, a second up of a name is refused,
// down of one leaves the other serving; and two scenario binaries run side
// by side and pass. Nothing is left afterwards (svcsim leaks, the run root).
func TestNamedClustersSideBySide(t *testing.T) {
	topotest.RequireRoot(t)
	if testing.Short() {
		t.Skip("builds svcsim and the scenarios, and starts two clusters")
	}
	dir := t.TempDir()
	svcsim := filepath.Join(dir, "svcsim")
	scen := filepath.Join(dir, "scenarios.test")
	for _, argv := range [][]string{{"go", "build", "-o", svcsim, "."}, {"go", "test", "-c", "-o", scen, "../../scenarios"}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	root := filepath.Join(dir, "runs")
	env := append(os.Environ(), rundir.RootEnv+"="+root, "SVCSIM_RESULTS_DIR="+filepath.Join(dir, "results"))
	run := func(args ...string) (string, error) {
		c := exec.Command(svcsim, args...)
		c.Env = env
		out, err := c.CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("svcsim %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	baseline := filepath.Join(dir, "leaks-before.txt")
	must("leaks", "--save", baseline)
	t.Cleanup(func() {
		_, _ = run("--name", "a", "down")
		_, _ = run("--name", "b", "down")
	})
	seed := filepath.Join("..", "..", "sim", "testdata", "seed")
	must("--name", "a", "up", "--mode", "nftables", "-f", seed)
	must("--name", "b", "up", "--mode", "userspace", "-f", seed)
	if out, err := run("--name", "a", "up"); err == nil || !strings.Contains(out, "already running") {
		t.Errorf("a second up of cluster a: %v\n%s", err, out)
	}
	if out, err := run("--name", "Not_A_Label", "get", "nodes"); err == nil {
		t.Errorf("a bad cluster name was accepted:\n%s", out)
	}
	ids := map[string]string{}
	for _, n := range []string{"a", "b"} {
		b, err := os.ReadFile(filepath.Join(root, daemon.CurrentFile+"-"+n))
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = strings.TrimSpace(string(b))
	}
	if ids["a"] == ids["b"] || !rundir.ValidID(ids["a"]) || !rundir.ValidID(ids["b"]) {
		t.Fatalf("run IDs %v", ids)
	}
	curl := []string{"exec", "external", "--", "curl", "-sS", "--max-time", "3", "http://198.18.0.11:30080/info"}
	for _, n := range []string{"a", "b"} {
		if out := must("--name", n, "get", "nodes"); !strings.Contains(out, "node2") {
			t.Errorf("cluster %s: get nodes:\n%s", n, out)
		}
		if out := must(append([]string{"--name", n}, curl...)...); !strings.Contains(out, `"Msg":"success"`) {
			t.Errorf("cluster %s: NodePort answer %q", n, out)
		}
	}
	if out := must("--name", "a", "dump", "node1"); !strings.Contains(out, "table ip kube-proxy") {
		t.Errorf("cluster a runs nftables? dump:\n%.400s", out)
	}
	must("--name", "a", "down")
	if _, err := rundir.Open(ids["a"]); err == nil {
		t.Errorf("cluster a's run %s is still there", ids["a"])
	}
	if out := must(append([]string{"--name", "b"}, curl...)...); !strings.Contains(out, `"Msg":"success"`) {
		t.Errorf("cluster b after a's down: %q", out)
	}
	must("--name", "b", "down")

	// Two scenario binaries at once, each on its own clusters.
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i, mode := range []string{"nftables", "userspace"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := exec.Command(scen, "-test.run", "TestNodePort|TestEndpointChanges", "-test.count=1", "-test.v")
			c.Env = append(env, "SVCSIM_MODES="+mode)
			b, err := c.CombinedOutput()
			outs[i], errs[i] = string(b), err
		}()
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil || !strings.Contains(outs[i], "--- PASS: TestNodePort") {
			t.Errorf("scenario binary %d: %v\n%s", i, errs[i], lastLines(outs[i], 30))
		}
	}
	if out, err := run("leaks", "--baseline", baseline); err != nil {
		t.Errorf("leaks: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(root); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("left under the run root: %v", names)
	}
}
