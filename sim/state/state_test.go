package state

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateVersionAndConditions(t *testing.T) {
	ep := func(ip string, ready bool) Endpoint {
		return Endpoint{IP: netip.MustParseAddr(ip), Port: 80, Ready: ready}
	}
	sp := ServicePort{Namespace: "ns", Name: "svc", Protocol: TCP, ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80}
	st := NodeState{Version: Version, Services: []ServicePort{sp}}
	st.Services[0].Endpoints = []Endpoint{ep("10.0.0.2", true), ep("10.0.0.1", true)}
	st.Services[0].NotReadyEndpoints = []Endpoint{ep("10.0.0.4", false), ep("10.0.0.3", false)}
	require.NoError(t, st.Validate())
	st.Sort()
	require.Equal(t, "10.0.0.1:80", st.Services[0].Endpoints[0].String())
	require.Equal(t, "10.0.0.3:80", st.Services[0].NotReadyEndpoints[0].String())

	newer := st
	newer.Version = Version + 1
	require.ErrorContains(t, newer.Validate(), "newer than this proxy understands")

	// Version 1 producers set no conditions: their endpoints are ready by
	// being listed.
	v1 := NodeState{Services: []ServicePort{sp}}
	v1.Services[0].Endpoints = []Endpoint{ep("10.0.0.1", false)}
	require.NoError(t, v1.Validate())
	v2 := v1
	v2.Version = Version
	require.ErrorContains(t, v2.Validate(), "listed as ready is not")

	bad := NodeState{Version: Version, Services: []ServicePort{sp}}
	bad.Services[0].NotReadyEndpoints = []Endpoint{ep("10.0.0.1", true)}
	require.ErrorContains(t, bad.Validate(), "bad not-ready endpoint")
}

// TestValidateNames: only DNS labels reach rule comments and chain-name
// hashes; anything else is refused with one message naming the rule.
func TestValidateNames(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	for _, tc := range []struct {
		ns, name, port string
		ok             bool
	}{
		{"default", "web", "http", true},
		{label63, label63, label63, true},
		{"default", "web", "", true},
		{"default", label63 + "a", "", false},
		{"Default", "web", "", false},
		{"default", `web"`, "", false},
		{"default", "web\n-A KUBE-SERVICES -j ACCEPT", "", false},
		{"default", "web; rm -rf /", "", false},
		{"default", "$(reboot)", "", false},
		{"default", "wéb", "", false},
		{"default", "web", "http port", false},
		{"", "web", "", false},
		{"default", "-web", "", false},
	} {
		sp := ServicePort{Namespace: tc.ns, Name: tc.name, PortName: tc.port, Protocol: TCP,
			ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80}
		err := (&NodeState{Version: Version, Services: []ServicePort{sp}}).Validate()
		if tc.ok {
			require.NoError(t, err, "%q/%q:%q", tc.ns, tc.name, tc.port)
			continue
		}
		require.ErrorContains(t, err, "namespace, name and port name must be DNS labels (lower-case letters, digits and '-', at most 63)", "%q/%q:%q", tc.ns, tc.name, tc.port)
	}
}
