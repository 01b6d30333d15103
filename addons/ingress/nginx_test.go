package ingress

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestBinaryMissingSaysHow: without nginx, the message names it and how to
// get it; a wrong SVCSIM_NGINX is named too.
func TestBinaryMissingSaysHow(t *testing.T) {
	t.Setenv("SVCSIM_NGINX", "/nonexistent/nginx")
	_, err := Binary()
	assert.ErrorContains(t, err, "nginx not found at SVCSIM_NGINX=/nonexistent/nginx")

	t.Setenv("SVCSIM_NGINX", "")
	t.Setenv("PATH", t.TempDir())
	saved := sbinNginx
	sbinNginx = "/nonexistent/sbin/nginx"
	t.Cleanup(func() { sbinNginx = saved })
	_, err = Binary()
	assert.EqualError(t, err, "nginx is not installed: run `sudo make deps` (Debian's nginx package, installed without starting it)")
}
