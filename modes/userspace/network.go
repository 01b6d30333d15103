package userspace

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	vnetns "github.com/vishvananda/netns"
)

// Network makes the proxy's sockets. The real one (HostNetwork) uses the
// kernel of the network namespace the listeners were created in; unit tests
// use it on loopback or wrap it to inject failures.
type Network interface {
	// ListenTCP opens a TCP listener on a kernel-chosen port.
	ListenTCP(ctx context.Context) (*net.TCPListener, error)
	// ListenUDP opens a UDP socket on a kernel-chosen port.
	ListenUDP(ctx context.Context) (*net.UDPConn, error)
	// Dial connects to a backend ("tcp" or "udp") within timeout.
	Dial(ctx context.Context, network string, backend netip.AddrPort, timeout time.Duration) (net.Conn, error)
}

// HostNetwork listens on ListenIP (all addresses when unset) with a random
// port, as kube-proxy's userspace proxy did with --proxy-port-range unset.
//
// Sockets belong to the network namespace of the thread that creates them.
// Listeners are created from Sync, which runs in the node's namespace, but the
// goroutines that later accept connections and dial backends may run on any
// thread. HostNetwork therefore records the namespace of the first listener
// (read on the locked thread that creates it) and dials every backend from a
// locked thread inside that namespace, so backend sockets live beside the
// listener, whatever thread the dialing goroutine runs on.
//
// The dialing thread's own namespace (/proc/<pid>/task/<tid>/ns/net, read on
// that locked thread; never /proc/self/ns/net, which is the main thread's) is
// compared with the recorded one by device and inode. When they match, as in
// a node proxy whose whole process lives in the node's namespace, the dial
// needs no setns and so no CAP_SYS_ADMIN; otherwise the thread switches in and
// back (two setns calls).
type HostNetwork struct {
	ListenIP netip.Addr

	mu   sync.Mutex
	have bool            // ns is valid: a listener has been made
	ns   vnetns.NsHandle // namespace of the first listener
}

// NewHostNetwork returns a HostNetwork listening on all addresses (the zero
// value is the same).
func NewHostNetwork() *HostNetwork { return &HostNetwork{} }

func (h *HostNetwork) listenAddr() string {
	ip := h.ListenIP
	if !ip.IsValid() {
		ip = netip.IPv4Unspecified()
	}
	return netip.AddrPortFrom(ip, 0).String()
}

// capture records the calling thread's namespace once. The caller holds its
// OS thread locked and creates its socket on that same thread.
func (h *HostNetwork) capture() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.have {
		return nil
	}
	cur, err := vnetns.Get()
	if err != nil {
		return fmt.Errorf("open current netns: %w", err)
	}
	h.ns, h.have = cur, true
	return nil
}

// ListenTCP implements Network.
func (h *HostNetwork) ListenTCP(ctx context.Context) (*net.TCPListener, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := h.capture(); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp4", h.listenAddr())
	if err != nil {
		return nil, fmt.Errorf("listen tcp %s: %w", h.listenAddr(), err)
	}
	return l.(*net.TCPListener), nil
}

// ListenUDP implements Network.
func (h *HostNetwork) ListenUDP(ctx context.Context) (*net.UDPConn, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := h.capture(); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	c, err := lc.ListenPacket(ctx, "udp4", h.listenAddr())
	if err != nil {
		return nil, fmt.Errorf("listen udp %s: %w", h.listenAddr(), err)
	}
	return c.(*net.UDPConn), nil
}

// Dial implements Network.
func (h *HostNetwork) Dial(ctx context.Context, network string, backend netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	h.mu.Lock()
	ns, have := h.ns, h.have
	h.mu.Unlock()
	if !have {
		return nil, fmt.Errorf("dial %s %s: no listener yet, so no namespace to dial from", network, backend)
	}
	// Dial on a thread inside the listener's namespace. The goroutine stays
	// locked while connect waits; if switching back fails the thread stays
	// locked and is retired by the runtime when the goroutine exits.
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("open current netns: %w", err)}
			return
		}
		defer orig.Close()
		if orig.Equal(ns) {
			c, derr := d.DialContext(ctx, network, backend.String())
			runtime.UnlockOSThread()
			ch <- result{c, derr}
			return
		}
		if err := vnetns.Set(ns); err != nil {
			// setns failed: the thread is still in orig.
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter proxy netns: %w", err)}
			return
		}
		c, derr := d.DialContext(ctx, network, backend.String())
		if err := vnetns.Set(orig); err != nil {
			if c != nil {
				c.Close()
			}
			ch <- result{err: errors.Join(derr, fmt.Errorf("leave proxy netns: %w", err))}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{c, derr}
	}()
	r := <-ch
	return r.c, r.err
}

// Close releases the recorded namespace handle. No Dial may be in flight
// (Proxier.Cleanup closes it after every proxy goroutine has ended).
func (h *HostNetwork) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var err error
	if h.have {
		err = h.ns.Close()
		h.ns, h.have = -1, false
	}
	return err
}
