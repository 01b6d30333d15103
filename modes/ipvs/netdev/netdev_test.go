package netdev

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFake(t *testing.T) {
	f := NewFake()
	a := netip.MustParseAddr("10.96.0.1")
	assert.True(t, errors.Is(f.AddAddr("kube-ipvs0", a), ErrNoDevice))
	require.NoError(t, f.EnsureDummy("kube-ipvs0"))
	require.NoError(t, f.EnsureDummy("kube-ipvs0"))
	require.NoError(t, f.AddAddr("kube-ipvs0", a))
	assert.Error(t, f.AddAddr("kube-ipvs0", a), "duplicate")
	got, err := f.Addrs("kube-ipvs0")
	require.NoError(t, err)
	assert.Equal(t, []netip.Addr{a}, got)
	require.NoError(t, f.DelAddr("kube-ipvs0", a))
	assert.Error(t, f.DelAddr("kube-ipvs0", a), "missing")
	require.NoError(t, f.DeleteDevice("kube-ipvs0"))
	require.NoError(t, f.DeleteDevice("kube-ipvs0"))
	assert.False(t, f.Has("kube-ipvs0"))
}
