package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/sim/state"
)

// canaryProxier is a Proxier whose canary a test removes, recording the
// syncs it is asked for.
type canaryProxier struct {
	intact    bool
	forced    bool // ForceFullSync was called since the last Sync
	syncs     []bool
	failCheck error
}

func (p *canaryProxier) Name() string { return "fake" }
func (p *canaryProxier) Sync(_ context.Context, _ *state.NodeState) error {
	p.syncs = append(p.syncs, p.forced)
	p.forced, p.intact = false, true
	return nil
}
func (p *canaryProxier) Cleanup(context.Context) error { p.intact = false; return nil }
func (p *canaryProxier) ForceFullSync()                { p.forced = true }
func (p *canaryProxier) Intact(context.Context) (bool, error) {
	return p.intact, p.failCheck
}

var (
	_ modes.Canary     = (*canaryProxier)(nil)
	_ modes.FullSyncer = (*canaryProxier)(nil)
)

// TestCanaryRepair: before any state nothing is checked or synced; with the
// canary in place nothing happens; once it is gone the last state is synced
// again in full, once, and counted; a failing check syncs nothing; after a
// cleanup there is nothing to repair. The periodic resync syncs the last
// state without forcing a full sync.
func TestCanaryRepair(t *testing.T) {
	ctx := context.Background()
	p := &canaryProxier{}
	s := &server{p: p, node: "node1"}
	if repaired, err := s.checkCanary(ctx); repaired || err != nil || len(p.syncs) != 0 {
		t.Fatalf("before any state: repaired %v, %v, syncs %v", repaired, err, p.syncs)
	}
	st := &state.NodeState{Node: "node1", Generation: 3}
	s.mu.Lock()
	if err := s.syncLocked(ctx, st); err != nil {
		t.Fatal(err)
	}
	s.mu.Unlock()
	if repaired, err := s.checkCanary(ctx); repaired || err != nil || len(p.syncs) != 1 {
		t.Fatalf("canary in place: repaired %v, %v, syncs %v", repaired, err, p.syncs)
	}

	p.intact = false // flushed
	repaired, err := s.checkCanary(ctx)
	if !repaired || err != nil || len(p.syncs) != 2 || !p.syncs[1] || s.repairs != 1 || s.gen != 3 {
		t.Fatalf("canary gone: repaired %v, %v, syncs (forced?) %v, repairs %d, generation %d; want one forced sync",
			repaired, err, p.syncs, s.repairs, s.gen)
	}
	if repaired, _ := s.checkCanary(ctx); repaired {
		t.Error("repaired again with the canary back")
	}

	p.intact, p.failCheck = false, errors.New("iptables-save: lock held")
	if repaired, err := s.checkCanary(ctx); repaired || err == nil || len(p.syncs) != 2 {
		t.Errorf("failing check: repaired %v, %v, syncs %v; want the error and no sync", repaired, err, p.syncs)
	}
	p.failCheck = nil

	if err := s.resync(ctx); err != nil || len(p.syncs) != 3 || p.syncs[2] {
		t.Errorf("resync: %v, syncs (forced?) %v; want one more, not forced", err, p.syncs)
	}

	s.mu.Lock()
	s.last = nil // what POST /v1/cleanup and the shutdown do
	s.mu.Unlock()
	p.intact = false
	if repaired, _ := s.checkCanary(ctx); repaired || len(p.syncs) != 3 {
		t.Errorf("after cleanup: repaired %v, syncs %v", repaired, p.syncs)
	}
	if err := s.resync(ctx); err != nil || len(p.syncs) != 3 {
		t.Errorf("resync after cleanup: %v, syncs %v", err, p.syncs)
	}
}

// TestMaintainLoop: the loop repairs a flush within a few canary periods and
// stops when its context ends.
func TestMaintainLoop(t *testing.T) {
	p := &canaryProxier{}
	s := &server{p: p, node: "node1"}
	s.mu.Lock()
	_ = s.syncLocked(context.Background(), &state.NodeState{Node: "node1", Generation: 1})
	p.intact = false
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.maintain(ctx, 5*time.Millisecond, time.Hour) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		n := s.repairs
		s.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no repair within 10 s of 5 ms canary periods")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("maintain did not stop with its context")
	}
}
