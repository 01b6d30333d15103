package state

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

func ep(ip, node string, ready, serving, terminating bool) Endpoint {
	return Endpoint{IP: netip.MustParseAddr(ip), Port: 80, Node: node, Ready: ready, Serving: serving, Terminating: terminating}
}

func ips(eps []Endpoint) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.IP.String())
	}
	return out
}

// The address plan: node1 has 10.244.1.2 (ready) and 10.244.1.3
// (terminating, serving); node2 has 10.244.2.2 (terminating, serving) and
// 10.244.2.3 (not ready, not terminating).
func TestEndpointSelection(t *testing.T) {
	sp := ServicePort{
		NodePort:              30080,
		InternalTrafficPolicy: PolicyLocal,
		ExternalTrafficPolicy: PolicyLocal,
		Endpoints:             []Endpoint{ep("10.244.1.2", "node1", true, true, false)},
		NotReadyEndpoints: []Endpoint{
			ep("10.244.1.3", "node1", false, true, true),
			ep("10.244.2.2", "node2", false, true, true),
			ep("10.244.2.3", "node2", false, false, false),
		},
	}
	assert.Equal(t, []string{"10.244.1.2"}, ips(sp.ClusterEndpoints()), "ready ones only while any is ready")
	assert.Equal(t, []string{"10.244.1.2"}, ips(sp.LocalEndpoints("node1")))
	assert.Equal(t, []string{"10.244.2.2"}, ips(sp.LocalEndpoints("node2")), "node2 falls back to its serving terminating endpoint")
	assert.Equal(t, 1, sp.LocalReadyEndpoints("node1"))
	assert.Equal(t, 0, sp.LocalReadyEndpoints("node2"), "terminating endpoints do not count for health")
	assert.Equal(t, ips(sp.LocalEndpoints("node2")), ips(sp.InternalEndpoints("node2")))
	assert.Equal(t, ips(sp.LocalEndpoints("node2")), ips(sp.ExternalEndpoints("node2")))
	assert.Empty(t, sp.LocalEndpoints(""), "an unnamed node has no local endpoints")

	sp.Endpoints = nil
	assert.Equal(t, []string{"10.244.1.3", "10.244.2.2"}, ips(sp.ClusterEndpoints()), "no ready one left: serving terminating ones")
	assert.True(t, sp.HasEndpoints())
	sp.NotReadyEndpoints = sp.NotReadyEndpoints[2:]
	assert.False(t, sp.HasEndpoints(), "a not-ready, non-terminating endpoint never takes traffic")

	c := ServicePort{ExternalTrafficPolicy: PolicyLocal}
	assert.False(t, c.ExternalLocal(), "Local needs an external address")
	c.LoadBalancerIPs = []netip.Addr{netip.MustParseAddr("198.18.1.1")}
	assert.True(t, c.ExternalLocal())
}
