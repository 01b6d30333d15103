package scenarios

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
	"github.com/svcsim/svcsim/topology"
)

// The client loop across reloads: bounded in count and in time.
const (
	reloadLoopMax    = 20000
	reloadLoopBudget = 90 * time.Second
)

// loadLoop sends GET /info with Host host to addr from ns, a new
// connection per request, until stop is closed (or its bounds), and
// counts the answers that are not a 200 from one of backends.
type loadLoop struct {
	sent, failed int
	samples      []string
	done         chan struct{}
}

func startLoad(ctx context.Context, ext *harness.Client, addr, host string, backends map[string]string, stop <-chan struct{}) *loadLoop {
	l := &loadLoop{done: make(chan struct{})}
	hc := topology.HTTPClient(ext.NS, false, 3*time.Second)
	go func() {
		defer close(l.done)
		deadline := time.Now().Add(reloadLoopBudget)
		for l.sent < reloadLoopMax && time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			default:
			}
			l.sent++
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/info", nil)
			req.Host = host
			resp, err := hc.Do(req)
			var why string
			switch {
			case err != nil:
				why = err.Error()
			default:
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
				resp.Body.Close()
				if resp.StatusCode != 200 || backends[answeredBy(string(b))] == "" {
					why = fmt.Sprintf("%s %q", resp.Status, b)
				}
			}
			if why != "" {
				l.failed++
				if len(l.samples) < 5 {
					l.samples = append(l.samples, fmt.Sprintf("request %d: %s", l.sent, why))
				}
			}
		}
	}()
	return l
}

// settledGeneration waits (at most 10 s) until no reload is under way in
// the controller on node1 (its :10254/svcsim/loaded says "<loaded>
// <written>": the generation every accepting worker serves, the newest
// written) and returns that generation. A host that answered once may
// still be missing on old workers until then.
func settledGeneration(h *harness.H, node1 *harness.Client) (int, error) {
	var last string
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
		out, err := node1.Exec(h.Ctx, "curl", "-sS", "--max-time", "2", "http://127.0.0.1:10254/svcsim/loaded")
		last = fmt.Sprintf("%q %v", out, err)
		if err != nil {
			continue
		}
		f := strings.Fields(out)
		if len(f) == 2 && f[0] == f[1] {
			return strconv.Atoi(f[0])
		}
	}
	return 0, fmt.Errorf("a reload still under way after 10 s: %s", last)
}

