package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/stats"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	corev1 "k8s.io/api/core/v1"
)

// alpha is the significance level of every distribution test.
const alpha = 0.001

// clusterIP returns "ip:port" of the first port of Service ns/name.
func clusterIP(h *harness.H, ns, name string) string {
	h.T.Helper()
	s := service(h, ns, name)
	return netip.AddrPortFrom(netip.MustParseAddr(s.Spec.ClusterIP), uint16(s.Spec.Ports[0].Port)).String()
}

// service returns Service ns/name.
func service(h *harness.H, ns, name string) *corev1.Service {
	h.T.Helper()
	o, err := h.P.Get(h.Ctx, plane.Ref{Kind: "service", Namespace: ns, Name: name})
	if err != nil {
		h.Fatalf("get service %s/%s: %v", ns, name, err)
	}
	return o.(*corev1.Service)
}

// nodePort returns the nodePort of the first port of Service ns/name.
func nodePort(h *harness.H, ns, name string) int32 {
	h.T.Helper()
	return service(h, ns, name).Spec.Ports[0].NodePort
}

// podIPs returns the IPs of the running pods of ns whose name starts with
// prefix.
func podIPs(h *harness.H, ns, prefix string) map[string]string {
	h.T.Helper()
	pods, err := h.P.Pods(h.Ctx, ns)
	if err != nil {
		h.Fatalf("list pods of %s: %v", ns, err)
	}
	out := map[string]string{}
	for _, p := range pods {
		if strings.HasPrefix(p.Name, prefix) {
			out[p.IP.String()] = p.Name
		}
	}
	return out
}

// pod returns running pod ns/name.
func pod(h *harness.H, ns, name string) plane.Pod {
	h.T.Helper()
	pods, err := h.P.Pods(h.Ctx, ns)
	if err != nil {
		h.Fatalf("list pods of %s: %v", ns, err)
	}
	for _, p := range pods {
		if p.Name == name {
			return p
		}
	}
	h.Fatalf("no running pod %s/%s", ns, name)
	return plane.Pod{}
}

// client sends traffic from pod ns/name.
func client(h *harness.H, ns, name string) *harness.Client {
	h.T.Helper()
	return harness.NewClient(name, pod(h, ns, name).NS)
}

// external sends traffic from the outside client's namespace.
func external(h *harness.H) *harness.Client {
	h.T.Helper()
	t, err := h.P.Target(h.Ctx, "", plane.ExternalTarget)
	if err != nil {
		h.Fatalf("external: %v", err)
	}
	return harness.NewClient("external", t.NS)
}

// node returns the cluster's node called name.
func node(h *harness.H, name string) plane.Node {
	h.T.Helper()
	for _, n := range h.P.Nodes() {
		if n.Name == name {
			return n
		}
	}
	h.Fatalf("no node %s", name)
	return plane.Node{}
}

// nodeClient runs commands in node's namespace.
func nodeClient(h *harness.H, name string) *harness.Client {
	h.T.Helper()
	return harness.NewClient(name, node(h, name).NS)
}

