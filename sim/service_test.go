package sim

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestServiceValidation(t *testing.T) {
	cases := []struct {
		name string
		svc  *corev1.Service
		want string // the whole error line of the object
	}{
		{"nodePort out of range", makeService("default", "foo", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 40000
		}), `Service "foo" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767`},
		{"duplicate port names", makeService("default", "foo", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "http", Port: 81}}
		}), `Service "foo" is invalid: spec.ports[1].name: Duplicate value: "http"`},
		{"multi-port without names", makeService("default", "foo", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}, {Port: 443}}
		}), `Service "foo" is invalid: spec.ports[1].name: Required value`},
		{"several errors at once", makeService("default", "foo", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Port: 80}, {Port: 0, Protocol: "SCTP"}}
		}), `Service "foo" is invalid: [spec.ports[0].name: Required value, spec.ports[1].name: Required value, spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive, spec.ports[1].protocol: Unsupported value: "SCTP": supported values: "TCP", "UDP", spec.ports[1].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive]`},
		{"no ports", makeService("default", "foo", func(s *corev1.Service) { s.Spec.Ports = nil }),
			`Service "foo" is invalid: spec.ports: Required value`},
		{"unknown type", makeService("default", "foo", func(s *corev1.Service) { s.Spec.Type = "Cloud" }),
			`Service "foo" is invalid: spec.type: Unsupported value: "Cloud": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"`},
		{"ExternalName without name", makeService("default", "foo", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }),
			`Service "foo" is invalid: spec.externalName: Required value`},
		{"nodePort on ClusterIP", makeService("default", "foo", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30001 }),
			"Service \"foo\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"},
		{"headless NodePort", makeService("default", "foo", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ClusterIP = "None"
		}), `Service "foo" is invalid: spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services`},
		{"clusterIP out of range", makeService("default", "foo", func(s *corev1.Service) { s.Spec.ClusterIP = "10.112.0.1" }),
			`Service "foo" is invalid: spec.clusterIPs: Invalid value: ["10.112.0.1"]: failed to allocate IP 10.112.0.1: the provided network does not match the current range`},
		{"clusterIP not an IP", makeService("default", "foo", func(s *corev1.Service) { s.Spec.ClusterIP = "ten" }),
			`Service "foo" is invalid: spec.clusterIPs[0]: Invalid value: "ten": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`},
		{"affinity timeout zero", makeService("default", "foo", func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			zero := int32(0)
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &zero}}
		}), `Service "foo" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400`},
		{"affinity timeout too long", makeService("default", "foo", func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			v := int32(86401)
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &v}}
		}), `Service "foo" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400`},
		{"unknown affinity", makeService("default", "foo", func(s *corev1.Service) { s.Spec.SessionAffinity = "Cookie" }),
			`Service "foo" is invalid: spec.sessionAffinity: Unsupported value: "Cookie": supported values: "ClientIP", "None"`},
		{"loopback external IP", makeService("default", "foo", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"127.0.0.2"} }),
			`Service "foo" is invalid: spec.externalIPs[0]: Invalid value: "127.0.0.2": may not be in the loopback range (127.0.0.0/8, ::1/128)`},
		{"bad name", makeService("default", "Foo"),
			`Service "Foo" is invalid: metadata.name: Invalid value: "Foo": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newCluster(t, 2)
			gen := c.Generation()
			_, err := c.Apply(objs(tc.svc))
			require.Error(t, err)
			var be *BatchError
			require.ErrorAs(t, err, &be)
			require.Len(t, be.Errs, 1)
			require.Equal(t, `error when applying "test.yaml:0": `+tc.want, err.Error())
			require.True(t, apierrors.IsInvalid(errors.Unwrap(be.Errs[0])), "the API error is Invalid")
			require.Equal(t, gen, c.Generation())
			require.Empty(t, c.Services())
		})
	}
}

func TestServiceDefaults(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c,
		makeService("default", "plain", func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.IntOrString{} }),
		makeService("default", "np", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }),
		makeService("default", "aff", func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP }),
		makeService("default", "ext", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "db.example.com"
			s.Spec.Selector = nil
		}),
		makeService("default", "fixed", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.10" }),
	)
	plain := svcOf(t, c, "default", "plain")
	require.Equal(t, corev1.ServiceTypeClusterIP, plain.Spec.Type)
	require.Equal(t, corev1.ProtocolTCP, plain.Spec.Ports[0].Protocol)
	require.Equal(t, intstr.FromInt32(80), plain.Spec.Ports[0].TargetPort, "targetPort defaults to port")
	require.Equal(t, corev1.ServiceAffinityNone, plain.Spec.SessionAffinity)
	ip := netip.MustParseAddr(plain.Spec.ClusterIP)
	cidr := netip.MustParsePrefix("10.96.0.0/12")
	require.True(t, cidr.Contains(ip))
	require.NotEqual(t, cidr.Addr(), ip)
	require.Equal(t, []string{plain.Spec.ClusterIP}, plain.Spec.ClusterIPs)

	np := svcOf(t, c, "default", "np")
	require.GreaterOrEqual(t, np.Spec.Ports[0].NodePort, int32(30000))
	require.LessOrEqual(t, np.Spec.Ports[0].NodePort, int32(32767))
	require.Equal(t, corev1.ServiceExternalTrafficPolicyCluster, np.Spec.ExternalTrafficPolicy)

	aff := svcOf(t, c, "default", "aff")
	require.Equal(t, int32(10800), *aff.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds)

	ext := svcOf(t, c, "default", "ext")
	require.Empty(t, ext.Spec.ClusterIP)
	require.Empty(t, ext.Spec.ClusterIPs)

	require.Equal(t, "10.96.0.10", svcOf(t, c, "default", "fixed").Spec.ClusterIP)

	seen := map[string]bool{}
	for _, s := range c.Services() {
		if s.Spec.ClusterIP != "" {
			require.False(t, seen[s.Spec.ClusterIP], "ClusterIPs are unique")
			seen[s.Spec.ClusterIP] = true
		}
	}
}

func TestAllocationIsDeterministic(t *testing.T) {
	build := func() []corev1.Service {
		c, _ := newCluster(t, 2)
		mustApply(t, c,
			makeService("default", "a", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }),
			makeService("default", "b", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer }))
		return c.Services()
	}
	a, b := build(), build()
	for i := range a {
		require.Equal(t, a[i].Spec.ClusterIP, b[i].Spec.ClusterIP)
		require.Equal(t, a[i].Spec.Ports[0].NodePort, b[i].Spec.Ports[0].NodePort)
	}
	cfg := DefaultConfig(2)
	cfg.Seed = 99
	c, err := New(cfg)
	require.NoError(t, err)
	_, err = c.Apply(objs(makeService("default", "a", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort })))
	require.NoError(t, err)
	require.NotEqual(t, a[0].Spec.ClusterIP, c.Services()[0].Spec.ClusterIP, "another seed, another address")
}

func TestClusterIPTakenAndImmutable(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c, makeService("default", "one", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.5" }))
	_, err := c.Apply(objs(makeService("default", "two", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.5" })))
	require.EqualError(t, err, `error when applying "test.yaml:0": Service "two" is invalid: spec.clusterIPs: Invalid value: ["10.96.0.5"]: failed to allocate IP 10.96.0.5: provided IP is already allocated`)

	// Re-applying without clusterIP keeps it (the API server fills an
	// omitted one from the old object); changing it is refused.
	lines := mustApply(t, c, makeService("default", "one"))
	require.Equal(t, []string{"service/one configured"}, lines)
	require.Equal(t, "10.96.0.5", svcOf(t, c, "default", "one").Spec.ClusterIP)
	require.Equal(t, []string{"service/one unchanged"}, mustApply(t, c, makeService("default", "one")))
	_, err = c.Apply(objs(makeService("default", "one", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.6" })))
	require.EqualError(t, err, `error when applying "test.yaml:0": Service "one" is invalid: spec.clusterIPs[0]: Invalid value: ["10.96.0.6"]: may not change once set`)
	require.Equal(t, "10.96.0.5", svcOf(t, c, "default", "one").Spec.ClusterIP)
}

func TestNodePorts(t *testing.T) {
	c, _ := newCluster(t, 2)
	np := func(name string, port int32) *corev1.Service {
		return makeService("default", name, func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = port
		})
	}
	mustApply(t, c, np("a", 30080), np("b", 0))
	_, err := c.Apply(objs(np("c", 30080)))
	require.EqualError(t, err, `error when applying "test.yaml:0": Service "c" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated`)

	allocated := svcOf(t, c, "default", "b").Spec.Ports[0].NodePort
	require.NotZero(t, allocated)
	// The same manifest again keeps the allocated port.
	require.Equal(t, []string{"service/b unchanged"}, mustApply(t, c, np("b", 0)))
	require.Equal(t, allocated, svcOf(t, c, "default", "b").Spec.Ports[0].NodePort)
	// A changed manifest (another port number) keeps it too.
	lines := mustApply(t, c, makeService("default", "b", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].TargetPort = intstr.FromInt32(9090)
	}))
	require.Equal(t, []string{"service/b configured"}, lines)
	require.Equal(t, allocated, svcOf(t, c, "default", "b").Spec.Ports[0].NodePort)

	// Back to ClusterIP: the node port is released and reusable.
	mustApply(t, c, makeService("default", "a"))
	require.Zero(t, svcOf(t, c, "default", "a").Spec.Ports[0].NodePort)
	mustApply(t, c, np("c", 30080))
}

func TestAcceptanceRejectionsLeaveStateUnchanged(t *testing.T) {
	seed, err := Load("testdata/seed")
	require.NoError(t, err)
	cases := []struct {
		name string
		bad  *Object
		want string
	}{
		{"nodePort 40000", &Object{Source: "bad.yaml:0", Obj: makeService("default", "bad", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 40000
		})}, `error when applying "bad.yaml:0": Service "bad" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767`},
		{"duplicate port names", &Object{Source: "bad.yaml:0", Obj: makeService("default", "bad", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "web", Port: 80}, {Name: "web", Port: 8080}}
		})}, `error when applying "bad.yaml:0": Service "bad" is invalid: spec.ports[1].name: Duplicate value: "web"`},
		{"endpoint 127.0.0.1", &Object{Source: "bad.yaml:0", Obj: makeEndpoints("default", "external-service", "127.0.0.1")},
			`error when applying "bad.yaml:0": Endpoints "external-service" is invalid: subsets[0].addresses[0].ip: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newCluster(t, 2)
			// In one batch with the seed: nothing of the batch is applied.
			batch := append(append([]Object{}, seed...), *tc.bad)
			_, err := c.Apply(batch)
			require.EqualError(t, err, tc.want)
			require.Empty(t, c.Services())
			require.Empty(t, c.Pods())
			require.Equal(t, uint64(1), c.Generation())

			// After the seed: the state stays exactly as it was.
			_, err = c.Apply(seed)
			require.NoError(t, err)
			gen, svcs, eps, pods := c.Generation(), c.Services(), c.Endpoints(), c.Pods()
			_, err = c.Apply([]Object{*tc.bad})
			require.EqualError(t, err, tc.want)
			require.Equal(t, gen, c.Generation())
			require.Equal(t, svcs, c.Services())
			require.Equal(t, eps, c.Endpoints())
			require.Equal(t, pods, c.Pods())
		})
	}
}

