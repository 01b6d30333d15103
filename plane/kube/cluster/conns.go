package cluster

import (
	"net"
	"sync"
)

// connSet remembers the open connections a node's kubelet dialled to the
// API server, so that RemoveNode can close them: a powered-off node's
// kernel would never say goodbye, and the API server would then wait on
// those connections for its whole shutdown timeout.
type connSet struct {
	mu sync.Mutex
	m  map[*trackedConn]struct{}
}

func newConnSet() *connSet { return &connSet{m: map[*trackedConn]struct{}{}} }

// add wraps c so that closing it forgets it.
func (s *connSet) add(c net.Conn) net.Conn {
	t := &trackedConn{Conn: c, set: s}
	s.mu.Lock()
	s.m[t] = struct{}{}
	s.mu.Unlock()
	return t
}

// closeAll closes every connection still open.
func (s *connSet) closeAll() {
	s.mu.Lock()
	open := make([]*trackedConn, 0, len(s.m))
	for c := range s.m {
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.set.mu.Lock()
		delete(c.set.m, c)
		c.set.mu.Unlock()
	})
	return c.Conn.Close()
}
