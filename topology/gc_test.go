package topology_test

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/internal/reexec"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/topology"
	"github.com/svcsim/svcsim/topology/topotest"
)

const crashEntry = "topology-test-crash-child"

func init() { reexec.Register(crashEntry, crashChild) }

func TestMain(m *testing.M) {
	reexec.Init() // a re-executed child runs its entry point and exits here
	os.Exit(m.Run())
}

// crashChild builds a topology with a pod and two sleeping processes (one
// recorded with RecordPID, one only inside a pod namespace), reports them on
// stdout and waits to be killed.
func crashChild() {
	fail := topotest.Fail
	run, err := rundir.New()
	if err != nil {
		fail(err)
	}
	topo, err := topology.Build(context.Background(), topology.DefaultSpec(run, 2))
	if err != nil {
		fail(err)
	}
	pod, err := topo.AddPod(context.Background(), podA)
	if err != nil {
		fail(err)
	}
	sleep := func(ns *netns.NS) int {
		cmd := exec.Command("sleep", "600")
		if err := ns.Do(cmd.Start); err != nil {
			fail(err)
		}
		return cmd.Process.Pid
	}
	recorded := sleep(topo.Node("node1").NS)
	if err := run.RecordPID(recorded); err != nil {
		fail(err)
	}
	unrecorded := sleep(pod.NS)
	topotest.Ready(run.ID, recorded, unrecorded)
	select {}
}

// startCrashChild starts crashChild and returns it with its run ID and the
// pids of its two sleeping processes.
func startCrashChild(t *testing.T) (cmd *exec.Cmd, id string, recorded, unrecorded int) {
	t.Helper()
	o := topotest.StartOwner(t, crashEntry, nil, 60*time.Second)
	if len(o.PIDs) != 2 {
		t.Fatalf("crash child reported pids %v, want 2", o.PIDs)
	}
	return o.Cmd, o.RunID, o.PIDs[0], o.PIDs[1]
}

func alive(pid int) bool {
	st, err := rundir.StartTime(pid)
	return err == nil && rundir.Proc{PID: pid, Start: st}.Alive()
}

