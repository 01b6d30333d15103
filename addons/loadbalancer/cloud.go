package loadbalancer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/topology"
)

// CloudConfig configures the simulated cloud load balancer.
type CloudConfig struct {
	// Pool is the range addresses are allocated from
	// (topology.DefaultLoadBalancerPool when invalid).
	Pool netip.Prefix
	// API is where the cloud API listens inside its namespace ("ip:port");
	// ":8080" on every address when empty.
	API string
	// Interval is the time between two health probes of a node (500 ms
	// when zero); Timeout bounds one probe (1 s when zero).
	Interval, Timeout time.Duration
	// UnhealthyAfter consecutive failed probes take a node out (2 when
	// zero); one success puts it back.
	UnhealthyAfter int
	// Log receives one line per change of a node's health (nil: discard).
	Log io.Writer
}

// Cloud is the simulated cloud load balancer: an API that allocates
// addresses from a pool and takes each load balancer's listeners, nodes and
// health check, a prober that checks every node of every load balancer from
// the cloud's namespace, and a router that points each address (a /32
// route in that namespace) at the nodes that pass (several: a multipath
// route, flows spread by the kernel's L4 hash), or makes it unreachable when
// none does. Packets keep their destination (the load-balancer address):
// ipMode VIP, the nodes' proxies must serve it. The route is per address:
// every port of it reaches the nodes, whose proxies serve the listener
// ports (a cloud that filters other ports is not simulated).
type Cloud struct {
	cfg  CloudConfig
	ns   *netns.NS
	nl   *netlink.Handle
	link netlink.Link
	srv  *http.Server
	http *http.Client

	mu  sync.Mutex
	lbs map[string]*balancer // by "namespace/name"

	cancel context.CancelFunc
	done   sync.WaitGroup
}

// balancer is one load balancer's configuration and the state of its nodes.
type balancer struct {
	spec   Spec
	ip     netip.Addr
	health map[netip.Addr]*nodeHealth
	routed string // the nodes of the route last written, for change detection
}

type nodeHealth struct {
	healthy bool
	fails   int
	last    string // the last probe's outcome
}

// StartCloud starts the cloud in ns (the topology's cloud-lb namespace).
func StartCloud(ctx context.Context, ns *netns.NS, cfg CloudConfig) (*Cloud, error) {
	if !cfg.Pool.IsValid() {
		cfg.Pool = topology.DefaultLoadBalancerPool
	}
	cfg.Pool = cfg.Pool.Masked()
	if cfg.API == "" {
		cfg.API = fmt.Sprintf(":%d", APIPort)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.UnhealthyAfter <= 0 {
		cfg.UnhealthyAfter = 2
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	nl, err := netlink.NewHandleAt(ns.Handle())
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", ns.Name(), err)
	}
	link, err := nl.LinkByName(topology.PodIface)
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("find %s in %s: %w", topology.PodIface, ns.Name(), err)
	}
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", cfg.API)
		return err
	}); err != nil {
		nl.Close()
		return nil, fmt.Errorf("cloud API listener %s in %s: %w", cfg.API, ns.Name(), err)
	}
	c := &Cloud{cfg: cfg, ns: ns, nl: nl, link: link, lbs: map[string]*balancer{},
		http: topology.HTTPClient(ns, false, cfg.Timeout)}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/loadbalancers/{namespace}/{name}", c.put)
	mux.HandleFunc("DELETE /v1/loadbalancers/{namespace}/{name}", c.delete)
	mux.HandleFunc("GET /v1/loadbalancers", c.list)
	c.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	pctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done.Add(2)
	go func() { defer c.done.Done(); _ = c.srv.Serve(ln) }()
	go func() { defer c.done.Done(); c.probeLoop(pctx) }()
	return c, nil
}

// Close stops the API and the prober and removes every route it made.
func (c *Cloud) Close() error {
	c.cancel()
	err := c.srv.Close()
	c.done.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	for k, b := range c.lbs {
		if err := c.unroute(b.ip); err != nil {
			errs = append(errs, err)
		}
		delete(c.lbs, k)
	}
	c.nl.Close()
	return errors.Join(errs...)
}

func (c *Cloud) put(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("namespace") + "/" + r.PathValue("name")
	var spec Spec
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		http.Error(w, "decode load balancer: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := spec.validate(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.lbs[key]
	if b == nil {
		ip, ok := c.free()
		if !ok {
			http.Error(w, fmt.Sprintf("address pool %s is exhausted", c.cfg.Pool), http.StatusInsufficientStorage)
			return
		}
		b = &balancer{ip: ip, health: map[netip.Addr]*nodeHealth{}}
		c.lbs[key] = b
	}
	b.spec = spec
	for n := range b.health {
		if !containsAddr(spec.Nodes, n) {
			delete(b.health, n)
		}
	}
	for _, n := range spec.Nodes {
		if b.health[n] == nil {
			b.health[n] = &nodeHealth{last: "not probed yet"}
		}
	}
	if err := c.route(b); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, c.status(key, b))
}

func (c *Cloud) delete(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("namespace") + "/" + r.PathValue("name")
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.lbs[key]
	if b == nil {
		http.Error(w, "no load balancer "+key, http.StatusNotFound)
		return
	}
	delete(c.lbs, key)
	if err := c.unroute(b.ip); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *Cloud) list(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []Status{}
	for k, b := range c.lbs {
		out = append(out, c.status(k, b))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, out)
}

