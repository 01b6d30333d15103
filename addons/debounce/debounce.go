// Package debounce runs a controller's sync once a burst of changes has
// settled: informer events wake it, it waits a short while for more, then
// syncs once for all of them. The ingress and Gateway controllers share it,
// so both coalesce events and stop the same way.
package debounce

import (
	"context"
	"time"

	"k8s.io/client-go/tools/cache"
)

// Loop calls a sync function after each burst of Wake calls.
type Loop struct {
	settle time.Duration
	sync   func(context.Context)
	kick   chan struct{}
	done   chan struct{}
}

// New returns a loop that waits settle after a wake-up, for more, before
// it calls sync. Run starts it.
func New(settle time.Duration, sync func(context.Context)) *Loop {
	return &Loop{settle: settle, sync: sync, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// Wake asks for a sync; wake-ups before the sync starts make one sync,
// and a wake-up during a sync makes one more after it. It never blocks.
func (l *Loop) Wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Handler wakes the loop on every informer event.
func (l *Loop) Handler() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { l.Wake() },
		UpdateFunc: func(any, any) { l.Wake() },
		DeleteFunc: func(any) { l.Wake() },
	}
}

// WakeAfter asks for a sync after d (a retry after a failed sync).
func (l *Loop) WakeAfter(d time.Duration) { time.AfterFunc(d, l.Wake) }

// Run syncs after each settled burst until ctx ends, then closes Done.
// sync gets ctx; Run never calls it concurrently with itself.
func (l *Loop) Run(ctx context.Context) {
	defer close(l.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		}
		t := time.NewTimer(l.settle)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		// What woke during the wait is in this sync.
		select {
		case <-l.kick:
		default:
		}
		l.sync(ctx)
	}
}

// Done is closed when Run has returned.
func (l *Loop) Done() <-chan struct{} { return l.done }
