package scenarios

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// attempt is one request of a traffic loop, with up to retries further
// tries after a failure.
type attempt struct {
	start, end time.Time
	ip         string
	tries      int
	err        error // of the last try
}

// retryLoop sends /info requests from c to addr one after another until
// stop is closed, at most max requests and for at most limit; a failed
// request is tried again up to retries times at once (a fresh connection
// each), as a client library with one retry does.
// done counts the requests finished so far.
func retryLoop(ctx context.Context, c *harness.Client, addr string, retries int, stop <-chan struct{}, max int, limit time.Duration, done *atomic.Int64) <-chan []attempt {
	out := make(chan []attempt, 1)
	go func() {
		var got []attempt
		deadline := time.Now().Add(limit)
		for i := 0; i < max && time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				out <- got
				return
			default:
			}
			a := attempt{start: time.Now()}
			for a.tries = 1; ; a.tries++ {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				in, _, err := c.GetInfo(rctx, addr)
				cancel()
				a.ip, a.err = in.IP(), err
				if err == nil || a.tries > retries {
					break
				}
			}
			a.end = time.Now()
			got = append(got, a)
			done.Add(1)
		}
		out <- got
	}()
	return out
}

// phases splits attempts by when they started against the kill (t1) and
// the moment the endpoint was gone everywhere (t2); attempts running at t1
// (started before, ended after) are set apart.
func phases(as []attempt, t1, t2 time.Time) (before, straddle, listed, gone []attempt) {
	for _, a := range as {
		switch {
		case a.end.Before(t1):
			before = append(before, a)
		case a.start.Before(t1):
			straddle = append(straddle, a)
		case a.start.Before(t2):
			listed = append(listed, a)
		default:
			gone = append(gone, a)
		}
	}
	return
}

func failures(as []attempt) int {
	n := 0
	for _, a := range as {
		if a.err != nil {
			n++
		}
	}
	return n
}

