package clusterdns

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Watcher is a Source fed by informers over a client, as CoreDNS's
// kubernetes plugin is: Services, EndpointSlices and Pods, listed and
// watched; every query is answered from the informers' caches as they are
// at that moment.
type Watcher struct {
	domain  string
	factory informers.SharedInformerFactory
	cancel  context.CancelFunc

	mu     sync.Mutex
	dirty  bool
	cached *Records
}

// Watch starts informers on client and returns once their caches hold the
// cluster's current objects. Stop ends them.
func Watch(ctx context.Context, client kubernetes.Interface, domain string) (*Watcher, error) {
	w := &Watcher{domain: domain, dirty: true}
	w.factory = informers.NewSharedInformerFactory(client, 0)
	mark := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.invalidate() },
		UpdateFunc: func(any, any) { w.invalidate() },
		DeleteFunc: func(any) { w.invalidate() },
	}
	for _, inf := range []cache.SharedIndexInformer{
		w.factory.Core().V1().Services().Informer(),
		w.factory.Discovery().V1().EndpointSlices().Informer(),
		w.factory.Core().V1().Pods().Informer(),
	} {
		if _, err := inf.AddEventHandler(mark); err != nil {
			return nil, fmt.Errorf("cluster DNS informer: %w", err)
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.factory.Start(runCtx.Done())
	for typ, ok := range w.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			w.Stop()
			return nil, fmt.Errorf("cluster DNS: %v informer did not sync: %w", typ, context.Cause(ctx))
		}
	}
	return w, nil
}

func (w *Watcher) invalidate() {
	w.mu.Lock()
	w.dirty = true
	w.mu.Unlock()
}

// Records returns the records as of now. They are rebuilt only after an
// informer saw a change.
func (w *Watcher) Records() *Records {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.dirty && w.cached != nil {
		return w.cached
	}
	// Clear first: a change that lands while we list marks dirty again.
	w.dirty = false
	var objs Objects
	objs.Services, _ = w.factory.Core().V1().Services().Lister().List(labels.Everything())
	objs.EndpointSlices, _ = w.factory.Discovery().V1().EndpointSlices().Lister().List(labels.Everything())
	objs.Pods, _ = w.factory.Core().V1().Pods().Lister().List(labels.Everything())
	w.cached = Build(w.domain, objs)
	return w.cached
}

// Stop ends the informers and waits for their goroutines.
func (w *Watcher) Stop() {
	w.cancel()
	w.factory.Shutdown()
}
