package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/addons/debounce"
	"github.com/svcsim/svcsim/addons/ingress"
	"github.com/svcsim/svcsim/addons/ingress/nginxconf"
)

// Annotations and labels of the provisioned Services.
const (
	// GatewayAnnotation names the Gateway ("namespace/name") a Service
	// serves.
	GatewayAnnotation = "gateway.svcsim.dev/gateway"
	// ManagedLabel marks the Services the controller owns.
	ManagedLabel = "gateway.svcsim.dev/managed"
)

// Settle is how long the controller waits after a change for more.
const Settle = 50 * time.Millisecond

// Controller keeps nginx, the provisioned Services and the Gateway API
// objects' status on what the cluster asks for.
type Controller struct {
	env addons.Env
	dir string
	log io.Writer

	kf    informers.SharedInformerFactory
	gf    gwinformers.SharedInformerFactory
	infs  []cache.SharedIndexInformer
	class cache.SharedIndexInformer
	gws   cache.SharedIndexInformer
	rts   cache.SharedIndexInformer
	grs   cache.SharedIndexInformer
	svcs  cache.SharedIndexInformer
	sls   cache.SharedIndexInformer
	secs  cache.SharedIndexInformer
	nss   cache.SharedIndexInformer

	nginx  *ingress.Nginx
	status *http.Client

	loop   *debounce.Loop
	cancel context.CancelFunc

	mu    sync.Mutex
	gen   uint64
	conf  string // the loaded configuration, rendered at generation 0
	stats Stats
}

// Stats count what the controller did.
type Stats struct {
	Syncs, Reloads, Failed int
	LastError              string
}

