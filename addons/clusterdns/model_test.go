package clusterdns

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/sim"
	"github.com/svcsim/svcsim/sim/kubeview"
)

// model is the embedded model with its list/watch view, as the control
// plane runs them, and the DNS source watching the view.
type model struct {
	c *sim.Cluster
	v *kubeview.View
	w *Watcher
}

func newModel(t *testing.T, manifests ...string) *model {
	t.Helper()
	c, err := sim.New(sim.DefaultConfig(2))
	require.NoError(t, err)
	v := kubeview.New()
	t.Cleanup(v.Close)
	m := &model{c: c, v: v}
	for _, text := range manifests {
		m.apply(t, text)
	}
	require.NoError(t, v.Sync(c))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m.w, err = Watch(ctx, v.Client(), c.Config().DNSDomain)
	require.NoError(t, err)
	t.Cleanup(m.w.Stop)
	return m
}

func (m *model) apply(t *testing.T, text string) {
	t.Helper()
	objs, err := sim.Decode([]byte(text), "test")
	require.NoError(t, err)
	_, err = m.c.Apply(objs)
	require.NoError(t, err)
	require.NoError(t, m.v.Sync(m.c))
}

// eventually waits until the DNS source's records satisfy ok.
func (m *model) eventually(t *testing.T, ok func(*Records) bool, what string) {
	t.Helper()
	require.Eventually(t, func() bool { return ok(m.w.Records()) }, 5*time.Second, 5*time.Millisecond, what)
}

func TestSeedRecords(t *testing.T) {
	seed, err := sim.Load("../../sim/testdata/seed")
	require.NoError(t, err)
	c, err := sim.New(sim.DefaultConfig(2))
	require.NoError(t, err)
	_, err = c.Apply(seed)
	require.NoError(t, err)
	v := kubeview.New()
	t.Cleanup(v.Close)
	require.NoError(t, v.Sync(c))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := Watch(ctx, v.Client(), "cluster.local")
	require.NoError(t, err)
	t.Cleanup(w.Stop)
	m := &model{c: c, v: v, w: w}

	var podIPs []netip.Addr
	for _, p := range c.Pods() {
		if p.Labels["app"] == "getip" {
			podIPs = append(podIPs, p.IP)
		}
	}
	require.Len(t, podIPs, 2)
	var ip string
	for _, s := range c.Services() {
		if s.Name == "getip-service" {
			ip = s.Spec.ClusterIP
		}
	}
	r := w.Records()
	// dig +short -t A getip-service-headless.default.svc.cluster.local.
	require.ElementsMatch(t, podIPs, r.A("getip-service-headless.default.svc.cluster.local."))
	require.Equal(t, []netip.Addr{netip.MustParseAddr(ip)}, r.A("getip-service.default.svc.cluster.local"))
	require.Equal(t, []SRV{{Target: "my-service.default.svc.cluster.local", Port: 443, Weight: 100}},
		r.SRV("_https._tcp.my-service.default.svc.cluster.local"))
	require.Empty(t, r.SRV("_http._tcp.getip-service.default.svc.cluster.local"), "unnamed ports have no SRV")
	dashedName := strings.ReplaceAll(podIPs[0].String(), ".", "-")
	require.Equal(t, podIPs[:1], r.A(dashedName+".default.pod.cluster.local"))
	require.Equal(t, podIPs[:1], r.A(dashedName+".getip-service-headless.default.svc.cluster.local"))
	require.Equal(t, []string{"getip-service.default.svc.cluster.local"}, r.PTR(netip.MustParseAddr(ip)))
	require.False(t, r.Exists("nope.default.svc.cluster.local"))
	require.True(t, r.Exists("GETIP-SERVICE.default.svc.cluster.local."))
	require.Contains(t, r.Names(), "external-service.default.svc.cluster.local")

	// Headless DNS follows scale down and up, through the view's watches.
	require.NoError(t, c.Scale("deploy", "default", "getip-deployment", 1))
	require.NoError(t, v.Sync(c))
	m.eventually(t, func(r *Records) bool { return len(r.A("getip-service-headless.default.svc.cluster.local")) == 1 }, "one pod after scale down")
	require.NoError(t, c.Scale("deploy", "default", "getip-deployment", 3))
	require.NoError(t, v.Sync(c))
	m.eventually(t, func(r *Records) bool { return len(r.A("getip-service-headless.default.svc.cluster.local")) == 3 }, "three pods after scale up")
	// A pod that is not ready leaves the headless answer.
	pod := c.Pods()[0]
	for _, p := range c.Pods() {
		if p.Labels["app"] == "getip" {
			pod = p
		}
	}
	require.NoError(t, c.SetPodReady("default", pod.Name, false))
	require.NoError(t, v.Sync(c))
	m.eventually(t, func(r *Records) bool { return len(r.A("getip-service-headless.default.svc.cluster.local")) == 2 }, "not-ready pod left")
}

func TestExternalNameAndHostnames(t *testing.T) {
	m := newModel(t, `apiVersion: v1
kind: Service
metadata: {name: db}
spec: {type: ExternalName, externalName: db.example.com.}
---
apiVersion: v1
kind: Service
metadata: {name: sts}
spec:
  clusterIP: None
  selector: {app: sts}
  ports: [{name: web, port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: sts-0, labels: {app: sts}}
spec:
  hostname: sts-0
  subdomain: sts
  containers: [{name: c, image: getip}]
`)
	r := m.w.Records()
	target, ok := r.CNAME("db.default.svc.cluster.local")
	require.True(t, ok)
	require.Equal(t, "db.example.com", target)
	sts := r.A("sts-0.sts.default.svc.cluster.local")
	require.Len(t, sts, 1)
	require.Equal(t, []SRV{{Target: "sts-0.sts.default.svc.cluster.local", Port: 8080, Weight: 100}}, r.SRV("_web._tcp.sts.default.svc.cluster.local"))

	m.apply(t, `apiVersion: v1
kind: Service
metadata: {name: late}
spec: {ports: [{port: 80}]}
`)
	m.eventually(t, func(r *Records) bool { return r.Exists("late.default.svc.cluster.local") }, "a new Service resolves")
}
