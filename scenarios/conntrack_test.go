package scenarios

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// TestUDPConntrack: a UDP client that keeps its source port (one connected
// socket) while the Service's only endpoint is replaced keeps getting
// answers, from the new endpoint. UDP has no connection end: the kernel's
// conntrack entry for the client's flow still points at the old endpoint
// (and every datagram refreshes it), so only a datapath that deletes stale
// UDP entries after the endpoint change lets the client reach the new one.
// Then the Service loses its endpoints and gains one again: the client,
// still on the same port, reaches the new endpoint.
func TestUDPConntrack(t *testing.T) {
	sc := harness.Scenario{Name: "udp-conntrack", Title: "A UDP client on one port follows a replaced endpoint", Group: results.GroupService}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(1, ""), udpEchoApp(1)}}, func(h *harness.H) {
		vip := clusterIP(h, h.NS, "echo-udp")
		conn, err := client(h, h.NS, "client").DialContext(h.Ctx, "udp", vip)
		if err != nil {
			h.Fatalf("dial udp %s: %v", vip, err)
		}
		defer conn.Close()
		ask := udpAsker(conn)
		// follow asks until a pod other than old answers (at most 40
		// datagrams, about 12 s) and then 10 more times; it returns the
		// new pod, the time to its first answer and how many of the 10
		// it answered.
		follow := func(old string) (string, time.Duration, int) {
			t0 := time.Now()
			for range 40 {
				if p := ask(); p != "" && p != old {
					took := time.Since(t0)
					n := 0
					for range 10 {
						if ask() == p {
							n++
						}
					}
					return p, took, n
				}
				time.Sleep(20 * time.Millisecond)
			}
			return "", time.Since(t0), 0
		}

		first := ""
		for range 20 {
			if first = ask(); first != "" {
				break
			}
		}
		if first == "" {
			h.Fatalf("no answer from %s before any change", vip)
		}
		local := conn.LocalAddr().(*net.UDPAddr)
		h.Check(ask() == first, "the only endpoint answers", "%s answered from source port %d", first, local.Port)

		// Replace the only endpoint: the Deployment starts a new pod.
		if err := h.P.Delete(h.Ctx, plane.Ref{Kind: "pod", Namespace: h.NS, Name: strings.TrimPrefix(first, h.NS+"/")}); err != nil {
			h.Fatalf("delete pod %s: %v", first, err)
		}
		h.Programmed()
		second, took, n := follow(first)
		h.Check(second != "", "the replacement endpoint answers the same source port",
			"after deleting %s, %d datagrams from port %d over %v: answered by %q", first, 40, local.Port, took.Round(time.Millisecond), second)
		h.Check(n == 10, "every later datagram reaches the replacement", "%d of 10 answered by %s", n, second)
		h.Figure("first answer from the replacement endpoint", took.Seconds(), "s")

		// No endpoint, then a first endpoint again.
		if err := h.P.Scale(h.Ctx, plane.Ref{Kind: "deployment", Namespace: h.NS, Name: "echo"}, 0); err != nil {
			h.Fatalf("scale echo to 0: %v", err)
		}
		h.Programmed()
		for range 5 {
			ask() // datagrams to a Service without endpoints (answered by no pod)
		}
		if err := h.P.Scale(h.Ctx, plane.Ref{Kind: "deployment", Namespace: h.NS, Name: "echo"}, 1); err != nil {
			h.Fatalf("scale echo to 1: %v", err)
		}
		h.Programmed()
		third, took, n := follow(second)
		h.Check(third != "" && n == 10, "a first endpoint answers the same source port",
			"after 0 -> 1 endpoints, answered by %q after %v, then %d of 10", third, took.Round(time.Millisecond), n)
		h.Figure("first answer from a first endpoint", took.Seconds(), "s")
	})
}

// udpAsker returns ask for conn, a UDP socket to an echo Service: ask sends
// one datagram and returns the pod that answered it ("" when no answer
// came within 300 ms, e.g. while the Service has no endpoint). Late answers
// to earlier datagrams are skipped. The socket, and so its source port,
// stays the same across calls.
func udpAsker(conn net.Conn) func() string {
	seq := 0
	return func() string {
		seq++
		token := strconv.Itoa(seq)
		_ = conn.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := conn.Write([]byte("ping " + token)); err != nil {
			return ""
		}
		buf := make([]byte, 2048)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return ""
			}
			if f := strings.Fields(string(buf[:n])); len(f) >= 4 && f[2] == "ping" && f[3] == token {
				return f[0]
			}
		}
	}
}
