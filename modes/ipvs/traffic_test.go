package ipvs

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/modetest"
)

// TestKernelTraffic sends one real TCP connection from a node namespace to a
// ClusterIP and checks that IPVS delivers it to the pod behind a veth and
// that it was masqueraded (the node's own traffic to a ClusterIP comes from
// the ClusterIP itself, outside the pod network).
//
//	node ns: veth "vpod" 10.244.1.1/24, kube-ipvs0 10.96.0.20
//	pod ns:  eth0 10.244.1.5/24, default via 10.244.1.1, listens on :8080
func TestKernelTraffic(t *testing.T) {
	requireIPVS(t)
	node, pod := privtest.NS(t, "node"), privtest.NS(t, "pod")
	ctx := context.Background()

	modetest.Link(t, node, pod, "vpod", "10.244.1.1/24", "10.244.1.5/24")
	// The backend: answers each connection with the address it came from.
	modetest.ServeRemoteAddr(t, pod, "10.244.1.5:8080")

	var p modes.Proxier
	require.NoError(t, node.Do(func() error {
		var err error
		p, err = modes.New(Name, modes.Options{Node: "node1"})
		return err
	}))
	t.Cleanup(func() {
		assert.NoError(t, node.Do(func() error { return p.Cleanup(ctx) }))
		assert.NoError(t, p.(*Proxier).Close())
	})
	st := makeState(makeSvc("web", "10.96.0.20", 80, withEps(ep("10.244.1.5", 8080, "node1"))))

	require.NoError(t, node.Do(func() error { return p.Sync(ctx, st) }))
	from, err := modetest.AskRemoteAddr(node, "10.96.0.20:80")
	require.NoError(t, err)
	assert.Equal(t, "10.244.1.1", from, "masqueraded to the node's address on the pod network")
}
