package kube

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/rundir"
)

// Process is one component running from the multi-call binary inside a
// network namespace, recorded in the run directory so that GC (svcsim down)
// kills it should its owner die first.
type Process struct {
	// Name is the component ("kube-apiserver"); the process sees it as its
	// argv[0], which is how the binary dispatches, and ps shows it.
	Name string
	// Log is the file receiving its stdout and stderr.
	Log string

	cmd     *exec.Cmd
	run     *rundir.Run
	logFile *os.File
	done    chan struct{}
	waitErr error
}

// processSpec describes a process to start.
type processSpec struct {
	Binary string
	Name   string
	Args   []string
	// Env is the complete environment (nil: a minimal one, see baseEnv).
	Env []string
	// Dir is the working directory ("": the caller's).
	Dir string
	// Log is the log file's path; Stdin is optional.
	Log   string
	Stdin io.Reader
	// Stdout and Stderr, when set, replace the log file for that stream.
	Stdout, Stderr io.Writer
	// PrivateRun, when set, names the tmpfs the process gets as its own
	// /run, in a mount namespace of its own (see privateRun).
	PrivateRun string
	// UserNS: the process also enters the user namespace that owns ns (a
	// node made with netns.NewInUserNS), see inUserNS.
	UserNS bool
}

// privateRun turns cmd, about to start spec, into one that gets a private
// /run, as a real node has: the child leaves the host's mount namespace
// (CLONE_NEWNS; Go's exec then makes every mount in it private, MS_REC |
// MS_PRIVATE on /, so nothing propagates back to the host), and a shell
// there opens the run directory, mounts a small tmpfs named
// spec.PrivateRun on /run, binds the run directory back at its own path
// through that descriptor (the run directory lives under /run/svcsim and
// holds the component's kubeconfig and its iptables PATH; `mount
// --no-canonicalize` keeps /proc/self/fd/3 from being resolved to the new,
// empty path) and execs the component (same pid; the multi-call binary
// takes its name as first argument). The tmpfs and the namespace end with
// the process: the host's mount table never sees them. iptables-legacy's
// lock, /run/xtables.lock, is then the node's own.
func privateRun(cmd *exec.Cmd, spec processSpec, runDir string) error {
	sh, err := exec.LookPath("sh")
	if err != nil {
		return fmt.Errorf("private /run for %s: %w", spec.Name, err)
	}
	if _, err := exec.LookPath("mount"); err != nil {
		return fmt.Errorf("private /run for %s: %w", spec.Name, err)
	}
	const script = `d=$1; shift; exec 3<"$d" && ` +
		`mount -t tmpfs -o mode=0755,size=4m,nosuid,nodev "$0" /run && ` +
		`mkdir -p "$d" && mount --no-canonicalize --bind /proc/self/fd/3 "$d" && exec "$@" 3<&-`
	cmd.Path = sh
	cmd.Args = append([]string{"sh", "-c", script, spec.PrivateRun, runDir, spec.Binary, spec.Name}, spec.Args...)
	cmd.SysProcAttr.Unshareflags |= syscall.CLONE_NEWNS
	return nil
}

// inUserNS turns cmd, about to start in ns, into one that first enters the
// user namespace owning ns and ns itself (`nsenter --user --net`; as root
// of that user namespace it holds every capability over ns), and, when it
// gets a private /run, a mount namespace made there (`unshare --mount`: one
// made before entering would belong to the initial user namespace, where
// the process may mount nothing). The user namespace's file goes to the
// child as descriptor 3 (privateRun's script reuses that number for the run
// directory once nsenter is done with it). The returned file is closed by
// the caller once the process has started.
func inUserNS(cmd *exec.Cmd, ns *netns.NS) (*os.File, error) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("user namespace of %s: %w", ns.Name(), err)
	}
	userns, err := ns.UserNS()
	if err != nil {
		return nil, err
	}
	args := []string{"nsenter", "--user=/proc/self/fd/3", "--net=" + ns.Path(), "--"}
	// argv[0] is the component's name, which a multi-call binary started
	// by path takes as its first argument instead; privateRun's shell
	// already passes it so.
	rest := cmd.Args
	if cmd.SysProcAttr.Unshareflags&syscall.CLONE_NEWNS != 0 {
		rest = cmd.Args[1:]
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			userns.Close()
			return nil, fmt.Errorf("user namespace of %s: %w", ns.Name(), err)
		}
		cmd.SysProcAttr.Unshareflags &^= syscall.CLONE_NEWNS
		args = append(args, unshare, "--mount", "--propagation", "private", "--")
	}
	cmd.Args = append(append(args, cmd.Path), rest...)
	cmd.Path = nsenter
	cmd.ExtraFiles = []*os.File{userns}
	return userns, nil
}

