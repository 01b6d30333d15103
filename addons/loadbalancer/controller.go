package loadbalancer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/topology"
)

// Image is the controller Deployment's image.
const Image = "svcsim/lb-controller:v1"

// ProxyHealthPath and ProxyHealthPort are the node proxy's own health
// check (kube-proxy's :10256/healthz), probed for Services with
// externalTrafficPolicy Cluster.
const (
	ProxyHealthPath = "/healthz"
	ProxyHealthPort = 10256
)

// Manifests are the add-on's objects: the controller's Deployment.
const Manifests = `apiVersion: v1
kind: Namespace
metadata:
  name: kube-system
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: svcsim-lb-controller
  namespace: kube-system
  labels:
    app: svcsim-lb-controller
spec:
  replicas: 1
  selector:
    matchLabels:
      app: svcsim-lb-controller
  template:
    metadata:
      labels:
        app: svcsim-lb-controller
    spec:
      containers:
        - name: controller
          image: ` + Image + `
`

// AddOn is the load-balancer controller talking to the cloud API at api
// ("http://198.18.0.3:8080").
func AddOn(api string) addons.AddOn {
	return addons.AddOn{
		Name:      "load-balancer",
		Manifests: []byte(Manifests),
		Workloads: map[string]addons.Workload{addons.Repository(Image): Workload(api)},
	}
}

// Workload is the controller as a pod's workload.
func Workload(api string) addons.Workload {
	return addons.Workload{
		Name:  "lb-controller",
		Ports: func(sim.Pod, sim.Container) []topology.Port { return nil },
		Start: func(ctx context.Context, env addons.Env) (addons.Instance, error) {
			return StartController(ctx, env.Client, NewCloudClient(api, env.NS), env.Log)
		},
	}
}

// CloudClient calls the cloud API; its connections are made from inside a
// namespace (the controller's pod).
type CloudClient struct {
	base string
	http *http.Client
}

// NewCloudClient returns a client of the API at base, dialling from ns.
func NewCloudClient(base string, ns addons.Namespace) *CloudClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var d net.Dialer
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
		Proxy:             nil,
		DisableKeepAlives: true,
	}
	return &CloudClient{base: base, http: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// Put creates or updates the load balancer of Service ns/name.
func (c *CloudClient) Put(ctx context.Context, ns, name string, spec Spec) (Status, error) {
	body, err := json.Marshal(spec)
	if err != nil {
		return Status{}, err
	}
	var st Status
	err = c.do(ctx, http.MethodPut, "/v1/loadbalancers/"+ns+"/"+name, body, &st)
	return st, err
}

// Delete removes the load balancer of Service ns/name (none is not an error).
func (c *CloudClient) Delete(ctx context.Context, ns, name string) error {
	err := c.do(ctx, http.MethodDelete, "/v1/loadbalancers/"+ns+"/"+name, nil, nil)
	var he *httpError
	if errors.As(err, &he) && he.code == http.StatusNotFound {
		return nil
	}
	return err
}

// List returns every load balancer.
func (c *CloudClient) List(ctx context.Context) ([]Status, error) {
	var out []Status
	err := c.do(ctx, http.MethodGet, "/v1/loadbalancers", nil, &out)
	return out, err
}

type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return fmt.Sprintf("cloud API: %d %s", e.code, e.msg) }

func (c *CloudClient) do(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cloud API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("cloud API %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return &httpError{resp.StatusCode, string(bytes.TrimSpace(b))}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("cloud API %s %s: decode %q: %w", method, path, b, err)
		}
	}
	return nil
}

// Cloud is what the controller needs of the cloud.
type cloudAPI interface {
	Put(ctx context.Context, ns, name string, spec Spec) (Status, error)
	Delete(ctx context.Context, ns, name string) error
	List(ctx context.Context) ([]Status, error)
}

// Controller keeps the cloud's load balancers and the Services' statuses in
// step with the Services of type LoadBalancer.
type Controller struct {
	client  kubernetes.Interface
	cloud   cloudAPI
	log     io.Writer
	factory informers.SharedInformerFactory
	kick    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}

	mu      sync.Mutex
	applied map[string]Spec // "ns/name" -> what the cloud was last given
}

// StartController starts the informers and the reconcile loop; it returns
// once the caches are synced.
func StartController(ctx context.Context, client kubernetes.Interface, cloud cloudAPI, log io.Writer) (*Controller, error) {
	if log == nil {
		log = io.Discard
	}
	c := &Controller{client: client, cloud: cloud, log: log, kick: make(chan struct{}, 1),
		done: make(chan struct{}), applied: map[string]Spec{}}
	c.factory = informers.NewSharedInformerFactory(client, 0)
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.wake() },
		UpdateFunc: func(any, any) { c.wake() },
		DeleteFunc: func(any) { c.wake() },
	}
	for _, inf := range []cache.SharedIndexInformer{
		c.factory.Core().V1().Services().Informer(),
		c.factory.Core().V1().Nodes().Informer(),
	} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, fmt.Errorf("load-balancer controller informer: %w", err)
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.factory.Start(runCtx.Done())
	for typ, ok := range c.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			cancel()
			c.factory.Shutdown()
			return nil, fmt.Errorf("load-balancer controller: %v informer did not sync: %w", typ, context.Cause(ctx))
		}
	}
	go c.loop(runCtx)
	c.wake()
	return c, nil
}