// TestClusterIPDistribution: 600 requests from a client pod to a ClusterIP
// with three backends reach every backend, in proportions consistent with a
// uniform choice (chi-square, alpha 0.001); round-robin datapaths rotate
// exactly.
//
// A correct random datapath fails one chi-square test at alpha 0.001 once in
// a thousand runs. So a sample rejected at that level is followed by one
// fresh, independent sample of twice the size, which alone decides; both
// tests are recorded. A real bias fails the second sample too, while a
// correct datapath now fails about once in a million runs.
func TestClusterIPDistribution(t *testing.T) {
	sc := harness.Scenario{Name: "clusterip-distribution", Title: "ClusterIP spreads load over every backend", Group: results.GroupService}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(3, "")}}, func(h *harness.H) {
		const n = 600
		vip := clusterIP(h, h.NS, "getip-service")
		backends := podIPs(h, h.NS, "getip-deployment-")
		h.Check(len(backends) == 3, "three backends", "%d getip pods", len(backends))
		ips := make([]string, 0, len(backends))
		for ip := range backends {
			ips = append(ips, ip)
		}
		sort.Strings(ips)

		// sample sends size requests and tests them against uniform.
		sample := func(size int) (*results.Distribution, []int, []string, stats.ChiSquare) {
			counts, order, err := client(h, h.NS, "client").Tally(h.Ctx, vip, size)
			if err != nil {
				h.Fatalf("traffic: %v", err)
			}
			obs := make([]int, len(ips))
			dist := &results.Distribution{Requests: size, Test: "chi-square goodness of fit vs uniform", Alpha: alpha}
			other := size
			for i, ip := range ips {
				obs[i] = counts[ip]
				other -= counts[ip]
				dist.Backends = append(dist.Backends, results.BackendCount{Backend: ip, Count: counts[ip], Expected: float64(size) / float64(len(ips))})
			}
			h.Check(other == 0, "only backends answer", "%d answers from outside the backend set", other)
			cs, err := stats.ChiSquareUniform(obs)
			if err != nil {
				h.Fatalf("chi-square: %v", err)
			}
			dist.Statistic, dist.DF, dist.PValue = cs.Statistic, cs.DF, cs.P
			return dist, obs, order, cs
		}
		dist, obs, order, cs := sample(n)
		h.Result.Distribution = dist
		for i, ip := range ips {
			h.Check(obs[i] > 0, "backend used", "%s got %d of %d", backends[ip], obs[i], n)
		}
		if h.Desc.Traits.Choice == modes.RoundRobin {
			dist.RoundRobin = true
			exact := rotates(order, len(ips))
			dist.Exact = exact
			h.Check(exact, "exact rotation", "round-robin: counts %v, every window of %d requests covers every backend", obs, len(ips))
		}
		if cs.P >= alpha {
			h.Check(true, "uniform", "chi-square %.3f (df %d), p = %.4g, alpha %g, counts %v", cs.Statistic, cs.DF, cs.P, alpha, obs)
			return
		}
		first := fmt.Sprintf("first sample of %d: chi-square %.3f, p = %.4g, counts %v", n, cs.Statistic, cs.P, obs)
		h.T.Logf("%s: below alpha %g, deciding on a fresh sample of %d", first, alpha, 2*n)
		dist2, obs2, _, cs2 := sample(2 * n)
		dist2.Test = "chi-square goodness of fit vs uniform, confirmation sample (" + first + ")"
		dist2.RoundRobin, dist2.Exact = dist.RoundRobin, dist.Exact
		h.Result.Distribution = dist2
		h.Check(cs2.P >= alpha, "uniform", "%s; confirmation sample of %d: chi-square %.3f (df %d), p = %.4g, alpha %g, counts %v",
			first, 2*n, cs2.Statistic, cs2.DF, cs2.P, alpha, obs2)
	})
}

// rotates reports whether order cycles through k distinct values in a fixed
// order (so counts differ by at most one).
func rotates(order []string, k int) bool {
	if len(order) < k {
		return false
	}
	for i := k; i < len(order); i++ {
		if order[i] != order[i-k] {
			return false
		}
	}
	seen := map[string]bool{}
	for _, o := range order[:k] {
		seen[o] = true
	}
	return len(seen) == k
}

