package clusterdns

import (
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/sim"
)

const manifests = `apiVersion: apps/v1
kind: Deployment
metadata: {name: getip-deployment}
spec:
  replicas: 2
  selector: {matchLabels: {app: getip}}
  template:
    metadata: {labels: {app: getip}}
    spec:
      containers: [{name: getip, image: getip, ports: [{containerPort: 7080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: getip-service-headless}
spec:
  selector: {app: getip}
  clusterIP: None
  ports: [{protocol: TCP, port: 7070, targetPort: 7080}]
---
apiVersion: v1
kind: Service
metadata: {name: getip-service}
spec:
  selector: {app: getip}
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 7080}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  type: ExternalName
  externalName: db.example.com
`

func records(t *testing.T) (*sim.Cluster, *sim.Records) {
	t.Helper()
	c, err := sim.New(sim.DefaultConfig(2))
	require.NoError(t, err)
	objs, err := sim.Decode([]byte(manifests), "test")
	require.NoError(t, err)
	_, err = c.Apply(objs)
	require.NoError(t, err)
	return c, c.DNS()
}

func ask(recs *sim.Records, name string, t uint16) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, t)
	return Answer(recs, q)
}

func TestHeadlessAnswersEveryPod(t *testing.T) {
	c, recs := records(t)
	m := ask(recs, "getip-service-headless.default.svc.cluster.local.", dns.TypeA)
	require.Equal(t, dns.RcodeSuccess, m.Rcode)
	var got []string
	for _, rr := range m.Answer {
		got = append(got, rr.(*dns.A).A.String())
	}
	var want []string
	for _, p := range c.Pods() {
		want = append(want, p.IP.String())
	}
	require.ElementsMatch(t, want, got)
	require.Len(t, got, 2)
}

func TestClusterIPAndSRVAndCNAME(t *testing.T) {
	c, recs := records(t)
	var vip string
	for _, s := range c.Services() {
		if s.Name == "getip-service" {
			vip = s.Spec.ClusterIP
		}
	}
	m := ask(recs, "GETIP-SERVICE.default.svc.cluster.local.", dns.TypeA)
	require.Len(t, m.Answer, 1)
	require.Equal(t, vip, m.Answer[0].(*dns.A).A.String())

	m = ask(recs, "_http._tcp.getip-service.default.svc.cluster.local.", dns.TypeSRV)
	require.Len(t, m.Answer, 1)
	require.Equal(t, uint16(80), m.Answer[0].(*dns.SRV).Port)

	m = ask(recs, "db.default.svc.cluster.local.", dns.TypeA)
	require.Len(t, m.Answer, 1)
	require.Equal(t, "db.example.com.", m.Answer[0].(*dns.CNAME).Target)
}

func TestUnknownAndOutside(t *testing.T) {
	_, recs := records(t)
	m := ask(recs, "nosuch.default.svc.cluster.local.", dns.TypeA)
	require.Equal(t, dns.RcodeNameError, m.Rcode)
	require.Len(t, m.Ns, 1)
	m = ask(recs, "example.com.", dns.TypeA)
	require.Equal(t, dns.RcodeRefused, m.Rcode)
}
