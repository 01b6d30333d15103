package ingress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"

	"k8s.io/client-go/tools/cache"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/addons/debounce"
	"github.com/svcsim/svcsim/addons/ingress/nginxconf"
)

// Ports of the controller pod (ingress-nginx's).
const (
	HTTPPort   = 80
	HTTPSPort  = 443
	HealthPort = 10254
	StatusPort = 10246
)

// Settle is how long the controller waits after a change for more before
// it renders (a burst of events, one reload).
const Settle = 50 * time.Millisecond

// Options configure one controller (from its container's arguments).
type Options struct {
	Class Class
	// PublishService ("namespace/name") is the Service whose address the
	// Ingresses' status shows; empty: the controller's node address.
	PublishService string
}

// ParseArgs reads the controller's flags from its container's args
// (ingress-nginx's names; $(POD_NAMESPACE) and $(POD_NAME) expanded).
// Unknown flags are ignored, as flags of features svcsim does not model.
func ParseArgs(args []string, podNamespace, podName string) Options {
	o := Options{Class: Class{Name: "nginx", Controller: "k8s.io/ingress-nginx"}}
	for _, a := range args {
		a = strings.NewReplacer("$(POD_NAMESPACE)", podNamespace, "$(POD_NAME)", podName).Replace(a)
		k, v, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			continue
		}
		switch k {
		case "ingress-class":
			o.Class.Name = v
		case "controller-class":
			o.Class.Controller = v
		case "watch-ingress-without-class":
			o.Class.WithoutClass = v == "true"
		case "publish-service":
			o.PublishService = v
		}
	}
	return o
}

// Controller renders nginx's configuration from the cluster and keeps nginx
// on it.
type Controller struct {
	env  addons.Env
	opts Options
	dir  string
	log  io.Writer

	factory informers.SharedInformerFactory
	ings    cache.SharedIndexInformer
	classes cache.SharedIndexInformer
	svcs    cache.SharedIndexInformer
	slices  cache.SharedIndexInformer
	secrets cache.SharedIndexInformer

	nginx  *Nginx
	status *http.Client
	health *http.Server

	loop   *debounce.Loop
	cancel context.CancelFunc

	mu  sync.Mutex
	gen uint64
	// loaded is the generation every accepting worker serves: set once
	// nginx started on it, and after each reload once the old workers
	// stopped accepting. gen != loaded while a reload is under way.
	loaded   uint64
	conf     string
	rejected map[string]string
	stats    Stats
}

// Stats count what the controller did.
type Stats struct {
	// Renders is every rendering; Reloads those that changed nginx.conf
	// and were loaded; Failed those nginx -t refused (nginx kept the
	// previous configuration).
	Renders, Reloads, Failed int
	// LastReload is how long the last reload took from writing the file to
	// the workers answering with its generation.
	LastReload time.Duration
	// LastError is the last refusal.
	LastError string
}