// TestNodePort: the seed's myhttp-v2-service (8800 -> 80, nodePort 30080),
// applied as written, answers from the external namespace on every node's
// address, via real curl; a NodePort left unset is allocated in range and
// works too.
func TestNodePort(t *testing.T) {
	sc := harness.Scenario{Name: "nodeport", Title: "NodePort reached from outside on every node", Group: results.GroupPublishing}
	harness.Run(t, sc, harness.Options{Manifests: []string{myHTTPv2, seedMyHTTPv2Service, getipApp(2, "  type: NodePort\n")}}, func(h *harness.H) {
		ext := external(h)
		backends := podIPs(h, h.NS, "myhttp-v2-")
		h.Check(len(backends) == 2, "two myhttp-v2 pods", "%v", backends)
		for _, node := range h.P.Nodes() {
			url := fmt.Sprintf("http://%s:30080/info", node.IP)
			seen := map[string]bool{}
			for i := 0; i < 10; i++ {
				out, err := ext.Exec(h.Ctx, "curl", "-sS", "--max-time", "3", url)
				if err != nil {
					h.Fatalf("curl %s from external: %v", url, err)
				}
				var in harness.Info
				if err := json.Unmarshal([]byte(out), &in); err != nil || in.Code != 0 || in.Msg != "success" {
					h.Fatalf("curl %s: answer %q is not the getip JSON (%v)", url, out, err)
				}
				if _, ok := backends[in.IP()]; !ok {
					h.Fatalf("curl %s answered from %s, not a myhttp-v2 pod", url, in.IP())
				}
				seen[in.IP()] = true
			}
			h.Check(true, "nodePort 30080 on "+node.Name, "curl %s: 10 answers from %d pod(s)", url, len(seen))
		}
		// The ClusterIP side of the same Service, from a pod.
		vip := clusterIP(h, h.NS, "myhttp-v2-service")
		in, _, err := client(h, h.NS, "client").GetInfo(h.Ctx, vip)
		h.Check(err == nil && backends[in.IP()] != "", "clusterIP port 8800", "GET %s/info from client pod: %v %v", vip, in.IP(), err)

		// An unset nodePort is allocated in 30000-32767 and serves.
		np := nodePort(h, h.NS, "getip-service")
		h.Check(np >= 30000 && np <= 32767, "nodePort allocated in range", "getip-service got nodePort %d", np)
		h.Figure("allocated nodePort", float64(np), "")
		node2 := h.P.Nodes()[1]
		in, _, err = ext.GetInfo(h.Ctx, fmt.Sprintf("%s:%d", node2.IP, np))
		h.Check(err == nil && strings.HasPrefix(in.IP(), "10.244."), "allocated nodePort serves", "GET %s:%d/info from external: %s %v", node2.IP, np, in.IP(), err)

		// On the node's own loopback: kube-proxy's iptables mode answers
		// (route_localnet), its nftables and IPVS modes do not.
		out, err := nodeClient(h, "node1").Exec(h.Ctx, "curl", "-sS", "--max-time", "3", "http://127.0.0.1:30080/info")
		var local harness.Info
		answered := err == nil && json.Unmarshal([]byte(out), &local) == nil && backends[local.IP()] != ""
		if h.Desc.Traits.LocalhostNodePorts {
			h.Check(answered, "nodePort on 127.0.0.1 answers (route_localnet)", "curl 127.0.0.1:30080 on node1: %q %v", out, err)
		} else {
			h.Check(!answered, "nodePort on 127.0.0.1 is not served", "curl 127.0.0.1:30080 on node1: %q %v", out, err)
		}
	})
}

