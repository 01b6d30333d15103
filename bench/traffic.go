package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/stats"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/sim/state"
	"github.com/svcsim/svcsim/topology"
)

// Traffic loops run entirely inside one netns.Do of the client's namespace:
// every socket is made on that locked thread, so no per-connection namespace
// switch is timed. Every loop is bounded in count and in time.

// dialTimeout bounds one connect() or one request.
const dialTimeout = 2 * time.Second

// dial connects to addr and returns the connection and the connect() time.
// Closing with linger 0 sends RST, so thousands of short connections leave
// no TIME_WAIT behind to exhaust the client's ports.
func dial(ctx context.Context, addr string) (*net.TCPConn, time.Duration, error) {
	d := net.Dialer{Timeout: dialTimeout}
	t0 := time.Now()
	c, err := d.DialContext(ctx, "tcp", addr)
	dt := time.Since(t0)
	if err != nil {
		return nil, dt, err
	}
	tc := c.(*net.TCPConn)
	_ = tc.SetLinger(0)
	return tc, dt, nil
}

// connectTimes measures count connect() calls to addr from ns (each a new
// connection, so each goes through the datapath's first-packet path), after
// a few untimed warm-up connections.
func connectTimes(ctx context.Context, ns *netns.NS, addr string, count int, budget time.Duration) ([]float64, error) {
	var out []float64
	err := ns.Do(func() error {
		end := time.Now().Add(budget)
		for i := range 5 {
			c, _, err := dial(ctx, addr)
			if err != nil {
				return fmt.Errorf("warm-up connection %d to %s: %w", i, addr, err)
			}
			c.Close()
		}
		for len(out) < count && time.Now().Before(end) {
			c, dt, err := dial(ctx, addr)
			if err != nil {
				return fmt.Errorf("connection %d to %s: %w", len(out), addr, err)
			}
			c.Close()
			out = append(out, ms(dt))
		}
		return nil
	})
	return out, err
}

// httpGet sends one GET on c (keep-alive) and returns the body.
func httpGet(c net.Conn, r *bufio.Reader, path string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: bench\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), nil
}