// Start runs a controller in env's pod: it waits for the informers, loads
// the first configuration into a new nginx, serves readiness on
// :10254/healthz and follows the cluster until Stop.
func Start(ctx context.Context, env addons.Env, opts Options) (*Controller, error) {
	if env.Dir == "" {
		return nil, errors.New("ingress controller: the plane gave the workload no directory")
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	log := env.Log
	if log == nil {
		log = io.Discard
	}
	dir := env.Dir
	for _, sub := range []string{"tmp", "certs"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("ingress controller: %w", err)
		}
	}
	c := &Controller{env: env, opts: opts, dir: dir, log: prefixed(log, "ingress "+env.Pod.Namespace+"/"+env.Pod.Name+": "),
		rejected: map[string]string{}}
	c.loop = debounce.New(Settle, func(ctx context.Context) {
		if err := c.sync(); err != nil {
			fmt.Fprintf(c.log, "%v\n", err)
		}
		c.updateStatus(ctx)
	})
	c.factory = informers.NewSharedInformerFactory(env.Client, 0)
	c.ings = c.factory.Networking().V1().Ingresses().Informer()
	c.classes = c.factory.Networking().V1().IngressClasses().Informer()
	c.svcs = c.factory.Core().V1().Services().Informer()
	c.slices = c.factory.Discovery().V1().EndpointSlices().Informer()
	c.secrets = c.factory.Core().V1().Secrets().Informer()
	h := c.loop.Handler()
	for _, inf := range []cache.SharedIndexInformer{c.ings, c.classes, c.svcs, c.slices, c.secrets} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.factory.Start(wctx.Done())
	fail := func(err error) (*Controller, error) {
		cancel()
		c.factory.Shutdown()
		if c.nginx != nil {
			_ = c.nginx.Stop(5 * time.Second)
		}
		if c.health != nil {
			_ = c.health.Close()
		}
		return nil, fmt.Errorf("ingress controller in %s/%s: %w", env.Pod.Namespace, env.Pod.Name, err)
	}
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	for _, inf := range []cache.SharedIndexInformer{c.ings, c.classes, c.svcs, c.slices, c.secrets} {
		if !cache.WaitForCacheSync(sctx.Done(), inf.HasSynced) {
			return fail(errors.New("informers did not sync"))
		}
	}
	c.status = nsClient(env.NS, 2*time.Second)
	b := c.build()
	text, err := c.write(b)
	if err != nil {
		return fail(err)
	}
	if c.nginx, err = startNginx(bin, dir, env.NS, StatusPort, c.log, env.OnStart, env.OnExit); err != nil {
		return fail(err)
	}
	if err := c.nginx.WaitGeneration(c.status, b.Config.Generation, 10*time.Second); err != nil {
		return fail(err)
	}
	c.conf = text
	c.loaded = b.Config.Generation
	c.note(b)
	if err := c.serveHealth(); err != nil {
		return fail(err)
	}
	go c.loop.Run(wctx)
	return c, nil
}

// build renders the configuration the cluster asks for now.
func (c *Controller) build() Built {
	in := Inputs{}
	for _, o := range c.ings.GetStore().List() {
		in.Ingresses = append(in.Ingresses, o.(*networkingv1.Ingress))
	}
	for _, o := range c.classes.GetStore().List() {
		in.Classes = append(in.Classes, o.(*networkingv1.IngressClass))
	}
	for _, o := range c.svcs.GetStore().List() {
		in.Services = append(in.Services, o.(*corev1.Service))
	}
	for _, o := range c.slices.GetStore().List() {
		in.Slices = append(in.Slices, o.(*discoveryv1.EndpointSlice))
	}
	for _, o := range c.secrets.GetStore().List() {
		in.Secrets = append(in.Secrets, o.(*corev1.Secret))
	}
	c.mu.Lock()
	gen := c.gen + 1
	c.mu.Unlock()
	return Build(c.opts.Class, in, nginxconf.Config{Generation: gen, Prefix: c.dir, HTTPPort: HTTPPort, HTTPSPort: HTTPSPort, StatusPort: StatusPort})
}

// write renders b, checks the text against the directives it was
// rendered from and with `nginx -t`, and only then puts it in place as
// nginx.conf (with its certificate files). It returns the text.
func (c *Controller) write(b Built) (string, error) {
	text, tree, err := nginxconf.Render(&b.Config)
	if err != nil {
		return "", err
	}
	if err := nginxconf.Check(text, tree); err != nil {
		return "", err
	}
	for name, data := range b.Files {
		p := filepath.Join(c.dir, name)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := writeFile(p, data); err != nil {
			return "", err
		}
	}
	next := filepath.Join(c.dir, "nginx.conf.next")
	if err := writeFile(next, []byte(text)); err != nil {
		return "", err
	}
	if err := c.nginxTest(next); err != nil {
		_ = os.Remove(next)
		return "", err
	}
	if err := os.Rename(next, filepath.Join(c.dir, "nginx.conf")); err != nil {
		return "", fmt.Errorf("put nginx.conf in place: %w", err)
	}
	c.mu.Lock()
	c.gen = b.Config.Generation
	c.mu.Unlock()
	return text, nil
}