// TestSessionAffinity: the seed's loop (/info on every request) returns one
// pod for every request once `patch svc getip-service -p
// '{"spec":{"sessionAffinity":"ClientIP"}}'` is applied, spreads again when
// it is switched off, and with a small timeoutSeconds the pin expires after
// idle.
func TestSessionAffinity(t *testing.T) {
	sc := harness.Scenario{Name: "session-affinity", Title: "sessionAffinity: ClientIP pins, unpins and expires", Group: results.GroupService}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(3, "  type: NodePort\n")}}, func(h *harness.H) {
		c := client(h, h.NS, "client")
		vip := clusterIP(h, h.NS, "getip-service")
		patch := func(p string) {
			if err := h.P.Patch(h.Ctx, plane.Ref{Kind: "svc", Namespace: h.NS, Name: "getip-service"}, []byte(p)); err != nil {
				h.Fatalf("patch %s: %v", p, err)
			}
			h.Programmed()
		}
		patch(`{"spec":{"sessionAffinity":"ClientIP"}}`)
		const pinnedN = 60
		counts, _, err := c.Tally(h.Ctx, vip, pinnedN)
		if err != nil {
			h.Fatalf("traffic: %v", err)
		}
		h.Check(len(counts) == 1, "ClientIP pins the pod client", "%d requests answered by %v", pinnedN, counts)
		var pinned string
		for ip := range counts {
			pinned = ip
		}
		aff := &results.Affinity{Requests: pinnedN, OnPinned: counts[pinned], Stickiness: float64(counts[pinned]) / pinnedN, TimeoutSeconds: 10800}
		h.Result.Affinity = aff

		// The seed's loop from outside, through the NodePort, with real curl.
		np := nodePort(h, h.NS, "getip-service")
		url := fmt.Sprintf("http://%s:%d/info", h.P.Nodes()[0].IP, np)
		seen := map[string]int{}
		for i := 0; i < 10; i++ {
			out, err := external(h).Exec(h.Ctx, "curl", "-sS", "--max-time", "3", url)
			if err != nil {
				h.Fatalf("%v", err)
			}
			var in harness.Info
			if err := json.Unmarshal([]byte(out), &in); err != nil {
				h.Fatalf("decode %q: %v", out, err)
			}
			seen[in.IP()+" "+in.IpInfo[0].Mac]++
		}
		h.Check(len(seen) == 1, "the seed's curl loop sees one pod (IP and MAC)", "%v", seen)

		patch(`{"spec":{"sessionAffinity":"None"}}`)
		counts, _, err = c.Tally(h.Ctx, vip, 150)
		if err != nil {
			h.Fatalf("traffic: %v", err)
		}
		h.Check(len(counts) == 3, "affinity off spreads again", "150 requests answered by %v", counts)

		// Small timeout: stays pinned while busy, expires after idle. A
		// client that never used the Service asks: IPVS keeps a template
		// made under the old timeout (10800 s) for the first client, even
		// across switching affinity off and on.
		const timeout = 2
		patch(fmt.Sprintf(`{"spec":{"sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":%d}}}}`, timeout))
		aff.TimeoutSeconds = timeout
		h.Apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: client2\nspec:\n  nodeName: node1\n  containers:\n    - name: c\n      image: curl\n")
		c = client(h, h.NS, "client2")
		counts, _, err = c.Tally(h.Ctx, vip, 20)
		if err != nil {
			h.Fatalf("traffic: %v", err)
		}
		h.Check(len(counts) == 1, "pinned with timeoutSeconds 2", "%v", counts)
		first := ""
		for ip := range counts {
			first = ip
		}
		var expired time.Duration
		if h.Desc.Traits.Affinity == modes.AffinityTemplate {
			// IPVS keeps a persistence template alive while any connection
			// it placed still exists, and closed TCP connections stay in
			// IPVS's table in TIME_WAIT for 120 s (not settable with
			// ipvsadm --set). So the pin outlives timeoutSeconds of idle.
			time.Sleep(time.Duration(timeout)*time.Second + 1500*time.Millisecond)
			in, _, err := c.GetInfo(h.Ctx, vip)
			if err != nil {
				h.Fatalf("traffic: %v", err)
			}
			h.Check(in.IP() == first, "IPVS: still pinned after timeoutSeconds of idle", "closed connections in TIME_WAIT keep the template: %s (pinned %s)", in.IP(), first)
			// The template's timer, finding connections it still controls,
			// re-arms (60 s on these kernels), so the pin lasts until the
			// last TIME_WAIT entry is gone plus up to a minute. Watch the
			// template in the kernel's connection table (`ipvsadm -Lnc`,
			// source port 0) without sending traffic, which would refresh
			// it; bounded at 4 minutes.
			node1 := nodeClient(h, "node1")
			template := pod(h, h.NS, "client2").IP.String() + ":0"
			start := time.Now()
			gone := false
			for time.Since(start) < 4*time.Minute {
				out, err := node1.Exec(h.Ctx, "ipvsadm", "-Lnc")
				if err != nil {
					h.Fatalf("ipvsadm -Lnc: %v", err)
				}
				if !strings.Contains(out, template) {
					gone = true
					break
				}
				time.Sleep(5 * time.Second)
			}
			h.Check(gone, "IPVS persistence template expires", "template %s gone after %.0fs of idle", template, time.Since(start).Seconds())
			in, _, err = c.GetInfo(h.Ctx, vip)
			if err != nil {
				h.Fatalf("traffic: %v", err)
			}
			if in.IP() != first {
				expired = time.Since(start)
			}
		} else {
			// Each round: stay idle for longer than the timeout, then ask
			// again. A fresh choice lands elsewhere with probability >= 2/3
			// per round (or for certain with round-robin), so 12 rounds miss
			// a change with probability <= 1.9e-6.
			prev := first
			idleStart := time.Now()
			for round := 0; round < 12 && expired == 0; round++ {
				time.Sleep(time.Duration(timeout)*time.Second + 1500*time.Millisecond)
				in, _, err := c.GetInfo(h.Ctx, vip)
				if err != nil {
					h.Fatalf("traffic: %v", err)
				}
				if in.IP() != prev {
					expired = time.Since(idleStart)
				}
				prev = in.IP()
				idleStart = time.Now()
			}
		}
		h.Check(expired > 0, "affinity expires after idle", "a new backend after %.1fs idle (timeoutSeconds %d)", expired.Seconds(), timeout)
		aff.ObservedExpirySeconds = expired.Seconds()
		h.Figure("observed affinity expiry", expired.Seconds(), "s")
	})
}

