package ingress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/svcsim/svcsim/addons"
)

// Nginx is one nginx master process (and its workers) running in a
// network namespace, as `nginx -p DIR -c DIR/nginx.conf -e DIR/error.log
// -g 'daemon off; pid DIR/nginx.pid;'`: every file it writes (pid, lock,
// logs, temp files) is under DIR, and it never listens anywhere but in its
// namespace.
type Nginx struct {
	bin, dir string
	ns       addons.Namespace
	log      io.Writer
	status   int

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	stop    sync.Once
	onExit  func(pid int)
}

// sbinNginx is where Debian's package puts nginx, outside a user's PATH.
var sbinNginx = "/usr/sbin/nginx"

// Binary finds nginx: $SVCSIM_NGINX, else nginx on PATH or in /usr/sbin.
func Binary() (string, error) {
	if b := os.Getenv("SVCSIM_NGINX"); b != "" {
		if _, err := os.Stat(b); err != nil {
			return "", fmt.Errorf("nginx not found at SVCSIM_NGINX=%s: %w", b, err)
		}
		return b, nil
	}
	if b, err := exec.LookPath("nginx"); err == nil {
		return b, nil
	}
	if _, err := os.Stat(sbinNginx); err == nil {
		return sbinNginx, nil
	}
	return "", errors.New("nginx is not installed: run `sudo make deps` (Debian's nginx package, installed without starting it)")
}

func (n *Nginx) conf() string { return filepath.Join(n.dir, "nginx.conf") }

func (n *Nginx) args(conf string, extra ...string) []string {
	return append([]string{"-p", n.dir + "/", "-c", conf, "-e", filepath.Join(n.dir, "error.log")}, extra...)
}

// Test runs `nginx -t` on conf inside the namespace (where its paths and
// certificates are checked as the master will read them) with a pid file
// of its own, removed after. It returns nginx's complaint on failure.
func (n *Nginx) Test(conf string) error {
	pid := filepath.Join(n.dir, "test.pid")
	cmd := exec.Command(n.bin, n.args(conf, "-t", "-q", "-g", "pid "+pid+";")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := n.ns.Do(cmd.Run)
	_ = os.Remove(pid)
	if err != nil {
		return fmt.Errorf("nginx -t %s: %w: %s", conf, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// startNginx starts the master on dir/nginx.conf (already written and
// tested) in ns. onStart records its pid (for `svcsim down` after a
// crash), onExit forgets it.
func startNginx(bin, dir string, ns addons.Namespace, status int, log io.Writer, onStart func(int) error, onExit func(int)) (*Nginx, error) {
	n := &Nginx{bin: bin, dir: dir, ns: ns, log: log, status: status, done: make(chan struct{}), onExit: onExit}
	cmd := exec.Command(bin, n.args(n.conf(), "-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+";")...)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group: Stop can end the workers with the master.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := ns.Do(cmd.Start); err != nil {
		return nil, fmt.Errorf("start nginx in %s: %w", ns.Name(), err)
	}
	n.cmd = cmd
	go func() { n.waitErr = cmd.Wait(); close(n.done) }()
	if onStart != nil {
		if err := onStart(cmd.Process.Pid); err != nil {
			_ = n.Stop(time.Second)
			return nil, err
		}
	}
	return n, nil
}

// StartNginx starts nginx on dir/nginx.conf (already written and tested)
// in ns, its status server on 127.0.0.1:status (/svcsim/generation), for
// another controller on the same nginx (the Gateway add-on's).
func StartNginx(bin, dir string, ns addons.Namespace, status int, log io.Writer, onStart func(int) error, onExit func(int)) (*Nginx, error) {
	return startNginx(bin, dir, ns, status, log, onStart, onExit)
}

// NewNginxTester returns an Nginx that only runs `nginx -t` (Test) for
// configurations under dir in ns.
func NewNginxTester(bin, dir string, ns addons.Namespace) *Nginx {
	return &Nginx{bin: bin, dir: dir, ns: ns}
}

// NSClient is an HTTP client whose connections are opened inside ns.
func NSClient(ns addons.Namespace, timeout time.Duration) *http.Client { return nsClient(ns, timeout) }

// PID is the master's process id.
func (n *Nginx) PID() int { return n.cmd.Process.Pid }

// Exited reports whether the master has ended.
func (n *Nginx) Exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// Reload asks the master to load its configuration again (SIGHUP): new
// workers start on the new configuration, old ones stop accepting, finish
// the requests they have and exit; the listening sockets stay open
// throughout, so no connection is refused. It returns the workers that
// ran before (for WaitReloaded).
func (n *Nginx) Reload() ([]int, error) {
	if n.Exited() {
		return nil, fmt.Errorf("nginx exited: %v", n.waitErr)
	}
	old := n.workers()
	return old, n.cmd.Process.Signal(syscall.SIGHUP)
}

// workers lists the master's child processes.
func (n *Nginx) workers() []int {
	master := n.cmd.Process.Pid
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ")".
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == strconv.Itoa(master) {
			out = append(out, pid)
		}
	}
	return out
}

// WaitReloaded waits until the workers serve generation gen and every
// worker of before has stopped accepting (it has exited or set its title
// to nginx's "worker process is shutting down", which it does as it closes
// its listening sockets): from then on every new connection gets the new
// configuration.
func (n *Nginx) WaitReloaded(c *http.Client, gen uint64, before []int, timeout time.Duration) error {
	start := time.Now()
	if err := n.WaitGeneration(c, gen, timeout); err != nil {
		return err
	}
	for {
		accepting := 0
		for _, pid := range before {
			title, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err == nil && len(title) > 0 && !strings.Contains(string(title), "shutting down") {
				accepting++
			}
		}
		if accepting == 0 {
			return nil
		}
		if time.Since(start) > timeout {
			return fmt.Errorf("%d old nginx workers still accepting after %v", accepting, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Stop shuts nginx down gracefully (SIGQUIT: workers finish their
// requests), and after timeout kills its whole process group. The pid file
// goes with it.
func (n *Nginx) Stop(timeout time.Duration) error {
	var err error
	n.stop.Do(func() {
		_ = n.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-n.done:
		case <-time.After(timeout):
			_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
			<-n.done
			err = fmt.Errorf("nginx did not quit within %v: killed", timeout)
		}
		// Workers left by a master that died first.
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		if n.onExit != nil {
			n.onExit(n.cmd.Process.Pid)
		}
		_ = os.Remove(filepath.Join(n.dir, "nginx.pid"))
	})
	return err
}

// client is an HTTP client whose connections are opened inside the
// namespace (the status server listens on its loopback).
func nsClient(ns addons.Namespace, timeout time.Duration) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = (&net.Dialer{Timeout: timeout}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

// Generation asks the status server which configuration generation the
// running workers serve.
func (n *Nginx) Generation(c *http.Client) (uint64, error) {
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/svcsim/generation", n.status))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status server: %s", resp.Status)
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// WaitGeneration waits until the workers serve generation gen (a reload
// has taken), or until timeout.
func (n *Nginx) WaitGeneration(c *http.Client, gen uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		g, err := n.Generation(c)
		if err == nil && g >= gen {
			return nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("serving generation %d", g)
		}
		if n.Exited() {
			return fmt.Errorf("nginx exited: %v (%s)", n.waitErr, tail(filepath.Join(n.dir, "error.log")))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nginx did not serve generation %d within %v: %v", gen, timeout, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tail returns the last lines of a log file, for errors.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "; ")
}
