// Package daemon keeps a simulated cluster running in the background between
// CLI invocations (`svcsim up` starts it, `svcsim down` ends it) and serves
// the CLI's verbs over a unix socket in the run directory.
//
// The protocol is HTTP/1.1 over <run dir>/control.sock; request bodies are
// manifests or patches, answers are the text the CLI prints. Errors come back
// as non-200 answers whose body is the message.
package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/embedded"
	"github.com/svcsim/svcsim/sim/printer"
	"k8s.io/apimachinery/pkg/util/validation"
)

// SocketName is the control socket's file name inside the run directory.
const SocketName = "control.sock"

// CurrentFile names the file under rundir.Root() holding the ID of the
// simulation the CLI talks to by default; a named cluster's is
// "current-<name>" (NameEnv).
const CurrentFile = "current"

// NameEnv names the cluster the CLI and the daemon it starts work on
// (`svcsim --name X` sets it): each name has its own current file, so named
// clusters run side by side, each in namespaces of its own run. Empty is
// the default cluster.
const NameEnv = "SVCSIM_NAME"

// ValidName checks a cluster name: a DNS label, as it becomes part of a
// file name.
func ValidName(name string) error {
	if name == "" {
		return nil
	}
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return fmt.Errorf("cluster name %q: %s", name, strings.Join(msgs, "; "))
	}
	return nil
}

// CurrentPath is the current file of the cluster NameEnv names.
func CurrentPath() string {
	if n := os.Getenv(NameEnv); n != "" && ValidName(n) == nil {
		return filepath.Join(rundir.Root(), CurrentFile+"-"+n)
	}
	return filepath.Join(rundir.Root(), CurrentFile)
}

// Serve starts a cluster from cfg and serves the control socket until a
// `down` request or a signal. It prints progress to cfg.Log.
func Serve(ctx context.Context, cfg embedded.Config) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	cp, err := embedded.Start(ctx, cfg)
	if err != nil {
		return err
	}
	return ServePlane(ctx, cp, cfg.Log)
}

// ServePlane serves the control socket for a running plane until a `down`
// request or ctx ends, then closes the plane.
func ServePlane(ctx context.Context, p plane.Plane, log io.Writer) error {
	info := p.Info()
	defer func() {
		fmt.Fprintf(log, "run %s: tearing down\n", info.RunID)
		if err := p.Close(); err != nil {
			fmt.Fprintf(log, "teardown: %v\n", err)
		}
	}()
	run, err := rundir.Open(info.RunID)
	if err != nil {
		return fmt.Errorf("run %s: %w", info.RunID, err)
	}
	sock := run.Path(SocketName)
	ln, err := rundir.ListenUnix(sock)
	if err != nil {
		return err
	}
	current := CurrentPath()
	if err := os.WriteFile(current, []byte(info.RunID+"\n"), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", current, err)
	}
	defer func() {
		if b, err := os.ReadFile(current); err == nil && strings.TrimSpace(string(b)) == info.RunID {
			_ = os.Remove(current)
		}
	}()
	done := make(chan struct{})
	s := &server{p: p, run: run, ctx: ctx, down: func() {
		select {
		case <-done:
		default:
			close(done)
		}
	}}
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(log, "run %s: ready (%s mode, %d nodes)\n", info.RunID, info.Datapath, len(p.Nodes()))
	select {
	case <-ctx.Done():
	case <-done:
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shut)
	return nil
}

// Printer is what a plane offers for `svcsim get`: kubectl's tables of its
// objects. The embedded plane prints its model; a plane without it sends
// users to its own kubectl.
type Printer interface {
	Print(w io.Writer, r printer.Request) error
}

type server struct {
	p    plane.Plane
	run  *rundir.Run
	ctx  context.Context
	down func()
}

func fail(w http.ResponseWriter, code int, err error) {
	http.Error(w, err.Error(), code)
}