// sample is one request of a background traffic loop.
type sample struct {
	at  time.Time
	ip  string
	err error
}

// loop sends requests from c to vip until stop is closed, at most max
// requests or for at most limit; it returns what it saw.
func loop(ctx context.Context, c *harness.Client, vip string, stop <-chan struct{}, max int, limit time.Duration) <-chan []sample {
	out := make(chan []sample, 1)
	go func() {
		var got []sample
		deadline := time.Now().Add(limit)
		for i := 0; i < max && time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				out <- got
				return
			default:
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			in, _, err := c.GetInfo(rctx, vip)
			cancel()
			got = append(got, sample{at: time.Now(), ip: in.IP(), err: err})
			if err != nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
		out <- got
	}()
	return out
}

// TestEndpointChanges: scaling a Deployment from 2 to 3 puts the new pod in
// rotation, deleting a pod takes it out; the time from the change to the
// first request that observes it is recorded (convergence).
func TestEndpointChanges(t *testing.T) {
	sc := harness.Scenario{Name: "endpoint-changes", Title: "Scale up and pod deletion converge", Group: results.GroupService}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(2, "")}}, func(h *harness.H) {
		c := client(h, h.NS, "client")
		vip := clusterIP(h, h.NS, "getip-service")
		before := podIPs(h, h.NS, "getip-deployment-")
		h.Check(len(before) == 2, "two backends", "%v", before)

		stop := make(chan struct{})
		var once sync.Once
		halt := func() { once.Do(func() { close(stop) }) }
		defer halt()
		res := loop(h.Ctx, c, vip, stop, 20000, 60*time.Second)
		time.Sleep(200 * time.Millisecond)
		t0 := time.Now()
		if err := h.P.Scale(h.Ctx, plane.Ref{Kind: "deployment", Namespace: h.NS, Name: "getip-deployment"}, 3); err != nil {
			h.Fatalf("scale: %v", err)
		}
		h.Programmed()
		programmed := time.Since(t0)
		after := podIPs(h, h.NS, "getip-deployment-")
		var newIP string
		for ip := range after {
			if _, ok := before[ip]; !ok {
				newIP = ip
			}
		}
		h.Check(newIP != "", "a third pod exists", "%v", after)
		// Let the loop run until it has seen the new pod (bounded).
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			time.Sleep(300 * time.Millisecond)
			if counts, _, err := c.Tally(h.Ctx, vip, 30); err == nil && counts[newIP] > 0 {
				break
			}
		}
		halt()
		samples := <-res
		var firstNew time.Time
		errs := 0
		for _, s := range samples {
			if s.err != nil {
				errs++
				continue
			}
			if s.ip == newIP && firstNew.IsZero() {
				firstNew = s.at
			}
		}
		h.Check(!firstNew.IsZero(), "new pod receives traffic", "background loop: %d requests, first answer from %s after %v", len(samples), after[newIP], firstNew.Sub(t0))
		h.Figure("scale-up programmed (all nodes)", programmed.Seconds(), "s")
		h.Figure("scale-up convergence (first request on new pod)", firstNew.Sub(t0).Seconds(), "s")
		h.Figure("failed requests during scale-up", float64(errs), "")

		// Delete one of the original pods: afterwards no request reaches it.
		var victimIP, victim string
		for ip, name := range before {
			victimIP, victim = ip, name
			break
		}
		t1 := time.Now()
		if err := h.P.Delete(h.Ctx, plane.Ref{Kind: "pod", Namespace: h.NS, Name: victim}); err != nil {
			h.Fatalf("delete pod %s: %v", victim, err)
		}
		h.Programmed()
		h.Figure("pod deletion programmed (all nodes)", time.Since(t1).Seconds(), "s")
		// The Deployment replaces the pod; count where the next requests go.
		counts, _, err := c.Tally(h.Ctx, vip, 300)
		if err != nil {
			h.Fatalf("traffic after delete: %v", err)
		}
		h.Check(counts[victimIP] == 0, "deleted pod gets no traffic", "300 requests after deleting %s (%s): %v", victim, victimIP, counts)
		now := podIPs(h, h.NS, "getip-deployment-")
		h.Check(len(now) == 3, "deployment replaced the pod", "%v", now)
		for ip := range now {
			h.Check(counts[ip] > 0, "every live pod used", "%s (%s) got %d of 300", now[ip], ip, counts[ip])
		}
	})
}
