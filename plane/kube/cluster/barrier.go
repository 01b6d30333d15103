package cluster

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/sim"
)

// BarrierNamespace holds the barrier Service and its EndpointSlice.
const BarrierNamespace = "svcsim-system"

const barrierName = "barrier"

// WaitProgrammed implements plane.Plane: first the API objects settle
// (deleted namespaces gone, Deployments rolled out, pods bound to a node
// running, deleted pods gone unless a preStop sleep keeps them serving,
// every selector Service's EndpointSlices naming exactly its pods with the
// conditions the EndpointSlice controller gives them: ready, serving,
// terminating), then the barrier Service and EndpointSlice get a new port
// name and every running kube-proxy's rules must show it, or every svcsim
// node proxy's programmed state (but a lost node's: NodeDown cut it off
// the API server).
func (c *Cluster) WaitProgrammed(ctx context.Context) error {
	if err := poll(ctx, 100*time.Millisecond, "the API objects to settle", func() (bool, string, error) {
		msg, err := c.settled(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		return msg == "", msg, nil
	}); err != nil {
		return err
	}
	c.barrierMu.Lock()
	defer c.barrierMu.Unlock()
	c.barrierGen++
	port := fmt.Sprintf("b%d", c.barrierGen)
	if err := c.writeBarrier(ctx, port); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	c.proxyMu.Lock()
	dp := c.datapath
	var nodes []string
	procs := map[string]nodeProxy{}
	for n, p := range c.proxies {
		if p != nil && !c.lost[n] {
			nodes = append(nodes, n)
			procs[n] = p
		}
	}
	c.proxyMu.Unlock()
	sort.Strings(nodes)
	programmed := barrierProgrammed(dp, port)
	for _, n := range nodes {
		err := poll(ctx, 20*time.Millisecond, "the proxy on "+n+" to program barrier "+port, func() (bool, string, error) {
			// svcsim's node proxy: the last state its feed pushed.
			if ok, known, err := procs[n].programmed(port); known {
				return ok, "not yet", err
			}
			out, _, err := c.rawDump(ctx, n)
			if err != nil {
				return false, err.Error(), nil
			}
			return programmed(out), "not yet", nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// barrierProgrammed reports whether a dump holds the barrier's port name
// with its endpoint: iptables has a jump to the endpoint's chain commented
// "ns/name:port -> ip:port"; nftables a chain per service port that DNATs
// to its endpoints (or jumps to their chains).
func barrierProgrammed(dp modes.Datapath, port string) func(dump string) bool {
	id := BarrierNamespace + "/" + barrierName
	if dp.Kernel == modes.KernelUserspace {
		// The userspace proxier's portal rules carry the service port's
		// name as their comment; its endpoints live in the process, not
		// in the kernel (settled waits for the Endpoints objects).
		marker := id + ":" + port
		return func(dump string) bool {
			return strings.Contains(dump, marker+`"`) || strings.Contains(dump, marker+" ")
		}
	}
	if dp.Kernel != modes.KernelNftables {
		marker := id + ":" + port + " -> "
		return func(dump string) bool { return strings.Contains(dump, marker) }
	}
	marker := id + "/tcp/" + port + " {"
	return func(dump string) bool {
		_, rest, ok := strings.Cut(dump, marker)
		if !ok {
			return false
		}
		body, _, _ := strings.Cut(rest, "}")
		return strings.Contains(body, "dnat") || strings.Contains(body, "endpoint-")
	}
}

// writeBarrier gives the barrier Service and its EndpointSlice port name
// port, creating them on first use. Its endpoint is the control plane's
// address on port 9: nothing is ever sent to the barrier's ClusterIP.
func (c *Cluster) writeBarrier(ctx context.Context, port string) error {
	cs := c.admin
	if _, err := cs.CoreV1().Namespaces().Get(ctx, BarrierNamespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: BarrierNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	svcs := cs.CoreV1().Services(BarrierNamespace)
	svc, err := svcs.Get(ctx, barrierName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		svc = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: barrierName},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: port, Port: 9, Protocol: corev1.ProtocolTCP}}}}
		if svc, err = svcs.Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		svc.Spec.Ports[0].Name = port
		if _, err := svcs.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	c.barrierIPMu.Lock()
	c.barrierIP = svc.Spec.ClusterIP
	c.barrierIPMu.Unlock()
	eps := cs.DiscoveryV1().EndpointSlices(BarrierNamespace)
	slice, err := eps.Get(ctx, barrierName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		slice = &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: barrierName, Labels: map[string]string{
				discoveryv1.LabelServiceName: barrierName, discoveryv1.LabelManagedBy: "svcsim-barrier"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{c.topo.Spec().ControlPlaneIP.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(port), Port: ptr.To[int32](9), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		_, err = eps.Create(ctx, slice, metav1.CreateOptions{})
		return err
	case err != nil:
		return err
	}
	slice.Ports[0].Name = ptr.To(port)
	_, err = eps.Update(ctx, slice, metav1.UpdateOptions{})
	return err
}

// settled returns "" when the API objects are as the controllers and
// kubelets will leave them, else what is still moving.
func (c *Cluster) settled(ctx context.Context) (string, error) {
	// A deleted namespace has settled once the namespace controller has
	// removed what kube-proxy and the kubelets act on: its pods, Services
	// and EndpointSlices (checked below). The Namespace object itself
	// lingers until the controller's next pass, which it schedules
	// estimate/2+1 s later, the estimate being the pods' grace period
	// (pkg/controller/namespace): nothing is programmed for it, so the
	// barrier does not wait for that.
	nss, err := c.admin.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	terminating := map[string]bool{}
	for i := range nss.Items {
		if nss.Items[i].DeletionTimestamp != nil {
			terminating[nss.Items[i].Name] = true
		}
	}
	deps, err := c.admin.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for i := range deps.Items {
		if msg := deploymentMoving(&deps.Items[i]); msg != "" {
			return msg, nil
		}
	}
	pods, err := c.admin.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		switch {
		case terminating[p.Namespace]:
			return fmt.Sprintf("namespace %s terminating: pod %s left", p.Namespace, p.Name), nil
		case p.DeletionTimestamp != nil && sim.TerminationDelay(p) == 0:
			// Its servers exit at SIGTERM: the kubelet's short drain, then
			// gone (the embedded plane removes such a pod at once).
			return fmt.Sprintf("pod %s/%s terminating", p.Namespace, p.Name), nil
		case p.Spec.NodeName == "":
			continue // unschedulable: nothing will change until something else does
		case p.Status.Phase == corev1.PodPending || (p.Status.Phase == corev1.PodRunning && p.Status.PodIP == ""):
			return fmt.Sprintf("pod %s/%s %s", p.Namespace, p.Name, p.Status.Phase), nil
		}
	}
	svcs, err := c.admin.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	c.proxyMu.Lock()
	readsEndpoints := c.datapath.Start.ReadsEndpoints
	c.proxyMu.Unlock()
	slicesList, err := c.admin.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for i := range svcs.Items {
		if s := &svcs.Items[i]; terminating[s.Namespace] {
			return fmt.Sprintf("namespace %s terminating: Service %s left", s.Namespace, s.Name), nil
		}
	}
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for i := range slicesList.Items {
		s := &slicesList.Items[i]
		if terminating[s.Namespace] {
			return fmt.Sprintf("namespace %s terminating: EndpointSlice %s left", s.Namespace, s.Name), nil
		}
		key := s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]
		bySvc[key] = append(bySvc[key], s)
	}
	for i := range svcs.Items {
		s := &svcs.Items[i]
		if len(s.Spec.Selector) == 0 || s.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		want := map[string]conditions{}
		sel := labels.SelectorFromSet(s.Spec.Selector)
		for j := range pods.Items {
			p := &pods.Items[j]
			if p.Namespace != s.Namespace || !sel.Matches(labels.Set(p.Labels)) || p.Status.PodIP == "" ||
				p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			want[p.Status.PodIP] = podConditions(p, s.Spec.PublishNotReadyAddresses)
		}
		got := map[string]conditions{}
		for _, sl := range bySvc[s.Namespace+"/"+s.Name] {
			for _, ep := range sl.Endpoints {
				for _, a := range ep.Addresses {
					got[a] = sliceConditions(ep.Conditions)
				}
			}
		}
		if !maps.Equal(want, got) {
			return fmt.Sprintf("EndpointSlices of %s/%s: %s, want %s", s.Namespace, s.Name, show(got), show(want)), nil
		}
		if readsEndpoints {
			if msg, err := c.endpointsSettled(ctx, s, want); msg != "" || err != nil {
				return msg, err
			}
		}
	}
	return "", nil
}

// endpointsSettled compares s's v1 Endpoints, which the endpoints
// controller writes, with the pods' conditions want: a terminating pod is
// left out (unless publishNotReadyAddresses), the others are ready
// addresses or not-ready ones. A proxy reading Endpoints (the userspace
// proxier) shows its endpoints in no rule, so this is all the barrier
// knows of them.
func (c *Cluster) endpointsSettled(ctx context.Context, s *corev1.Service, want map[string]conditions) (string, error) {
	wantEP := map[string]conditions{}
	for ip, cond := range want {
		if cond.terminating && !s.Spec.PublishNotReadyAddresses {
			continue
		}
		wantEP[ip] = conditions{ready: cond.ready}
	}
	got := map[string]conditions{}
	ep, err := c.quietClient().CoreV1().Endpoints(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return "", err
	}
	if err == nil {
		for _, ss := range ep.Subsets {
			for _, a := range ss.Addresses {
				got[a.IP] = conditions{ready: true}
			}
			for _, a := range ss.NotReadyAddresses {
				got[a.IP] = conditions{}
			}
		}
	}
	if !maps.Equal(wantEP, got) {
		return fmt.Sprintf("Endpoints of %s/%s: %s, want %s", s.Namespace, s.Name, show(got), show(wantEP)), nil
	}
	return "", nil
}

func deploymentMoving(d *appsv1.Deployment) string {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	if st.ObservedGeneration < d.Generation || st.Replicas != want || st.UpdatedReplicas != want {
		return fmt.Sprintf("deployment %s/%s: %d/%d updated", d.Namespace, d.Name, st.UpdatedReplicas, want)
	}
	return ""
}

// conditions are an endpoint's as kube-proxy reads them.
type conditions struct{ ready, serving, terminating bool }

// podConditions are the conditions the EndpointSlice controller gives p's
// endpoint (k8s.io/endpointslice's podToEndpoint): serving is the pod's
// readiness, terminating its deletion, and ready serving and not
// terminating, or always with publishNotReadyAddresses.
func podConditions(p *corev1.Pod, publishNotReady bool) conditions {
	serving, terminating := podReady(p), p.DeletionTimestamp != nil
	return conditions{ready: publishNotReady || (serving && !terminating), serving: serving, terminating: terminating}
}

// sliceConditions reads an endpoint's conditions with the API's defaults
// (ready when unset; serving as ready when unset).
func sliceConditions(c discoveryv1.EndpointConditions) conditions {
	ready := c.Ready == nil || *c.Ready
	return conditions{ready: ready, serving: ptr.Deref(c.Serving, ready), terminating: ptr.Deref(c.Terminating, false)}
}

func show(m map[string]conditions) string {
	var ips []netip.Addr
	for k := range m {
		if ip, err := netip.ParseAddr(k); err == nil {
			ips = append(ips, ip)
		}
	}
	slices.SortFunc(ips, func(a, b netip.Addr) int { return a.Compare(b) })
	var parts []string
	for _, ip := range ips {
		s, c := ip.String(), m[ip.String()]
		switch {
		case c.terminating && c.serving:
			s += "(terminating, serving)"
		case c.terminating:
			s += "(terminating)"
		case !c.ready:
			s += "(not ready)"
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