func (c *Controller) nginxTest(conf string) error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	n := &Nginx{bin: bin, dir: c.dir, ns: c.env.NS}
	return n.Test(conf)
}

func writeFile(p string, data []byte) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// sync renders the cluster's configuration and, when it changed, loads it
// with a graceful reload, waiting until the workers serve it.
func (c *Controller) sync() error {
	b := c.build()
	c.mu.Lock()
	c.stats.Renders++
	c.mu.Unlock()
	c.note(b)
	// Generation aside, is it the configuration nginx has?
	probe := b
	probe.Config.Generation = c.currentGen()
	if text, _, err := nginxconf.Render(&probe.Config); err == nil && text == c.conf {
		return nil
	}
	start := time.Now()
	text, err := c.write(b)
	if err != nil {
		c.mu.Lock()
		c.stats.Failed++
		c.stats.LastError = err.Error()
		c.mu.Unlock()
		return fmt.Errorf("configuration refused, nginx keeps the previous one: %w", err)
	}
	before, err := c.nginx.Reload()
	if err != nil {
		return err
	}
	if err := c.nginx.WaitReloaded(c.status, b.Config.Generation, before, 10*time.Second); err != nil {
		return err
	}
	c.mu.Lock()
	c.conf = text
	c.loaded = b.Config.Generation
	c.stats.Reloads++
	c.stats.LastReload = time.Since(start)
	c.mu.Unlock()
	fmt.Fprintf(c.log, "reloaded nginx: generation %d in %v\n", b.Config.Generation, time.Since(start).Round(time.Millisecond))
	return nil
}

func (c *Controller) currentGen() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// note logs newly rejected Ingresses (and paths) and records a Warning
// Event on each, as ingress-nginx does.
func (c *Controller) note(b Built) {
	now := map[string]string{}
	for _, r := range b.Rejected {
		if now[r.Ingress] != "" {
			now[r.Ingress] += "; "
		}
		now[r.Ingress] += r.Reason
	}
	c.mu.Lock()
	var fresh []Rejection
	for ing, why := range now {
		if c.rejected[ing] != why {
			fresh = append(fresh, Rejection{ing, why})
		}
	}
	c.rejected = now
	c.mu.Unlock()
	sort.Slice(fresh, func(i, j int) bool { return fresh[i].Ingress < fresh[j].Ingress })
	for _, r := range fresh {
		fmt.Fprintf(c.log, "rejected %s\n", r)
		ns, name, _ := strings.Cut(r.Ingress, "/")
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{GenerateName: name + ".", Namespace: ns},
			InvolvedObject: corev1.ObjectReference{Kind: "Ingress", APIVersion: "networking.k8s.io/v1", Namespace: ns, Name: name},
			Reason:         "Rejected", Message: r.Reason, Type: corev1.EventTypeWarning,
			Source:         corev1.EventSource{Component: "nginx-ingress-controller"},
			FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(), Count: 1,
		}
		if _, err := c.env.Client.CoreV1().Events(ns).Create(context.Background(), ev, metav1.CreateOptions{}); err != nil {
			fmt.Fprintf(c.log, "record event for %s: %v\n", r.Ingress, err)
		}
	}
}

// Rejected returns the rejections of the current configuration, by
// Ingress ("namespace/name").
func (c *Controller) Rejected() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.rejected))
	for k, v := range c.rejected {
		out[k] = v
	}
	return out
}

// Stats returns the counters.
func (c *Controller) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Config returns the nginx.conf nginx runs.
func (c *Controller) Config() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conf
}

