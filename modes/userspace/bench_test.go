package userspace_test

// Benchmarks of the userspace datapath against a direct connection to the
// same backend, measured in the same run:
//
//	go test ./modes/userspace -run '^$' -bench . -benchtime 2000x
//
// BenchmarkLoopback needs no root: the client connects to the proxy port
// on 127.0.0.1 (no iptables). BenchmarkNamespaces (root) goes the real way:
// a pod namespace connects to the ClusterIP, iptables REDIRECTs it to the
// proxy in the node namespace, the proxy dials the backend pod over the
// bridge; "direct" connects the same pod to the backend pod IP.
//
// conn: one TCP connection per iteration (connect, 1-byte greeting, close).
// bytes: one connection carrying b.N chunks of 64 KiB client->backend.

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/modes/conntrack/conntracktest"
	"github.com/svcsim/svcsim/modes/userspace"
	"github.com/svcsim/svcsim/sim/state"
)

const chunk = 64 << 10

// serveSink accepts connections, greets with one byte, then discards what
// it reads; at EOF it closes (so the server side holds TIME_WAIT, and the
// client never runs out of ports).
func serveSink(b *testing.B, ln net.Listener) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := c.Write([]byte{'k'}); err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	b.Cleanup(func() { _ = ln.Close(); <-done })
}

// dialer opens a TCP connection from wherever the client lives.
type dialer func(addr string) (net.Conn, error)

func benchConn(b *testing.B, dial dialer, addr string) {
	buf := make([]byte, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := dial(addr)
		if err != nil {
			b.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
}

func benchBytes(b *testing.B, dial dialer, addr string) {
	c, err := dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	one := make([]byte, 1)
	if _, err := io.ReadFull(c, one); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	for range b.N {
		if _, err := c.Write(data); err != nil {
			b.Fatal(err)
		}
	}
	// Wait until the backend has read everything: it closes at EOF.
	_ = c.(*net.TCPConn).CloseWrite()
	if _, err := io.Copy(io.Discard, c); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkLoopback(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	serveSink(b, ln)
	backend := ln.Addr().(*net.TCPAddr).AddrPort()
	p, _ := newBenchProxier(b)
	if err := p.Sync(ctx, makeState(makeService("web", state.TCP, webIP, 80, withEndpoints(backend)))); err != nil {
		b.Fatal(err)
	}
	port, _ := p.ProxyPort(webKey)
	via := netip.AddrPortFrom(lo, uint16(port)).String()
	dial := func(addr string) (net.Conn, error) { return net.DialTimeout("tcp4", addr, 3*time.Second) }
	b.Run("conn/direct", func(b *testing.B) { benchConn(b, dial, backend.String()) })
	b.Run("conn/userspace", func(b *testing.B) { benchConn(b, dial, via) })
	b.Run("bytes/direct", func(b *testing.B) { benchBytes(b, dial, backend.String()) })
	b.Run("bytes/userspace", func(b *testing.B) { benchBytes(b, dial, via) })
}

func newBenchProxier(b *testing.B) (*userspace.Proxier, any) {
	netw := userspace.NewHostNetwork()
	netw.ListenIP = lo
	p := userspace.New(userspace.Config{Node: "node1", IPTables: &nopRunner{}, Network: netw, Conntrack: &conntracktest.Fake{}})
	b.Cleanup(func() {
		if err := p.Cleanup(ctx); err != nil {
			b.Error(err)
		}
	})
	return p, nil
}

func BenchmarkNamespaces(b *testing.B) {
	privtest.RequireRoot(b)
	tp := newTopo(b)
	in(b, tp.backend, func() error {
		ln, err := net.Listen("tcp4", "10.244.1.20:8080")
		if err == nil {
			serveSink(b, ln)
		}
		return err
	})
	p := startProxier(b, tp)
	st := makeState(makeService("web", state.TCP, webIP, 80, withEndpoints(netip.MustParseAddrPort("10.244.1.20:8080"))))
	in(b, tp.node, func() error { return p.Sync(ctx, st) })
	dial := dialFrom(tp.client)
	b.Run("conn/direct", func(b *testing.B) { benchConn(b, dial, "10.244.1.20:8080") })
	b.Run("conn/userspace", func(b *testing.B) { benchConn(b, dial, "10.96.0.20:80") })
	b.Run("bytes/direct", func(b *testing.B) { benchBytes(b, dial, "10.244.1.20:8080") })
	b.Run("bytes/userspace", func(b *testing.B) { benchBytes(b, dial, "10.96.0.20:80") })
}

// dialFrom dials from inside ns (the socket stays there; using it later
// from any thread is fine).
func dialFrom(ns *netns.NS) dialer {
	return func(addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp4", addr, 3*time.Second)
			return err
		})
		return c, err
	}
}
