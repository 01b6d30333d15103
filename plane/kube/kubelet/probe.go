package kubelet

import (
	"context"
	"crypto/tls"
	"errors"
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

// prober is one probe's schedule and consecutive results.
type prober struct {
	p          *corev1.Probe
	s          probeSettings
	next       time.Time
	succ, fail int
}

func newProber(p *corev1.Probe, started time.Time) *prober {
	if p == nil {
		return nil
	}
	s := settingsOf(p)
	return &prober{p: p, s: s, next: started.Add(s.initialDelay)}
}

func (w *podWorker) nextProbe() (time.Time, bool) {
	var next time.Time
	for _, c := range w.ctrs {
		for _, p := range c.activeProbes() {
			if next.IsZero() || p.next.Before(next) {
				next = p.next
			}
		}
	}
	return next, !next.IsZero()
}

// activeProbes: the startup probe until it passes, then liveness and
// readiness.
func (c *ctrState) activeProbes() []*prober {
	if !c.running {
		return nil
	}
	if !c.started {
		return []*prober{c.startup}
	}
	var out []*prober
	for _, p := range []*prober{c.liveness, c.readiness} {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

// runProbes runs every due probe and acts on thresholds: a passed startup
// probe starts liveness and readiness, a failed startup or liveness probe
// restarts the container, readiness sets Ready.
func (w *podWorker) runProbes(ctx context.Context) {
	pod, _ := w.current()
	now := time.Now()
	for _, c := range w.ctrs {
		for _, p := range c.activeProbes() {
			if p.next.After(now) {
				continue
			}
			ok, msg := w.k.probe(ctx, p.p, &c.spec, w.ip.String())
			p.next = time.Now().Add(p.s.period)
			if ok {
				p.succ, p.fail = p.succ+1, 0
			} else {
				p.succ, p.fail = 0, p.fail+1
			}
			switch p {
			case c.startup:
				if p.succ >= p.s.success {
					c.started = true
					c.ready = c.readiness == nil
					t := time.Now()
					for _, q := range []*prober{c.liveness, c.readiness} {
						if q != nil {
							q.next = t.Add(q.s.initialDelay)
						}
					}
				} else if p.fail >= p.s.failure {
					w.logf("container %s failed its startup probe: %s", c.spec.Name, msg)
					w.restart(ctx, pod, c)
				}
			case c.liveness:
				if p.fail >= p.s.failure {
					w.logf("container %s failed its liveness probe: %s", c.spec.Name, msg)
					w.restart(ctx, pod, c)
				}
			case c.readiness:
				if p.succ >= p.s.success {
					c.ready = true
				} else if p.fail >= p.s.failure {
					c.ready = false
				}
			}
			if !c.running {
				break
			}
		}
	}
}

// restart kills and restarts a container as the kubelet does after a
// failed liveness probe (unless restartPolicy is Never). The built-in
// servers are the pod's: they restart with any built-in container.
func (w *podWorker) restart(ctx context.Context, pod *corev1.Pod, c *ctrState) {
	err := w.stopContainer(c, 137, "Error")
	if c.workload == nil || c.workload.Builtin {
		err = errors.Join(err, w.sandbox.StopServers())
	}
	c.lastTerm = c.terminated
	if pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
		if err != nil {
			w.logf("%v", err)
		}
		return
	}
	c.restarts++
	c.id = containerID(w.uid, c.spec.Name, c.restarts)
	if c.workload == nil || c.workload.Builtin {
		err = errors.Join(err, w.sandbox.StartServers())
	}
	err = errors.Join(err, w.startContainer(ctx, pod, c))
	if err != nil {
		w.logf("restart container %s: %v", c.spec.Name, err)
	}
}
