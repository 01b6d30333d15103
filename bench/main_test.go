package bench

import (
	"os"
	"testing"

	"github.com/svcsim/svcsim/internal/reexec"
)

// TestMain lets this test binary run as a node proxy (package
// modes/agent's entry point), which the plane measurement starts.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}
