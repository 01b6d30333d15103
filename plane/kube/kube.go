// Package kube runs a genuine Kubernetes control plane for a simulation:
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler as
// processes of the upstream multi-call binary (module upstream/, `make
// kube`), inside the control-plane network namespace of a topology built
// with Spec.ControlPlaneIP. Nothing listens in the host's root namespace:
// etcd and the controllers' health ports are on that namespace's loopback,
// the API server on its underlay address.
//
// Certificates (a cluster CA, the API server's serving certificate, client
// certificates), the service-account key pair and kubeconfigs are generated
// here into the run directory, under kube/. Every process is recorded in the
// run directory, so topology.GC (svcsim down) kills it if svcsim dies first;
// Close stops them with SIGTERM, then SIGKILL, and removes kube/.
//
// The node side runs from the same binary: StartKubeProxy starts the genuine
// kube-proxy in a node's namespace, StartProcess any other component (CoreDNS
// with Corefile's kube-dns configuration). Kubeconfig and NodeKubeconfig
// issue credentials for them and for svcsim's kubelet (plane/kube/kubelet).
// Open gives another process kubectl against a running control plane.
package kube

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/rundir"
	"github.com/svcsim/svcsim/topology"
)

// DirName is the control plane's directory inside the run directory.
const DirName = "kube"

// DefaultNodePortRange is the API server's default, as in the embedded model.
const DefaultNodePortRange = "30000-32767"

// Config describes a control plane to start.
type Config struct {
	Run *rundir.Run
	// NS is the control-plane namespace (topology's ControlPlane()) and
	// AdvertiseIP its underlay address (Spec.ControlPlaneIP).
	NS          *netns.NS
	AdvertiseIP netip.Addr
	// ServiceCIDR and ClusterCIDR default to topology's plan (10.96.0.0/12,
	// 10.244.0.0/16); NodePortRange to DefaultNodePortRange.
	ServiceCIDR   netip.Prefix
	ClusterCIDR   netip.Prefix
	NodePortRange string
	// Binary is the multi-call binary; "" finds it (FindBinary).
	Binary string
	// ExtraArgs are appended to a component's flags (keyed by component
	// name, e.g. APIServer); a later flag overrides an earlier one.
	ExtraArgs map[string][]string
	// StartTimeout bounds Start (0: 2 minutes).
	StartTimeout time.Duration
}

// ControlPlane is a running control plane. Its methods are safe for
// concurrent use.
type ControlPlane struct {
	cfg    Config
	l      layout
	s      settings
	ca     *CA
	binary string
	client *Client

	mu     sync.Mutex
	procs  []*Process // start order
	ready  map[string]time.Duration
	closed bool
}

