package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/agent"
	"github.com/svcsim/svcsim/sim/feed"
	"github.com/svcsim/svcsim/sim/state"
)

// events records what the fakes were asked, in order.
type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) add(format string, a ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, fmt.Sprintf(format, a...))
}

func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

type fakeKind struct {
	name     string
	ev       *events
	failStop bool
}

func (k *fakeKind) start(_ context.Context, node string) (nodeProxy, error) {
	k.ev.add("start %s %s", k.name, node)
	return &fakeProxy{kind: k, node: node}, nil
}

func (k *fakeKind) cleanup(_ context.Context, node string, stopped bool) error {
	k.ev.add("cleanup %s %s stopped=%v", k.name, node, stopped)
	return nil
}

type fakeProxy struct {
	kind *fakeKind
	node string
}

func (p *fakeProxy) kill() error { p.kind.ev.add("kill %s %s", p.kind.name, p.node); return nil }
func (p *fakeProxy) stop() error {
	p.kind.ev.add("stop %s %s", p.kind.name, p.node)
	if p.kind.failStop {
		return errors.New("stuck")
	}
	return nil
}
func (p *fakeProxy) programmed(string) (bool, bool, error) { return false, false, nil }
func (p *fakeProxy) dump(context.Context) (string, error)  { return "", nil }

// TestSwitchProxies: every running proxy stops before any cleanup, the
// old kind cleans up on every node (told which proxies stopped in order
// and which were killed before), and only then does the new kind start on
// every node. A proxy that does not stop stops the switch before anything
// is cleaned up or started.
func TestSwitchProxies(t *testing.T) {
	ev := &events{}
	kp, own := &fakeKind{name: "kube-proxy", ev: ev}, &fakeKind{name: "svcsim", ev: ev}
	nodes := []string{"node1", "node2", "node3"}
	running := map[string]nodeProxy{"node1": &fakeProxy{kind: kp, node: "node1"}, "node3": &fakeProxy{kind: kp, node: "node3"}}
	started, err := switchProxies(context.Background(), nodes, running, kp, own)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"stop kube-proxy node1", "stop kube-proxy node3",
		"cleanup kube-proxy node1 stopped=true", "cleanup kube-proxy node2 stopped=false", "cleanup kube-proxy node3 stopped=true",
		"start svcsim node1", "start svcsim node2", "start svcsim node3",
	}
	if got := ev.list(); !slices.Equal(got, want) {
		t.Errorf("switch kube-proxy -> svcsim:\n got %q\nwant %q", got, want)
	}
	if len(started) != 3 {
		t.Errorf("started %d proxies, want 3", len(started))
	}

	// And back: svcsim's proxies stop (removing their rules), its cleanup
	// is told so, kube-proxy starts.
	ev.got = nil
	if _, err := switchProxies(context.Background(), nodes, started, own, kp); err != nil {
		t.Fatal(err)
	}
	if got := ev.list(); got[0] != "stop svcsim node1" || got[3] != "cleanup svcsim node1 stopped=true" || got[6] != "start kube-proxy node1" {
		t.Errorf("switch svcsim -> kube-proxy: %q", got)
	}

	ev.got = nil
	stuck := &fakeKind{name: "stuck", ev: ev, failStop: true}
	_, err = switchProxies(context.Background(), []string{"node1"}, map[string]nodeProxy{"node1": &fakeProxy{kind: stuck, node: "node1"}}, stuck, own)
	if err == nil || !strings.Contains(err.Error(), "stuck") {
		t.Errorf("a proxy that does not stop: err %v", err)
	}
	if got := ev.list(); !slices.Equal(got, []string{"stop stuck node1"}) {
		t.Errorf("after a failed stop: %q, want only the stop", got)
	}
}

// fakeAgent is a node proxy that programs whatever it is pushed.
type fakeAgent struct {
	ev    *events
	node  string
	mu    sync.Mutex
	state *state.NodeState
}

func (a *fakeAgent) Push(_ context.Context, st *state.NodeState) (agent.SyncReply, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.state = st
	return agent.SyncReply{Node: a.node, Generation: st.Generation}, nil
}
func (a *fakeAgent) Dump(context.Context) (string, error) { return "", nil }
func (a *fakeAgent) Stop(time.Duration) error {
	a.ev.add("agent stop %s", a.node)
	return nil
}
func (a *fakeAgent) Kill() error {
	a.ev.add("agent kill %s", a.node)
	return nil
}

// barrierObjects are the barrier Service and EndpointSlice with port
// name port, and node1.
func barrierObjects(port string) (*corev1.Node, *corev1.Service, *discoveryv1.EndpointSlice) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.11"}}}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: BarrierNamespace, Name: barrierName},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.50", Ports: []corev1.ServicePort{{Name: port, Port: 9, Protocol: corev1.ProtocolTCP}}}}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: BarrierNamespace, Name: barrierName,
		Labels: map[string]string{discoveryv1.LabelServiceName: barrierName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"198.18.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(port), Port: ptr.To[int32](9), Protocol: ptr.To(corev1.ProtocolTCP)}}}
	return node, svc, slice
}

