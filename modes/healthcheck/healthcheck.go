// Package healthcheck serves a node proxy's health endpoints the way
// kube-proxy serves them, for every svcsim datapath (the node proxy process,
// modes/agent, runs it beside its mode, in the node's network namespace):
//
//   - the proxy's own health, on :10256 (kube-proxy's --healthz-bind-address
//     default): GET /healthz and /livez answer 200 while the last sync
//     succeeded and 503 otherwise, with a JSON body {"lastUpdated",
//     "currentTime", "nodeEligible"}. Load balancers probe it for Services
//     with externalTrafficPolicy Cluster.
//   - one listener per Service with a healthCheckNodePort (type
//     LoadBalancer, externalTrafficPolicy Local), on that port: any path
//     answers a JSON body {"service": {"namespace", "name"},
//     "localEndpoints", "serviceProxyHealthy"} with the header
//     X-Load-Balancing-Endpoint-Weight set to the count, 200 when the node
//     has ready local endpoints and the proxy is healthy, 503 otherwise.
//     Terminating endpoints do not count, so a node left with only those
//     is taken out of its load balancer.
//
// Listeners are made through a Listen function (net.Listen in the calling
// namespace by default), so the logic runs on a fake in tests.
package healthcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/svcsim/svcsim/sim/state"
)

// ProxyHealthPort is kube-proxy's health port.
const ProxyHealthPort = 10256

// WeightHeader carries the number of local endpoints in a health check
// node port's answer (kube-proxy's header; some load balancers weigh by it).
const WeightHeader = "X-Load-Balancing-Endpoint-Weight"

// ServiceHealth is the body of a health check node port's answer.
type ServiceHealth struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

// ProxyHealth is the body of the proxy's /healthz answer.
type ProxyHealth struct {
	LastUpdated  string `json:"lastUpdated"`
	CurrentTime  string `json:"currentTime"`
	NodeEligible bool   `json:"nodeEligible"`
}

// Config configures a Server.
type Config struct {
	// Listen opens a TCP listener ("tcp", ":port"); net.Listen by default.
	Listen func(network, address string) (net.Listener, error)
	// ProxyPort is the proxy health port; ProxyHealthPort by default, -1
	// for none.
	ProxyPort int
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Server is a node's health endpoints.
type Server struct {
	cfg Config

	mu       sync.Mutex
	healthy  bool      // the last sync succeeded
	updated  time.Time // when it did
	services map[int32]*serviceServer
	proxy    *http.Server
	closed   bool
}

type serviceServer struct {
	namespace, name string
	srv             *http.Server
	local           int // guarded by Server.mu
}

// New starts the proxy health endpoint (unless cfg.ProxyPort is -1).
func New(cfg Config) (*Server, error) {
	if cfg.Listen == nil {
		cfg.Listen = net.Listen
	}
	if cfg.ProxyPort == 0 {
		cfg.ProxyPort = ProxyHealthPort
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, services: map[int32]*serviceServer{}}
	if cfg.ProxyPort > 0 {
		ln, err := cfg.Listen("tcp", ":"+strconv.Itoa(cfg.ProxyPort))
		if err != nil {
			return nil, fmt.Errorf("proxy health port %d: %w", cfg.ProxyPort, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", s.serveProxy)
		mux.HandleFunc("/livez", s.serveProxy)
		s.proxy = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = s.proxy.Serve(ln) }()
	}
	return s, nil
}

func (s *Server) serveProxy(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	healthy, updated := s.healthy, s.updated
	s.mu.Unlock()
	body := ProxyHealth{CurrentTime: s.cfg.Now().UTC().Format(time.RFC3339Nano), NodeEligible: true}
	if !updated.IsZero() {
		body.LastUpdated = updated.UTC().Format(time.RFC3339Nano)
	}
	code := http.StatusOK
	if !healthy {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}

func (ss *serviceServer) handler(s *Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		count, healthy := ss.local, s.healthy
		s.mu.Unlock()
		var body ServiceHealth
		body.Service.Namespace, body.Service.Name = ss.namespace, ss.name
		body.LocalEndpoints, body.ServiceProxyHealthy = count, healthy
		w.Header().Set(WeightHeader, strconv.Itoa(count))
		code := http.StatusOK
		if count == 0 || !healthy {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, body)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Want is what the health check node ports of a state should answer: by
// port, the Service and its number of ready endpoints on the node.
type Want struct {
	Namespace, Name string
	LocalEndpoints  int
}

// Wanted derives the health check node ports of st: one per Service with
// a healthCheckNodePort, counting the distinct ready local endpoints of all
// its ports.
func Wanted(st *state.NodeState) map[int32]Want {
	out := map[int32]Want{}
	seen := map[int32]map[string]bool{}
	for i := range st.Services {
		sp := &st.Services[i]
		if sp.HealthCheckNodePort <= 0 {
			continue
		}
		w, ok := out[sp.HealthCheckNodePort]
		if ok && (w.Namespace != sp.Namespace || w.Name != sp.Name) {
			continue // two Services claim one port: the first keeps it
		}
		w.Namespace, w.Name = sp.Namespace, sp.Name
		if seen[sp.HealthCheckNodePort] == nil {
			seen[sp.HealthCheckNodePort] = map[string]bool{}
		}
		for _, e := range sp.Endpoints {
			if e.IsLocal(st.Node) && !seen[sp.HealthCheckNodePort][e.IP.String()] {
				seen[sp.HealthCheckNodePort][e.IP.String()] = true
				w.LocalEndpoints++
			}
		}
		out[sp.HealthCheckNodePort] = w
	}
	return out
}

// Synced records the outcome of a sync of st: err nil marks the proxy
// healthy and makes the health check node ports those of st (new ones
// opened, gone ones closed, counts updated); an error marks it unhealthy
// and keeps the ports as they were. It returns the errors of listeners
// that could not be opened (the others are served).
func (s *Server) Synced(st *state.NodeState, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("health server closed")
	}
	if err != nil || st == nil {
		s.healthy = false
		return nil
	}
	s.healthy, s.updated = true, s.cfg.Now()
	want := Wanted(st)
	var errs []error
	for port, ss := range s.services {
		if w, ok := want[port]; !ok || w.Namespace != ss.namespace || w.Name != ss.name {
			_ = ss.srv.Close()
			delete(s.services, port)
		}
	}
	ports := make([]int32, 0, len(want))
	for p := range want {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	for _, port := range ports {
		w := want[port]
		ss := s.services[port]
		if ss == nil {
			ln, lerr := s.cfg.Listen("tcp", ":"+strconv.Itoa(int(port)))
			if lerr != nil {
				errs = append(errs, fmt.Errorf("health check node port %d of %s/%s: %w", port, w.Namespace, w.Name, lerr))
				continue
			}
			ss = &serviceServer{namespace: w.Namespace, name: w.Name}
			ss.srv = &http.Server{Handler: ss.handler(s), ReadHeaderTimeout: 5 * time.Second}
			go func(srv *http.Server) { _ = srv.Serve(ln) }(ss.srv)
			s.services[port] = ss
		}
		ss.local = w.LocalEndpoints
	}
	return errors.Join(errs...)
}

// Ports lists the open health check node ports, sorted.
func (s *Server) Ports() []int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int32, 0, len(s.services))
	for p := range s.services {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Close stops every listener.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for port, ss := range s.services {
		errs = append(errs, ss.srv.Close())
		delete(s.services, port)
	}
	if s.proxy != nil {
		errs = append(errs, s.proxy.Close())
	}
	return errors.Join(errs...)
}
