package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/svcsim/svcsim/internal/rundir"
)

// Client talks to a running daemon.
type Client struct {
	RunID string
	http  *http.Client
}

// Dial returns a client for run id ("" = the current simulation) after
// checking that it answers.
func Dial(ctx context.Context, id string) (*Client, error) {
	if id == "" {
		var err error
		if id, err = Current(); err != nil {
			return nil, err
		}
	}
	run, err := rundir.Open(id)
	if err != nil {
		return nil, fmt.Errorf("simulation %s: %w (run `svcsim down` to clean up)", id, err)
	}
	sock := run.Path(SocketName)
	c := &Client{RunID: id, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}, Timeout: 5 * time.Minute}}
	if _, err := c.Info(ctx); err != nil {
		return nil, fmt.Errorf("simulation %s does not answer (killed? run `svcsim down` to clean up): %w", id, err)
	}
	return c, nil
}

func (c *Client) call(ctx context.Context, method, path string, q url.Values, body []byte) (string, error) {
	u := "http://svcsim" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s", strings.TrimSpace(string(out)))
	}
	if e := resp.Header.Get(errorHeader); e != "" {
		msg, err := url.QueryUnescape(e)
		if err != nil {
			msg = e
		}
		return string(out), errors.New(msg)
	}
	return string(out), nil
}

// errorHeader carries an error beside a successful answer's output (get
// with some names missing): the client returns both.
const errorHeader = "Svcsim-Error"

// Info describes the simulation.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var in Info
	out, err := c.call(ctx, http.MethodGet, "/v1/info", nil, nil)
	if err != nil {
		return in, err
	}
	return in, json.Unmarshal([]byte(out), &in)
}

// Apply asks the daemon to apply manifests, all or none.
func (c *Client) Apply(ctx context.Context, req ApplyRequest) (string, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	return c.call(ctx, http.MethodPost, "/v1/apply", nil, b)
}

func obj(kind, namespace, name string) url.Values {
	return url.Values{"kind": {kind}, "namespace": {namespace}, "name": {name}}
}

// Patch applies a strategic merge patch.
func (c *Client) Patch(ctx context.Context, kind, namespace, name string, patch []byte) (string, error) {
	return c.call(ctx, http.MethodPost, "/v1/patch", obj(kind, namespace, name), patch)
}

// Scale sets replicas.
func (c *Client) Scale(ctx context.Context, kind, namespace, name string, replicas int) (string, error) {
	q := obj(kind, namespace, name)
	q.Set("replicas", fmt.Sprint(replicas))
	return c.call(ctx, http.MethodPost, "/v1/scale", q, nil)
}

// Delete removes an object.
func (c *Client) Delete(ctx context.Context, kind, namespace, name string) (string, error) {
	return c.call(ctx, http.MethodPost, "/v1/delete", obj(kind, namespace, name), nil)
}

// Label sets ("k=v") or removes ("k-") labels.
func (c *Client) Label(ctx context.Context, kind, namespace, name string, labels []string) (string, error) {
	q := obj(kind, namespace, name)
	q["label"] = labels
	return c.call(ctx, http.MethodPost, "/v1/label", q, nil)
}

// Get renders objects as kubectl get does.
func (c *Client) Get(ctx context.Context, q url.Values) (string, error) {
	return c.call(ctx, http.MethodGet, "/v1/get", q, nil)
}

// Target resolves an exec target.
func (c *Client) Target(ctx context.Context, name, namespace string) (Target, error) {
	var t Target
	out, err := c.call(ctx, http.MethodGet, "/v1/target", url.Values{"name": {name}, "namespace": {namespace}}, nil)
	if err != nil {
		return t, err
	}
	return t, json.Unmarshal([]byte(out), &t)
}

// Dump returns a node's kernel state.
func (c *Client) Dump(ctx context.Context, node string) (string, error) {
	return c.call(ctx, http.MethodGet, "/v1/dump", url.Values{"node": {node}}, nil)
}

// Down asks the daemon to tear the simulation down and exit.
func (c *Client) Down(ctx context.Context) error {
	_, err := c.call(ctx, http.MethodPost, "/v1/down", nil, nil)
	return err
}