// changed answers a verb that changed the cluster: err with code, else
// msg once the change is programmed (or programmed's own error answer).
func (s *server) changed(w http.ResponseWriter, r *http.Request, code int, err error, msg string) {
	if err != nil {
		fail(w, code, err)
		return
	}
	if !s.programmed(w, r) {
		return
	}
	_, _ = io.WriteString(w, msg)
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		pi := s.p.Info()
		info := Info{RunID: pi.RunID, Mode: pi.Datapath, ControlPlane: pi.ControlPlane, PID: os.Getpid()}
		for _, n := range s.p.Nodes() {
			info.Nodes = append(info.Nodes, NodeInfo{Name: n.Name, IP: n.IP.String(), Namespace: n.NS.Name()})
		}
		if ext, err := s.p.Target(r.Context(), "", plane.ExternalTarget); err == nil {
			info.External = ext.NS.Name()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(info)
	})
	mux.HandleFunc("POST /v1/apply", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			fail(w, http.StatusBadRequest, err)
			return
		}
		var req ApplyRequest
		if err := json.Unmarshal(body, &req); err != nil {
			fail(w, http.StatusBadRequest, fmt.Errorf("decode apply request: %w", err))
			return
		}
		if len(req.Manifests) == 0 {
			fail(w, http.StatusBadRequest, errors.New("no manifests"))
			return
		}
		lines, err := s.p.Apply(r.Context(), req.Namespace, req.Manifests...)
		if err != nil {
			fail(w, http.StatusUnprocessableEntity, err)
			return
		}
		if !s.programmed(w, r) {
			return
		}
		_, _ = io.WriteString(w, strings.Join(lines, "\n"))
	})
	mux.HandleFunc("POST /v1/patch", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		s.changed(w, r, http.StatusUnprocessableEntity, s.p.Patch(r.Context(), ref(q), body),
			fmt.Sprintf("%s/%s patched", printer.KindName(q.Get("kind")), q.Get("name")))
	})
	mux.HandleFunc("POST /v1/scale", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, err := strconv.ParseInt(q.Get("replicas"), 10, 32)
		if err != nil || n < 0 {
			fail(w, http.StatusBadRequest, fmt.Errorf("--replicas must be a non-negative integer, got %q", q.Get("replicas")))
			return
		}
		s.changed(w, r, http.StatusUnprocessableEntity, s.p.Scale(r.Context(), ref(q), int32(n)),
			fmt.Sprintf("%s/%s scaled", printer.KindName(q.Get("kind")), q.Get("name")))
	})
	mux.HandleFunc("POST /v1/delete", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		s.changed(w, r, http.StatusNotFound, s.p.Delete(r.Context(), ref(q)),
			fmt.Sprintf("%s \"%s\" deleted", printer.KindName(q.Get("kind")), q.Get("name")))
	})
	mux.HandleFunc("POST /v1/label", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		labels := map[string]string{}
		for _, kv := range q["label"] {
			if k, ok := strings.CutSuffix(kv, "-"); ok && !strings.Contains(kv, "=") {
				labels[k+"-"] = ""
				continue
			}
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				fail(w, http.StatusBadRequest, fmt.Errorf("label %q: want key=value or key-", kv))
				return
			}
			labels[k] = v
		}
		s.changed(w, r, http.StatusUnprocessableEntity, s.p.Label(r.Context(), ref(q), labels),
			fmt.Sprintf("%s/%s labeled", printer.KindName(q.Get("kind")), q.Get("name")))
	})
	mux.HandleFunc("GET /v1/get", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		pr, ok := s.p.(Printer)
		if !ok {
			fail(w, http.StatusNotImplemented, fmt.Errorf("the %s control plane prints no tables: use its kubectl", s.p.Info().ControlPlane))
			return
		}
		var out bytes.Buffer
		err := pr.Print(&out, printer.Request{
			Args: q["arg"], Kind: q.Get("kind"), Name: q.Get("name"), Namespace: q.Get("namespace"),
			AllNamespaces: q.Get("all") == "true", Output: q.Get("output"), Selector: q.Get("selector"),
			Describe: q.Get("describe") == "true",
		})
		switch {
		case err == nil:
			_, _ = w.Write(out.Bytes())
		case out.Len() == 0:
			fail(w, http.StatusBadRequest, err)
		default:
			// Found objects and missing names: the output, with the error
			// beside it (Client.call returns both).
			w.Header().Set(errorHeader, url.QueryEscape(err.Error()))
			_, _ = w.Write(out.Bytes())
		}
	})
	mux.HandleFunc("GET /v1/target", func(w http.ResponseWriter, r *http.Request) {
		t, err := s.target(r.Context(), r.URL.Query().Get("name"), r.URL.Query().Get("namespace"))
		if err != nil {
			fail(w, http.StatusNotFound, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(t)
	})
	mux.HandleFunc("GET /v1/dump", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.p.Dump(r.Context(), r.URL.Query().Get("node"))
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		_, _ = io.WriteString(w, out)
	})
	mux.HandleFunc("POST /v1/down", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "stopping")
		s.down()
	})
	return mux
}