// statusAddresses is what the served Ingresses' status shows: the publish
// Service's address (its load balancer's, else its external IPs, else its
// ClusterIP, as ingress-nginx publishes), or the node's without one. A
// publish Service that does not exist publishes nothing.
func (c *Controller) statusAddresses() []networkingv1.IngressLoadBalancerIngress {
	if c.opts.PublishService == "" {
		if c.env.Pod.IP.IsValid() && c.env.Pod.HostNetwork {
			return []networkingv1.IngressLoadBalancerIngress{{IP: c.env.Pod.IP.String()}}
		}
		return nil
	}
	o, ok, err := c.svcs.GetStore().GetByKey(c.opts.PublishService)
	if err != nil || !ok {
		return nil
	}
	s := o.(*corev1.Service)
	var out []networkingv1.IngressLoadBalancerIngress
	switch {
	case len(s.Status.LoadBalancer.Ingress) > 0:
		for _, in := range s.Status.LoadBalancer.Ingress {
			out = append(out, networkingv1.IngressLoadBalancerIngress{IP: in.IP, Hostname: in.Hostname})
		}
	case len(s.Spec.ExternalIPs) > 0:
		for _, ip := range s.Spec.ExternalIPs {
			out = append(out, networkingv1.IngressLoadBalancerIngress{IP: ip})
		}
	case s.Spec.Type == corev1.ServiceTypeExternalName:
		out = append(out, networkingv1.IngressLoadBalancerIngress{Hostname: s.Spec.ExternalName})
	case s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone:
		out = append(out, networkingv1.IngressLoadBalancerIngress{IP: s.Spec.ClusterIP})
	}
	return out
}

// updateStatus writes the address to every served Ingress whose status
// differs.
func (c *Controller) updateStatus(ctx context.Context) {
	want := networkingv1.IngressStatus{LoadBalancer: networkingv1.IngressLoadBalancerStatus{Ingress: c.statusAddresses()}}
	for _, o := range c.ings.GetStore().List() {
		ing := o.(*networkingv1.Ingress)
		if !c.opts.Class.Owns(ing, c.classList()) || apiequality.Semantic.DeepEqual(ing.Status, want) {
			continue
		}
		up := ing.DeepCopy()
		up.Status = want
		uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.env.Client.NetworkingV1().Ingresses(ing.Namespace).UpdateStatus(uctx, up, metav1.UpdateOptions{})
		cancel()
		if err != nil {
			fmt.Fprintf(c.log, "update status of Ingress %s/%s: %v\n", ing.Namespace, ing.Name, err)
		}
	}
}

func (c *Controller) classList() []*networkingv1.IngressClass {
	var out []*networkingv1.IngressClass
	for _, o := range c.classes.GetStore().List() {
		out = append(out, o.(*networkingv1.IngressClass))
	}
	return out
}

// serveHealth answers :10254/healthz in the pod's namespace: 200 while
// nginx's status server answers, 500 otherwise (the manifest's readiness
// and liveness probes); and :10254/svcsim/loaded.
func (c *Controller) serveHealth() error {
	var ln net.Listener
	err := c.env.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", HealthPort))
		return err
	})
	if err != nil {
		return fmt.Errorf("listen for health checks on :%d: %w", HealthPort, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := c.nginx.Generation(c.status); err != nil {
			http.Error(w, "nginx: "+err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	// svcsim's own: "<loaded> <written>", the generation every accepting
	// worker serves and the newest one written; equal when no reload is
	// under way (tests wait for that before counting failed requests).
	mux.HandleFunc("/svcsim/loaded", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		loaded, gen := c.loaded, c.gen
		c.mu.Unlock()
		fmt.Fprintf(w, "%d %d", loaded, gen)
	})
	c.health = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = c.health.Serve(ln) }()
	return nil
}

// Stop ends the controller: nginx quits gracefully, the health server
// closes, and nothing of it stays in its directory (pid file,
// configuration, certificates, temp files, logs).
func (c *Controller) Stop() error {
	c.cancel()
	<-c.loop.Done()
	c.factory.Shutdown()
	var errs []error
	if err := c.health.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := c.nginx.Stop(10 * time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Selector is for tests: nothing selects.
var _ = labels.Everything

// prefixed writes every line with a prefix.
func prefixed(w io.Writer, prefix string) io.Writer { return &prefixWriter{w: w, prefix: prefix} }

type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l == "" {
			continue
		}
		if _, err := io.WriteString(p.w, p.prefix+l); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
