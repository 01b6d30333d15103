package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/topology"
)

// Client sends real traffic from inside one namespace (a pod, a node or the
// external world). Every socket is created inside the namespace, so packets
// leave from there and nowhere else.
type Client struct {
	Name string
	NS   *netns.NS
	http *http.Client
}

// NewClient returns a client sending from ns. HTTP requests use a fresh
// connection each (no keep-alive), so every request is a new flow for the
// load balancer to place.
func NewClient(name string, ns *netns.NS) *Client {
	return &Client{Name: name, NS: ns, http: topology.HTTPClient(ns, false, 3*time.Second)}
}

// DialContext dials from inside the client's namespace.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return topology.DialContext(ctx, c.NS, network, addr)
}

// Get fetches url and returns the body.
func (c *Client) Get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// Response fetches url and returns the status code, the header and the
// body whatever the status (health checks answer 503 with a body).
func (c *Client) Response(ctx context.Context, url string) (int, http.Header, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, string(b), err
}

// Info is the getip backend's answer (the seed's JSON).
type Info struct {
	Code   int    `json:"Code"`
	Msg    string `json:"Msg"`
	IpInfo []struct {
		Ip  string `json:"Ip"`
		Mac string `json:"Mac"`
	} `json:"IpInfo"`
}

// IP is the answering pod's address.
func (i Info) IP() string {
	if len(i.IpInfo) == 0 {
		return ""
	}
	return i.IpInfo[0].Ip
}

// GetInfo fetches http://addr/info and decodes the seed's JSON.
func (c *Client) GetInfo(ctx context.Context, addr string) (Info, string, error) {
	body, err := c.Get(ctx, "http://"+addr+"/info")
	if err != nil {
		return Info{}, body, err
	}
	var in Info
	if err := json.Unmarshal([]byte(body), &in); err != nil {
		return Info{}, body, fmt.Errorf("decode /info answer %q: %w", body, err)
	}
	return in, body, nil
}

// Exec runs a real command (curl, dig, ...) inside the client's namespace and
// returns its combined output.
func (c *Client) Exec(ctx context.Context, name string, args ...string) (string, error) {
	var out []byte
	err := c.NS.Do(func() error {
		var err error
		out, err = exec.CommandContext(ctx, name, args...).CombinedOutput()
		return err
	})
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), c.Name, err, out)
	}
	return string(out), nil
}

// Echo sends one line over TCP or UDP to addr and returns the reply line
// ("<pod> <seen source ip:port> <line>").
func (c *Client) Echo(ctx context.Context, network, addr, line string) (string, error) {
	conn, err := c.DialContext(ctx, network, addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if network == "udp" {
		if _, err := conn.Write([]byte(line)); err != nil {
			return "", err
		}
		buf := make([]byte, 64<<10)
		n, err := conn.Read(buf)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(buf[:n])), nil
	}
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return "", err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(reply), nil
}

// Tally sends n sequential /info requests to addr and counts answers per pod
// IP. It stops at the first error (returned with the counts so far) or when
// ctx ends; every loop is bounded by n.
func (c *Client) Tally(ctx context.Context, addr string, n int) (map[string]int, []string, error) {
	counts := map[string]int{}
	order := make([]string, 0, n)
	for i := 0; i < n; i++ {
		in, body, err := c.GetInfo(ctx, addr)
		if err != nil {
			return counts, order, fmt.Errorf("request %d of %d to %s: %w (%q)", i+1, n, addr, err, body)
		}
		counts[in.IP()]++
		order = append(order, in.IP())
	}
	return counts, order, nil
}