// Start generates the run's credentials and starts etcd, the API server, the
// controller manager and the scheduler, returning once the API server
// answers /readyz and the others /healthz. On failure everything started
// is stopped and the error carries the end of the failing component's log.
func Start(ctx context.Context, cfg Config) (_ *ControlPlane, err error) {
	if cfg.Run == nil || cfg.NS == nil {
		return nil, errors.New("kube: Config needs Run and NS")
	}
	if !cfg.ServiceCIDR.IsValid() {
		cfg.ServiceCIDR = topology.DefaultServiceCIDR
	}
	if !cfg.ClusterCIDR.IsValid() {
		cfg.ClusterCIDR = topology.DefaultClusterCIDR
	}
	if cfg.NodePortRange == "" {
		cfg.NodePortRange = DefaultNodePortRange
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	s := settings{AdvertiseIP: cfg.AdvertiseIP, ServiceCIDR: cfg.ServiceCIDR.Masked(), ClusterCIDR: cfg.ClusterCIDR.Masked(), NodePortRange: cfg.NodePortRange}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	bin := cfg.Binary
	if bin == "" {
		if bin, _, err = FindBinary(); err != nil {
			return nil, err
		}
	}
	c := &ControlPlane{cfg: cfg, l: layout(cfg.Run.Path(DirName)), s: s, binary: bin, ready: map[string]time.Duration{}}
	c.client = &Client{run: cfg.Run, ns: cfg.NS, l: c.l, binary: bin, server: s.server()}
	if err := os.Mkdir(string(c.l), 0o700); err != nil {
		return nil, fmt.Errorf("kube: create %s: %w", c.l, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := c.writeCredentials(); err != nil {
		return nil, err
	}
	if err := c.client.linkKubectl(); err != nil {
		return nil, err
	}

	begin := time.Now()
	etcd, err := c.start(Etcd, etcdArgs(c.l))
	if err != nil {
		return nil, err
	}
	if err := c.waitHealthy(ctx, etcd, plainClient(cfg.NS), etcdURL(etcdClientPort)+"/health", `"health":"true"`, begin); err != nil {
		return nil, err
	}
	api, err := c.start(APIServer, apiServerArgs(c.l, s))
	if err != nil {
		return nil, err
	}
	adminTLS, err := c.adminTLS()
	if err != nil {
		return nil, err
	}
	apiClient := tlsClient(cfg.NS, adminTLS)
	defer apiClient.CloseIdleConnections()
	if err := c.waitHealthy(ctx, api, apiClient, s.server()+"/readyz", "ok", begin); err != nil {
		return nil, err
	}
	// Not earlier: until /readyz (which includes the RBAC bootstrap hook)
	// the controller manager is refused the extension-apiserver-
	// authentication ConfigMap and exits.
	kcm, err := c.start(ControllerManager, controllerManagerArgs(c.l, s))
	if err != nil {
		return nil, err
	}
	sched, err := c.start(Scheduler, schedulerArgs(c.l))
	if err != nil {
		return nil, err
	}
	// Their serving certificates are self-signed at start-up into their
	// --cert-dir; the check is a liveness probe on the namespace's loopback.
	local := tlsClient(cfg.NS, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback of our own namespace
	defer local.CloseIdleConnections()
	errc := make(chan error, 2)
	go func() {
		errc <- c.waitHealthy(ctx, kcm, local, fmt.Sprintf("https://127.0.0.1:%d/healthz", controllerManagerPort), "ok", begin)
	}()
	go func() {
		errc <- c.waitHealthy(ctx, sched, local, fmt.Sprintf("https://127.0.0.1:%d/healthz", schedulerPort), "ok", begin)
	}()
	if err := errors.Join(<-errc, <-errc); err != nil {
		return nil, err
	}
	if err := c.client.writeState(); err != nil {
		return nil, err
	}
	return c, nil
}

// Admin is the cluster administrator's user name (group system:masters).
const Admin = "kubernetes-admin"

// writeCredentials writes the CA, the API server's certificate, the
// service-account keys and the components' and the admin's kubeconfigs.
func (c *ControlPlane) writeCredentials() error {
	now := time.Now()
	ca, err := NewCA("svcsim-ca-"+c.cfg.Run.ID, now)
	if err != nil {
		return err
	}
	c.ca = ca
	caKey, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	server, err := ca.Issue(CertRequest{
		CommonName: APIServer,
		Server:     true,
		DNSNames:   []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
		IPs:        []netip.Addr{c.s.kubernetesServiceIP(), c.s.AdvertiseIP, netip.MustParseAddr("127.0.0.1")},
	}, now)
	if err != nil {
		return err
	}
	saKey, saPub, err := serviceAccountKeys()
	if err != nil {
		return err
	}
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{c.l.caCert(), ca.CertPEM, 0o644},
		{c.l.caKey(), caKey, 0o600},
		{c.l.serverCert(), server.CertPEM, 0o644},
		{c.l.serverKey(), server.KeyPEM, 0o600},
		{c.l.saKey(), saKey, 0o600},
		{c.l.saPub(), saPub, 0o644},
	}
	for _, f := range files {
		if err := writeFile(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	for _, u := range []struct{ file, user, group string }{
		{Admin, Admin, "system:masters"},
		{ControllerManager, "system:kube-controller-manager", ""},
		{Scheduler, "system:kube-scheduler", ""},
	} {
		var groups []string
		if u.group != "" {
			groups = []string{u.group}
		}
		if _, err := c.issueKubeconfig(u.file, u.user, groups...); err != nil {
			return err
		}
	}
	return os.MkdirAll(c.l.kubeCache(), 0o700)
}

// issueKubeconfig writes kubeconfig/<file>.conf for a fresh client
// certificate of user in groups.
func (c *ControlPlane) issueKubeconfig(file, user string, groups ...string) (string, error) {
	kp, err := c.ca.Issue(CertRequest{CommonName: user, Organizations: groups, Client: true}, time.Now())
	if err != nil {
		return "", err
	}
	p := c.l.kubeconfig(file)
	if err := writeFile(p, kubeconfig(c.s.server(), c.ca.CertPEM, user, kp), 0o600); err != nil {
		return "", err
	}
	return p, nil
}

// Kubeconfig issues a client certificate for user in groups and returns the
// path of a kubeconfig using it (written once per user under kube/).
func (c *ControlPlane) Kubeconfig(user string, groups ...string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "", errors.New("kube: control plane closed")
	}
	file := strings.NewReplacer(":", "_", "/", "_").Replace(user)
	if _, err := os.Stat(c.l.kubeconfig(file)); err == nil {
		return c.l.kubeconfig(file), nil
	}
	return c.issueKubeconfig(file, user, groups...)
}

// NodeKubeconfig is the kubeconfig of node's kubelet: user system:node:<node>
// in group system:nodes, which the Node authorizer and NodeRestriction
// admission expect.
func (c *ControlPlane) NodeKubeconfig(node string) (string, error) {
	return c.Kubeconfig("system:node:"+node, "system:nodes")
}

// KubeProxyKubeconfig is kube-proxy's kubeconfig: user system:kube-proxy,
// bound to the system:node-proxier role by the default RBAC policy.
func (c *ControlPlane) KubeProxyKubeconfig() (string, error) {
	return c.Kubeconfig("system:kube-proxy")
}

// AdminKubeconfig is the administrator's kubeconfig (system:masters).
func (c *ControlPlane) AdminKubeconfig() string { return c.client.AdminKubeconfig() }

// Server is the API server's URL (https://<advertise address>:6443).
func (c *ControlPlane) Server() string { return c.s.server() }

// CACertPEM is the cluster CA certificate.
func (c *ControlPlane) CACertPEM() []byte { return c.ca.CertPEM }

// CACertFile is the cluster CA certificate's path.
func (c *ControlPlane) CACertFile() string { return c.l.caCert() }

// Dir is the control plane's directory (run directory/kube).
func (c *ControlPlane) Dir() string { return string(c.l) }

// Binary is the multi-call binary the components run from.
func (c *ControlPlane) Binary() string { return c.binary }

// NS is the control-plane namespace.
func (c *ControlPlane) NS() *netns.NS { return c.cfg.NS }

// Processes are the running components in start order.
func (c *ControlPlane) Processes() []*Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Process(nil), c.procs...)
}

// Ready returns how long after the start of etcd each component first
// answered its health check.
func (c *ControlPlane) Ready() map[string]time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]time.Duration, len(c.ready))
	for k, v := range c.ready {
		out[k] = v
	}
	return out
}