// baseEnv is what components get: no proxy variables (every connection stays
// inside the simulation), no KUBECONFIG or HOME of the caller.
func baseEnv(home string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/sbin:/usr/bin:/sbin:/bin"
	}
	return []string{"PATH=" + path, "HOME=" + home}
}

// startProcess starts spec inside ns. The process gets its own process group
// (a Ctrl-C on the terminal reaches svcsim, which stops components in
// order) and no parent-death signal: that signal follows the starting
// thread, and netns.Do's threads are not the process's lifetime.
func startProcess(ns *netns.NS, run *rundir.Run, spec processSpec) (*Process, error) {
	if err := os.MkdirAll(filepath.Dir(spec.Log), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory for %s: %w", spec.Name, err)
	}
	lf, err := os.OpenFile(spec.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", spec.Name, err)
	}
	cmd := &exec.Cmd{
		Path:        spec.Binary,
		Args:        append([]string{spec.Name}, spec.Args...),
		Env:         spec.Env,
		Dir:         spec.Dir,
		Stdin:       spec.Stdin,
		Stdout:      lf,
		Stderr:      lf,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if spec.PrivateRun != "" {
		if err := privateRun(cmd, spec, run.Dir); err != nil {
			lf.Close()
			return nil, err
		}
	}
	if spec.UserNS {
		userns, err := inUserNS(cmd, ns)
		if err != nil {
			lf.Close()
			return nil, err
		}
		defer userns.Close()
	}
	if spec.Stdout != nil {
		cmd.Stdout = spec.Stdout
	}
	if spec.Stderr != nil {
		cmd.Stderr = spec.Stderr
	}
	if err := ns.Do(cmd.Start); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s in %s: %w", spec.Name, ns.Name(), err)
	}
	p := &Process{Name: spec.Name, Log: spec.Log, cmd: cmd, run: run, logFile: lf, done: make(chan struct{})}
	if err := run.RecordPID(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		lf.Close()
		return nil, err
	}
	go func() {
		p.waitErr = cmd.Wait()
		_ = run.ForgetPID(cmd.Process.Pid)
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process ended (nil while it runs or after a clean exit).
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.waitErr
	default:
		return nil
	}
}

// Stop sends SIGTERM, waits up to grace, then SIGKILL. A process that had
// exited already is not an error; one that needed SIGKILL is reported.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s (pid %d): %w", p.Name, p.PID(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL for 10s", p.Name, p.PID())
	}
	return fmt.Errorf("%s (pid %d) did not stop within %v of SIGTERM; killed", p.Name, p.PID(), grace)
}

// Memory is a process's memory use in bytes.
type Memory struct {
	// RSS counts every resident page, the binary's shared text included
	// (each component maps the same large multi-call binary).
	RSS int64
	// PSS divides shared pages among the processes sharing them: the sum
	// over processes is what they take together.
	PSS int64
}

// Memory reads /proc/<pid>/smaps_rollup; zero once the process has exited.
func (p *Process) Memory() Memory { return MemoryOf(p.PID()) }

// MemoryOf is the memory use of process pid, from /proc/<pid>/smaps_rollup;
// zero when there is no such process.
func MemoryOf(pid int) Memory {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return Memory{}
	}
	return parseRollup(string(b))
}

// parseRollup reads the "Rss:" and "Pss:" lines (kB) of smaps_rollup.
func parseRollup(s string) Memory {
	var m Memory
	for line := range strings.Lines(s) {
		var kb int64
		if n, _ := fmt.Sscanf(line, "Rss: %d kB", &kb); n == 1 {
			m.RSS = kb * 1024
		} else if n, _ := fmt.Sscanf(line, "Pss: %d kB", &kb); n == 1 {
			m.PSS = kb * 1024
		}
	}
	return m
}
