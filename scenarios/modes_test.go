package scenarios

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// TestBackendFailure: one backend's process dies while its pod is still
// listed as an endpoint. The userspace proxy, which makes its own
// connections, skips a backend that refuses and no client request fails;
// the kernel NAT datapaths hand the client's connection to the dead backend,
// so some requests fail until the endpoint is removed (the pod marked not
// ready), after which none do. Both are real properties of the modes.
func TestBackendFailure(t *testing.T) {
	sc := harness.Scenario{Name: "backend-failure", Title: "A backend dies: who notices?", Group: results.GroupProxyModes}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(3, "")}}, func(h *harness.H) {
		c := client(h, h.NS, "client")
		vip := clusterIP(h, h.NS, "getip-service")
		var victim string
		for ip, name := range podIPs(h, h.NS, "getip-deployment-") {
			_ = ip
			victim = name
			break
		}
		pod := pod(h, h.NS, victim)
		if err := h.P.StopPodServers(h.Ctx, h.NS, victim); err != nil {
			h.Fatalf("stop %s's servers: %v", victim, err)
		}
		const n = 150
		failed, served := 0, map[string]int{}
		for i := 0; i < n; i++ {
			ctx, cancel := context.WithTimeout(h.Ctx, 3*time.Second)
			in, _, err := c.GetInfo(ctx, vip)
			cancel()
			if err != nil {
				failed++
				continue
			}
			served[in.IP()]++
		}
		h.Figure("failed requests with a dead endpoint listed", float64(failed), fmt.Sprintf("of %d", n))
		h.Check(served[pod.IP.String()] == 0, "the dead backend answers nothing", "%v", served)
		if h.Desc.Traits.Relay {
			h.Check(failed == 0, "userspace proxy retries another backend", "%d of %d requests failed; answers %v", failed, n, served)
		} else {
			// A uniform choice over 3 endpoints sends about n/3 to the dead
			// one; P(no failure in 150) = (2/3)^150 < 1e-26 for the random
			// datapaths, and round-robin IPVS hits it every third request.
			h.Check(failed > 0, "kernel datapath sends clients to the dead backend", "%d of %d requests failed (connection refused): the kernel does not know the process died", failed, n)
		}
		// Readiness removes it from the endpoints: nobody fails any more.
		if err := h.P.SetPodReady(h.Ctx, h.NS, victim, false); err != nil {
			h.Fatalf("mark %s not ready: %v", victim, err)
		}
		h.Programmed()
		counts, _, err := c.Tally(h.Ctx, vip, 100)
		h.Check(err == nil && counts[pod.IP.String()] == 0 && len(counts) == 2, "after readiness removes it, no request fails", "100 requests: %v %v", counts, err)
	})
}

