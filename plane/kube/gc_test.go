package kube_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/internal/reexec"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/topology"
	"github.com/svcsim/svcsim/topology/topotest"
)

const ownerEntry = "plane-kube-test-owner"

func init() { reexec.Register(ownerEntry, ownerChild) }

func TestMain(m *testing.M) {
	reexec.Init() // a re-executed child runs its entry point and exits here
	os.Exit(m.Run())
}

// ownerChild owns a run with a control plane, reports its run ID and the
// components' pids, and waits to be killed.
func ownerChild() {
	fail := topotest.Fail
	run, err := rundir.New()
	if err != nil {
		fail(err)
	}
	spec := topology.DefaultSpec(run, 1)
	spec.ControlPlaneIP = topology.DefaultControlPlaneIP
	topo, err := topology.Build(context.Background(), spec)
	if err != nil {
		fail(err)
	}
	cp, err := kube.Start(context.Background(), kube.Config{Run: run, NS: topo.ControlPlane(), AdvertiseIP: spec.ControlPlaneIP})
	if err != nil {
		fail(err)
	}
	var pids []int
	for _, p := range cp.Processes() {
		pids = append(pids, p.PID())
	}
	topotest.Ready(run.ID, pids...)
	select {}
}

// TestDownAfterKill9: when svcsim dies with SIGKILL, its control plane keeps
// running; removing the run (what `svcsim down` does) kills every component
// and leaves no namespace, mount or file.
func TestDownAfterKill9(t *testing.T) {
	privtest.RequireRoot(t)
	bin := binary(t)
	o := topotest.StartOwner(t, ownerEntry, []string{kube.BinaryEnv + "=" + bin}, 3*time.Minute)
	if len(o.PIDs) != 4 {
		t.Fatalf("owner reported pids %v, want the 4 components'", o.PIDs)
	}
	cmd, id, pids := o.Cmd, o.RunID, o.PIDs

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for _, pid := range pids {
		if procState(pid) == "" {
			t.Fatalf("pid %d died with its owner: the test would prove nothing", pid)
		}
	}
	removed, err := topology.RemoveRun(context.Background(), id)
	if err != nil {
		t.Fatalf("remove run %s: %v", id, err)
	}
	t.Logf("removed: %v", removed)
	for _, pid := range pids {
		if st := procState(pid); st != "" && st != "Z" {
			t.Errorf("pid %d survived svcsim down", pid)
		}
	}
	names, _ := netns.List()
	for _, n := range names {
		if topology.RunOfNamespace(n) == id {
			t.Errorf("namespace %s left", n)
		}
	}
	if _, err := rundir.Open(id); err == nil {
		t.Errorf("run directory of %s left", id)
	}
	if m := mountsMentioning(t, id); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
}
