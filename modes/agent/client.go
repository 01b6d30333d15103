package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/reexec"
	"github.com/svcsim/svcsim/sim/state"
)

// Client speaks the feed of one node proxy.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the feed served on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns: 2,
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

func (c *Client) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://node-proxy"+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s: %w", method, path, c.socket, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read reply: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Health asks the proxy how it is.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	b, err := c.do(ctx, http.MethodGet, "/v1/healthz", nil)
	if err != nil {
		return h, err
	}
	return h, json.Unmarshal(b, &h)
}

// Push sends the node's desired state and returns once it is programmed.
func (c *Client) Push(ctx context.Context, st *state.NodeState) (SyncReply, error) {
	var r SyncReply
	body, err := json.Marshal(st)
	if err != nil {
		return r, fmt.Errorf("encode state: %w", err)
	}
	b, err := c.do(ctx, http.MethodPut, "/v1/state", body)
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// Dump returns the proxy's kernel state as the real tool prints it.
func (c *Client) Dump(ctx context.Context) (string, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/dump", nil)
	return string(b), err
}

// Cleanup asks the proxy to remove everything it programmed.
func (c *Client) Cleanup(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/cleanup", nil)
	return err
}

// Process is a running node proxy process.
type Process struct {
	*Client
	Node, Mode string
	cmd        *exec.Cmd
	stdin      io.WriteCloser
	done       chan struct{}
	waitErr    error
	stopOnce   sync.Once
}

// StartOptions describe a node proxy to start.
type StartOptions struct {
	Node, Mode, Scheduler string
	// IPTablesBackend is the node's iptables backend (modes.Options);
	// empty is the host's.
	IPTablesBackend string
	// Socket is the path of the feed socket to create.
	Socket string
	// Log receives the process's stdout and stderr (nil: os.Stderr).
	Log io.Writer
	// OnStart is called with the pid once the process exists (used to
	// record it for garbage collection).
	OnStart func(pid int) error
}

// Start re-executes the current binary as a node proxy inside ns and waits
// until its feed answers. The binary must call reexec.Init first thing in main
// (or TestMain) and link this package.
func Start(ctx context.Context, ns *netns.NS, o StartOptions) (*Process, error) {
	cmd, err := reexec.Command(EntryPoint, "--mode", o.Mode, "--node", o.Node, "--socket", o.Socket, "--scheduler", o.Scheduler, "--iptables-backend", o.IPTablesBackend)
	if err != nil {
		return nil, err
	}
	logw := o.Log
	if logw == nil {
		logw = os.Stderr
	}
	cmd.Stdout, cmd.Stderr = logw, logw
	// Own process group: a Ctrl-C on the terminal reaches the control plane,
	// which stops its proxies in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe for node proxy %s: %w", o.Node, err)
	}
	if err := ns.Do(cmd.Start); err != nil {
		stdin.Close()
		return nil, fmt.Errorf("start node proxy %s (%s): %w", o.Node, o.Mode, err)
	}
	p := &Process{Client: NewClient(o.Socket), Node: o.Node, Mode: o.Mode, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); close(p.done) }()
	if o.OnStart != nil {
		if err := o.OnStart(cmd.Process.Pid); err != nil {
			_ = p.Kill()
			return nil, err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		hctx, cancel := context.WithTimeout(ctx, time.Second)
		_, herr := p.Health(hctx)
		cancel()
		if herr == nil {
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("node proxy %s (%s) exited before serving: %v", o.Node, o.Mode, p.waitErr)
		case <-ctx.Done():
			_ = p.Kill()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.Kill()
			return nil, fmt.Errorf("node proxy %s (%s) did not answer on %s within 30s: %w", o.Node, o.Mode, o.Socket, herr)
		}
	}
}

// CleanupLeftovers runs a node proxy of o.Mode in ns only to remove what
// that mode programs there (`kube-proxy --cleanup`): the leftovers of a
// proxy that was killed. It returns once that process has exited.
func CleanupLeftovers(ctx context.Context, ns *netns.NS, o StartOptions) error {
	cmd, err := reexec.Command(EntryPoint, "--cleanup", "--mode", o.Mode, "--node", o.Node, "--scheduler", o.Scheduler, "--iptables-backend", o.IPTablesBackend)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := ns.Do(cmd.Start); err != nil {
		return fmt.Errorf("start %s cleanup on %s: %w", o.Mode, o.Node, err)
	}
	if o.OnStart != nil {
		if err := o.OnStart(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return err
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s cleanup on %s: %w: %s", o.Mode, o.Node, err, strings.TrimSpace(out.String()))
		}
		return nil
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s cleanup on %s: %w", o.Mode, o.Node, ctx.Err())
	}
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop asks the proxy to clean up and exit (SIGTERM), waiting up to timeout
// before killing it.
func (p *Process) Stop(timeout time.Duration) error {
	var err error
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(timeout):
			_ = p.cmd.Process.Kill()
			<-p.done
			err = fmt.Errorf("node proxy %s did not stop within %v; killed", p.Node, timeout)
		}
		p.stdin.Close()
		if err == nil && p.waitErr != nil {
			var ee *exec.ExitError
			if !errors.As(p.waitErr, &ee) || ee.ExitCode() != 0 {
				err = fmt.Errorf("node proxy %s: %w", p.Node, p.waitErr)
			}
		}
	})
	return err
}

// Kill ends the process at once with SIGKILL (a crashed kube-proxy); it does
// not clean up its kernel state.
func (p *Process) Kill() error {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		p.stdin.Close()
	})
	return nil
}
