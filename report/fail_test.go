package report

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/report/results"
)

const failChildEnv = "SVCSIM_REPORT_FAIL_CHILD"

// TestWritesToAFailingDirectory: results and the report written to a
// directory that fails (a 16 KiB tmpfs that fills up, a read-only bind
// mount) return an error naming the file and the cause, and leave no file,
// partial or temporary, behind. It runs in a child with a mount namespace
// of its own (root ignores permissions, so only a real mount fails a
// write); the host's mount table is never touched.
func TestWritesToAFailingDirectory(t *testing.T) {
	if os.Getenv(failChildEnv) != "1" {
		privtest.RequireRoot(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestWritesToAFailingDirectory$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), failChildEnv+"=1", "TMPDIR="+t.TempDir())
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		out, err := cmd.CombinedOutput()
		t.Logf("child in a private mount namespace:\n%s", out)
		if err != nil || !strings.Contains(string(out), "--- PASS: TestWritesToAFailingDirectory") {
			t.Fatalf("child: %v", err)
		}
		return
	}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	parent, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	if self == "" || self == parent {
		t.Fatalf("not in a mount namespace of its own (%q, parent %q): touching nothing", self, parent)
	}
	big := results.Result{Scenario: "big", Mode: "nftables", Status: results.Pass, KernelState: strings.Repeat("-A KUBE-SVC-X -j KUBE-SEP-Y\n", 2000)}

	full := t.TempDir()
	if err := unix.Mount("tmpfs", full, "tmpfs", 0, "size=16k"); err != nil {
		t.Fatalf("tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(full, unix.MNT_DETACH) })
	err := results.WriteResult(full, big)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "scenario-big--nftables.json") {
		t.Errorf("WriteResult to a full tmpfs: %v, want ENOSPC naming the file", err)
	}
	empty(t, full)

	ro := t.TempDir()
	src := t.TempDir()
	if err := results.WriteResult(src, results.Result{Scenario: "small", Mode: "nftables", Status: results.Pass}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(src, ro, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(ro, unix.MNT_DETACH) })
	if err := unix.Mount("", ro, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	err = results.WriteResult(ro, big)
	if !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "scenario-big--nftables.json") {
		t.Errorf("WriteResult to a read-only mount: %v, want EROFS naming the file", err)
	}
	err = RenderFile(ro, filepath.Join(ro, "report.html"))
	if !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "report.html") {
		t.Errorf("RenderFile to a read-only mount: %v, want EROFS naming the file", err)
	}
	ents, _ := os.ReadDir(ro)
	if len(ents) != 1 || ents[0].Name() != "scenario-small--nftables.json" {
		t.Errorf("read-only directory holds %v, want only what was there", ents)
	}
	// The report of a readable directory into a full one.
	err = RenderFile(src, filepath.Join(full, "report.html"))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "report.html") {
		t.Errorf("RenderFile to a full tmpfs: %v, want ENOSPC naming the file", err)
	}
	empty(t, full)
}

func empty(t *testing.T, dir string) {
	t.Helper()
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %v after the failed write, want nothing", dir, names)
	}
}
