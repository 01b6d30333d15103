package sim

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestBitmap(t *testing.T) {
	b := newBitmap(130)
	for _, o := range []uint64{0, 63, 64, 129} {
		require.False(t, b.has(o))
		b.set(o)
		require.True(t, b.has(o))
	}
	b.set(130) // out of range: ignored
	require.False(t, b.has(130))
	b.clear(64)
	require.False(t, b.has(64))
	require.True(t, b.has(63))
	b.clear(0)
	b.clear(63)
	require.Len(t, b.words, 1, "an empty word is dropped")
}

// TestAllocationsFollowTheBatch: within one batch, an address or port a
// Service took is taken for the next object, and one it gave up (its type
// changed) is free again.
func TestAllocationsFollowTheBatch(t *testing.T) {
	c, _ := newCluster(t, 2)
	_, err := c.Apply(objs(
		makeService("default", "a", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.7" }),
		makeService("default", "b", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.7" })))
	require.EqualError(t, err, `error when applying "test.yaml:1": Service "b" is invalid: spec.clusterIPs: Invalid value: ["10.96.0.7"]: failed to allocate IP 10.96.0.7: provided IP is already allocated`)

	np := func(name string, port int32) *corev1.Service {
		return makeService("default", name, func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = port
		})
	}
	_, err = c.Apply(objs(np("a", 30001), np("b", 30001)))
	require.EqualError(t, err, `error when applying "test.yaml:1": Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 30001: provided port is already allocated`)

	ext := makeService("default", "a", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeExternalName
		s.Spec.ExternalName = "db.example.com"
		s.Spec.Selector = nil
	})
	mustApply(t, c,
		makeService("default", "a", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.7" }),
		ext,
		makeService("default", "b", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.7" }))
	require.Equal(t, "10.96.0.7", svcOf(t, c, "default", "b").Spec.ClusterIP)

	mustApply(t, c, np("c", 30002), makeService("default", "c"), np("d", 30002))
	require.Equal(t, int32(30002), svcOf(t, c, "default", "d").Spec.Ports[0].NodePort)
}

// TestSmallRangesFill: a /28 has 13 ClusterIPs to hand out (14 addresses
// less the kubernetes Service's first one) and 30000-30003 four NodePorts;
// one more is refused until one is deleted, then that one is handed out.
func TestSmallRangesFill(t *testing.T) {
	cfg := DefaultConfig(1)
	cfg.ServiceCIDR = netip.MustParsePrefix("10.0.0.0/28")
	c, err := New(cfg)
	require.NoError(t, err)
	var svcs []runtime.Object
	for i := range 13 {
		svcs = append(svcs, makeService("default", fmt.Sprintf("s%d", i)))
	}
	mustApply(t, c, svcs...)
	for _, s := range c.Services() {
		require.NotEqual(t, "10.0.0.1", s.Spec.ClusterIP, "the kubernetes Service's address")
	}
	_, err = c.Apply(objs(makeService("default", "extra")))
	require.ErrorContains(t, err, "failed to allocate a serviceIP: range is full")
	freed := svcOf(t, c, "default", "s3").Spec.ClusterIP
	require.NoError(t, c.Delete("Service", "default", "s3"))
	mustApply(t, c, makeService("default", "extra"))
	require.Equal(t, freed, svcOf(t, c, "default", "extra").Spec.ClusterIP)

	cfg = DefaultConfig(1)
	cfg.NodePortMin, cfg.NodePortMax = 30000, 30003
	c, err = New(cfg)
	require.NoError(t, err)
	var nps []runtime.Object
	for i := range 5 {
		nps = append(nps, makeService("default", fmt.Sprintf("n%d", i), func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }))
	}
	_, err = c.Apply(objs(nps...))
	require.ErrorContains(t, err, "failed to allocate a nodePort: range is full")
	mustApply(t, c, nps[:4]...)
	seen := map[int32]bool{}
	for i := range 4 {
		p := svcOf(t, c, "default", fmt.Sprintf("n%d", i)).Spec.Ports[0].NodePort
		require.False(t, seen[p], "node port %d twice", p)
		seen[p] = true
	}
	freedPort := svcOf(t, c, "default", "n2").Spec.Ports[0].NodePort
	require.NoError(t, c.Delete("Service", "default", "n2"))
	mustApply(t, c, nps[4])
	require.Equal(t, freedPort, svcOf(t, c, "default", "n4").Spec.Ports[0].NodePort)
}
