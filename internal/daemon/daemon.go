// Package daemon keeps a simulated cluster running in the background between
// CLI invocations (`svcsim up` starts it, `svcsim down` ends it) and serves
// the CLI's verbs over a unix socket in the run directory.
//
// The protocol is HTTP/1.1 over <run dir>/control.sock; request bodies are
// manifests or patches, answers are the text the CLI prints. Errors come back
// as non-200 answers whose body is the message.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/svcsim/svcsim/internal/controlplane"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/sim/printer"
)

// SocketName is the control socket's file name inside the run directory.
const SocketName = "control.sock"

// CurrentFile names the file under rundir.Root() holding the ID of the
// simulation the CLI talks to by default.
const CurrentFile = "current"

// Serve starts a cluster from cfg and serves the control socket until a
// `down` request or a signal. It prints progress to cfg.Log.
func Serve(ctx context.Context, cfg controlplane.Config) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	cp, err := controlplane.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintf(cfg.Log, "run %s: tearing down\n", cp.Run().ID)
		if err := cp.Close(); err != nil {
			fmt.Fprintf(cfg.Log, "teardown: %v\n", err)
		}
	}()
	sock := cp.Run().Path(SocketName)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	current := filepath.Join(rundir.Root(), CurrentFile)
	if err := os.WriteFile(current, []byte(cp.Run().ID+"\n"), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", current, err)
	}
	defer func() {
		if b, err := os.ReadFile(current); err == nil && strings.TrimSpace(string(b)) == cp.Run().ID {
			_ = os.Remove(current)
		}
	}()
	done := make(chan struct{})
	s := &server{cp: cp, ctx: ctx, down: func() {
		select {
		case <-done:
		default:
			close(done)
		}
	}}
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(cfg.Log, "run %s: ready (%s mode, %d nodes)\n", cp.Run().ID, cp.Mode(), len(cfg.Sim.Nodes))
	select {
	case <-ctx.Done():
	case <-done:
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shut)
	return nil
}

type server struct {
	cp   *controlplane.ControlPlane
	ctx  context.Context
	down func()
}

