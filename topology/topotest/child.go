package topotest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/reexec"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/topology"
)

// Owner is a re-executed test process that owns a run, for tests of what a
// run killed with SIGKILL leaves and what removes it (GC, svcsim down).
type Owner struct {
	Cmd   *exec.Cmd
	RunID string
	// PIDs are the processes the child reported (its run's, started by
	// it).
	PIDs []int
}

// Ready is the child's side: it reports its run and processes on stdout
// ("READY <run id> <pid>...") for StartOwner.
func Ready(runID string, pids ...int) {
	line := "READY " + runID
	for _, p := range pids {
		line += " " + strconv.Itoa(p)
	}
	fmt.Println(line)
}

// Fail is the child's side of an error: StartOwner fails the test with it.
func Fail(err error) {
	fmt.Println("ERROR", strings.ReplaceAll(err.Error(), "\n", " | "))
	os.Exit(1)
}

// StartOwner starts the reexec entry point entry (with env added to its
// environment), waits up to wait for its Ready line and returns it. Cleanup
// kills the child and, as a safety net should the removal under test fail,
// kills the reported processes and removes the run's namespaces and
// directory.
func StartOwner(tb testing.TB, entry string, env []string, wait time.Duration) *Owner {
	tb.Helper()
	cmd, err := reexec.Command(entry)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lineC := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		lineC <- l
	}()
	var line string
	select {
	case line = <-lineC:
	case <-time.After(wait):
		tb.Fatalf("%s did not report within %v", entry, wait)
	}
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "READY" {
		tb.Fatalf("%s said %q", entry, line)
	}
	o := &Owner{Cmd: cmd, RunID: f[1]}
	for _, s := range f[2:] {
		pid, err := strconv.Atoi(s)
		if err != nil {
			tb.Fatalf("%s said %q: %v", entry, line, err)
		}
		o.PIDs = append(o.PIDs, pid)
	}
	tb.Cleanup(func() {
		for _, pid := range o.PIDs {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		names, _ := netns.List()
		for _, n := range names {
			if topology.RunOfNamespace(n) == o.RunID {
				_ = netns.DeleteNamed(n)
			}
		}
		if r, err := rundir.Open(o.RunID); err == nil {
			_ = r.Remove()
		}
	})
	return o
}