// TestBackendKilled: one of three backends dies while two clients send a
// steady stream of requests through the ClusterIP, one without retries and
// one retrying a failed request once; the endpoint is then removed (as a
// failing readiness probe would) and the barrier waits for every node.
// Counted per datapath and phase: before the kill no request fails; while
// the dead endpoint is still listed a kernel datapath sends a new
// connection to it with probability 1/3 (every third for round-robin), so
// a client without retry fails (P(no failure in 60) = (2/3)^60 < 3e-11;
// the phase lasts until each client has made 300 requests in it) and
// the retrying one fails only when both tries hit it; the userspace proxy
// retries another backend itself, so nothing fails there; once the
// endpoint is gone nothing fails on any datapath, with or without retry.
func TestBackendKilled(t *testing.T) {
	sc := harness.Scenario{Name: "backend-killed", Title: "A backend is killed mid-traffic: failures, with and without a retry", Group: results.GroupFaults}
	harness.Run(t, sc, harness.Options{Manifests: []string{getipApp(3, "")}}, func(h *harness.H) {
		c := client(h, h.NS, "client")
		vip := clusterIP(h, h.NS, "getip-service")
		var victim string
		var victimIP string
		for ip, name := range podIPs(h, h.NS, "getip-deployment-") {
			victim, victimIP = name, ip
			break
		}
		stop := make(chan struct{})
		const max, limit = 20000, 90 * time.Second
		var plainDone, retriedDone atomic.Int64
		plain := retryLoop(h.Ctx, c, vip, 0, stop, max, limit, &plainDone)
		retried := retryLoop(h.Ctx, c, vip, 1, stop, max, limit, &retriedDone)
		defer func() {
			select {
			case <-stop:
			default:
				close(stop)
			}
		}()
		// Phases last until the loops have made enough requests in them
		// (a slow machine, such as the kernel lane under emulation, makes
		// few per second), each within 30 s.
		waitFor := func(n int64) {
			p0, r0 := plainDone.Load(), retriedDone.Load()
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if plainDone.Load()-p0 >= n && retriedDone.Load()-r0 >= n {
					return
				}
			}
		}
		waitFor(20)
		t1 := time.Now()
		if err := h.P.StopPodServers(h.Ctx, h.NS, victim); err != nil {
			h.Fatalf("kill %s's servers: %v", victim, err)
		}
		// Keep the dead endpoint listed until both clients have made 300
		// requests meanwhile (the z-test below needs a few hundred).
		waitFor(300)
		tr := time.Now()
		if err := h.P.SetPodReady(h.Ctx, h.NS, victim, false); err != nil {
			h.Fatalf("mark %s not ready: %v", victim, err)
		}
		h.Programmed()
		t2 := time.Now()
		h.Figure("dead endpoint listed", t2.Sub(t1).Seconds(), "s")
		h.Figure("not ready to programmed on every node", t2.Sub(tr).Seconds(), "s")
		waitFor(40)
		close(stop)
		var rate [2]struct{ failed, n int }
		for i, run := range []struct {
			name string
			got  []attempt
		}{{"without retry", <-plain}, {"with one retry", <-retried}} {
			before, straddle, listed, gone := phases(run.got, t1, t2)
			fl := failures(listed)
			rate[i].failed, rate[i].n = fl, len(listed)
			h.Figure("failed requests "+run.name+", dead endpoint listed", float64(fl), fmt.Sprintf("of %d", len(listed)))
			h.Figure("failed requests "+run.name+", endpoint gone", float64(failures(gone)), fmt.Sprintf("of %d", len(gone)))
			h.T.Logf("%s: %d requests before the kill, %d running at it (%d failed)", run.name, len(before), len(straddle), failures(straddle))
			h.Check(failures(before) == 0 && len(before) > 0, "no failure "+run.name+" before the kill", "%d of %d failed", failures(before), len(before))
			dead := 0
			for _, a := range gone {
				if a.ip == victimIP {
					dead++
				}
			}
			h.Check(len(gone) >= 20 && failures(gone) == 0 && dead == 0, "no failure "+run.name+" once the endpoint is gone",
				"%d of %d failed, %d answered by the dead pod", failures(gone), len(gone), dead)
			if run.name != "without retry" {
				continue
			}
			h.Check(len(listed) >= 60, "enough requests while the dead endpoint is listed", "%d requests", len(listed))
			if h.Desc.Traits.Relay {
				h.Check(fl == 0, "the relaying proxy retries another backend itself", "%d of %d failed", fl, len(listed))
			} else {
				h.Check(fl > 0, "the kernel sends new connections to the dead backend until its endpoint goes", "%d of %d failed", fl, len(listed))
			}
		}
		if !h.Desc.Traits.Relay {
			// One-sided two-proportion z-test, alpha 0.001: a retry (a new
			// connection, a new choice) fails less often than no retry
			// (1/9 against 1/3 for a uniform choice, 0 against 1/3 for
			// round-robin).
			p := lessOften(rate[1].failed, rate[1].n, rate[0].failed, rate[0].n)
			h.Check(p < 0.001, "one retry fails less often", "with retry %d/%d, without %d/%d: one-sided p = %.2g",
				rate[1].failed, rate[1].n, rate[0].failed, rate[0].n, p)
		}
	})
}

// lessOften is the one-sided p-value of a two-proportion z-test (pooled)
// against the hypothesis that a/n is no smaller than b/m.
func lessOften(a, n, b, m int) float64 {
	if n == 0 || m == 0 {
		return 1
	}
	pa, pb := float64(a)/float64(n), float64(b)/float64(m)
	pool := float64(a+b) / float64(n+m)
	se := math.Sqrt(pool * (1 - pool) * (1/float64(n) + 1/float64(m)))
	if se == 0 {
		return 1
	}
	z := (pb - pa) / se
	return 0.5 * math.Erfc(z/math.Sqrt2)
}
