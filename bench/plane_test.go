package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/plane/planetest"
)

// TestPlaneChanges runs the plane measurement on the asynchronous fake
// plane: every programmed sample waited for the delayed programming (so it
// is at least the delay), the fake's nodes hold the N services, and the
// measurement's namespace is gone afterwards.
func TestPlaneChanges(t *testing.T) {
	const delay = 20 * time.Millisecond
	f, err := planetest.New(2, delay)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	acc, prog, err := PlaneChanges(ctx, f, 50, 2, 2)
	require.NoError(t, err)
	require.Len(t, acc, 4)
	require.Len(t, prog, 4)
	for i := range prog {
		require.GreaterOrEqual(t, prog[i], float64(delay.Milliseconds()), "sample %d returned before programming", i)
		require.LessOrEqual(t, acc[i], prog[i])
	}
	pods, err := f.Pods(ctx, planeNamespace)
	require.NoError(t, err)
	require.Empty(t, pods)
	for _, n := range f.Nodes() {
		for _, sp := range f.Programmed(n.Name).Services {
			require.NotEqual(t, planeNamespace, sp.Namespace, "node %s still programs %s", n.Name, sp.ID())
		}
	}
}

func TestPlaneManifestDecodes(t *testing.T) {
	f, err := planetest.New(1, 0)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	ctx := context.Background()
	_, err = f.Apply(ctx, planeNamespace, planeManifest(3, 2))
	require.NoError(t, err)
	require.NoError(t, f.WaitProgrammed(ctx))
	st := f.Programmed("node1")
	eps := 0
	for _, sp := range st.Services {
		if sp.Namespace == planeNamespace {
			eps += len(sp.Endpoints)
		}
	}
	require.Equal(t, 2*2+1, eps, "two selectorless services of 2 endpoints and web's pod")
}
