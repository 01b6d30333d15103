package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/topology/hostcheck"
	"github.com/svcsim/svcsim/topology/topotest"
)

// TestInterruptsLeaveNothing: Ctrl-C (SIGINT) and kill -9 in the middle of
// `svcsim up`, `svcsim apply`, a scenario and `svcsim bench`. Afterwards
// `svcsim down` succeeds and leaves nothing: no run directory or file under
// the run root, and `svcsim leaks` lists nothing beyond what it listed
// before the test (namespaces, processes, mounts, daemon logs of dead
// runs); the host's links, addresses, routes, rules, net.* sysctls, both
// iptables backends and nft ruleset are byte-for-byte as before (hostcheck).
// kill -9 takes the verb's process and, where there is one, the run's
// owner (the daemon, the scenario binary) at once: nothing of theirs runs
// a cleanup. Every wait is bounded.
func TestInterruptsLeaveNothing(t *testing.T) {
	topotest.RequireRoot(t)
	if testing.Short() {
		t.Skip("builds svcsim and the scenarios, and starts eight clusters")
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
	results := filepath.Join(dir, "results")
	env := append(os.Environ(), rundir.RootEnv+"="+root, "SVCSIM_RESULTS_DIR="+results)
	cli := func(args ...string) *exec.Cmd {
		c := exec.Command(svcsim, args...)
		c.Env = env
		return c
	}
	baseline := filepath.Join(dir, "leaks-before.txt")
	if out, err := cli("leaks", "--save", baseline).CombinedOutput(); err != nil {
		t.Fatalf("svcsim leaks --save: %v\n%s", err, out)
	}
	host, err := hostcheck.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join("..", "..", "sim", "testdata", "seed")
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(bigApp), 0o644); err != nil {
		t.Fatal(err)
	}

	// midRun waits (bounded) until a run exists under root with at least
	// n namespaces, and returns its owner's pid.
	midRun := func(t *testing.T, n int, limit time.Duration) int {
		t.Helper()
		for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			runs, _ := rundir.List()
			for _, r := range runs {
				o, err := r.Owner()
				if err != nil || !o.Alive() {
					continue
				}
				nss, _ := filepath.Glob(filepath.Join("/run/netns", r.ID+"-*"))
				if len(nss) >= n {
					return o.PID
				}
			}
		}
		t.Fatalf("no run with %d namespaces under %s within %v", n, root, limit)
		return 0
	}
	t.Setenv(rundir.RootEnv, root) // for midRun's rundir.List

	type victim struct {
		name  string
		start func(t *testing.T) *exec.Cmd // returns the started verb
		ready func(t *testing.T) int       // waits for the middle, returns the run owner's pid (0: none)
	}
	up := victim{"up", func(t *testing.T) *exec.Cmd { return cli("up", "--nodes", "3", "-f", seed) },
		func(t *testing.T) int { return midRun(t, 4, time.Minute) }}
	apply := victim{"apply", func(t *testing.T) *exec.Cmd {
		if out, err := cli("up").CombinedOutput(); err != nil {
			t.Fatalf("svcsim up: %v\n%s", err, out)
		}
		return cli("apply", "-f", big)
	}, func(t *testing.T) int { time.Sleep(300 * time.Millisecond); return midRun(t, 5, time.Minute) }}
	scenario := victim{"scenario", func(t *testing.T) *exec.Cmd {
		c := exec.Command(scen, "-test.run", "TestNodePort|TestClusterIPDistribution", "-test.count=1")
		c.Env = append(env, "SVCSIM_MODES=nftables")
		return c
	}, func(t *testing.T) int { return midRun(t, 6, time.Minute) }}
	bench := victim{"bench", func(t *testing.T) *exec.Cmd {
		return cli("bench", "--quick", "--no-vm", "--no-plane", "--datapaths", "nftables", "-o", results)
	}, func(t *testing.T) int { return midRun(t, 1, time.Minute) }}

	for _, v := range []victim{up, apply, scenario, bench} {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
			t.Run(fmt.Sprintf("%s-%s", v.name, map[syscall.Signal]string{syscall.SIGINT: "ctrl-c", syscall.SIGKILL: "kill-9"}[sig]), func(t *testing.T) {
				c := v.start(t)
				var out bytes.Buffer
				c.Stdout, c.Stderr = &out, &out
				if err := c.Start(); err != nil {
					t.Fatal(err)
				}
				exited := make(chan error, 1)
				go func() { exited <- c.Wait() }()
				t.Cleanup(func() { _, _ = cli("down").CombinedOutput() }) // a failed case leaves no run for the next
				owner := v.ready(t)
				if err := c.Process.Signal(sig); errors.Is(err, os.ErrProcessDone) {
					<-exited
					t.Skipf("%s finished before its middle was reached (a quiet machine): nothing to interrupt", v.name)
				} else if err != nil {
					t.Fatal(err)
				}
				if sig == syscall.SIGKILL && owner > 0 && owner != c.Process.Pid {
					_ = syscall.Kill(owner, syscall.SIGKILL) // the daemon too
				}
				select {
				case err := <-exited:
					t.Logf("%s exited (%v) after %v:\n%s", v.name, err, sig, lastLines(out.String(), 8))
				case <-time.After(90 * time.Second):
					_ = c.Process.Kill()
					<-exited
					t.Errorf("%s did not exit within 90 s of %v:\n%s", v.name, sig, lastLines(out.String(), 20))
				}
				down := cli("down")
				if b, err := down.CombinedOutput(); err != nil {
					t.Errorf("svcsim down: %v\n%s", err, b)
				} else {
					t.Logf("svcsim down: %s", strings.TrimSpace(string(b)))
				}
				if b, err := cli("leaks", "--baseline", baseline).CombinedOutput(); err != nil {
					t.Errorf("after svcsim down: %v\n%s", err, b)
				}
				if ents, _ := os.ReadDir(root); len(ents) > 0 {
					var names []string
					for _, e := range ents {
						names = append(names, e.Name())
					}
					t.Errorf("left under the run root %s: %v", root, names)
				}
			})
		}
	}
	after, err := hostcheck.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if d := hostcheck.Diff(host, after); d != "" {
		t.Errorf("the host's network state changed:\n%s", d)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// bigApp is enough to keep `svcsim apply` busy for a while: 60 pods and a
// NodePort Service.
const bigApp = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: many
spec:
  replicas: 60
  selector:
    matchLabels:
      app: many
  template:
    metadata:
      labels:
        app: many
    spec:
      containers:
        - name: getip
          image: getip
---
apiVersion: v1
kind: Service
metadata:
  name: many
spec:
  type: NodePort
  selector:
    app: many
  ports:
    - port: 80
`
