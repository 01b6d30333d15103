package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/scenarios/harness"
	corev1 "k8s.io/api/core/v1"
)

// silentFor is how long a probe waits before it calls an address silent.
const silentFor = 1500 * time.Millisecond

// quiet reports whether nothing answers GET http://addr/info from c within
// silentFor: refused, reset, unreachable or timed out are all quiet, an
// answer from any pod is not. It returns what happened, for the check's
// detail.
func quiet(h *harness.H, c *harness.Client, addr string) (bool, string) {
	h.T.Helper()
	ctx, cancel := context.WithTimeout(h.Ctx, silentFor)
	defer cancel()
	in, body, err := c.GetInfo(ctx, addr)
	if err != nil {
		return true, err.Error()
	}
	return false, fmt.Sprintf("answered by %s (%.60q)", in.IP(), body)
}

// quietUDP reports whether no answer to one datagram sent to addr from a
// fresh socket of c comes within silentFor.
func quietUDP(h *harness.H, c *harness.Client, addr string) (bool, string) {
	h.T.Helper()
	ctx, cancel := context.WithTimeout(h.Ctx, silentFor)
	defer cancel()
	reply, err := c.Echo(ctx, "udp", addr, "probe")
	if err != nil {
		return true, err.Error()
	}
	return false, "answered " + reply
}

// reachesOne sends n requests to addr from c and returns the answering pods
// (by IP), failing the scenario on the first error.
func reachesOne(h *harness.H, c *harness.Client, addr string, n int) map[string]int {
	h.T.Helper()
	counts, _, err := c.Tally(h.Ctx, addr, n)
	if err != nil {
		h.Fatalf("traffic from %s: %v", c.Name, err)
	}
	return counts
}

// echoFrom sends one TCP or UDP echo line to addr from c and returns the
// answering pod and the source address it saw, failing on an error.
func echoFrom(h *harness.H, c *harness.Client, network, addr, line string) (pod, source string) {
	h.T.Helper()
	reply, err := c.Echo(h.Ctx, network, addr, line)
	if err != nil {
		h.Fatalf("%s echo %s from %s: %v", network, addr, c.Name, err)
	}
	f := strings.Fields(reply)
	if len(f) < 3 || f[2] != strings.Fields(line)[0] {
		h.Fatalf("%s echo %s from %s: unexpected reply %q", network, addr, c.Name, reply)
	}
	return f[0], f[1]
}

// subset reports whether every key of got is a key of want.
func subset(got map[string]int, want map[string]string) bool {
	for k := range got {
		if _, ok := want[k]; !ok {
			return false
		}
	}
	return true
}

// rejected applies a manifest that must be refused and returns the error.
func rejected(h *harness.H, name, manifest string) error {
	h.T.Helper()
	_, err := h.P.Apply(h.Ctx, h.NS, plane.Text(name, manifest))
	return err
}

// del deletes ns/name of kind and waits until programmed.
func del(h *harness.H, kind, name string) {
	h.T.Helper()
	if err := h.P.Delete(h.Ctx, plane.Ref{Kind: kind, Namespace: h.NS, Name: name}); err != nil {
		h.Fatalf("delete %s %s: %v", kind, name, err)
	}
	h.Programmed()
}

// ports returns Service ns/name's ports.
func ports(h *harness.H, name string) []corev1.ServicePort {
	h.T.Helper()
	return service(h, h.NS, name).Spec.Ports
}