// status describes b; the caller holds c.mu.
func (c *Cloud) status(key string, b *balancer) Status {
	st := Status{Name: key, IP: b.ip, Spec: b.spec}
	for _, n := range b.spec.Nodes {
		h := b.health[n]
		st.Nodes = append(st.Nodes, NodeStatus{IP: n, Healthy: h.healthy, Last: h.last})
	}
	return st
}

// free returns the lowest unused host address of the pool; the caller
// holds c.mu.
func (c *Cloud) free() (netip.Addr, bool) {
	used := map[netip.Addr]bool{}
	for _, b := range c.lbs {
		used[b.ip] = true
	}
	last := lastAddr(c.cfg.Pool)
	for a := c.cfg.Pool.Addr().Next(); c.cfg.Pool.Contains(a) && a != last; a = a.Next() {
		if !used[a] {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// route points b's address at its healthy nodes (ip route replace
// IP/32 nexthop via N1 nexthop via N2 ...), or makes it unreachable when
// none is healthy; the caller holds c.mu.
func (c *Cloud) route(b *balancer) error {
	var via []netip.Addr
	for _, n := range b.spec.Nodes {
		if h := b.health[n]; h != nil && h.healthy {
			via = append(via, n)
		}
	}
	key := fmt.Sprint(via)
	if key == b.routed {
		return nil
	}
	dst := &net.IPNet{IP: b.ip.AsSlice(), Mask: net.CIDRMask(32, 32)}
	r := &netlink.Route{Dst: dst}
	switch len(via) {
	case 0:
		r.Type = unreachable
	case 1:
		r.LinkIndex, r.Gw = c.link.Attrs().Index, via[0].AsSlice()
	default:
		for _, n := range via {
			r.MultiPath = append(r.MultiPath, &netlink.NexthopInfo{LinkIndex: c.link.Attrs().Index, Gw: n.AsSlice()})
		}
	}
	if err := c.nl.RouteReplace(r); err != nil {
		return fmt.Errorf("route %s via %v in %s: %w", b.ip, via, c.ns.Name(), err)
	}
	b.routed = key
	return nil
}

// unreachable is RTN_UNREACHABLE: the cloud answers ICMP host unreachable.
const unreachable = 7

// unroute removes the address's route; the caller holds c.mu.
func (c *Cloud) unroute(ip netip.Addr) error {
	dst := &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}
	routes, err := c.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("list route %s in %s: %w", ip, c.ns.Name(), err)
	}
	for i := range routes {
		if err := c.nl.RouteDel(&routes[i]); err != nil {
			return fmt.Errorf("delete route %s in %s: %w", ip, c.ns.Name(), err)
		}
	}
	return nil
}

// probeLoop probes every node of every load balancer each interval and
// rewrites the routes whose healthy nodes changed.
func (c *Cloud) probeLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		c.probeAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type probe struct {
	url  string
	node netip.Addr
}

func (c *Cloud) probeAll(ctx context.Context) {
	c.mu.Lock()
	var probes []probe
	seen := map[string]bool{}
	for _, b := range c.lbs {
		for _, n := range b.spec.Nodes {
			u := fmt.Sprintf("http://%s%s", netip.AddrPortFrom(n, uint16(b.spec.HealthCheck.Port)), b.spec.HealthCheck.Path)
			if !seen[u] {
				seen[u] = true
				probes = append(probes, probe{u, n})
			}
		}
	}
	c.mu.Unlock()
	results := make(map[string]string, len(probes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := c.probe(ctx, p.url)
			mu.Lock()
			results[p.url] = out
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, b := range c.lbs {
		for _, n := range b.spec.Nodes {
			u := fmt.Sprintf("http://%s%s", netip.AddrPortFrom(n, uint16(b.spec.HealthCheck.Port)), b.spec.HealthCheck.Path)
			out, ok := results[u]
			h := b.health[n]
			if !ok || h == nil {
				continue // configured after the probes started
			}
			was := h.healthy
			h.last = out
			if out == "200" {
				h.healthy, h.fails = true, 0
			} else if h.fails++; h.fails >= c.cfg.UnhealthyAfter {
				h.healthy = false
			}
			if h.healthy != was {
				fmt.Fprintf(c.cfg.Log, "cloud load balancer %s (%s): node %s healthy=%v (%s)\n", key, b.ip, n, h.healthy, out)
			}
		}
		if err := c.route(b); err != nil {
			fmt.Fprintf(c.cfg.Log, "cloud load balancer %s: %v\n", key, err)
		}
	}
}

// probe GETs url from the cloud's namespace: "200" on success, else the
// status code or the error.
func (c *Cloud) probe(ctx context.Context, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return fmt.Sprint(resp.StatusCode)
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | (uint32(1)<<(32-p.Bits()) - 1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// validate checks a load balancer's configuration.
func (s *Spec) validate() error {
	var errs []string
	if len(s.Ports) == 0 {
		errs = append(errs, "no ports")
	}
	for _, p := range s.Ports {
		if p.Port < 1 || p.Port > 65535 || (p.Protocol != "TCP" && p.Protocol != "UDP") {
			errs = append(errs, fmt.Sprintf("bad port %s/%d", p.Protocol, p.Port))
		}
	}
	for _, n := range s.Nodes {
		if !n.Is4() {
			errs = append(errs, fmt.Sprintf("node %v is not IPv4", n))
		}
	}
	if s.HealthCheck.Port < 1 || s.HealthCheck.Port > 65535 || !strings.HasPrefix(s.HealthCheck.Path, "/") {
		errs = append(errs, fmt.Sprintf("bad health check %d %q", s.HealthCheck.Port, s.HealthCheck.Path))
	}
	if len(errs) > 0 {
		return errors.New("invalid load balancer: " + strings.Join(errs, "; "))
	}
	return nil
}