func TestBatchErrorListsEveryObject(t *testing.T) {
	c, _ := newCluster(t, 2)
	_, err := c.Apply([]Object{
		{Source: "a.yaml:0", Obj: makeService("default", "ok")},
		{Source: "a.yaml:1", Obj: makeService("default", "bad1", func(s *corev1.Service) { s.Spec.Ports[0].Port = 0 })},
		{Source: "b.yaml:0", Obj: makeEndpoints("default", "bad2", "169.254.1.1", "0.0.0.0")},
	})
	var be *BatchError
	require.ErrorAs(t, err, &be)
	require.Len(t, be.Errs, 2)
	lines := strings.Split(err.Error(), "\n")
	require.Equal(t, []string{
		`error when applying "a.yaml:1": Service "bad1" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive`,
		`error when applying "b.yaml:0": Endpoints "bad2" is invalid: [subsets[0].addresses[0].ip: Invalid value: "169.254.1.1": may not be in the link-local range (169.254.0.0/16, fe80::/10), subsets[0].addresses[1].ip: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)]`,
	}, lines)
	var oe *ObjectError
	require.ErrorAs(t, be.Errs[0], &oe)
	require.Equal(t, "a.yaml:1", oe.Source)
	require.Empty(t, c.Services(), "the valid object was not applied either")
}

// TestEndpointsMayBeClusterIPs: as on the genuine API server, an Endpoints
// address may be another Service's ClusterIP (kube-proxy cannot use it, the
// seed warns, but validation lets it through); link-local and IPv6 ones are
// refused.
func TestEndpointsMayBeClusterIPs(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c, makeService("default", "dns", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.10" }))
	mustApply(t, c, makeEndpoints("default", "ext", "10.96.0.10"))
	mustApply(t, c, makeEndpoints("default", "ext2", "10.96.0.11"), makeService("default", "x", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.11" }))
	_, err := c.Apply(objs(makeEndpoints("default", "ext", "fe80::1")))
	require.ErrorContains(t, err, `may not be in the link-local range (169.254.0.0/16, fe80::/10)`)
	_, err = c.Apply(objs(makeEndpoints("default", "ext", "2001:db8::1")))
	require.ErrorContains(t, err, `svcsim simulates IPv4 only`)
}
