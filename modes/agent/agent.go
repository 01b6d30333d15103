// Package agent is the node proxy process: one per node, started inside the
// node's network namespace, programming that node's kernel with one proxy mode
// (like kube-proxy on a real node). The control plane feeds it desired state
// over a unix socket.
//
// The feed is plain HTTP/1.1 over a unix socket so that any program can speak
// it (curl --unix-socket works):
//
//	GET  /v1/healthz  -> 200 {"mode":"iptables/nft","node":"node1","pid":123,"generation":7}
//	PUT  /v1/state    body: state.NodeState JSON -> 200 SyncReply after the kernel is programmed,
//	                  400 for undecodable or invalid state, 500 with the sync error
//	GET  /v1/dump     -> 200 text/plain, the mode's kernel state as the real tool prints it
//	POST /v1/cleanup  -> 200 once everything the mode programmed is removed
//
// Beside the feed it serves kube-proxy's health endpoints in the node's
// namespace (package modes/healthcheck): :10256/healthz and one listener
// per health check node port, updated after every sync.
//
// Flushed rules repair themselves: after its first state the process looks
// for the datapath's canary (modes.Canary) every CanaryPeriod and, when a
// flush took it, syncs the last state again in full; and it syncs the last
// state again every ResyncPeriod whatever it finds (a failed sync is
// retried then, and IPVS reads its virtual servers back).
//
// The process stops (after Cleanup) on SIGTERM/SIGINT, or when its standard
// input reaches EOF: the parent holds the other end of that pipe, so a parent
// killed with SIGKILL takes its proxies with it.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/svcsim/svcsim/internal/reexec"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/modes"
	_ "github.com/svcsim/svcsim/modes/all" // register every mode
	"github.com/svcsim/svcsim/modes/healthcheck"
	"github.com/svcsim/svcsim/sim/state"
)

// EntryPoint is the reexec name of the node proxy process.
const EntryPoint = "svcsim-node-proxy"

func init() { reexec.Register(EntryPoint, mainEntry) }

// SyncReply is the answer to PUT /v1/state.
type SyncReply struct {
	Mode       string  `json:"mode"`
	Node       string  `json:"node"`
	Generation uint64  `json:"generation"`
	Seconds    float64 `json:"seconds"`
}

// Health is the answer to GET /v1/healthz.
type Health struct {
	Mode       string `json:"mode"`
	Node       string `json:"node"`
	PID        int    `json:"pid"`
	Generation uint64 `json:"generation"`
	// Repairs counts the full resyncs run because the canary was gone.
	Repairs uint64 `json:"repairs,omitempty"`
}

// CanaryPeriod is how often a node proxy looks for its datapath's canary.
// kube-proxy's iptables monitor looks every --iptables-sync-period (30 s by
// default); svcsim looks every 2 s so that a flushed node is repaired within
// seconds (the repair scenario's bound) for the price of one
// `iptables-save -t mangle` or `nft list chains` per node and period.
const CanaryPeriod = 2 * time.Second

// ResyncPeriod is how often a node proxy syncs its last state again
// unasked: kube-proxy's --sync-period default (30 s), the period of its
// IPVS proxier's full syncs and of its retries after a failed sync.
const ResyncPeriod = 30 * time.Second

// syncTimeout bounds one unasked sync or canary check, so that a hung tool
// cannot hold the server's lock for ever.
const syncTimeout = time.Minute

