package topology

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
)

// DialContext connects from inside ns: the socket is created in ns (so it
// uses ns's addresses and routes) and stays there.
func DialContext(ctx context.Context, ns *netns.NS, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s from %s: %w", network, addr, ns.Name(), err)
	}
	return c, nil
}

// ListenPacket opens a datagram socket inside ns.
func ListenPacket(ns *netns.NS, network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s %s in %s: %w", network, addr, ns.Name(), err)
	}
	return pc, nil
}

// HTTPClient returns a client whose connections are made from inside ns.
// keepAlive false opens a new connection (a new source port) per request,
// which is what load-balancing checks want. Call CloseIdleConnections on its
// Transport when done if keepAlive is true.
func HTTPClient(ns *netns.NS, keepAlive bool, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return DialContext(ctx, ns, network, addr)
		},
		DisableKeepAlives: !keepAlive,
		Proxy:             nil, // never honour $HTTP_PROXY: traffic stays inside the simulation
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}