// TestIngressReload: changes to Ingresses and their backends while a
// client sends requests to an unchanged host, each on a new connection:
// add a host, change its path, scale its backend, delete it. Each change
// must show within ingressConverge (the time is a figure), every change
// must have been a reload (the generation moves), and not one request of
// the loop may fail. Then what a reload does to an idle keep-alive
// connection: nginx's old worker closes it once its request is done, so a
// client sees EOF on its next read (and a client reusing it must retry on
// a new connection, as Go's and curl's do for idempotent requests).
func TestIngressReload(t *testing.T) {
	sc := harness.Scenario{Name: "ingress-reload", Title: "Ingress: changes take effect, no failed request across reloads", Group: results.GroupIngress}
	harness.Run(t, sc, ingressOptions, func(h *harness.H) {
		addr := ingressOnNode1(h)
		applySeedIngress(h)
		ext := external(h)
		n1 := h.P.Nodes()[0]
		node1 := harness.NewClient(n1.Name, n1.NS)
		getip := podIPs(h, h.NS, "getip-deployment-")
		if _, err := waitIngress(h, ext, addr, "www.tabops.com", getip); err != nil {
			h.Fatalf("before the loop: %v", err)
		}
		gen0, err := settledGeneration(h, node1)
		if err != nil {
			h.Fatalf("generation: %v", err)
		}
		stop := make(chan struct{})
		var once sync.Once
		stopLoad := func() { once.Do(func() { close(stop) }) }
		load := startLoad(h.Ctx, ext, addr, "www.tabops.com", getip, stop)
		defer func() { stopLoad(); <-load.done }()

		changes := 0
		step := func(what, host string, apply func(), backends func() map[string]string) {
			h.T.Helper()
			apply()
			changes++
			took, err := waitIngress(h, ext, addr, host, backends())
			h.Check(err == nil, what, "%v", err)
			h.Figure(what+": in effect after", took.Seconds(), "s")
		}
		myhttp := func() map[string]string { return podIPs(h, h.NS, "myhttp-v2-") }
		extra := func(path, pathType, svc string) string {
			return ingressYAML("extra", nil, "  rules:\n"+pathRule("new.test", [3]string{path, pathType, svc}))
		}
		step("add host new.test -> myhttp", "new.test", func() { h.Apply(extra("/", "Prefix", "myhttp-service")) }, myhttp)
		step("change new.test's path to Exact /info -> getip", "new.test", func() { h.Apply(extra("/info", "Exact", "getip-service")) }, func() map[string]string { return getip })
		step("new.test back to myhttp", "new.test", func() { h.Apply(extra("/", "Prefix", "myhttp-service")) }, myhttp)
		before := myhttp()
		if err := h.P.Scale(h.Ctx, plane.Ref{Kind: "deployment", Namespace: h.NS, Name: "myhttp-v2"}, int32(len(before)+1)); err != nil {
			h.Fatalf("scale myhttp-v2: %v", err)
		}
		h.Programmed()
		changes++
		var fresh map[string]string
		for i := 0; i < 100; i++ {
			fresh = map[string]string{}
			for ip, name := range myhttp() {
				if before[ip] == "" {
					fresh[ip] = name
				}
			}
			if len(fresh) > 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		h.Check(len(fresh) == 1, "myhttp-v2 scaled up by one", "new pods %v", fresh)
		// The new pod is one endpoint of several: wait until it answers.
		start := time.Now()
		seen := false
		for i := 0; i < 400 && time.Since(start) < ingressConverge && !seen; i++ {
			_, body, err := hostGet(h, ext, addr, "new.test", "/info")
			seen = err == nil && fresh[answeredBy(body)] != ""
		}
		h.Check(seen, "the scaled-up pod gets requests through the Ingress", "not within %v", ingressConverge)
		h.Figure("scale myhttp-v2 +1: new endpoint answers after", time.Since(start).Seconds(), "s")
		if err := h.P.Delete(h.Ctx, plane.Ref{Kind: "ingress", Namespace: h.NS, Name: "extra"}); err != nil {
			h.Fatalf("delete ingress extra: %v", err)
		}
		h.Programmed()
		changes++
		start = time.Now()
		code := 0
		for i := 0; i < 400 && time.Since(start) < ingressConverge; i++ {
			if code, _, _ = hostGet(h, ext, addr, "new.test", "/info"); code == 404 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		h.Check(code == 404, "new.test deleted: 404", "last %d", code)

		time.Sleep(500 * time.Millisecond) // a few requests after the last reload too
		stopLoad()
		<-load.done
		gen1, err := settledGeneration(h, node1)
		if err != nil {
			h.Fatalf("generation: %v", err)
		}
		h.Check(gen1-gen0 >= changes, "every change was a reload", "generation %d -> %d over %d changes", gen0, gen1, changes)
		h.Figure("reloads during the loop", float64(gen1-gen0), "")
		h.Figure("requests in the loop", float64(load.sent), "")
		h.Check(load.sent >= 100, "the loop ran across the reloads", "%d requests (bounds: %d, %v)", load.sent, reloadLoopMax, reloadLoopBudget)
		h.Check(load.failed == 0, "no failed request across the reloads", "%d of %d failed: %v", load.failed, load.sent, load.samples)

		// An idle keep-alive connection across a reload.
		conn, err := ext.DialContext(h.Ctx, "tcp", addr+":80")
		if err != nil {
			h.Fatalf("dial: %v", err)
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		ask := func() (*http.Response, error) {
			if _, err := io.WriteString(conn, "GET /info HTTP/1.1\r\nHost: www.tabops.com\r\n\r\n"); err != nil {
				return nil, err
			}
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			return resp, err
		}
		resp, err := ask()
		h.Check(err == nil && resp.StatusCode == 200 && !resp.Close, "a keep-alive request before the reload", "%v %v", resp, err)
		h.Apply(extra("/", "Prefix", "myhttp-service"))
		if _, err := waitIngress(h, ext, addr, "new.test", myhttp()); err != nil {
			h.Fatalf("reload: %v", err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second)) // worker_shutdown_timeout is 10 s
		t0 := time.Now()
		_, err = br.ReadByte()
		h.Check(errors.Is(err, io.EOF), "the reload closes the idle keep-alive connection (EOF: a client must reconnect)", "read after the reload: %v after %v", err, time.Since(t0).Round(time.Millisecond))
		removeController(h, node1, addr+":80")
	})
}
