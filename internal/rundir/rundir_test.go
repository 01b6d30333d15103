package rundir

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestParseStat(t *testing.T) {
	// comm with spaces and a ')' must not shift the fields.
	s := "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615\n"
	start, state, err := parseStat(s)
	if err != nil {
		t.Fatal(err)
	}
	if start != 987654 || state != "S" {
		t.Fatalf("got start %d state %q, want 987654 S", start, state)
	}
	if _, _, err := parseStat("garbage"); err == nil {
		t.Fatal("want error for malformed stat")
	}
}

func TestRunLifecycle(t *testing.T) {
	t.Setenv(RootEnv, t.TempDir())
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if !ValidID(r.ID) || len(r.ID) != 9 {
		t.Fatalf("bad id %q", r.ID)
	}
	if !r.Alive() {
		t.Fatal("own run not alive")
	}
	o, err := Open(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if o.Dir != r.Dir || o.Path("x") != filepath.Join(r.Dir, "x") {
		t.Fatalf("Open gave %+v, want %+v", o, r)
	}
	if _, err := Open("svszzzzzz"); err == nil {
		t.Fatal("Open accepted an invalid id")
	}
	if _, err := Open("svs000000"); err == nil {
		t.Fatal("Open accepted a missing run")
	}
	runs, err := List()
	if err != nil || len(runs) != 1 || runs[0].ID != r.ID {
		t.Fatalf("List = %v, %v", runs, err)
	}
	if err := r.RecordPID(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	ps, err := r.PIDs()
	if err != nil || len(ps) != 1 || ps[0].PID != os.Getpid() || !ps[0].Alive() {
		t.Fatalf("PIDs = %v, %v", ps, err)
	}
	if err := r.ForgetPID(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if ps, _ := r.PIDs(); len(ps) != 0 {
		t.Fatalf("PIDs after Forget = %v", ps)
	}
	if err := r.Remove(); err != nil {
		t.Fatal(err)
	}
	if runs, _ := List(); len(runs) != 0 {
		t.Fatalf("List after Remove = %v", runs)
	}
}

// A run whose owner exited is dead, and so is one whose recorded start time
// does not match (pid reuse).
func TestAliveDeadOwner(t *testing.T) {
	t.Setenv(RootEnv, t.TempDir())
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	dead := cmd.Process.Pid
	r := &Run{ID: "svsabcdef", Dir: filepath.Join(Root(), "svsabcdef")}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeProc(r.Path(ownerFile), dead, 1); err != nil {
		t.Fatal(err)
	}
	if r.Alive() {
		t.Fatal("run of exited owner reported alive")
	}
	start, err := StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := writeProc(r.Path(ownerFile), os.Getpid(), start+1); err != nil {
		t.Fatal(err)
	}
	if r.Alive() {
		t.Fatal("run with mismatched start time reported alive")
	}
	if err := writeProc(r.Path(ownerFile), os.Getpid(), start); err != nil {
		t.Fatal(err)
	}
	if !r.Alive() {
		t.Fatal("run of live owner reported dead")
	}
}
