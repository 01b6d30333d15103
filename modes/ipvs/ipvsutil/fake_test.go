package ipvsutil

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFakeEnforcesKernelRules(t *testing.T) {
	f := NewFake()
	vs := &VirtualServer{Address: netip.MustParseAddr("10.96.0.1"), Protocol: TCP, Port: 80, Scheduler: "rr"}
	rs := &RealServer{Address: netip.MustParseAddr("10.244.1.5"), Port: 8080, Weight: 1}

	assert.True(t, IsNotFound(f.AddDestination(vs, rs)), "destination before its service")
	require.NoError(t, f.AddService(vs))
	assert.True(t, IsExists(f.AddService(vs)))
	require.NoError(t, f.AddDestination(vs, rs))
	assert.True(t, IsExists(f.AddDestination(vs, rs)))
	assert.True(t, IsNotFound(f.UpdateDestination(vs, &RealServer{Address: rs.Address, Port: 1})))
	bad := *vs
	bad.Scheduler = "nope"
	assert.True(t, IsNotFound(f.UpdateService(&bad)), "unknown scheduler")
	v6 := &RealServer{Address: netip.MustParseAddr("fd00::1"), Port: 80}
	assert.Error(t, f.AddDestination(vs, v6), "family mismatch")

	require.NoError(t, f.SetConnections(vs.Key(), rs.Key(), 3, 4))
	require.NoError(t, f.UpdateDestination(vs, &RealServer{Address: rs.Address, Port: rs.Port, Weight: 0}))
	dst, err := f.Destinations(vs)
	require.NoError(t, err)
	assert.Equal(t, []*RealServer{{Address: rs.Address, Port: 8080, Weight: 0, ActiveConn: 3, InactiveConn: 4}}, dst)

	require.NoError(t, f.DeleteService(vs))
	assert.True(t, IsNotFound(f.DeleteService(vs)))
	_, err = f.Destinations(vs)
	assert.True(t, IsNotFound(err))

	require.NoError(t, f.AddService(vs))
	require.NoError(t, f.Flush())
	svcs, err := f.Services()
	require.NoError(t, err)
	assert.Empty(t, svcs)
	assert.Equal(t, 3, f.Ops()[OpAddService])
	f.ResetOps()
	assert.Zero(t, f.TotalOps())
}
