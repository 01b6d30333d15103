// Package nginxtest runs the real `nginx -t` on a rendered configuration
// for the renderers' tests (package nginxconf's, the Gateway add-on's).
package nginxtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Run writes text to dir/nginx.conf and runs `nginx -t` on it in a
// network namespace of its own (unshare; as a normal user with a user
// namespace too): nginx -t opens no socket, and resolves no name since
// upstreams are addresses, but it never runs in the host's namespace. It
// skips t when nginx or unshare cannot run, and returns nginx's complaint.
func Run(t testing.TB, dir, text string) error {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			t.Skip("nginx is not installed (sudo make deps)")
		}
		bin = "/usr/sbin/nginx"
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	args, global := []string{"-n"}, "pid "+filepath.Join(dir, "t.pid")+";"
	if os.Geteuid() != 0 {
		// In a user namespace only root is mapped: nginx, root there, would
		// chown its temp paths to its default worker user (nobody), which the
		// kernel refuses (EINVAL); its workers run as root instead.
		args, global = []string{"-r", "-n"}, global+" user root;"
	}
	args = append(args, bin, "-t", "-q", "-p", dir+"/", "-c", conf, "-e", filepath.Join(dir, "error.log"), "-g", global)
	out, err := exec.Command("unshare", args...).CombinedOutput()
	if err != nil && strings.Contains(string(out), "unshare failed") {
		t.Skipf("cannot make a network namespace for nginx -t: %s", out)
	}
	if err != nil {
		return &Error{string(out)}
	}
	return nil
}

// Error is nginx -t's refusal.
type Error struct{ Out string }

func (e *Error) Error() string { return "nginx -t: " + e.Out }