func waitFor(t *testing.T, what string, ok func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		done, err := ok()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOwnProxyFeed: svcsim's node proxy on the kubernetes plane is fed by
// sim/feed from the API server's objects (client-go's fake clientset
// here): the barrier's port shows as programmed once the node proxy has
// been pushed a state holding it, a renamed port once that is pushed;
// stopping ends the feed before the node proxy (no push can race its
// cleanup), and a stopped proxy's cleanup runs no one-shot cleanup while a
// killed one's does.
func TestOwnProxyFeed(t *testing.T) {
	node, svc, slice := barrierObjects("b1")
	cs := fake.NewClientset(node, svc, slice)
	ev := &events{}
	agents := map[string]*fakeAgent{}
	k := &ownKind{mode: "nftables",
		startAgent: func(_ context.Context, node, mode string) (agentProc, error) {
			ev.add("agent start %s %s", node, mode)
			a := &fakeAgent{ev: ev, node: node}
			agents[node] = a
			return a, nil
		},
		runFeed: func(ctx context.Context, node string, push func(context.Context, *state.NodeState) error) error {
			err := feed.Run(ctx, feed.Config{Client: cs, Node: node, Push: push})
			ev.add("feed ended %s", node)
			return err
		},
		leftovers: func(_ context.Context, node, mode string) error {
			ev.add("leftovers %s %s", node, mode)
			return nil
		},
	}
	p, err := k.start(context.Background(), "node1")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "barrier b1 programmed", func() (bool, error) {
		ok, known, err := p.programmed("b1")
		if !known {
			t.Fatal("svcsim's node proxy must know what it programmed")
		}
		return ok, err
	})
	if ok, _, _ := p.programmed("b2"); ok {
		t.Error("b2 programmed before it exists")
	}
	agents["node1"].mu.Lock()
	if st := agents["node1"].state; st.Node != "node1" || !hasBarrier(st, "b1") {
		t.Errorf("pushed state of %q: %+v", st.Node, st.Services)
	}
	agents["node1"].mu.Unlock()

	svc.Spec.Ports[0].Name = "b2"
	slice.Ports[0].Name = ptr.To("b2")
	ctx := context.Background()
	if _, err := cs.CoreV1().Services(BarrierNamespace).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(BarrierNamespace).Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "barrier b2 programmed", func() (bool, error) {
		ok, _, err := p.programmed("b2")
		return ok, err
	})

	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if err := k.cleanup(ctx, "node1", true); err != nil {
		t.Fatal(err)
	}
	want := []string{"agent start node1 nftables", "feed ended node1", "agent stop node1"}
	if got := ev.list(); !slices.Equal(got, want) {
		t.Errorf("stop:\n got %q\nwant %q", got, want)
	}

	ev.got = nil
	q, err := k.start(ctx, "node1")
	if err != nil {
		t.Fatal(err)
	}
	if err := q.kill(); err != nil {
		t.Fatal(err)
	}
	if err := k.cleanup(ctx, "node1", false); err != nil {
		t.Fatal(err)
	}
	want = []string{"agent start node1 nftables", "feed ended node1", "agent kill node1", "leftovers node1 nftables"}
	if got := ev.list(); !slices.Equal(got, want) {
		t.Errorf("kill:\n got %q\nwant %q", got, want)
	}
}

// TestOwnProxyFeedFailure: a feed that ends on its own (informers that
// cannot sync) makes the barrier fail rather than wait for ever.
func TestOwnProxyFeedFailure(t *testing.T) {
	k := &ownKind{mode: "nftables",
		startAgent: func(context.Context, string, string) (agentProc, error) { return &fakeAgent{ev: &events{}}, nil },
		runFeed: func(context.Context, string, func(context.Context, *state.NodeState) error) error {
			return errors.New("services did not sync")
		},
	}
	p, err := k.start(context.Background(), "node1")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the feed's failure seen", func() (bool, error) {
		_, _, err := p.programmed("b1")
		return err != nil && strings.Contains(err.Error(), "did not sync"), nil
	})
	if err := p.stop(); err == nil {
		t.Error("stop hides the feed's failure")
	}
}

// TestDatapathNames: svcsim's in-process datapaths are named with OnPlane
// on this plane, keep their facts and follow kube-proxy's in the report;
// aliases, kube-proxy's own and unknown names are not svcsim's.
func TestDatapathNames(t *testing.T) {
	d, ok := Lookup("nftables@kubernetes")
	base, _ := modes.Lookup("nftables")
	if !ok || d.Name != "nftables@kubernetes" || d.Start.Factory == nil || d.Kernel != base.Kernel || d.Report.Order != base.Report.Order+OwnReportOrder {
		t.Errorf("nftables@kubernetes: %+v, %v", d.Name, ok)
	}
	if m, ok := OwnMode("iptables/nft@kubernetes"); !ok || m != "iptables/nft" {
		t.Errorf("OwnMode(iptables/nft@kubernetes) = %q, %v", m, ok)
	}
	for _, n := range []string{"iptables@kubernetes", "kube-proxy/nftables@kubernetes", "nftables", "bogus@kubernetes"} {
		if _, ok := OwnMode(n); ok {
			t.Errorf("OwnMode(%q) accepted", n)
		}
	}
	if d, ok := Lookup("kube-proxy/nftables"); !ok || d.Start.Program == "" {
		t.Errorf("kube-proxy/nftables: %v", ok)
	}
	if _, err := Get("nftables"); err == nil || !strings.Contains(err.Error(), "nftables@kubernetes") {
		t.Errorf("Get(nftables): %v, want the names this plane runs", err)
	}
	var names []string
	for _, d := range Datapaths() {
		names = append(names, d.Name)
	}
	i, j := slices.Index(names, "kube-proxy/nftables"), slices.Index(names, "nftables@kubernetes")
	if i < 0 || j < i {
		t.Errorf("Datapaths: %q", names)
	}
}
