package harness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/embedded"
)

// Shared is one cluster that scenarios take turns on, each in its own
// namespace. It starts with the first scenario that needs it.
type Shared struct {
	dp   Datapath
	opts Options
	log  switchLog

	mu  sync.Mutex
	p   plane.Plane
	err error
}

// acquire starts the cluster on first use and sends its log to t.
func (s *Shared) acquire(ctx context.Context, t *testing.T) (plane.Plane, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.set(t)
	if s.p != nil || s.err != nil {
		return s.p, s.err
	}
	nodes := s.opts.Nodes
	if nodes == 0 {
		nodes = 2
	}
	cfg := embedded.DefaultConfig(s.dp.Mode, nodes)
	cfg.Scheduler = s.opts.Scheduler
	cfg.Log = &s.log
	cp, err := embedded.Start(ctx, cfg)
	if err != nil {
		s.err = err
		return nil, err
	}
	s.p = cp
	return cp, nil
}

// release deletes a scenario's namespace and waits until its pods are gone
// and every node has programmed that, so the next scenario finds the
// cluster as the previous one found it.
func (s *Shared) release(t *testing.T, ns string) {
	defer s.log.set(nil)
	s.mu.Lock()
	p := s.p
	s.mu.Unlock()
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := deleteNamespace(ctx, p, ns); err != nil {
		t.Errorf("shared cluster: %v", err)
	}
}

// deleteNamespace deletes ns, waits for the barrier and checks that no pod
// of ns is left.
func deleteNamespace(ctx context.Context, p plane.Plane, ns string) error {
	if err := p.Delete(ctx, plane.Ref{Kind: "namespace", Name: ns}); err != nil {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	return namespaceEmptied(ctx, p, ns)
}

// namespaceEmptied waits for the barrier after ns was deleted and checks
// that no pod or EndpointSlice of ns is left.
func namespaceEmptied(ctx context.Context, p plane.Plane, ns string) error {
	if err := p.WaitProgrammed(ctx); err != nil {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	pods, err := p.Pods(ctx, ns)
	if err != nil {
		return err
	}
	if len(pods) > 0 {
		return fmt.Errorf("namespace %s deleted, but %d of its pods still run", ns, len(pods))
	}
	// Its EndpointSlices go with it (the namespace controller, on the
	// kubernetes plane, removes them after the barrier's pods).
	for {
		slices, err := p.List(ctx, "EndpointSlice", ns, "")
		if err != nil {
			return fmt.Errorf("delete namespace %s: list its EndpointSlices: %w", ns, err)
		}
		if len(slices) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s deleted, but %d of its EndpointSlices are left: %w", ns, len(slices), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close tears the cluster down, if it was started.
func (s *Shared) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return nil
	}
	err := s.p.Close()
	s.p = nil
	return err
}

// pool holds the clusters of SVCSIM_SHARE=1 runs.
var pool = &sharedPool{m: map[string]*Shared{}}

type sharedPool struct {
	mu sync.Mutex
	m  map[string]*Shared
}

func (sp *sharedPool) get(dp Datapath, opts Options) *Shared {
	nodes := opts.Nodes
	if nodes == 0 {
		nodes = 2
	}
	key := fmt.Sprintf("%s/%d/%s", dp.Mode, nodes, opts.Scheduler)
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.m[key] == nil {
		sp.m[key] = &Shared{dp: dp, opts: Options{Nodes: nodes, Scheduler: opts.Scheduler}}
	}
	return sp.m[key]
}

// CloseShared tears down the clusters SVCSIM_SHARE=1 runs shared; the
// scenarios' TestMain calls it after the last test.
func CloseShared() error {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	var errs []error
	if err := kubePool.Close(); err != nil {
		errs = append(errs, fmt.Errorf("kubernetes plane: %w", err))
	}
	for k, s := range pool.m {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("shared cluster %s: %w", k, err))
		}
		delete(pool.m, k)
	}
	return errors.Join(errs...)
}

// switchLog sends a shared cluster's log to the test using it, and drops
// it between tests (a finished test's Log panics).
type switchLog struct {
	mu sync.Mutex
	t  *testing.T
}

func (l *switchLog) set(t *testing.T) {
	l.mu.Lock()
	l.t = t
	l.mu.Unlock()
}

func (l *switchLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.t != nil {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
