package iptables_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/modes/conntrack"
	"github.com/svcsim/svcsim/modes/iptables"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/modetest"
	"github.com/svcsim/svcsim/sim/state"
)

// Real traffic through the mode's rules, in modetest.Rig's namespaces:
//
//	client 10.244.1.2 --veth-- 10.244.1.1 node 10.244.2.1 --veth-- 10.244.2.2 server
//
// The node namespace holds the rules and forwards; the server answers every
// TCP connection with the address it sees the client as.
func TestKernelTraffic(t *testing.T) {
	privtest.HostUntouched(t)
	forEachBackend(t, func(t *testing.T, b iptrestore.Backend) {
		ctx := context.Background()
		rig := modetest.NewRig(t)
		node, client := rig.Node, rig.Client
		modetest.ServeRemoteAddr(t, rig.Server, modetest.ServerIP+":8080")

		p, err := iptables.New(iptables.Config{Backend: b, Node: "node1"})
		must(t, err)
		st := makeState(
			makeService("default", "web", "10.96.0.20", 80, withNodePort(30080), withEndpoints(modetest.ServerIP+":8080@node1")),
			makeService("default", "empty", "10.96.0.50", 80),
		)
		st.NodeIPs = []netip.Addr{netip.MustParseAddr(modetest.NodeClientSideIP)}
		must(t, node.Do(func() error { return p.Sync(ctx, st) }))
		t.Cleanup(func() {
			if err := node.Do(func() error { return p.Cleanup(ctx) }); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})

		// ClusterIP from a pod: DNAT, source kept.
		if got, err := modetest.AskRemoteAddr(client, "10.96.0.20:80"); err != nil || got != modetest.ClientIP {
			t.Errorf("pod -> ClusterIP: server saw %q, %v; want %s", got, err, modetest.ClientIP)
		}
		// NodePort: DNAT and masquerade to the node's address.
		if got, err := modetest.AskRemoteAddr(client, modetest.NodeClientSideIP+":30080"); err != nil || got != modetest.NodeServerSideIP {
			t.Errorf("NodePort: server saw %q, %v; want the node's %s", got, err, modetest.NodeServerSideIP)
		}
		// NodePort on the node's own loopback (route_localnet, kube-proxy's
		// --iptables-localhost-nodeports default): DNAT and masquerade.
		if got, err := modetest.AskRemoteAddr(node, "127.0.0.1:30080"); err != nil || got != modetest.NodeServerSideIP {
			t.Errorf("NodePort on 127.0.0.1 from the node: server saw %q, %v; want the node's %s", got, err, modetest.NodeServerSideIP)
		}
		// No endpoints: rejected at once.
		if _, err := modetest.AskRemoteAddr(client, "10.96.0.50:80"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("service without endpoints: %v, want connection refused", err)
		}
		// A partial sync that removes the endpoint turns the service into
		// a reject; one that adds it back restores traffic.
		st2 := makeState(
			makeService("default", "web", "10.96.0.20", 80, withNodePort(30080)),
			makeService("default", "empty", "10.96.0.50", 80),
		)
		must(t, node.Do(func() error { return p.Sync(ctx, st2) }))
		if _, err := modetest.AskRemoteAddr(client, "10.96.0.20:80"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("after endpoint removal: %v, want connection refused", err)
		}
		must(t, node.Do(func() error { return p.Sync(ctx, st) }))
		if p.LastSync().Full {
			t.Errorf("endpoint re-add did a full sync")
		}
		if got, err := modetest.AskRemoteAddr(client, "10.96.0.20:80"); err != nil || got != modetest.ClientIP {
			t.Errorf("after endpoint re-add: server saw %q, %v", got, err)
		}
	})
}

// A UDP client keeps its socket (so its conntrack entry) while the
// service's endpoint changes: with conntrack cleanup it reaches the new
// endpoint, without (the control) it still reaches the old one.
func TestKernelUDPConntrackCleanup(t *testing.T) {
	privtest.HostUntouched(t)
	forEachBackend(t, func(t *testing.T, b iptrestore.Backend) {
		for _, tc := range []struct {
			name    string
			ct      conntrack.Interface
			wantNew string
		}{
			{"netlink", conntrack.Netlink{}, "B"},
			{"control-without-cleanup", noConntrack{}, "A"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx := context.Background()
				rig := modetest.NewRig(t)
				node, client := rig.Node, rig.Client
				serveUDP(t, rig.Server, modetest.ServerIP+":5353", "A")
				serveUDP(t, rig.Server, modetest.ServerIP+":5354", "B")
				runner, err := iptrestore.NewExec(b)
				must(t, err)
				p, err := iptables.New(iptables.Config{Backend: b, Runner: runner, Conntrack: tc.ct})
				must(t, err)
				svc := func(port string) *state.NodeState {
					return makeState(makeService("kube-system", "dns", "10.96.0.53", 53, withProtocol(state.UDP),
						withEndpoints(modetest.ServerIP+":"+port+"@node1")))
				}
				must(t, node.Do(func() error { return p.Sync(ctx, svc("5353")) }))
				t.Cleanup(func() { _ = node.Do(func() error { return p.Cleanup(ctx) }) })

				var c net.Conn
				must(t, client.Do(func() (err error) {
					c, err = net.Dial("udp", "10.96.0.53:53")
					return err
				}))
				defer c.Close()
				if got := askUDP(t, c); got != "A" {
					t.Fatalf("first answer %q, want A", got)
				}
				must(t, node.Do(func() error { return p.Sync(ctx, svc("5354")) }))
				if got := askUDP(t, c); got != tc.wantNew {
					t.Errorf("after the endpoint change the same socket reached %q, want %q (deleted %d entries)",
						got, tc.wantNew, p.LastSync().ConntrackDeleted)
				}
			})
		}
	})
}

type noConntrack struct{}

func (noConntrack) DeleteUDP(context.Context, func(netip.AddrPort, netip.AddrPort) bool) (int, error) {
	return 0, nil
}

// serveUDP answers every datagram to addr (in ns) with reply, followed by
// the datagram.
func serveUDP(t *testing.T, ns *netns.NS, addr, reply string) {
	t.Helper()
	var pc net.PacketConn
	must(t, ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", addr)
		return err
	}))
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(reply+" "+string(buf[:n])), from)
		}
	}()
}

// askUDP sends one datagram on c and returns the answer ("" on timeout),
// retrying a few times since UDP may drop. Each try carries its own token,
// and answers to earlier ones (late after a neighbour lookup, say) are
// skipped, so they cannot pass for the answer to this one.
func askUDP(t *testing.T, c net.Conn) string {
	t.Helper()
	buf := make([]byte, 64)
	for range 3 {
		udpTries++
		token := "?" + strconv.Itoa(udpTries)
		if _, err := c.Write([]byte(token)); err != nil {
			t.Fatalf("udp write: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			if reply, got, _ := strings.Cut(string(buf[:n]), " "); got == token {
				return reply
			}
		}
	}
	return ""
}

// udpTries numbers askUDP's datagrams.
var udpTries int
