package topology_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/topology"
)

// TestLargeTopology (SVCSIM_LARGE_PODS=2000, not in make test: minutes on a
// busy 2-core host) builds that many pods, 200 per node, each with its
// servers, checks one answers, tears the topology down and checks nothing
// is left; it logs build and teardown times and the process's peak RSS,
// and fails above 4 GiB (the bound: the pods' servers run in this process).
func TestLargeTopology(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SVCSIM_LARGE_PODS"))
	if n <= 0 {
		t.Skip("set SVCSIM_LARGE_PODS (e.g. 2000) to build that many pods")
	}
	privtest.RequireRoot(t)
	const perNode = 200
	nodes := (n + perNode - 1) / perNode
	spec := topology.DefaultSpec(privtest.NewRun(t), nodes)
	t0 := time.Now()
	topo, err := topology.Build(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = topo.Close()
		}
	})
	for i := 0; i < n; i++ {
		node := topo.Nodes()[i/perNode]
		ip := node.PodCIDR.Addr().As4()
		ip[3] = byte(2 + i%perNode)
		if _, err := topo.AddPod(context.Background(), topology.PodSpec{
			Name: fmt.Sprintf("large/p%d", i), Node: node.Name, IP: netip.AddrFrom4(ip), Ports: []topology.Port{{Port: 80}},
		}); err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
	}
	built := time.Since(t0)
	names := topo.Namespaces()
	last := topo.Pods()[len(topo.Pods())-1]
	c := topology.HTTPClient(topo.Nodes()[0].NS, false, 3*time.Second)
	resp, err := c.Get("http://" + last.IP.String() + ":80/name")
	if err != nil {
		t.Fatalf("pod %s from node1: %v", last.Name, err)
	}
	resp.Body.Close()
	t1 := time.Now()
	if err := topo.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	closed = true
	down := time.Since(t1)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	peak := float64(ru.Maxrss) / 1024 // KiB -> MiB
	t.Logf("%d pods on %d nodes (%d namespaces): built in %v, torn down in %v, peak RSS %.0f MiB", n, nodes, len(names), built.Round(time.Millisecond), down.Round(time.Millisecond), peak)
	left := 0
	for _, name := range names {
		if netns.Exists(name) {
			left++
		}
	}
	if left > 0 {
		t.Errorf("%d of %d namespaces left after Close", left, len(names))
	}
	if peak > 4096 {
		t.Errorf("peak RSS %.0f MiB above the 4 GiB bound", peak)
	}
}
