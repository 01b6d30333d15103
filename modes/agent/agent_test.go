package agent_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/internal/reexec"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/agent"
	_ "github.com/svcsim/svcsim/modes/all"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

// TestStartCleansDisjointDatapaths (root): a node proxy that starts removes
// what a datapath with disjoint kernel state left in its namespace, as
// kube-proxy does (modes.Disjoint): nftables' table before an iptables
// proxy, iptables' KUBE-* chains on both backends before an nftables one.
func TestStartCleansDisjointDatapaths(t *testing.T) {
	privtest.RequireRoot(t)
	ns := privtest.NS(t, "agent")
	run := privtest.Run(t)
	start := func(mode string) {
		t.Helper()
		d, err := modes.Get(mode)
		if err != nil {
			t.Fatal(err)
		}
		if why := d.Unsupported(); why != "" {
			t.Skipf("%s cannot run here: %s", mode, why)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		begin := time.Now()
		p, err := agent.Start(ctx, ns, agent.StartOptions{Node: "node1", Mode: mode, Socket: run.Path(strings.ReplaceAll(mode, "/", "-") + ".sock")})
		if err != nil {
			t.Fatalf("start %s: %v", mode, err)
		}
		t.Logf("%s serving after %v", mode, time.Since(begin).Round(time.Millisecond))
		if err := p.Stop(15 * time.Second); err != nil {
			t.Fatalf("stop %s: %v", mode, err)
		}
	}

	for _, argv := range [][]string{{"nft", "add", "table", "ip", "kube-proxy"}, {"nft", "add", "chain", "ip", "kube-proxy", "services"}} {
		if out, err := ns.Output(argv...); err != nil {
			t.Fatalf("%v: %v: %s", argv, err, out)
		}
	}
	start("iptables/nft")
	if out, err := ns.Output("nft", "list", "table", "ip", "kube-proxy"); err == nil {
		t.Errorf("nftables' table survived an iptables proxy's start:\n%s", out)
	}

	backends := []string{"iptables-nft", "iptables-legacy"}
	for _, b := range backends {
		if out, err := ns.Output(b, "-t", "nat", "-N", "KUBE-SERVICES"); err != nil {
			t.Fatalf("%s -N KUBE-SERVICES: %v: %s", b, err, out)
		}
	}
	start("nftables")
	for _, b := range backends {
		out, err := ns.Output(b+"-save", "-t", "nat")
		if err != nil {
			t.Fatalf("%s-save: %v: %s", b, err, out)
		}
		if strings.Contains(out, "KUBE-") {
			t.Errorf("%s's KUBE-* chains survived an nftables proxy's start:\n%s", b, out)
		}
	}
}
