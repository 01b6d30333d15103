package kube_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/internal/reexec"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/topology"
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
	fail := func(err error) { fmt.Println("ERROR", strings.ReplaceAll(err.Error(), "\n", " | ")); os.Exit(1) }
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
	line := "READY " + run.ID
	for _, p := range cp.Processes() {
		line += fmt.Sprintf(" %d", p.PID())
	}
	fmt.Println(line)
	select {}
}

// TestDownAfterKill9: when svcsim dies with SIGKILL, its control plane keeps
// running; removing the run (what `svcsim down` does) kills every component
// and leaves no namespace, mount or file.
func TestDownAfterKill9(t *testing.T) {
	privtest.RequireRoot(t)
	bin := binary(t)
	cmd, err := reexec.Command(ownerEntry)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(cmd.Env, kube.BinaryEnv+"="+bin)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lineC := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		lineC <- l
	}()
	var line string
	select {
	case line = <-lineC:
	case <-time.After(3 * time.Minute):
		t.Fatal("owner did not report")
	}
	f := strings.Fields(line)
	if len(f) != 6 || f[0] != "READY" {
		t.Fatalf("owner said %q", line)
	}
	id := f[1]
	var pids []int
	for _, s := range f[2:] {
		var pid int
		fmt.Sscan(s, &pid)
		pids = append(pids, pid)
	}
	t.Cleanup(func() { // safety net should the removal under test fail
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		names, _ := netns.List()
		for _, n := range names {
			if topology.RunOfNamespace(n) == id {
				_ = netns.DeleteNamed(n)
			}
		}
		if r, err := rundir.Open(id); err == nil {
			_ = r.Remove()
		}
	})

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
