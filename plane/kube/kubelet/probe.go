package kubelet

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeSettings are a probe's timing with the API server's defaults.
type probeSettings struct {
	initialDelay, period, timeout time.Duration
	success, failure              int
}

func settingsOf(p *corev1.Probe) probeSettings {
	s := probeSettings{
		initialDelay: time.Duration(p.InitialDelaySeconds) * time.Second,
		period:       time.Duration(p.PeriodSeconds) * time.Second,
		timeout:      time.Duration(p.TimeoutSeconds) * time.Second,
		success:      int(p.SuccessThreshold),
		failure:      int(p.FailureThreshold),
	}
	if s.period <= 0 {
		s.period = 10 * time.Second
	}
	if s.timeout <= 0 {
		s.timeout = time.Second
	}
	if s.success <= 0 {
		s.success = 1
	}
	if s.failure <= 0 {
		s.failure = 3
	}
	return s
}

// probe runs one probe against the pod from the node, as the kubelet's
// prober does: httpGet succeeds on a status in [200, 400), tcpSocket on a
// completed connection. gRPC probes are checked as a TCP connection; exec
// probes cannot run (there is no container file system) and count as
// success.
func (k *Kubelet) probe(ctx context.Context, p *corev1.Probe, c *corev1.Container, podIP string) (bool, string) {
	s := settingsOf(p)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	dial := k.cfg.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	switch {
	case p.HTTPGet != nil:
		g := p.HTTPGet
		port, err := resolvePort(g.Port, c)
		if err != nil {
			return false, err.Error()
		}
		host := g.Host
		if host == "" {
			host = podIP
		}
		scheme := strings.ToLower(string(g.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		path := g.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
		if pu, err := url.Parse(path); err == nil {
			u.Path, u.RawQuery = pu.Path, pu.RawQuery
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return false, err.Error()
		}
		req.Header.Set("User-Agent", "kube-probe/"+strings.TrimPrefix(k.minorVersion(), "v"))
		req.Header.Set("Accept", "*/*")
		for _, h := range g.HTTPHeaders {
			if strings.EqualFold(h.Name, "Host") {
				req.Host = h.Value
				continue
			}
			req.Header.Add(h.Name, h.Value)
		}
		tr := &http.Transport{
			DialContext:       dial,
			DisableKeepAlives: true,
			Proxy:             nil,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the kubelet does not verify probe certificates
		}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if len(via) >= 10 || r.URL.Hostname() != u.Hostname() {
				return http.ErrUseLastResponse
			}
			return nil
		}}
		resp, err := client.Do(req)
		if err != nil {
			return false, err.Error()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
		_ = resp.Body.Close()
		if resp.StatusCode >= 200 && resp.StatusCode < 400 {
			return true, ""
		}
		return false, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	case p.TCPSocket != nil, p.GRPC != nil:
		host, port := podIP, 0
		if t := p.TCPSocket; t != nil {
			if t.Host != "" {
				host = t.Host
			}
			var err error
			if port, err = resolvePort(t.Port, c); err != nil {
				return false, err.Error()
			}
		} else {
			port = int(p.GRPC.Port)
		}
		conn, err := dial(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false, err.Error()
		}
		_ = conn.Close()
		return true, ""
	}
	return true, ""
}

func (k *Kubelet) minorVersion() string {
	v := k.cfg.Version
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	return v
}

// resolvePort turns a probe's port (a number or a container port name)
// into a number.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid port %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("couldn't find port %q in container %s", p.StrVal, c.Name)
}