// Stop ends the controller; the cloud keeps its load balancers (as a cloud
// does when its controller restarts).
func (c *Controller) Stop() error {
	c.cancel()
	<-c.done
	c.factory.Shutdown()
	return nil
}

func (c *Controller) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// loop reconciles on every change, and again a second after a failure.
func (c *Controller) loop(ctx context.Context) {
	defer close(c.done)
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-retry.C:
		}
		if err := c.reconcile(ctx); err != nil && ctx.Err() == nil {
			fmt.Fprintf(c.log, "load-balancer controller: %v (retrying in 1s)\n", err)
			retry.Reset(time.Second)
		}
	}
}

// wants reports whether the controller handles svc.
func wants(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil && svc.DeletionTimestamp == nil
}

// specOf is the load balancer svc needs on nodes.
func specOf(svc *corev1.Service, nodes []netip.Addr) Spec {
	s := Spec{Nodes: nodes, HealthCheck: HealthCheck{Port: ProxyHealthPort, Path: ProxyHealthPath}}
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		s.Ports = append(s.Ports, Port{Protocol: proto, Port: p.Port})
	}
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && svc.Spec.HealthCheckNodePort != 0 {
		s.HealthCheck = HealthCheck{Port: svc.Spec.HealthCheckNodePort, Path: ProxyHealthPath}
	}
	return s
}

// nodeAddrs are the InternalIPs of every node, sorted.
func nodeAddrs(nodes []*corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); a.Type == corev1.NodeInternalIP && err == nil && ip.Is4() {
				out = append(out, ip)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

func (c *Controller) reconcile(ctx context.Context) error {
	svcs, err := c.factory.Core().V1().Services().Lister().List(labels.Everything())
	if err != nil {
		return err
	}
	nodeList, err := c.factory.Core().V1().Nodes().Lister().List(labels.Everything())
	if err != nil {
		return err
	}
	nodes := nodeAddrs(nodeList)
	var errs []error
	want := map[string]bool{}
	for _, svc := range svcs {
		key := svc.Namespace + "/" + svc.Name
		if !wants(svc) {
			if err := c.release(ctx, svc); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		want[key] = true
		spec := specOf(svc, nodes)
		c.mu.Lock()
		old, known := c.applied[key]
		c.mu.Unlock()
		if known && reflect.DeepEqual(old, spec) && len(svc.Status.LoadBalancer.Ingress) > 0 {
			continue
		}
		st, err := c.cloud.Put(ctx, svc.Namespace, svc.Name, spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("load balancer for %s: %w", key, err))
			continue
		}
		c.mu.Lock()
		c.applied[key] = spec
		c.mu.Unlock()
		if err := c.writeStatus(ctx, svc, st.IP); err != nil {
			errs = append(errs, err)
		}
	}
	// Load balancers of Services that are gone.
	list, err := c.cloud.List(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, st := range list {
		if want[st.Name] {
			continue
		}
		ns, name, _ := cut(st.Name)
		if err := c.cloud.Delete(ctx, ns, name); err != nil {
			errs = append(errs, err)
			continue
		}
		c.mu.Lock()
		delete(c.applied, st.Name)
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// release deletes the load balancer of a Service that no longer wants one
// and clears the address it had written.
func (c *Controller) release(ctx context.Context, svc *corev1.Service) error {
	key := svc.Namespace + "/" + svc.Name
	c.mu.Lock()
	_, known := c.applied[key]
	c.mu.Unlock()
	if !known {
		return nil
	}
	if err := c.cloud.Delete(ctx, svc.Namespace, svc.Name); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.applied, key)
	c.mu.Unlock()
	if len(svc.Status.LoadBalancer.Ingress) == 0 || svc.Spec.LoadBalancerClass != nil {
		return nil
	}
	return c.writeStatus(ctx, svc, netip.Addr{})
}

// writeStatus sets status.loadBalancer.ingress to ip (ipMode VIP), or
// clears it for the zero address.
func (c *Controller) writeStatus(ctx context.Context, svc *corev1.Service, ip netip.Addr) error {
	var want corev1.LoadBalancerStatus
	if ip.IsValid() {
		vip := corev1.LoadBalancerIPModeVIP
		want.Ingress = []corev1.LoadBalancerIngress{{IP: ip.String(), IPMode: &vip}}
	}
	if apiequality.Semantic.DeepEqual(svc.Status.LoadBalancer, want) {
		return nil
	}
	upd := svc.DeepCopy()
	upd.Status.LoadBalancer = want
	if _, err := c.client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("write status of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	fmt.Fprintf(c.log, "load-balancer controller: %s/%s ingress %v\n", svc.Namespace, svc.Name, want.Ingress)
	return nil
}

func cut(key string) (string, string, bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return "", key, false
}
