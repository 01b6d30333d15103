package scenarios

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcsim/svcsim/modes/agent"
	"github.com/svcsim/svcsim/report/results"
	"github.com/svcsim/svcsim/scenarios/harness"
)

// repairBound is how long traffic may fail after a flush: fifteen canary
// periods (agent.CanaryPeriod, 2 s), generous for a busy 2-core machine and
// the emulated kernel lane; a datapath repairs within one period and one
// full sync (measured 1.8-2.1 s on the host, 3.2-6.2 s for IPVS in the
// 6.1 lane under TCG).
const repairBound = 15 * agent.CanaryPeriod

// TestFlushRepair: every rule of node1 is flushed, inside node1's namespace
// only, as a firewall reload or an administrator does it (the datapath's
// Flush commands: iptables-restore of the empty nat, filter and mangle
// tables, `nft flush ruleset`, `ipvsadm -C`). The node proxy finds its
// canary gone (kube-proxy's KUBE-PROXY-CANARY chains; nftables' table) and
// syncs its last state again in full: node1's NodePort from outside and the
// ClusterIP from node1's client pod answer again within repairBound, and
// node1's rules equal, as a multiset of lines, those before the flush.
// Figures: how long each path failed, how many probes failed.
//
// svcsim's node proxy repairs on either plane; the genuine kube-proxy
// repairs on its own periods, longer than the bound (its iptables canary is checked every
// --iptables-sync-period, 30 s; its nftables mode keeps no canary and
// notices a lost table at its next failing sync or its hourly full sync).
func TestFlushRepair(t *testing.T) {
	sc := harness.Scenario{Name: "flush-repair", Title: "A node's rules are flushed: its proxy repairs them", Group: results.GroupFaults}
	// It breaks a node's datapath: on a shared cluster a failed repair
	// would leave the next scenarios a broken node.
	opts := harness.Options{OwnsCluster: true, Manifests: []string{getipApp(2, "  type: NodePort\n")},
		KubeProxyException: "the genuine kube-proxy repairs a flush on its own periods, beyond this bound (iptables: its canary every --iptables-sync-period, 30 s; nftables: no canary, its hourly full sync)"}
	harness.Run(t, sc, opts, func(h *harness.H) {
		if len(h.Desc.Flush) == 0 {
			h.Fatalf("datapath %s names no Flush commands", h.Mode)
		}
		n1 := node(h, "node1")
		ext, pod := external(h), client(h, h.NS, "client")
		vip := clusterIP(h, h.NS, "getip-service")
		nodePortAddr := fmt.Sprintf("%s:%d", n1.IP, nodePort(h, h.NS, "getip-service"))
		probes := []struct {
			name string
			c    *harness.Client
			addr string
		}{{"node1's NodePort from outside", ext, nodePortAddr}, {"the ClusterIP from node1's client pod", pod, vip}}
		ask := func(c *harness.Client, addr string, timeout time.Duration) error {
			ctx, cancel := context.WithTimeout(h.Ctx, timeout)
			defer cancel()
			_, _, err := c.GetInfo(ctx, addr)
			return err
		}
		for _, p := range probes {
			if err := ask(p.c, p.addr, 3*time.Second); err != nil {
				h.Fatalf("before the flush, %s (%s): %v", p.name, p.addr, err)
			}
		}
		before, err := h.P.Dump(h.Ctx, "node1")
		if err != nil {
			h.Fatalf("dump node1: %v", err)
		}

		nc := nodeClient(h, "node1")
		t0 := time.Now()
		for _, argv := range h.Desc.Flush {
			if out, err := nc.Exec(h.Ctx, argv[0], argv[1:]...); err != nil {
				h.Fatalf("flush node1 (%s): %v: %s", strings.Join(argv, " "), err, out)
			}
		}
		h.Figure("flush commands", time.Since(t0).Seconds(), "s")

		// Each path is probed on its own (a new connection every 20 ms, each
		// given at most 300 ms: the first answer after a repair is seen
		// within that) until it answered three times in a row, for at most
		// twice the bound.
		type tally struct {
			failed, streak int
			back           time.Time // the first answer of the last streak
			lastErr        error
		}
		tallies := make([]tally, len(probes))
		deadline := t0.Add(2 * repairBound)
		var wg sync.WaitGroup
		for j, p := range probes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tl := &tallies[j]
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for i := 0; i < 5000 && tl.streak < 3 && time.Now().Before(deadline); i++ {
					if err := ask(p.c, p.addr, 300*time.Millisecond); err != nil {
						tl.failed, tl.streak, tl.lastErr = tl.failed+1, 0, err
					} else {
						if tl.streak == 0 {
							tl.back = time.Now()
						}
						tl.streak++
					}
					<-tick.C
				}
			}()
		}
		wg.Wait()
		for j, p := range probes {
			tl := tallies[j]
			down := time.Duration(0)
			if tl.failed > 0 {
				down = tl.back.Sub(t0)
			}
			h.Figure("traffic failed after the flush: "+p.name, down.Seconds(), "s")
			h.Figure("failed probes: "+p.name, float64(tl.failed), "")
			h.Check(tl.streak >= 3 && down <= repairBound, p.name+" answers again within "+repairBound.String(),
				"%d probes failed, answering again %v after the flush (last error %v): %v", tl.failed, down.Round(time.Millisecond), tl.lastErr, tl.streak >= 3)
		}

		after, err := h.P.Dump(h.Ctx, "node1")
		if err != nil {
			h.Fatalf("dump node1: %v", err)
		}
		extra, missing := lineDiff(after, before)
		h.Check(len(extra) == 0 && len(missing) == 0, "node1's repaired rules equal those before the flush",
			"%d lines of state; only after the repair: %q; only before the flush: %q", len(strings.Split(before, "\n")), extra, missing)
		h.Result.KernelState = excerptLines(after, 200)
	})
}
