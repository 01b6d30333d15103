package debounce

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A burst of wake-ups makes one sync; a wake-up during a sync makes one
// more after it; Run returns and closes Done when its context ends.
func TestLoop(t *testing.T) {
	var syncs atomic.Int32
	inSync := make(chan struct{})
	release := make(chan struct{})
	l := New(20*time.Millisecond, func(context.Context) {
		if syncs.Add(1) == 2 {
			inSync <- struct{}{}
			<-release
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	go l.Run(ctx)
	waitFor := func(n int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for syncs.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d syncs, want %d", syncs.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for range 50 {
		l.Wake()
	}
	waitFor(1)
	time.Sleep(100 * time.Millisecond)
	if n := syncs.Load(); n != 1 {
		t.Fatalf("a burst of 50 wake-ups made %d syncs, want 1", n)
	}
	l.Wake()
	<-inSync // the second sync is running
	l.Wake()
	l.Wake()
	close(release)
	waitFor(3)
	time.Sleep(100 * time.Millisecond)
	if n := syncs.Load(); n != 3 {
		t.Fatalf("wake-ups during a sync made %d syncs in all, want 3", n)
	}
	cancel()
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// WakeAfter wakes the loop later, not at once.
func TestWakeAfter(t *testing.T) {
	got := make(chan time.Time, 1)
	l := New(time.Millisecond, func(context.Context) { got <- time.Now() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx)
	start := time.Now()
	l.WakeAfter(50 * time.Millisecond)
	select {
	case at := <-got:
		if at.Sub(start) < 50*time.Millisecond {
			t.Errorf("synced %v after WakeAfter(50ms)", at.Sub(start))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no sync after WakeAfter")
	}
}