func mainEntry() {
	fs := flag.NewFlagSet(EntryPoint, flag.ExitOnError)
	mode := fs.String("mode", "iptables", "proxy mode")
	node := fs.String("node", "", "node name")
	sock := fs.String("socket", "", "unix socket to serve the feed on")
	sched := fs.String("scheduler", "", "IPVS scheduler")
	backend := fs.String("iptables-backend", "", `the node's iptables backend, "legacy" or "nft" (empty: the host's)`)
	cleanup := fs.Bool("cleanup", false, "remove what the mode programs in this namespace and exit (kube-proxy --cleanup)")
	_ = fs.Parse(os.Args[1:])
	log.SetPrefix(fmt.Sprintf("node-proxy[%s %s] ", *node, *mode))
	if *cleanup {
		if err := cleanupMode(*mode, modes.Options{Node: *node, Scheduler: *sched, IPTablesBackend: *backend}); err != nil {
			log.Print(err)
			os.Exit(1)
		}
		return
	}
	if err := Serve(context.Background(), Config{Mode: *mode, Node: *node, Socket: *sock, Scheduler: *sched, IPTablesBackend: *backend, WatchStdin: true}); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

// cleanupMode removes, in the calling process's namespace, everything mode
// programs, with a fresh Proxier that programmed nothing itself: what a
// proxy killed before its own Cleanup left behind.
func cleanupMode(mode string, o modes.Options) error {
	p, err := modes.New(mode, o)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Cleanup(ctx); err != nil {
		return fmt.Errorf("cleanup %s: %w", p.Name(), err)
	}
	return nil
}

// cleanupDisjoint removes, before mode's proxy starts, what the datapaths
// of modes.Disjoint(mode) left in this namespace, as kube-proxy does when it
// starts: a switch from nftables to iptables (or back) leaves nothing of
// the old one even when its proxy was killed. Datapaths this machine cannot
// run (IPVS without IP_VS) have nothing to leave; a failure is logged, not
// fatal (kube-proxy logs it and starts too).
func cleanupDisjoint(mode string, o modes.Options) {
	d, err := modes.Get(mode)
	if err != nil {
		return
	}
	for _, other := range modes.Disjoint(d) {
		if other.Unsupported() != "" {
			continue
		}
		if err := cleanupMode(other.Name, o); err != nil {
			log.Printf("starting %s: clean up after %s: %v", mode, other.Name, err)
		}
	}
}

// Config configures Serve.
type Config struct {
	Mode, Node, Socket, Scheduler string
	// IPTablesBackend is modes.Options.IPTablesBackend.
	IPTablesBackend string
	// WatchStdin stops the server when standard input reaches EOF.
	WatchStdin bool
	// CanaryPeriod and ResyncPeriod override the package's periods (tests);
	// zero takes them.
	CanaryPeriod, ResyncPeriod time.Duration
}

// Serve runs the feed server in the calling process's network namespace until
// ctx ends, a signal arrives, or (with WatchStdin) stdin closes. It always
// runs the mode's Cleanup before returning.
func Serve(ctx context.Context, cfg Config) error {
	opts := modes.Options{Node: cfg.Node, Scheduler: cfg.Scheduler, IPTablesBackend: cfg.IPTablesBackend}
	p, err := modes.New(cfg.Mode, opts)
	if err != nil {
		return err
	}
	cleanupDisjoint(cfg.Mode, opts)
	ctx, cancel := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	if cfg.WatchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			cancel()
		}()
	}
	hc, err := healthcheck.New(healthcheck.Config{})
	if err != nil {
		_ = p.Cleanup(ctx)
		return fmt.Errorf("node proxy health endpoints: %w", err)
	}
	defer hc.Close()
	_ = os.Remove(cfg.Socket)
	ln, err := rundir.ListenUnix(cfg.Socket)
	if err != nil {
		return err
	}
	s := &server{p: p, node: cfg.Node, hc: hc}
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	mctx, stopMaintain := context.WithCancel(ctx)
	maintained := make(chan struct{})
	go func() {
		defer close(maintained)
		s.maintain(mctx, or(cfg.CanaryPeriod, CanaryPeriod), or(cfg.ResyncPeriod, ResyncPeriod))
	}()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	stopMaintain()
	<-maintained
	shutCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	_ = srv.Shutdown(shutCtx)
	_ = os.Remove(cfg.Socket)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = nil
	if cerr := p.Cleanup(shutCtx); cerr != nil {
		err = errors.Join(err, fmt.Errorf("cleanup %s: %w", p.Name(), cerr))
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

type server struct {
	p    modes.Proxier
	hc   *healthcheck.Server // nil in unit tests
	node string
	mu   sync.Mutex // serialises Sync, Dump and Cleanup
	gen  uint64
	// last is the state last pushed (also when its sync failed); nil
	// before the first and after a cleanup: nothing to repair then.
	last    *state.NodeState
	repairs uint64
}

func or(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// syncLocked syncs st, updates the health endpoints and, on success, the
// generation. The caller holds mu.
func (s *server) syncLocked(ctx context.Context, st *state.NodeState) error {
	s.last = st
	err := s.p.Sync(ctx, st)
	if s.hc != nil {
		if herr := s.hc.Synced(st, err); herr != nil {
			log.Print(herr)
		}
	}
	if err != nil {
		return fmt.Errorf("sync %s on %s: %w", s.p.Name(), s.node, err)
	}
	s.gen = st.Generation
	return nil
}

// maintain checks the canary every canary period and resyncs every resync
// period until ctx ends.
func (s *server) maintain(ctx context.Context, canary, resync time.Duration) {
	ct, rt := time.NewTicker(canary), time.NewTicker(resync)
	defer ct.Stop()
	defer rt.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ct.C:
			repaired, err := s.checkCanary(ctx)
			switch {
			case ctx.Err() != nil:
				return // stopping: a check cut short is no news
			case err != nil:
				log.Print(err)
			case repaired:
				log.Printf("canary gone: synced the last state again in full")
			}
		case <-rt.C:
			if err := s.resync(ctx); err != nil && ctx.Err() == nil {
				log.Print(err)
			}
		}
	}
}

