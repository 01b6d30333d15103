package clusterdns

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/addons"
	"github.com/svcsim/svcsim/sim"
)

// here is the caller's own network namespace: the seam without root.
type here struct{}

func (here) Do(f func() error) error { return f() }
func (here) Name() string            { return "test" }

// The add-on through the seam: its manifests applied to the model, the
// registry's plan for the kube-dns pod, the workload started with a
// namespace and the model's list/watch client, real queries over UDP and
// TCP, and Stop closing its sockets.
func TestAddOnThroughTheSeam(t *testing.T) {
	m := newModel(t, Manifests, `apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
`)
	a := AddOn(m.c.Config().DNSDomain)
	a.Workloads = map[string]addons.Workload{addons.Repository(Image): workload(m.c.Config().DNSDomain, "127.0.0.1:0")}
	r := addons.NewRegistry()
	require.NoError(t, r.RegisterAddOns(a))

	var dnsPod sim.Pod
	for _, p := range m.c.Pods() {
		if p.Namespace == "kube-system" {
			dnsPod = p
		}
	}
	require.NotEmpty(t, dnsPod.Name, "the add-on's Deployment made a pod")
	plan := r.Plan(dnsPod)
	require.Empty(t, plan.ServerPorts, "no built-in servers in the DNS pod")
	require.Len(t, plan.Starts, 1)
	require.Equal(t, "clusterdns", plan.Starts[0].Workload.Name)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inst, err := plan.Starts[0].Workload.Start(ctx, addons.Env{Pod: dnsPod, NS: here{}, Client: m.v.Client()})
	require.NoError(t, err)
	addr := inst.(interface{ Addr() net.Addr }).Addr().String()

	var web string
	for _, s := range m.c.Services() {
		if s.Name == "web" {
			web = s.Spec.ClusterIP
		}
	}
	for _, network := range []string{"udp", "tcp"} {
		q := new(dns.Msg)
		q.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
		resp, _, err := (&dns.Client{Net: network, Timeout: 2 * time.Second}).ExchangeContext(ctx, q, addr)
		require.NoError(t, err, network)
		require.Len(t, resp.Answer, 1, network)
		require.Equal(t, web, resp.Answer[0].(*dns.A).A.String(), network)
	}
	q := new(dns.Msg)
	q.SetQuestion("kube-dns.kube-system.svc.cluster.local.", dns.TypeA)
	resp, _, err := (&dns.Client{Timeout: 2 * time.Second}).ExchangeContext(ctx, q, addr)
	require.NoError(t, err)
	require.Equal(t, ServiceIP, resp.Answer[0].(*dns.A).A.String(), "the add-on's own Service")

	require.NoError(t, inst.Stop())
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	require.Error(t, err, "the server's TCP socket is closed after Stop")
}