// TestProxyRestart: a node's proxy crashes (SIGKILL) and comes back. While
// it is down, the kernel datapaths keep serving from the rules it left
// (kube-proxy's design: the datapath is the kernel, the proxy only writes
// it), a relaying proxy's (userspace) Services on that node go dark (it is
// the datapath), and a change is programmed on the other node only; once the
// proxy is back, the barrier waits for it and the node sees the change.
// Throughout, a long-lived TCP connection from node1's client pod through
// the ClusterIP exchanges a line every 10 ms: on a kernel datapath it never
// breaks and stays with its backend (its NAT lives in conntrack or the IPVS
// connection table, not in the proxy); the relaying proxy's dies with it.
// The restarted proxy's rules equal, as a multiset of lines, those of a
// proxy started clean on the same state (stopped, cleaned up, started
// again): no chain, rule, set element or virtual server twice.
func TestProxyRestart(t *testing.T) {
	sc := harness.Scenario{Name: "proxy-restart", Title: "A node's proxy crashes and restarts", Group: results.GroupProxyModes}
	const client2 = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client2\nspec:\n  nodeName: node2\n  containers:\n    - name: c\n      image: curl\n"
	// It kills a node's proxy: on a shared cluster a failure half-way
	// would leave the next scenarios a node without one.
	opts := harness.Options{OwnsCluster: true, Manifests: []string{getipApp(2, ""), client2}}
	harness.Run(t, sc, opts, func(h *harness.H) {
		c1, c2 := client(h, h.NS, "client"), client(h, h.NS, "client2")
		vip := clusterIP(h, h.NS, "getip-service")
		before := podIPs(h, h.NS, "getip-deployment-")
		stop := make(chan struct{})
		long := longLived(h.Ctx, c1, vip, stop, 20000, 3*time.Minute)
		defer func() {
			select {
			case <-stop:
			default:
				close(stop)
			}
		}()
		time.Sleep(300 * time.Millisecond)
		tKill := time.Now()
		if err := h.P.KillProxy(h.Ctx, "node1"); err != nil {
			h.Fatalf("kill node1's proxy: %v", err)
		}
		const n = 30
		served := 0
		for i := 0; i < n; i++ {
			ctx, cancel := context.WithTimeout(h.Ctx, 2*time.Second)
			if _, _, err := c1.GetInfo(ctx, vip); err == nil {
				served++
			}
			cancel()
		}
		h.Figure("requests served on node1 with its proxy dead", float64(served), fmt.Sprintf("of %d", n))
		if h.Desc.Traits.Relay {
			h.Check(served == 0, "a relaying proxy is the datapath: node1's Services go dark", "%d of %d requests from node1 served", served, n)
		} else {
			h.Check(served == n, "the kernel keeps serving from the rules a dead proxy left", "%d of %d requests from node1 served", served, n)
		}

		// A change while node1's proxy is down: the barrier does not wait
		// for a node without a proxy, and node2 programs it.
		if err := h.P.Scale(h.Ctx, plane.Ref{Kind: "deployment", Namespace: h.NS, Name: "getip-deployment"}, 3); err != nil {
			h.Fatalf("scale: %v", err)
		}
		h.Programmed()
		var newIP string
		for ip := range podIPs(h, h.NS, "getip-deployment-") {
			if before[ip] == "" {
				newIP = ip
			}
		}
		h.Check(newIP != "", "a third pod runs", "new pod %q", newIP)
		counts, _, err := c2.Tally(h.Ctx, vip, 90)
		h.Check(err == nil && counts[newIP] > 0, "node2 programmed the change", "90 requests from node2: %v %v", counts, err)

		tStart := time.Now()
		if err := h.P.StartProxy(h.Ctx, "node1"); err != nil {
			h.Fatalf("start node1's proxy: %v", err)
		}
		h.Programmed()
		tProg := time.Now()
		h.Figure("restarted proxy programmed", tProg.Sub(tStart).Seconds(), "s")
		counts, _, err = c1.Tally(h.Ctx, vip, 90)
		h.Check(err == nil && len(counts) == 3 && counts[newIP] > 0, "the restarted proxy programs the current state", "90 requests from node1: %v %v", counts, err)
		time.Sleep(300 * time.Millisecond)
		close(stop)
		ll := <-long
		h.Figure("long-lived connection: exchanges", float64(len(ll.at)), "")
		h.Figure("long-lived connection: longest gap between answers", ll.maxGap.Seconds(), "s")
		if h.Desc.Traits.Relay {
			h.Check(ll.err != nil && ll.broke.After(tKill), "the relaying proxy's connections die with it", "broke at +%v after the kill: %v", ll.broke.Sub(tKill), ll.err)
		} else {
			h.Check(ll.err == nil && len(ll.pods) == 1, "a long-lived connection survives the crash and the restart", "%d exchanges with %v, error %v", len(ll.at), ll.pods, ll.err)
			h.Check(ll.between(tKill, tStart) > 0 && ll.between(tProg, time.Now()) > 0, "it exchanges data while the proxy is dead and after the restart",
				"%d exchanges before the kill, %d while dead, %d after the restart", ll.between(time.Time{}, tKill), ll.between(tKill, tStart), ll.between(tProg, time.Now()))
		}

		// The same state from a proxy that starts clean is the reference.
		restarted, err := h.P.Dump(h.Ctx, "node1")
		if err != nil {
			h.Fatalf("dump node1: %v", err)
		}
		if err := h.P.StopProxy(h.Ctx, "node1"); err != nil {
			h.Fatalf("stop node1's proxy: %v", err)
		}
		if err := h.P.StartProxy(h.Ctx, "node1"); err != nil {
			h.Fatalf("start node1's proxy clean: %v", err)
		}
		h.Programmed()
		clean, err := h.P.Dump(h.Ctx, "node1")
		if err != nil {
			h.Fatalf("dump node1: %v", err)
		}
		if h.Desc.Traits.Relay {
			// A relaying proxy listens on ports it picks each start.
			restarted, clean = maskProxyPorts(restarted), maskProxyPorts(clean)
		}
		extra, missing := lineDiff(restarted, clean)
		h.Check(len(extra) == 0 && len(missing) == 0, "the restarted proxy's rules equal a clean start's, nothing twice",
			"%d lines of state; only after the restart: %q; only after a clean start: %q", len(strings.Split(clean, "\n")), extra, missing)
		h.Result.KernelState = excerptLines(restarted, 200)
	})
}

