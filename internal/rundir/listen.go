package rundir

import (
	"fmt"
	"net"
	"os"
)

// ListenUnix listens on a unix socket at path that only its owner (root)
// may connect to: mode 0600 whatever the umask, since connecting needs
// write permission on the socket. The control and node-proxy feed sockets
// use it: a request from another user is refused by the kernel (EACCES).
func ListenUnix(path string) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("make %s owner-only: %w", path, err)
	}
	return ln, nil
}
