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
