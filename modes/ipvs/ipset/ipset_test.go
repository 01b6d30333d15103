package ipset

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFakeRestore(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	s := Set{Name: "KUBE-CLUSTER-IP", Type: HashIPPort}
	ip := netip.MustParseAddr("10.96.0.1")
	require.NoError(t, f.Restore(ctx, []byte(s.CreateLine()+"\nadd KUBE-CLUSTER-IP "+IPPort(ip, "TCP", 443)+"\n")))
	require.NoError(t, f.Restore(ctx, []byte(s.CreateLine()+"\nadd KUBE-CLUSTER-IP 10.96.0.1,tcp:443\ndel KUBE-CLUSTER-IP 10.96.0.2,udp:53\n")),
		"-exist: same create, present add, missing del are fine")
	e, err := f.Entries(ctx, s.Name)
	require.NoError(t, err)
	assert.Equal(t, []string{"10.96.0.1,tcp:443"}, e)

	err = f.Restore(ctx, []byte("add KUBE-CLUSTER-IP 10.96.0.3,tcp:1\nadd KUBE-CLUSTER-IP 10.96.0.4\nadd KUBE-CLUSTER-IP 10.96.0.5,tcp:2\n"))
	assert.ErrorContains(t, err, "line 2", "an entry that does not fit the type")
	e, _ = f.Entries(ctx, s.Name)
	assert.Equal(t, []string{"10.96.0.1,tcp:443", "10.96.0.3,tcp:1"}, e, "lines before the error stay, like ipset restore")

	assert.Error(t, f.Restore(ctx, []byte("add NOPE 1\n")), "missing set")
	assert.Error(t, f.Restore(ctx, []byte("create KUBE-CLUSTER-IP hash:ip\n")), "same name, other type")
	require.NoError(t, f.Restore(ctx, []byte(Set{Name: "NP", Type: BitmapPort}.CreateLine()+"\nadd NP 30080\n")))
	assert.Error(t, f.Restore(ctx, []byte("add NP 70000\n")))
	assert.Equal(t, "10.244.1.5,udp:53,10.244.1.5", IPPortIP(netip.MustParseAddr("10.244.1.5"), "UDP", 53, netip.MustParseAddr("10.244.1.5")))

	names, err := f.ListSets(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"KUBE-CLUSTER-IP", "NP"}, names)
	require.NoError(t, f.Destroy(ctx, "NP"))
	assert.Error(t, f.Destroy(ctx, "NP"))
}
