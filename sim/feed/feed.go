// Package feed computes a node proxy's desired state from a real API server
// the way kube-proxy does: client-go informers over Services and
// EndpointSlices (with kube-proxy's label selectors: no
// service.kubernetes.io/service-proxy-name on either, no
// service.kubernetes.io/headless on slices) and over the proxy's own Node,
// and on every change the shared object-to-state function
// (sim/desired.NodeState) over the listers' contents. Each new state goes to
// Push: for svcsim's node proxy, modes/agent's PUT /v1/state, so that
// svcsim's datapaths run on the Services and EndpointSlices of the genuine
// control plane. Changes are coalesced: while a push runs, later changes
// wait for one more push with everything they made.
package feed

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"time"

	"github.com/svcsim/svcsim/sim/desired"
	"github.com/svcsim/svcsim/sim/state"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Config configures Run.
type Config struct {
	// Client reaches the API server.
	Client kubernetes.Interface
	// Node is the proxy's node.
	Node string
	// Options carry kube-proxy's --cluster-cidr and the Service range;
	// the feed numbers the generations itself.
	Options desired.Options
	// Push programs one state (the node proxy's PUT /v1/state). A failed
	// push is retried after RetryInterval with the newest state.
	Push func(ctx context.Context, st *state.NodeState) error
	// RetryInterval is the wait after a failed push (1 s when zero).
	RetryInterval time.Duration
}

// Run feeds cfg.Push until ctx ends; it returns ctx's error, or an error
// when the informers cannot sync.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Client == nil || cfg.Push == nil || cfg.Node == "" {
		return errors.New("feed: Client, Push and Node are required")
	}
	retry := cfg.RetryInterval
	if retry <= 0 {
		retry = time.Second
	}
	noProxyName, _ := labels.Parse("!" + desired.ServiceProxyNameLabel)
	noHeadless, _ := labels.Parse("!" + desired.ServiceProxyNameLabel + ",!" + corev1.IsHeadlessService)
	objs := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = noProxyName.String() }))
	sliceObjs := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = noHeadless.String() }))
	nodeObjs := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", cfg.Node).String()
		}))
	svcInf := objs.Core().V1().Services()
	sliceInf := sliceObjs.Discovery().V1().EndpointSlices()
	nodeInf := nodeObjs.Core().V1().Nodes()

	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{svcInf.Informer(), sliceInf.Informer(), nodeInf.Informer()} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("feed for node %s: %w", cfg.Node, err)
		}
	}
	for _, f := range []informers.SharedInformerFactory{objs, sliceObjs, nodeObjs} {
		f.Start(ctx.Done())
		defer f.Shutdown()
	}
	for _, f := range []informers.SharedInformerFactory{objs, sliceObjs, nodeObjs} {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("feed for node %s: %v did not sync", cfg.Node, typ)
			}
		}
	}

	var last *state.NodeState
	var gen uint64
	poke() // the first state, once everything is listed
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
		svcs, err := svcInf.Lister().List(labels.Everything())
		if err != nil {
			return fmt.Errorf("feed for node %s: list services: %w", cfg.Node, err)
		}
		slices, err := sliceInf.Lister().List(labels.Everything())
		if err != nil {
			return fmt.Errorf("feed for node %s: list endpointslices: %w", cfg.Node, err)
		}
		var node *corev1.Node
		if n, err := nodeInf.Lister().Get(cfg.Node); err == nil {
			node = n
		} else {
			node = &corev1.Node{}
			node.Name = cfg.Node
		}
		st := State(node, svcs, slices, cfg.Options)
		if last != nil && sameState(last, st) {
			continue
		}
		gen++
		st.Generation = gen
		if err := cfg.Push(ctx, st); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			gen-- // not programmed: the next push reuses the number
			go func() {
				select {
				case <-ctx.Done():
				case <-time.After(retry):
					poke()
				}
			}()
			continue
		}
		last = st
	}
}

// State is the node's desired state from listed objects: desired.NodeState
// over them in namespace/name order (listers return them unordered).
func State(node *corev1.Node, svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice, opt desired.Options) *state.NodeState {
	svcs = append([]*corev1.Service(nil), svcs...)
	sort.Slice(svcs, func(i, j int) bool {
		return svcs[i].Namespace+"/"+svcs[i].Name < svcs[j].Namespace+"/"+svcs[j].Name
	})
	slices = append([]*discoveryv1.EndpointSlice(nil), slices...)
	sort.Slice(slices, func(i, j int) bool {
		return slices[i].Namespace+"/"+slices[i].Name < slices[j].Namespace+"/"+slices[j].Name
	})
	return desired.NodeState(node, svcs, slices, opt)
}

// sameState compares two states but for their generations.
func sameState(a, b *state.NodeState) bool {
	x, y := *a, *b
	x.Generation, y.Generation = 0, 0
	return reflect.DeepEqual(x, y)
}