// checkCanary looks for the datapath's canary once a state was pushed and,
// when it is gone, syncs that state again in full. It reports whether it
// did.
func (s *server) checkCanary(ctx context.Context) (bool, error) {
	c, ok := s.p.(modes.Canary)
	if !ok {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil || ctx.Err() != nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	intact, err := c.Intact(ctx)
	if err != nil || intact {
		return false, err
	}
	s.repairs++
	modes.ForceFullSync(s.p)
	if err := s.syncLocked(ctx, s.last); err != nil {
		return true, fmt.Errorf("repair after a flush: %w", err)
	}
	return true, nil
}

// resync syncs the last state again, if there is one.
func (s *server) resync(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil || ctx.Err() != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if err := s.syncLocked(ctx, s.last); err != nil {
		return fmt.Errorf("periodic resync: %w", err)
	}
	return nil
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/healthz", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		h := Health{Mode: s.p.Name(), Node: s.node, PID: os.Getpid(), Generation: s.gen, Repairs: s.repairs}
		s.mu.Unlock()
		writeJSON(w, h)
	})
	mux.HandleFunc("PUT /v1/state", func(w http.ResponseWriter, r *http.Request) {
		st, err := DecodeState(http.MaxBytesReader(w, r.Body, MaxStateBytes))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		start := time.Now()
		if err := s.syncLocked(r.Context(), st); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, SyncReply{Mode: s.p.Name(), Node: s.node, Generation: st.Generation, Seconds: time.Since(start).Seconds()})
	})
	mux.HandleFunc("GET /v1/dump", func(w http.ResponseWriter, r *http.Request) {
		d, ok := s.p.(modes.Dumper)
		if !ok {
			http.Error(w, s.p.Name()+" cannot dump its state", http.StatusNotImplemented)
			return
		}
		s.mu.Lock()
		out, err := d.Dump(r.Context())
		s.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, out)
	})
	mux.HandleFunc("POST /v1/cleanup", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := s.p.Cleanup(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.gen, s.last = 0, nil
		w.WriteHeader(http.StatusOK)
	})
	return mux
}

// MaxStateBytes bounds a PUT /v1/state body.
const MaxStateBytes = 512 << 20

// DecodeState reads one state.NodeState JSON document the way PUT /v1/state
// does: unknown fields are errors, and the state must pass Validate before
// any mode sees it.
func DecodeState(r io.Reader) (*state.NodeState, error) {
	var st state.NodeState
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("invalid state: %w", err)
	}
	return &st, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