// longLivedResult is what a long-lived connection saw.
type longLivedResult struct {
	at     []time.Time // when each answer came
	pods   map[string]bool
	maxGap time.Duration
	err    error // what ended it, nil if stopped
	broke  time.Time
}

// between counts the answers in [from, to).
func (r longLivedResult) between(from, to time.Time) int {
	n := 0
	for _, t := range r.at {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// longLived holds one TCP connection from c to addr (the pods' line echo)
// and exchanges a line every 10 ms until stop is closed, at most most times
// or for at most limit, each answer within 2 s.
func longLived(ctx context.Context, c *harness.Client, addr string, stop <-chan struct{}, most int, limit time.Duration) <-chan longLivedResult {
	out := make(chan longLivedResult, 1)
	go func() {
		r := longLivedResult{pods: map[string]bool{}}
		defer func() { out <- r }()
		conn, err := c.DialContext(ctx, "tcp", addr)
		if err != nil {
			r.err, r.broke = err, time.Now()
			return
		}
		defer conn.Close()
		rd := bufio.NewReader(conn)
		deadline := time.Now().Add(limit)
		last := time.Now()
		for i := 0; i < most && time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := fmt.Fprintf(conn, "line %d\n", i); err != nil {
				r.err, r.broke = err, time.Now()
				return
			}
			reply, err := rd.ReadString('\n')
			if err != nil {
				r.err, r.broke = err, time.Now()
				return
			}
			now := time.Now()
			r.at = append(r.at, now)
			r.maxGap = max(r.maxGap, now.Sub(last))
			last = now
			if f := strings.Fields(reply); len(f) > 0 {
				r.pods[f[0]] = true
			}
		}
	}()
	return out
}

// lineDiff compares two dumps as multisets of lines (comments, counters
// and blank lines left out): the lines only a has, and those only b has.
func lineDiff(a, b string) (onlyA, onlyB []string) {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		if l = normDumpLine(l); l != "" {
			count[l]++
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if l = normDumpLine(l); l != "" {
			count[l]--
		}
	}
	for l, k := range count {
		for ; k > 0; k-- {
			onlyA = append(onlyA, l)
		}
		for ; k < 0; k++ {
			onlyB = append(onlyB, l)
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	return onlyA, onlyB
}

var (
	dumpCounters = regexp.MustCompile(`\[\d+:\d+\]|(packets|bytes) \d+|^#.*|\(\d+/\d+\)`)
	toPorts      = regexp.MustCompile(`--to-ports (\d+)`)
)

// maskProxyPorts writes "PORT" for every port a relaying proxy listens on
// (the --to-ports of its REDIRECT rules) wherever it appears in dump.
func maskProxyPorts(dump string) string {
	for _, m := range toPorts.FindAllStringSubmatch(dump, -1) {
		dump = regexp.MustCompile(`\b`+m[1]+`\b`).ReplaceAllString(dump, "PORT")
	}
	return dump
}

// normDumpLine drops what differs between two dumps of the same rules:
// comments (iptables-save's time stamps), packet and byte counters, the
// userspace proxy's per-backend connection counts and those ipvsadm prints
// after a real server.
func normDumpLine(l string) string {
	l = strings.TrimSpace(dumpCounters.ReplaceAllString(l, ""))
	if strings.HasPrefix(l, "->") {
		f := strings.Fields(l)
		for len(f) > 0 && isDigits(f[len(f)-1]) {
			f = f[:len(f)-1]
		}
		l = strings.Join(f, " ")
	}
	return l
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// TestProxyCleanup: a node proxy's Cleanup (what it runs when it stops)
// leaves nothing of the mode in the node: no KUBE-* chains in either iptables
// backend, no kube-proxy nftables table, no IPVS virtual server or
// kube-ipvs0, no listening socket. On the kubernetes plane the genuine
// kube-proxy --cleanup keeps one thing: the KUBE-FIREWALL localnet rule its
// iptables proxier adds (pkg/proxy/iptables; CleanupLeftovers leaves it,
// the kubelet shares it).
func TestProxyCleanup(t *testing.T) {
	sc := harness.Scenario{Name: "proxy-cleanup", Title: "Stopping a proxy leaves no rule, set or listener", Group: results.GroupIsolation}
	opts := harness.Options{OwnsCluster: true, Manifests: []string{getipApp(2, "  type: NodePort\n  sessionAffinity: ClientIP\n")}}
	harness.Run(t, sc, opts, func(h *harness.H) {
		nodeClient := nodeClient(h, "node1")
		// Programmed: the mode's state is visible with the real tools.
		dump, err := h.P.Dump(h.Ctx, "node1")
		h.Check(err == nil && dump != "", "programmed state visible", "%d bytes of %s state", len(dump), h.Mode)
		if h.Desc.Kernel == modes.KernelNftables {
			out, err := nodeClient.Exec(h.Ctx, "nft", "list", "tables")
			h.Check(err == nil && strings.TrimSpace(out) == "table ip kube-proxy", "nft list tables shows only kube-proxy", "%q", out)
			rs, _ := nodeClient.Exec(h.Ctx, "nft", "list", "ruleset")
			h.Result.KernelState = excerptLines(rs, 80)
		}
		// Stopped as its operator would: the proxy removes what it made.
		if err := h.P.StopProxy(h.Ctx, "node1"); err != nil {
			h.Fatalf("stop node1's proxy: %v", err)
		}
		checks := [][]string{
			{"iptables-legacy-save"}, {"iptables-nft-save"}, {"nft", "list", "ruleset"},
			{"ipset", "list", "-n"}, {"ip", "-o", "link", "show"}, {"ss", "-Hltun"},
		}
		if h.Desc.Kernel == modes.KernelIPVS {
			checks = append(checks, []string{"ipvsadm", "-Ln"})
		}
		for _, argv := range checks {
			out, err := nodeClient.Exec(h.Ctx, argv[0], argv[1:]...)
			if err != nil {
				h.Fatalf("%s in node1: %v", strings.Join(argv, " "), err)
			}
			var bad []string
			for _, line := range strings.Split(out, "\n") {
				if h.KubeProxy() && strings.Contains(line, "KUBE-FIREWALL") {
					// The genuine kube-proxy's iptables proxier adds the
					// KUBE-FIREWALL localnet rule (pkg/proxy/iptables, with
					// route_localnet) and CleanupLeftovers keeps it: the
					// kubelet shares it.
					continue
				}
				if argv[0] == "ip" && strings.Contains(line, "link-netns") {
					// a veth's peer namespace is named after the scenario and mode
					line, _, _ = strings.Cut(line, "link-netns")
				}
				if strings.Contains(line, "KUBE-") || strings.Contains(line, "kube-proxy") || strings.Contains(line, "kube-ipvs0") ||
					(argv[0] == "ss" && strings.TrimSpace(line) != "") ||
					(argv[0] == "ipvsadm" && (strings.HasPrefix(line, "TCP") || strings.HasPrefix(line, "UDP"))) {
					bad = append(bad, strings.TrimSpace(line))
				}
			}
			h.Check(len(bad) == 0, strings.Join(argv, " ")+" clean", "%d leftover lines %v", len(bad), bad)
		}
	})
}

func excerptLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "\n")
}

// TestIPVSKernelState: IPVS only. `ipvsadm -Ln` inside a node shows one
// virtual server per ClusterIP:port and per node address:NodePort with the
// pods as masqueraded real servers; with the sh scheduler every request of a
// client lands on one backend.
func TestIPVSKernelState(t *testing.T) {
	for _, dp := range harness.Datapaths() {
		if dp.Desc.Kernel != modes.KernelIPVS {
			continue
		}
		t.Run("rr", func(t *testing.T) {
			sc := harness.Scenario{Name: "ipvs-kernel-state", Title: "IPVS: ipvsadm shows the virtual and real servers", Group: results.GroupProxyModes}
			harness.RunOne(t, sc, dp, harness.Options{Manifests: []string{getipApp(2, "  type: NodePort\n")}}, func(h *harness.H) {
				node := node(h, "node1")
				out, err := harness.NewClient("node1", node.NS).Exec(h.Ctx, "ipvsadm", "-Ln")
				if err != nil {
					h.Fatalf("ipvsadm: %v", err)
				}
				h.Result.KernelState = out
				vip := clusterIP(h, h.NS, "getip-service")
				np := nodePort(h, h.NS, "getip-service")
				h.Check(strings.Contains(out, "TCP  "+vip+" rr"), "virtual server for the ClusterIP", "%s rr in ipvsadm -Ln", vip)
				h.Check(strings.Contains(out, fmt.Sprintf("TCP  %s:%d rr", node.IP, np)), "virtual server for the NodePort", "%s:%d", node.IP, np)
				for ip := range podIPs(h, h.NS, "getip-deployment-") {
					h.Check(strings.Contains(out, "-> "+ip+":80") && strings.Contains(out, "Masq"), "real server "+ip, "masqueraded real server %s:80", ip)
				}
			})
		})
		t.Run("sh", func(t *testing.T) {
			sc := harness.Scenario{Name: "ipvs-scheduler-sh", Title: "IPVS sh: one backend per client", Group: results.GroupProxyModes}
			harness.RunOne(t, sc, dp, harness.Options{Scheduler: "sh", Manifests: []string{getipApp(3, "")}}, func(h *harness.H) {
				counts, _, err := client(h, h.NS, "client").Tally(h.Ctx, clusterIP(h, h.NS, "getip-service"), 60)
				if err != nil {
					h.Fatalf("traffic: %v", err)
				}
				h.Check(len(counts) == 1, "source hashing pins the client", "60 requests: %v", counts)
			})
		})
	}
}

// TestNoEndpoints: a Service whose selector matches no pod. A client is told
// at once (connection refused, or closed by the userspace proxy) instead of
// waiting for a timeout; kube-proxy's REJECT rules, the nftables
// no-endpoint map and IPVS's empty virtual server each give that answer.
func TestNoEndpoints(t *testing.T) { harness.RunCase(t, noEndpoints()) }

// noEndpoints is TestNoEndpoints as a harness.Case.
func noEndpoints() harness.Case {
	sc := harness.Scenario{Name: "no-endpoints", Title: "A Service without endpoints refuses at once", Group: results.GroupService}
	const svc = `apiVersion: v1
kind: Service
metadata:
  name: nobody-home
spec:
  selector:
    app: nobody
  ports:
    - protocol: TCP
      port: 80
      targetPort: 8080
`
	return harness.Case{Scenario: sc, Options: harness.Options{Manifests: []string{getipApp(1, ""), svc}}, Body: func(h *harness.H) {
		vip := clusterIP(h, h.NS, "nobody-home")
		ctx, cancel := context.WithTimeout(h.Ctx, 3*time.Second)
		defer cancel()
		_, _, err := client(h, h.NS, "client").GetInfo(ctx, vip)
		var ne net.Error
		timedOut := errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
		h.Check(err != nil && !timedOut, "client is answered, not left to time out", "GET %s/info: %v", vip, err)
		refused := errors.Is(err, syscall.ECONNREFUSED)
		h.Figure("connection refused (1) or closed by a proxy (0)", map[bool]float64{true: 1, false: 0}[refused], "")
	}}
}