// Start runs the controller in env's pod until Stop.
func Start(ctx context.Context, env addons.Env) (*Controller, error) {
	if env.Dir == "" {
		return nil, errors.New("gateway controller: the plane gave the workload no directory")
	}
	if env.Gateway == nil {
		return nil, errors.New("gateway controller: the plane gave the workload no Gateway API client")
	}
	bin, err := ingress.Binary()
	if err != nil {
		return nil, err
	}
	log := env.Log
	if log == nil {
		log = io.Discard
	}
	for _, sub := range []string{"tmp", "certs"} {
		if err := os.MkdirAll(filepath.Join(env.Dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("gateway controller: %w", err)
		}
	}
	c := &Controller{env: env, dir: env.Dir, log: &linePrefix{w: log, prefix: "gateway " + env.Pod.Key() + ": "}}
	c.loop = debounce.New(Settle, c.syncOnce)
	c.kf = informers.NewSharedInformerFactory(env.Client, 0)
	c.gf = gwinformers.NewSharedInformerFactory(env.Gateway, 0)
	c.class = c.gf.Gateway().V1().GatewayClasses().Informer()
	c.gws = c.gf.Gateway().V1().Gateways().Informer()
	c.rts = c.gf.Gateway().V1().HTTPRoutes().Informer()
	c.grs = c.gf.Gateway().V1().ReferenceGrants().Informer()
	c.svcs = c.kf.Core().V1().Services().Informer()
	c.sls = c.kf.Discovery().V1().EndpointSlices().Informer()
	c.secs = c.kf.Core().V1().Secrets().Informer()
	c.nss = c.kf.Core().V1().Namespaces().Informer()
	c.infs = []cache.SharedIndexInformer{c.class, c.gws, c.rts, c.grs, c.svcs, c.sls, c.secs, c.nss}
	h := c.loop.Handler()
	for _, inf := range c.infs {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.kf.Start(wctx.Done())
	c.gf.Start(wctx.Done())
	fail := func(err error) (*Controller, error) {
		cancel()
		c.kf.Shutdown()
		c.gf.Shutdown()
		if c.nginx != nil {
			_ = c.nginx.Stop(5 * time.Second)
		}
		return nil, fmt.Errorf("gateway controller in %s: %w", env.Pod.Key(), err)
	}
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	for _, inf := range c.infs {
		if !cache.WaitForCacheSync(sctx.Done(), inf.HasSynced) {
			return fail(errors.New("informers did not sync"))
		}
	}
	c.status = ingress.NSClient(env.NS, 2*time.Second)
	// nginx starts on an empty configuration (the status server only);
	// the first sync loads the Gateways.
	p := Plan{Generation: 1, Prefix: c.dir, StatusPort: StatusPort}
	text, err := c.write(p, nil)
	if err != nil {
		return fail(err)
	}
	if c.nginx, err = ingress.StartNginx(bin, c.dir, env.NS, StatusPort, c.log, env.OnStart, env.OnExit); err != nil {
		return fail(err)
	}
	if err := c.nginx.WaitGeneration(c.status, 1, 10*time.Second); err != nil {
		return fail(err)
	}
	c.conf = text
	go c.loop.Run(wctx)
	c.loop.Wake()
	return c, nil
}

// syncOnce is one sync of the loop; a failed one is counted, logged and
// tried again a second later (a conflict or a refused write passes).
func (c *Controller) syncOnce(ctx context.Context) {
	if err := c.sync(ctx); err != nil {
		c.mu.Lock()
		c.stats.Failed++
		c.stats.LastError = err.Error()
		c.mu.Unlock()
		fmt.Fprintf(c.log, "%v\n", err)
		c.loop.WakeAfter(time.Second)
	}
}

func list[T any](inf cache.SharedIndexInformer) []T {
	var out []T
	for _, o := range inf.GetStore().List() {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

func (c *Controller) inputs() Inputs {
	return Inputs{
		Classes: list[*gwv1.GatewayClass](c.class), Gateways: list[*gwv1.Gateway](c.gws), Routes: list[*gwv1.HTTPRoute](c.rts),
		Grants: list[*gwv1.ReferenceGrant](c.grs), Services: list[*corev1.Service](c.svcs), Slices: list[*discoveryv1.EndpointSlice](c.sls),
		Secrets: list[*corev1.Secret](c.secs), Namespaces: list[*corev1.Namespace](c.nss), Now: time.Now(),
	}
}

// ServiceName is the provisioned Service of Gateway namespace/name.
func ServiceName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "gw-" + hex.EncodeToString(sum[:8])
}

// provisioned returns the Services the controller owns, by Gateway.
func (c *Controller) provisioned() map[string]*corev1.Service {
	out := map[string]*corev1.Service{}
	for _, s := range list[*corev1.Service](c.svcs) {
		if s.Namespace == Namespace && s.Labels[ManagedLabel] == "true" && s.Annotations[GatewayAnnotation] != "" {
			out[s.Annotations[GatewayAnnotation]] = s
		}
	}
	return out
}

// sync provisions the Services, loads nginx's configuration and writes
// the status.
func (c *Controller) sync(ctx context.Context) error {
	c.mu.Lock()
	c.stats.Syncs++
	c.mu.Unlock()
	in := c.inputs()
	first := Build(ControllerName, in, Plan{})
	if err := c.provision(ctx, first.Listeners); err != nil {
		return err
	}
	in.Ports, in.Addresses = map[string]int{}, map[string][]string{}
	for key, s := range c.provisioned() {
		for _, p := range s.Spec.Ports {
			if p.TargetPort.Type == intstr.Int {
				in.Ports[fmt.Sprintf("%s:%d", key, p.Port)] = p.TargetPort.IntValue()
			}
		}
		for _, lb := range s.Status.LoadBalancer.Ingress {
			if lb.IP != "" {
				in.Addresses[key] = append(in.Addresses[key], lb.IP)
			}
		}
	}
	c.mu.Lock()
	gen := c.gen + 1
	c.mu.Unlock()
	built := Build(ControllerName, in, Plan{Generation: gen, Prefix: c.dir, StatusPort: StatusPort})
	if err := c.load(built); err != nil {
		return err
	}
	return c.writeStatus(ctx, built)
}

// provision creates, updates and deletes the Gateways' Services: one port
// per listener port, each to a pod port of its own (kept while the
// listener port stays).
func (c *Controller) provision(ctx context.Context, listeners map[string][]int32) error {
	have := c.provisioned()
	used := map[int]bool{}
	for key, s := range have {
		if _, ok := listeners[key]; !ok {
			continue
		}
		for _, p := range s.Spec.Ports {
			used[p.TargetPort.IntValue()] = true
		}
	}
	next := PodPortBase
	alloc := func() int {
		for used[next] || next == StatusPort {
			next++
		}
		used[next] = true
		return next
	}
	var keys []string
	for k := range listeners {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	svcs := c.env.Client.CoreV1().Services(Namespace)
	var errs []error
	for _, key := range keys {
		old := have[key]
		byPort := map[int32]int{}
		if old != nil {
			for _, p := range old.Spec.Ports {
				byPort[p.Port] = p.TargetPort.IntValue()
			}
		}
		var ports []corev1.ServicePort
		for _, lp := range listeners[key] {
			pp := byPort[lp]
			if pp == 0 {
				pp = alloc()
			}
			ports = append(ports, corev1.ServicePort{Name: fmt.Sprintf("l%d", lp), Protocol: corev1.ProtocolTCP, Port: lp, TargetPort: intstr.FromInt32(int32(pp))})
		}
		if old == nil {
			s := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: ServiceName(key), Namespace: Namespace,
					Labels: map[string]string{ManagedLabel: "true"}, Annotations: map[string]string{GatewayAnnotation: key}},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": PodLabel}, Ports: ports},
			}
			if _, err := svcs.Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				errs = append(errs, fmt.Errorf("provision Service for Gateway %s: %w", key, err))
			}
			continue
		}
		if samePorts(old.Spec.Ports, ports) {
			continue
		}
		up := old.DeepCopy()
		for i := range ports {
			for _, op := range old.Spec.Ports {
				if op.Port == ports[i].Port {
					ports[i].NodePort = op.NodePort
				}
			}
		}
		up.Spec.Ports = ports
		if _, err := svcs.Update(ctx, up, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("update Service for Gateway %s: %w", key, err))
		}
	}
	for key, s := range have {
		if _, ok := listeners[key]; ok {
			continue
		}
		if err := svcs.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete Service of Gateway %s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}

func samePorts(a, b []corev1.ServicePort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Port != b[i].Port || a[i].TargetPort != b[i].TargetPort || a[i].Protocol != b[i].Protocol {
			return false
		}
	}
	return true
}