// After the owner is killed with SIGKILL, GC removes every namespace and
// process of its run, and the run directory, while a live topology in the
// same root is left alone.
func TestGCAfterKill9(t *testing.T) {
	privtest.RequireRoot(t)
	live := topotest.NewTestTopology(t, 1)
	if _, err := live.AddPod(context.Background(), podA); err != nil {
		t.Fatal(err)
	}

	cmd, id, recorded, unrecorded := startCrashChild(t)
	left, err := topology.Leftovers(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) < 5 || !alive(recorded) || !alive(unrecorded) {
		t.Fatalf("child's topology not in place: %v", left)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	run, err := rundir.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	if run.Alive() {
		t.Fatal("run of a killed owner reported alive")
	}

	// Leaks (svcsim leaks) lists the dead run's leftovers, not the live
	// topology's, and removes nothing.
	leaks, err := topology.Leaks()
	if err != nil {
		t.Fatal(err)
	}
	listed := strings.Join(leaks, "\n")
	for _, want := range []string{"namespace " + id + "-node1", "run dir " + run.Dir, "process " + strconv.Itoa(recorded)} {
		if !strings.Contains(listed, want) {
			t.Errorf("Leaks lacks %q:\n%s", want, listed)
		}
	}
	for _, n := range live.Namespaces() {
		if strings.Contains(listed, "namespace "+n+"\n") || strings.HasSuffix(listed, "namespace "+n) {
			t.Errorf("Leaks lists the live namespace %s", n)
		}
	}

	removed, err := topology.GC(context.Background(), false)
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	t.Logf("GC removed %d items", len(removed))
	if leaks, err := topology.Leaks(); err != nil || strings.Contains(strings.Join(leaks, "\n"), id) {
		t.Errorf("Leaks after GC: %v %v", leaks, err)
	}
	if left, _ := topology.Leftovers(id); len(left) != 0 {
		t.Fatalf("after GC: %v", left)
	}
	deadline := time.Now().Add(5 * time.Second)
	for (alive(recorded) || alive(unrecorded)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(recorded) || alive(unrecorded) {
		t.Fatalf("processes survived GC: recorded %v unrecorded %v", alive(recorded), alive(unrecorded))
	}
	joined := strings.Join(removed, "\n")
	for _, want := range []string{"namespace " + id + "-node1", "namespace " + id + "-pod-default_a", "run dir"} {
		if !strings.Contains(joined, want) {
			t.Errorf("GC report lacks %q:\n%s", want, joined)
		}
	}

	// The live topology is untouched and still works.
	for _, n := range live.Namespaces() {
		if !netns.Exists(n) {
			t.Fatalf("GC removed live namespace %s", n)
		}
	}
	if _, pod := mustGet(t, live.Node("node1").NS, "10.244.1.2:80", "/name"); pod != "default/a" {
		t.Fatalf("live pod answers as %q after GC", pod)
	}
}

// A namespace with a run prefix but no run directory is an orphan: GC
// removes it unless a live process holds it open.
func TestGCOrphanNamespace(t *testing.T) {
	privtest.RequireRoot(t)
	name := "svs0000ff-orphan"
	ns, err := netns.New(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Delete() })
	if _, err := topology.GC(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if !netns.Exists(name) {
		t.Fatal("GC removed an orphan that this process holds open")
	}
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	removed, err := topology.GC(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if netns.Exists(name) || !strings.Contains(strings.Join(removed, "\n"), name) {
		t.Fatalf("orphan not removed: %v", removed)
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	run := privtest.NewRun(t)
	topo, err := topology.Build(context.Background(), topology.DefaultSpec(run, 2))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = topo.Close()
		}
	})
	pods := addPods(t, topo, podA, podB, podC, podHN)
	if _, err := topo.AddHost(context.Background(), "db", netip.MustParseAddr("172.188.2.89"), nil); err != nil {
		t.Fatal(err)
	}
	// A process inside a pod namespace (as `svcsim exec` would start) and a
	// client socket the caller forgot to close.
	cmd := exec.Command("sleep", "600")
	if err := pods[0].NS.Do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := topology.DialContext(ctx, pods[0].NS, "tcp", "10.244.2.2:80")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if err := topo.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("process inside the pod survived Close")
	}
	left, err := topology.Leftovers(run.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Only the run dir (owned by the caller) remains.
	if len(left) != 1 || !strings.HasPrefix(left[0], "run dir") {
		t.Fatalf("after Close: %v", left)
	}
	if _, err := os.Stat(run.Path(topology.StateFile)); !os.IsNotExist(err) {
		t.Fatalf("state file left: %v", err)
	}
}

// Two runs with the same address plan at once do not see each other.
func TestTwoTopologies(t *testing.T) {
	t1 := topotest.NewTestTopology(t, 2)
	t2 := topotest.NewTestTopology(t, 2)
	if t1.Run().ID == t2.Run().ID {
		t.Fatal("same run id")
	}
	a1 := addPods(t, t1, podA)[0]
	c2 := addPods(t, t2, podA, podC)
	if _, pod := mustGet(t, c2[1].NS, "10.244.1.2:80", "/name"); pod != "default/a" {
		t.Fatalf("t2 c -> a: %q", pod)
	}
	// t1 has no pod c: the same address is unanswered there.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c, err := topology.DialContext(ctx, a1.NS, "tcp", "10.244.2.2:80"); err == nil {
		c.Close()
		t.Fatal("t1 reached t2's pod")
	}
	if err := t2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, pod := mustGet(t, t1.Node("node2").NS, "10.244.1.2:80", "/name"); pod != "default/a" {
		t.Fatalf("t1 after t2 closed: %q", pod)
	}
}

// A Build that fails half-way removes what it made.
func TestBuildFailureUndoes(t *testing.T) {
	run := privtest.NewRun(t)
	// Occupy node2's namespace name so Build fails after node1.
	blocker, err := netns.New(topology.NodeNSName(run.ID, "node2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = blocker.Delete() })
	if _, err := topology.Build(context.Background(), topology.DefaultSpec(run, 2)); err == nil {
		t.Fatal("Build succeeded over an existing namespace")
	}
	left, _ := topology.Leftovers(run.ID)
	want := []string{"namespace " + blocker.Name(), "run dir " + run.Dir}
	if strings.Join(left, ",") != strings.Join(want, ",") {
		t.Fatalf("after failed Build: %v, want %v", left, want)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := topology.Build(ctx, topology.DefaultSpec(run, 1)); err == nil {
		t.Fatal("Build with a cancelled context succeeded")
	}
	if left, _ := topology.Leftovers(run.ID); len(left) != 2 {
		t.Fatalf("after cancelled Build: %v", left)
	}
}

// RemoveRun removes a live run of another process, owner included, and
// nothing else.
func TestRemoveRunLive(t *testing.T) {
	privtest.RequireRoot(t)
	other := topotest.NewTestTopology(t, 1)
	cmd, id, recorded, unrecorded := startCrashChild(t)
	removed, err := topology.RemoveRun(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(removed, "\n"), "owner process") {
		t.Fatalf("owner not reported: %v", removed)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("owner exited cleanly; want killed by a signal")
	}
	if left, _ := topology.Leftovers(id); len(left) != 0 {
		t.Fatalf("after RemoveRun: %v", left)
	}
	deadline := time.Now().Add(5 * time.Second)
	for (alive(recorded) || alive(unrecorded)) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(recorded) || alive(unrecorded) {
		t.Fatal("run processes survived RemoveRun")
	}
	if left, _ := topology.Leftovers(other.Run().ID); len(left) < 4 {
		t.Fatalf("other run damaged: %v", left)
	}
}