// start launches component with its flags and the configured extra ones.
func (c *ControlPlane) start(component string, args []string) (*Process, error) {
	args = append(args, c.cfg.ExtraArgs[component]...)
	p, err := startProcess(c.cfg.NS, c.cfg.Run, processSpec{
		Binary: c.binary, Name: component, Args: args,
		Env: baseEnv(c.l.home()), Log: c.l.log(component),
	})
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// waitHealthy polls url until its body contains want, p exits, or ctx ends.
func (c *ControlPlane) waitHealthy(ctx context.Context, p *Process, client *http.Client, url, want string, begin time.Time) error {
	for {
		ok, last := probe(ctx, client, url, want)
		if ok {
			c.mu.Lock()
			c.ready[p.Name] = time.Since(begin)
			c.mu.Unlock()
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("kube: %s exited before becoming healthy (%v); end of %s:\n%s", p.Name, p.Err(), p.Log, tail(p.Log, 15))
		case <-ctx.Done():
			return fmt.Errorf("kube: %s not healthy at %s: %w (last: %s); end of %s:\n%s", p.Name, url, ctx.Err(), last, p.Log, tail(p.Log, 15))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// probe GETs url once (2 s at most) and reports whether it answered 200
// with a body containing want, and otherwise what it answered.
func probe(ctx context.Context, client *http.Client, url, want string) (bool, string) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(want)) {
		return true, ""
	}
	return false, fmt.Sprintf("%s: %s", resp.Status, firstLine(string(body)))
}

// Check asks every control-plane component once whether it is healthy (the
// checks Start waited for) and reports each one that has exited or does not
// answer, with the end of its log: a scenario sharing one control plane
// can tell a dead component from a slow change.
func (c *ControlPlane) Check(ctx context.Context) error {
	adminTLS, err := c.adminTLS()
	if err != nil {
		return err
	}
	api := tlsClient(c.cfg.NS, adminTLS)
	defer api.CloseIdleConnections()
	local := tlsClient(c.cfg.NS, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback of our own namespace
	defer local.CloseIdleConnections()
	plain := plainClient(c.cfg.NS)
	defer plain.CloseIdleConnections()
	checks := map[string]struct {
		client    *http.Client
		url, want string
	}{
		Etcd:              {plain, etcdURL(etcdClientPort) + "/health", `"health":"true"`},
		APIServer:         {api, c.s.server() + "/readyz", "ok"},
		ControllerManager: {local, fmt.Sprintf("https://127.0.0.1:%d/healthz", controllerManagerPort), "ok"},
		Scheduler:         {local, fmt.Sprintf("https://127.0.0.1:%d/healthz", schedulerPort), "ok"},
	}
	var errs []error
	for _, p := range c.Processes() {
		chk, ok := checks[p.Name]
		if !ok {
			continue
		}
		select {
		case <-p.Done():
			errs = append(errs, fmt.Errorf("kube: %s (pid %d) exited (%v); end of %s:\n%s", p.Name, p.PID(), p.Err(), p.Log, tail(p.Log, 15)))
			continue
		default:
		}
		if ok, last := probe(ctx, chk.client, chk.url, chk.want); !ok {
			errs = append(errs, fmt.Errorf("kube: %s not healthy at %s (%s); end of %s:\n%s", p.Name, chk.url, last, p.Log, tail(p.Log, 15)))
		}
	}
	return errors.Join(errs...)
}

// adminTLS is a TLS configuration trusting the cluster CA and presenting an
// administrator's client certificate.
func (c *ControlPlane) adminTLS() (*tls.Config, error) {
	kp, err := c.ca.Issue(CertRequest{CommonName: Admin, Organizations: []string{"system:masters"}, Client: true}, time.Now())
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("kube: admin client certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.Cert)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// plainClient and tlsClient make their connections from inside ns.
func plainClient(ns *netns.NS) *http.Client { return tlsClient(ns, nil) }

func tlsClient(ns *netns.NS, cfg *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return topology.DialContext(ctx, ns, network, addr)
		},
		TLSClientConfig: cfg,
		Proxy:           nil, // never $HTTPS_PROXY: traffic stays inside the simulation
	}}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// tail returns the last n lines of a log file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop grace periods: the API server drains its requests and watches for a
// few seconds after SIGTERM.
const (
	stopGrace    = 10 * time.Second
	apiStopGrace = 30 * time.Second
)

// Close stops the components in reverse dependency order (node components
// started here such as kube-proxy, then the scheduler and the controller
// manager together, then the API server, then etcd) and removes
// kube/. It reports components that needed SIGKILL. Safe to call twice.
func (c *ControlPlane) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	procs := c.procs
	c.mu.Unlock()
	var errs []error
	// stop stops the processes whose name is in names (nil: every other
	// one) together.
	planeNames := []string{Scheduler, ControllerManager, APIServer, Etcd}
	stop := func(grace time.Duration, names ...string) {
		var wg sync.WaitGroup
		ch := make(chan error, len(procs))
		for _, p := range procs {
			if (names == nil && !slices.Contains(planeNames, p.Name)) || slices.Contains(names, p.Name) {
				wg.Go(func() { ch <- p.Stop(grace) })
			}
		}
		wg.Wait()
		close(ch)
		for err := range ch {
			errs = append(errs, err)
		}
	}
	stop(stopGrace) // node components (kube-proxy) first
	stop(stopGrace, Scheduler, ControllerManager)
	stop(apiStopGrace, APIServer)
	stop(stopGrace, Etcd)
	if err := os.RemoveAll(string(c.l)); err != nil {
		errs = append(errs, fmt.Errorf("kube: remove %s: %w", c.l, err))
	}
	return errors.Join(errs...)
}
