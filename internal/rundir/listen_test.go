package rundir

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// connectEnv makes the test binary a helper that connects to a socket and
// exits 0 on success, 13 on EACCES, 1 otherwise.
const connectEnv = "SVCSIM_TEST_CONNECT"

func TestMain(m *testing.M) {
	if p := os.Getenv(connectEnv); p != "" {
		c, err := net.Dial("unix", p)
		switch {
		case err == nil:
			_ = c.Close()
			os.Exit(0)
		case errors.Is(err, syscall.EACCES):
			os.Exit(13)
		default:
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// TestListenUnixRefusesOtherUsers: the socket is 0600 even under a
// permissive umask, its owner connects, and user nobody (uid 65534, a
// helper process started with syscall.Credential) is refused with EACCES
// although the directory lets everyone through. Needs root.
func TestListenUnixRefusesOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a helper as another user (run with sudo)")
	}
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir, err := os.MkdirTemp("/tmp", "svcsim-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "feed.sock")
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("socket mode %o, want 600", perm)
	}
	// The helper is this test binary, copied where nobody may run it.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(dir, "helper")
	if err := os.WriteFile(helper, self, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(cred *syscall.Credential) int {
		cmd := exec.Command(helper, "-test.run=^$")
		cmd.Env = append(os.Environ(), connectEnv+"="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Logf("helper: %s", out)
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("start helper: %v", err)
		}
		return 0
	}
	if code := run(nil); code != 0 {
		t.Fatalf("root's connection failed (exit %d)", code)
	}
	if code := run(&syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true}); code != 13 {
		t.Fatalf("user nobody's connection: exit %d, want 13 (EACCES)", code)
	}
}

// TestRunDirOwnerOnly: a run directory is 0700 whatever the umask, and as
// root, user nobody is refused (EACCES) even a socket in it that is open to
// everyone: the directory alone keeps other users out.
func TestRunDirOwnerOnly(t *testing.T) {
	// The root of runs (and its parent, /tmp) lets everyone through, so
	// the run dir alone is what stops other users.
	root, err := os.MkdirTemp("/tmp", "svcsim-runs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(RootEnv, root)
	old := syscall.Umask(0)
	r, err := New()
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Remove()
	for _, d := range []string{r.Dir, r.Path(pidsDir)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("%s has mode %o, want 700", d, perm)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("the connection as user nobody needs root (run with sudo); the modes were checked")
	}
	sock := r.Path("open.sock")
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(root, "helper")
	if err := os.WriteFile(helper, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(helper, "-test.run=^$")
	cmd.Env = append(os.Environ(), connectEnv+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 13 {
		t.Fatalf("user nobody connecting to a 0666 socket in the run dir: %v (%s), want exit 13 (EACCES)", err, out)
	}
}