// load renders the plan and, when it differs from what nginx serves,
// checks it (parse-back, nginx -t), puts it in place and reloads nginx.
func (c *Controller) load(b Built) error {
	probe := b.Plan
	probe.Generation = 0
	text0, _, err := Render(&probe)
	if err != nil {
		return err
	}
	c.mu.Lock()
	same := text0 == c.conf
	c.mu.Unlock()
	if same {
		return nil
	}
	if _, err := c.write(b.Plan, b.Files); err != nil {
		return fmt.Errorf("configuration refused, nginx keeps the previous one: %w", err)
	}
	before, err := c.nginx.Reload()
	if err != nil {
		return err
	}
	if err := c.nginx.WaitReloaded(c.status, b.Plan.Generation, before, 10*time.Second); err != nil {
		return err
	}
	c.mu.Lock()
	c.conf = text0
	c.stats.Reloads++
	c.mu.Unlock()
	fmt.Fprintf(c.log, "reloaded nginx: generation %d\n", b.Plan.Generation)
	return nil
}

// write renders p, checks it and puts it in place as nginx.conf with its
// certificate files; it returns the text rendered at generation 0.
func (c *Controller) write(p Plan, files map[string][]byte) (string, error) {
	text, tree, err := Render(&p)
	if err != nil {
		return "", err
	}
	if err := nginxconf.Check(text, tree); err != nil {
		return "", err
	}
	for name, data := range files {
		path := filepath.Join(c.dir, name)
		if _, err := os.Stat(path); err == nil {
			continue
		}
		if err := writeFile(path, data); err != nil {
			return "", err
		}
	}
	next := filepath.Join(c.dir, "nginx.conf.next")
	if err := writeFile(next, []byte(text)); err != nil {
		return "", err
	}
	bin, err := ingress.Binary()
	if err != nil {
		return "", err
	}
	if err := ingress.NewNginxTester(bin, c.dir, c.env.NS).Test(next); err != nil {
		_ = os.Remove(next)
		return "", err
	}
	if err := os.Rename(next, filepath.Join(c.dir, "nginx.conf")); err != nil {
		return "", fmt.Errorf("put nginx.conf in place: %w", err)
	}
	c.mu.Lock()
	c.gen = p.Generation
	c.mu.Unlock()
	p.Generation = 0
	text0, _, err := Render(&p)
	return text0, err
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

// writeStatus writes every status that differs from the stored one.
func (c *Controller) writeStatus(ctx context.Context, b Built) error {
	gw := c.env.Gateway.GatewayV1()
	var errs []error
	for _, gc := range list[*gwv1.GatewayClass](c.class) {
		st, ok := b.Classes["/"+gc.Name]
		if !ok || apiequality.Semantic.DeepEqual(gc.Status, st) {
			continue
		}
		up := gc.DeepCopy()
		up.Status = st
		if _, err := gw.GatewayClasses().UpdateStatus(ctx, up, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("status of GatewayClass %s: %w", gc.Name, err))
		}
	}
	for _, g := range list[*gwv1.Gateway](c.gws) {
		st, ok := b.Gateways[nsName(g.Namespace, g.Name)]
		if !ok || apiequality.Semantic.DeepEqual(g.Status, st) {
			continue
		}
		up := g.DeepCopy()
		up.Status = st
		if _, err := gw.Gateways(g.Namespace).UpdateStatus(ctx, up, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("status of Gateway %s/%s: %w", g.Namespace, g.Name, err))
		}
	}
	for _, r := range list[*gwv1.HTTPRoute](c.rts) {
		ours := b.Routes[nsName(r.Namespace, r.Name)]
		// Never null: the CRD requires status.parents.
		parents := []gwv1.RouteParentStatus{}
		for _, p := range r.Status.Parents {
			if string(p.ControllerName) != ControllerName {
				parents = append(parents, p)
			}
		}
		parents = append(parents, ours...)
		if apiequality.Semantic.DeepEqual(r.Status.Parents, parents) || (len(r.Status.Parents) == 0 && len(parents) == 0) {
			continue
		}
		up := r.DeepCopy()
		up.Status.Parents = parents
		if _, err := gw.HTTPRoutes(r.Namespace).UpdateStatus(ctx, up, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("status of HTTPRoute %s/%s: %w", r.Namespace, r.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Stats returns the counters.
func (c *Controller) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Stop ends the controller: nginx quits, and nothing of it stays in its
// directory. The provisioned Services stay (the cluster's objects).
func (c *Controller) Stop() error {
	c.cancel()
	<-c.loop.Done()
	c.kf.Shutdown()
	c.gf.Shutdown()
	var errs []error
	if err := c.nginx.Stop(10 * time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// linePrefix writes every line with a prefix.
type linePrefix struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (p *linePrefix) Write(b []byte) (int, error) {
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
