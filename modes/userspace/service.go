package userspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/svcsim/svcsim/sim/state"
)

// BackendStats counts what one Service port sent to one backend.
type BackendStats struct {
	Endpoint netip.AddrPort
	// Connections is the number of TCP connections (UDP sessions) opened.
	Connections uint64
	// DialFailures counts dials that failed (TCP refused or timed out).
	DialFailures uint64
	// BytesToBackend and BytesFromBackend count proxied payload.
	BytesToBackend, BytesFromBackend uint64
}

type backendCounters struct {
	conns, failures, toBackend, fromBackend atomic.Uint64
}

// service is the proxy of one Service port: its listener, its balancer and
// the connections (TCP) or sessions (UDP) it is carrying.
type service struct {
	key   string
	proto state.Protocol
	lb    *RoundRobin
	net   Network
	dialT []time.Duration
	idle  time.Duration // UDP session idle timeout
	port  int

	tcp *net.TCPListener
	udp *net.UDPConn

	ctx    context.Context // cancelled by stop: aborts dials in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup // serve loop, connection handlers, UDP sessions

	mu       sync.Mutex
	spec     state.ServicePort // current desired state, for rules and Dump
	fe       frontends         // what the portal rules send here
	closed   bool
	open     map[io.Closer]struct{} // sockets to close on stop
	stats    map[netip.AddrPort]*backendCounters
	sessions map[netip.AddrPort]*udpSession
}

// frontends are the addresses a listener's portal rules send to it.
type frontends struct {
	vips  []netip.Addr // ClusterIP and external IPs
	lbIPs []netip.Addr // load-balancer IPs, from ranges only (if any)
	// ranges are loadBalancerSourceRanges: other sources are not
	// redirected, and the node has no route for the address.
	ranges   []netip.Prefix
	nodePort int32
}

// update sets the listener's endpoints (already chosen by traffic policy)
// and frontends.
func (s *service) update(sp *state.ServicePort, endpoints []state.Endpoint, fe frontends) {
	eps := make([]netip.AddrPort, 0, len(endpoints))
	for _, e := range endpoints {
		ap := netip.AddrPortFrom(e.IP, uint16(e.Port))
		if !slices.Contains(eps, ap) {
			eps = append(eps, ap)
		}
	}
	s.lb.Update(eps, sp.SessionAffinity, time.Duration(sp.Timeout())*time.Second)
	s.mu.Lock()
	s.spec = *sp
	s.fe = fe
	// A UDP session to an endpoint that is gone ends now, so the client's
	// next datagram picks a live one (kube-proxy deletes such UDP conntrack
	// entries); TCP connections to it keep going, as through the kernel.
	var stale []*udpSession
	for _, sess := range s.sessions {
		if ra, ok := sess.conn.RemoteAddr().(*net.UDPAddr); ok {
			ap := ra.AddrPort()
			if !slices.Contains(eps, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())) {
				stale = append(stale, sess)
			}
		}
	}
	s.mu.Unlock()
	for _, sess := range stale {
		s.endSession(sess)
	}
}

// track registers a socket to be closed by stop; it returns false (and the
// caller must close c) if the service is already stopping.
func (s *service) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.open[c] = struct{}{}
	return true
}

func (s *service) untrackClose(c io.Closer) {
	s.mu.Lock()
	delete(s.open, c)
	s.mu.Unlock()
	_ = c.Close()
}

func (s *service) counters(ep netip.AddrPort) *backendCounters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.stats[ep]
	if c == nil {
		c = &backendCounters{}
		s.stats[ep] = c
	}
	return c
}

// backendStats returns the counters of every backend ever used, in the
// order of the current rotation followed by former endpoints.
func (s *service) backendStats() []BackendStats {
	cur := s.lb.Endpoints()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []BackendStats
	add := func(ep netip.AddrPort, c *backendCounters) {
		out = append(out, BackendStats{ep, c.conns.Load(), c.failures.Load(), c.toBackend.Load(), c.fromBackend.Load()})
	}
	for _, ep := range cur {
		if c := s.stats[ep]; c != nil {
			add(ep, c)
		} else {
			out = append(out, BackendStats{Endpoint: ep})
		}
	}
	var gone []netip.AddrPort
	for ep := range s.stats {
		if !slices.Contains(cur, ep) {
			gone = append(gone, ep)
		}
	}
	slices.SortFunc(gone, func(a, b netip.AddrPort) int { return a.Compare(b) })
	for _, ep := range gone {
		add(ep, s.stats[ep])
	}
	return out
}

