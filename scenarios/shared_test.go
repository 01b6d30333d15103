package scenarios

import (
	"testing"

	"github.com/svcsim/svcsim/scenarios/harness"
)

// TestSharedCluster runs several scenarios one after another on one
// cluster per datapath, each in its own namespace: what lets a plane whose
// start is expensive (a real API server) serve a whole run. Each passes
// as it does alone, and each leaves no pod behind (RunShared checks). The
// selectorless scenario also adds and removes an outside host.
func TestSharedCluster(t *testing.T) {
	harness.RequireRoot(t)
	harness.RunShared(t, noEndpoints(), multiPortService(), selectorlessService())
}