// Target is where `svcsim exec` runs a command.
type Target struct {
	// Netns is the network namespace's name under /run/netns.
	Netns string `json:"netns"`
	// Env is the pod's environment (the kubelet's Service variables).
	Env []string `json:"env,omitempty"`
	// ResolvConf is a resolv.conf pointing at the cluster DNS, bind-mounted
	// over /etc/resolv.conf for the command (pods only; dnsPolicy ClusterFirst).
	ResolvConf string `json:"resolvConf,omitempty"`
}

// target resolves an exec target: "external", a node name, or a pod name
// (in namespace, default "default").
func (s *server) target(ctx context.Context, name, namespace string) (Target, error) {
	pt, err := s.p.Target(ctx, namespace, name)
	if err != nil {
		return Target{}, err
	}
	t := Target{Netns: pt.NS.Name(), Env: pt.Env}
	if pt.ResolvConf != "" {
		if namespace == "" {
			namespace = "default"
		}
		path := s.run.Path("resolv-" + namespace + ".conf")
		if err := os.WriteFile(path, []byte(pt.ResolvConf), 0o644); err != nil {
			return Target{}, err
		}
		t.ResolvConf = path
	}
	return t, nil
}

func ref(q url.Values) plane.Ref {
	return plane.Ref{Kind: q.Get("kind"), Namespace: q.Get("namespace"), Name: q.Get("name")}
}

// programmed waits for the change just made to be programmed on every
// node, as the CLI promises (a command after `svcsim apply` sees its
// effect); on failure it answers with the error and returns false.
func (s *server) programmed(w http.ResponseWriter, r *http.Request) bool {
	if err := s.p.WaitProgrammed(r.Context()); err != nil {
		fail(w, http.StatusInternalServerError, fmt.Errorf("accepted, but not programmed: %w", err))
		return false
	}
	return true
}

// ApplyRequest carries manifests to apply, as the CLI read them (files,
// directories' files, standard input), each with its source name. The
// daemon never reads the CLI's files itself.
type ApplyRequest struct {
	// Namespace receives namespaced objects that name none ("" is "default").
	Namespace string           `json:"namespace,omitempty"`
	Manifests []plane.Manifest `json:"manifests"`
}

// Info describes a running simulation.
type Info struct {
	RunID        string     `json:"runID"`
	Mode         string     `json:"mode"`
	ControlPlane string     `json:"controlPlane"`
	PID          int        `json:"pid"`
	Nodes        []NodeInfo `json:"nodes"`
	External     string     `json:"external"`
}

// NodeInfo is one node of a running simulation.
type NodeInfo struct {
	Name      string `json:"name"`
	IP        string `json:"ip"`
	Namespace string `json:"namespace"`
}

// ErrNotRunning is returned by Current when no simulation is running.
var ErrNotRunning = errors.New("no simulation is running (start one with `svcsim up`)")

// Current returns the run ID of the default simulation.
func Current() (string, error) {
	b, err := os.ReadFile(CurrentPath())
	if errors.Is(err, os.ErrNotExist) {
		return "", ErrNotRunning
	}
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if !rundir.ValidID(id) {
		return "", fmt.Errorf("corrupt %s: %q", CurrentPath(), id)
	}
	return id, nil
}
