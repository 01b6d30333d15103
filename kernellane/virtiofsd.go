package kernellane

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// daemon is a helper process (virtiofsd) that lives as long as the run.
type daemon struct {
	name   string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	stderr *tailBuffer
}

// startVirtiofsd serves one share and waits for its socket.
func startVirtiofsd(ctx context.Context, bin string, s share, cache string) (*daemon, error) {
	d := &daemon{name: "virtiofsd " + s.Tag, done: make(chan struct{}), stderr: &tailBuffer{}}
	// sandbox=chroot: the namespace sandbox cannot pivot_root into "/" in a container.
	d.cmd = exec.Command(bin, "--socket-path="+s.Socket, "-o", "source="+s.Path,
		"-o", "cache="+cache, "-o", "sandbox=chroot")
	d.cmd.Stdout, d.cmd.Stderr = d.stderr, d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", d.name, err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if _, err := os.Stat(s.Socket); err == nil {
			return d, nil
		}
		select {
		case <-d.done:
			return d, fmt.Errorf("%s exited: %v: %s", d.name, d.err, d.stderr.String())
		case <-deadline:
			return d, fmt.Errorf("%s: no socket after 10s: %s", d.name, d.stderr.String())
		case <-ctx.Done():
			return d, ctx.Err()
		case <-tick.C:
		}
	}
}

// exited describes the daemon's end if it has ended, or returns "".
func (d *daemon) exited() string {
	select {
	case <-d.done:
		return fmt.Sprintf("%s exited (%v): %s", d.name, d.err, d.stderr.String())
	default:
		return ""
	}
}

// stop ends the daemon: SIGTERM, then SIGKILL after 3s. virtiofsd usually has
// exited already, when qemu closed the socket.
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(3 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}