func fail(w http.ResponseWriter, code int, err error) {
	http.Error(w, err.Error(), code)
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		info := Info{RunID: s.cp.Run().ID, Mode: s.cp.Mode(), PID: os.Getpid()}
		for _, n := range s.cp.Topology().Nodes() {
			info.Nodes = append(info.Nodes, NodeInfo{Name: n.Name, IP: n.IP.String(), Namespace: n.NS.Name()})
		}
		info.External = s.cp.Topology().External().Name()
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
		var objs []sim.Object
		if len(req.Paths) > 0 {
			if objs, err = sim.Load(req.Paths...); err != nil {
				fail(w, http.StatusBadRequest, err)
				return
			}
		}
		if req.Stdin != "" {
			more, err := sim.Decode([]byte(req.Stdin), "STDIN")
			if err != nil {
				fail(w, http.StatusBadRequest, err)
				return
			}
			objs = append(objs, more...)
		}
		lines, err := s.cp.Apply(r.Context(), objs)
		if err != nil {
			fail(w, http.StatusUnprocessableEntity, err)
			return
		}
		_, _ = io.WriteString(w, strings.Join(lines, "\n"))
	})
	mux.HandleFunc("POST /v1/patch", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err := s.cp.Patch(r.Context(), q.Get("kind"), q.Get("namespace"), q.Get("name"), body); err != nil {
			fail(w, http.StatusUnprocessableEntity, err)
			return
		}
		fmt.Fprintf(w, "%s/%s patched", printer.KindName(q.Get("kind")), q.Get("name"))
	})
	mux.HandleFunc("POST /v1/scale", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, err := strconv.ParseInt(q.Get("replicas"), 10, 32)
		if err != nil || n < 0 {
			fail(w, http.StatusBadRequest, fmt.Errorf("--replicas must be a non-negative integer, got %q", q.Get("replicas")))
			return
		}
		if err := s.cp.Scale(r.Context(), q.Get("kind"), q.Get("namespace"), q.Get("name"), int32(n)); err != nil {
			fail(w, http.StatusUnprocessableEntity, err)
			return
		}
		fmt.Fprintf(w, "%s/%s scaled", printer.KindName(q.Get("kind")), q.Get("name"))
	})
	mux.HandleFunc("POST /v1/delete", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if err := s.cp.Delete(r.Context(), q.Get("kind"), q.Get("namespace"), q.Get("name")); err != nil {
			fail(w, http.StatusNotFound, err)
			return
		}
		fmt.Fprintf(w, "%s \"%s\" deleted", printer.KindName(q.Get("kind")), q.Get("name"))
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
		if err := s.cp.Label(r.Context(), q.Get("kind"), q.Get("namespace"), q.Get("name"), labels); err != nil {
			fail(w, http.StatusUnprocessableEntity, err)
			return
		}
		fmt.Fprintf(w, "%s/%s labeled", printer.KindName(q.Get("kind")), q.Get("name"))
	})
	mux.HandleFunc("GET /v1/get", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		err := printer.Print(w, s.cp.Cluster(), printer.Request{
			Kind: q.Get("kind"), Name: q.Get("name"), Namespace: q.Get("namespace"),
			AllNamespaces: q.Get("all") == "true", Output: q.Get("output"), Selector: q.Get("selector"),
		})
		if err != nil {
			fail(w, http.StatusBadRequest, err)
		}
	})
	mux.HandleFunc("GET /v1/target", func(w http.ResponseWriter, r *http.Request) {
		t, err := s.target(r.URL.Query().Get("name"), r.URL.Query().Get("namespace"))
		if err != nil {
			fail(w, http.StatusNotFound, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(t)
	})
	mux.HandleFunc("GET /v1/dump", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.cp.Dump(r.Context(), r.URL.Query().Get("node"))
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
func (s *server) target(name, namespace string) (Target, error) {
	topo := s.cp.Topology()
	if name == "external" {
		return Target{Netns: topo.External().Name()}, nil
	}
	if n := topo.Node(name); n != nil {
		return Target{Netns: n.NS.Name()}, nil
	}
	if namespace == "" {
		namespace = "default"
	}
	p := topo.Pod(namespace + "/" + name)
	if p == nil {
		return Target{}, fmt.Errorf("no pod, node or \"external\" named %q (namespace %q)", name, namespace)
	}
	t := Target{Netns: p.NS.Name()}
	for _, e := range s.cp.Cluster().PodEnv(namespace, name) {
		t.Env = append(t.Env, e.Name+"="+e.Value)
	}
	if !p.HostNetwork {
		domain := s.cp.Cluster().Config().DNSDomain
		conf := fmt.Sprintf("nameserver %s\nsearch %s.svc.%s svc.%s %s\noptions ndots:5\n",
			controlplane.DNSServiceIP, namespace, domain, domain, domain)
		path := s.cp.Run().Path("resolv-" + namespace + ".conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return Target{}, err
		}
		t.ResolvConf = path
	}
	return t, nil
}

// ApplyRequest names manifests to apply: files or directories on this
// machine (absolute paths) and/or manifest text read from the CLI's stdin.
type ApplyRequest struct {
	Paths []string `json:"paths,omitempty"`
	Stdin string   `json:"stdin,omitempty"`
}

// Info describes a running simulation.
type Info struct {
	RunID    string     `json:"runID"`
	Mode     string     `json:"mode"`
	PID      int        `json:"pid"`
	Nodes    []NodeInfo `json:"nodes"`
	External string     `json:"external"`
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
	b, err := os.ReadFile(filepath.Join(rundir.Root(), CurrentFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", ErrNotRunning
	}
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if !rundir.ValidID(id) {
		return "", fmt.Errorf("corrupt %s: %q", CurrentFile, id)
	}
	return id, nil
}