// getOnce opens a connection, GETs path and closes.
func getOnce(ctx context.Context, addr, path string) (string, error) {
	c, _, err := dial(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return httpGet(c, bufio.NewReader(c), path)
}

// convergeTime calls change (which hands the new state to the mode and
// returns when Sync does) and then sends requests on new connections from
// ns until one is answered by want; it returns the time from the start of
// change to that answer, and the number of requests sent.
func convergeTime(ctx context.Context, ns *netns.NS, addr, want string, change func() error, budget time.Duration) (time.Duration, int, error) {
	t0 := time.Now()
	if err := change(); err != nil {
		return 0, 0, err
	}
	var got time.Duration
	tries := 0
	err := ns.Do(func() error {
		end := t0.Add(budget)
		var last string
		var lastErr error
		for time.Now().Before(end) && tries < 100000 {
			tries++
			body, err := getOnce(ctx, addr, "/name")
			if err == nil && body == want {
				got = time.Since(t0)
				return nil
			}
			last, lastErr = body, err
		}
		return fmt.Errorf("no answer from %s via %s within %s (%d requests; last %q, %v)", want, addr, budget, tries, last, lastErr)
	})
	return got, tries, err
}

// rps measures requests per second from ns to addr: keepAlive sends every
// request on one connection, otherwise each request opens its own. It stops
// after max requests or budget, whichever comes first.
func rps(ctx context.Context, ns *netns.NS, addr string, keepAlive bool, max int, budget time.Duration) (float64, error) {
	var rate float64
	err := ns.Do(func() error {
		var c *net.TCPConn
		var r *bufio.Reader
		defer func() {
			if c != nil {
				c.Close()
			}
		}()
		n := 0
		t0 := time.Now()
		end := t0.Add(budget)
		for n < max && time.Now().Before(end) {
			if c == nil || !keepAlive {
				if c != nil {
					c.Close()
				}
				var err error
				if c, _, err = dial(ctx, addr); err != nil {
					return fmt.Errorf("request %d to %s: %w", n, addr, err)
				}
				r = bufio.NewReader(c)
			}
			if _, err := httpGet(c, r, "/name"); err != nil {
				return fmt.Errorf("request %d to %s: %w", n, addr, err)
			}
			n++
		}
		el := time.Since(t0)
		if n == 0 || el <= 0 {
			return errors.New("no request completed")
		}
		rate = float64(n) / el.Seconds()
		return nil
	})
	return rate, err
}

// hostPort renders ip:port.
func hostPort(ip netip.Addr, port int) string {
	return netip.AddrPortFrom(ip, uint16(port)).String()
}

// podName is the name a pod answers with on GET /name.
func podName(s string) string { return strings.TrimSpace(s) }

// Backend pods of the traffic topology.
var (
	podA = netip.MustParseAddr("10.244.1.10")
	podB = netip.MustParseAddr("10.244.1.11")
	podC = netip.MustParseAddr("10.244.1.20") // the client
	// podD answers the direct measurements. It is never a Service backend:
	// IPVS keeps its own connection table, and a direct connection whose
	// client port an earlier VIP connection to the same pod used would have
	// its replies rewritten to the VIP by that stale entry.
	podD = netip.MustParseAddr("10.244.1.12")
)

// ensureTopology builds the one-node topology with two backend pods, the
// direct target and a client pod, once per Run.
func (r *runner) ensureTopology(ctx context.Context) error {
	if r.topo != nil {
		return nil
	}
	t, err := topology.Build(ctx, topology.DefaultSpec(r.run, 1))
	if err != nil {
		return err
	}
	r.topo = t
	port := []topology.Port{{Port: TargetPort}}
	for i, ip := range []netip.Addr{podA, podB, podD} {
		p, err := t.AddPod(ctx, topology.PodSpec{Name: fmt.Sprintf("bench/backend-%c", 'a'+i), Node: "node1", IP: ip, Ports: port})
		if err != nil {
			return err
		}
		r.pods[i] = p
	}
	r.cli, err = t.AddPod(ctx, topology.PodSpec{Name: "bench/client", Node: "node1", IP: podC})
	return err
}

// traffic measures first-packet latency, convergence and throughput at
// every n on node1 of the topology.
func (r *runner) traffic(ctx context.Context, dp string, s series) error {
	if err := r.ensureTopology(ctx); err != nil {
		return fmt.Errorf("build topology: %w", err)
	}
	node := r.topo.Node("node1").NS
	var in *instance
	if err := node.Do(func() error {
		var err error
		in, err = newInstance(dp)
		return err
	}); err != nil {
		return err
	}
	defer func() {
		if err := node.Do(in.close); err != nil {
			r.fail(dp, "cleanup on node1", err)
		}
	}()
	epOf := func(p *topology.Pod) state.Endpoint {
		return state.Endpoint{IP: p.IP, Port: TargetPort, Node: "node1", Pod: p.Name}
	}
	sync := func(st *state.NodeState) error { return node.Do(func() error { return in.p.Sync(ctx, st) }) }
	cli := r.cli.NS
	direct := hostPort(podD, TargetPort)
	var errs []error
	for _, n := range r.cfg.Services {
		base, err := Synthetic(n, r.cfg.Endpoints)
		if err != nil {
			return err
		}
		stA := WithTargetEndpoints(base, epOf(r.pods[0]))
		stB := WithTargetEndpoints(base, epOf(r.pods[1]))
		if err := sync(stA); err != nil {
			return fmt.Errorf("sync %d services: %w", n, err)
		}
		vip := hostPort(Target(stA).ClusterIP, int(Target(stA).Port))
		budget := 30 * time.Second

		viaVIP, err := connectTimes(ctx, cli, vip, r.cfg.Conns, budget)
		if err != nil {
			errs = append(errs, fmt.Errorf("first-packet N=%d: %w", n, err))
		}
		viaPod, derr := connectTimes(ctx, cli, direct, r.cfg.Conns, budget)
		if derr != nil {
			errs = append(errs, fmt.Errorf("first-packet direct N=%d: %w", n, derr))
		}
		if err == nil && derr == nil {
			dsum := stats.Summarize(viaPod)
			fp := point(n, viaVIP, true, map[string]float64{"direct_median_ms": dsum.Median, "direct_p99_ms": dsum.P99})
			if dsum.Median > 0 {
				fp.Extra["ratio_to_direct"] = fp.Median / dsum.Median
			}
			s.add(MetricFirstPacket, fp)
			s.add(MetricFloorDirect, point(n, viaPod, true, nil))
		}

		var conv, tries []float64
		cur, states := 0, [2]*state.NodeState{stA, stB}
		for range r.cfg.ConvergeReps {
			next := 1 - cur
			d, k, err := convergeTime(ctx, cli, vip, r.pods[next].Name, func() error { return sync(states[next]) }, 10*time.Second)
			if err != nil {
				errs = append(errs, fmt.Errorf("convergence N=%d: %w", n, err))
				break
			}
			conv, tries = append(conv, ms(d)), append(tries, float64(k))
			cur = next
		}
		if cur != 0 {
			if err := sync(stA); err != nil {
				return fmt.Errorf("sync back to pod A: %w", err)
			}
		}
		if len(conv) > 0 {
			s.add(MetricConvergence, point(n, conv, false, map[string]float64{"requests_median": stats.Summarize(tries).Median}))
		}

		for _, m := range []struct {
			metric string
			keep   bool
		}{{MetricRPSKeepAlive, true}, {MetricRPSNewConn, false}} {
			var via, dir []float64
			for range r.cfg.RPSReps {
				v, err := rps(ctx, cli, vip, m.keep, r.cfg.RPSMax, r.cfg.RPSTime)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s N=%d: %w", m.metric, n, err))
					break
				}
				d, err := rps(ctx, cli, direct, m.keep, r.cfg.RPSMax, r.cfg.RPSTime)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s direct N=%d: %w", m.metric, n, err))
					break
				}
				via, dir = append(via, v), append(dir, d)
			}
			if len(via) > 0 {
				dm := stats.Summarize(dir).Median
				p := point(n, via, false, map[string]float64{"direct_median_rps": dm})
				if dm > 0 {
					p.Extra["ratio_to_direct"] = p.Median / dm
				}
				s.add(m.metric, p)
			}
		}
		if fp, ok := lastPoint(s[MetricFirstPacket], n); ok {
			r.logf("bench: %-16s N=%-6d first-packet p50 %.3f ms p99 %.3f ms (direct %.3f ms)", dp, n, fp.Median, fp.P99, fp.Extra["direct_median_ms"])
		}
	}
	return errors.Join(errs...)
}

func lastPoint(ps []results.Point, n int) (results.Point, bool) {
	for _, p := range ps {
		if p.N == n {
			return p, true
		}
	}
	return results.Point{}, false
}