// connect dials a backend for a new connection from client, skipping
// backends that fail: each endpoint is tried at most once, with the dial
// timeout growing per attempt (kube-proxy: 250ms, 500ms, 1s, 2s).
func (s *service) connect(client netip.Addr, network string) (net.Conn, *backendCounters, error) {
	var tried []netip.AddrPort
	var errs []error
	for attempt := 0; ; attempt++ {
		ep, err := s.lb.Next(client, tried)
		if err != nil {
			if len(errs) == 0 {
				return nil, nil, fmt.Errorf("service port %s: %w", s.key, err)
			}
			return nil, nil, fmt.Errorf("service port %s: every endpoint failed: %w", s.key, errors.Join(errs...))
		}
		timeout := s.dialT[min(attempt, len(s.dialT)-1)]
		c, err := s.net.Dial(s.ctx, network, ep, timeout)
		cnt := s.counters(ep)
		if err == nil {
			cnt.conns.Add(1)
			return c, cnt, nil
		}
		cnt.failures.Add(1)
		errs = append(errs, err)
		tried = append(tried, ep)
		if s.ctx.Err() != nil {
			return nil, nil, fmt.Errorf("service port %s: stopped: %w", s.key, s.ctx.Err())
		}
	}
}

// stop closes the listener and every connection and session of the service
// and waits for all of its goroutines.
func (s *service) stop() error {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	open := make([]io.Closer, 0, len(s.open))
	for c := range s.open {
		open = append(open, c)
	}
	s.open = nil
	s.mu.Unlock()
	var err error
	if s.tcp != nil {
		err = s.tcp.Close()
	}
	if s.udp != nil {
		err = s.udp.Close()
	}
	for _, c := range open {
		_ = c.Close()
	}
	s.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close listener of %s: %w", s.key, err)
	}
	return nil
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// ---- TCP ----

func (s *service) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.ctx.Err() != nil {
				return
			}
			// Out of file descriptors and the like: back off, bounded
			// by stop.
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if !s.track(c) {
			_ = c.Close()
			return
		}
		s.wg.Add(1)
		go s.handleTCP(c)
	}
}

func (s *service) handleTCP(in *net.TCPConn) {
	defer s.wg.Done()
	defer s.untrackClose(in)
	out, cnt, err := s.connect(addrOf(in.RemoteAddr()), "tcp")
	if err != nil {
		// No backend: the client sees its connection closed.
		return
	}
	if !s.track(out) {
		_ = out.Close()
		return
	}
	defer s.untrackClose(out)
	outTCP, ok := out.(*net.TCPConn)
	if !ok {
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cnt.toBackend.Add(copyHalf(outTCP, in))
	}()
	cnt.fromBackend.Add(copyHalf(in, outTCP))
	wg.Wait()
}

// copyHalf copies one direction. At EOF it half-closes dst so the peer sees
// the end of the stream while the other direction keeps flowing; on an
// error it closes both sockets, which ends the other direction too.
func copyHalf(dst, src *net.TCPConn) uint64 {
	n, err := io.Copy(dst, src)
	if err != nil {
		_ = dst.Close()
		_ = src.Close()
		return uint64(n)
	}
	_ = dst.CloseWrite()
	return uint64(n)
}

// ---- UDP ----

type udpSession struct {
	client netip.AddrPort
	conn   net.Conn
	cnt    *backendCounters
}

func (s *service) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 64*1024)
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.ctx.Err() != nil {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		// A session can time out between lookup and write; then retry
		// once with a fresh one.
		for range 2 {
			sess, err := s.session(from)
			if err != nil {
				break // no endpoints: drop
			}
			if _, err := sess.conn.Write(buf[:n]); err != nil {
				s.endSession(sess)
				continue
			}
			sess.cnt.toBackend.Add(uint64(n))
			_ = sess.conn.SetReadDeadline(time.Now().Add(s.idle))
			break
		}
	}
}

// session returns the client's session, dialing a backend for a new one.
func (s *service) session(client netip.AddrPort) (*udpSession, error) {
	s.mu.Lock()
	sess := s.sessions[client]
	s.mu.Unlock()
	if sess != nil {
		return sess, nil
	}
	conn, cnt, err := s.connect(client.Addr(), "udp")
	if err != nil {
		return nil, err
	}
	if err := conn.SetReadDeadline(time.Now().Add(s.idle)); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	sess = &udpSession{client: client, conn: conn, cnt: cnt}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = conn.Close()
		return nil, net.ErrClosed
	}
	s.open[conn] = struct{}{}
	s.sessions[client] = sess
	s.wg.Add(1)
	s.mu.Unlock()
	go s.udpReplies(sess)
	return sess, nil
}

func (s *service) endSession(sess *udpSession) {
	s.mu.Lock()
	if s.sessions[sess.client] == sess {
		delete(s.sessions, sess.client)
	}
	delete(s.open, sess.conn)
	s.mu.Unlock()
	_ = sess.conn.Close()
}

// udpReplies relays the backend's datagrams to the client from the Service's
// listener until the session has been idle for the timeout.
func (s *service) udpReplies(sess *udpSession) {
	defer s.wg.Done()
	defer s.endSession(sess)
	buf := make([]byte, 64*1024)
	for {
		n, err := sess.conn.Read(buf)
		if err != nil {
			return // idle timeout, backend unreachable, or stopped
		}
		_ = sess.conn.SetReadDeadline(time.Now().Add(s.idle))
		if _, err := s.udp.WriteToUDPAddrPort(buf[:n], sess.client); err != nil {
			return
		}
		sess.cnt.fromBackend.Add(uint64(n))
	}
}

func (s *service) activeSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}
