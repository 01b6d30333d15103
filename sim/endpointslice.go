package sim

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The values of endpointslice.kubernetes.io/managed-by the two controllers
// put on the slices they own; a slice with another value (or none) was
// written by a user and no controller touches it.
const (
	ManagedBySliceController = "endpointslice-controller.k8s.io"
	ManagedByMirroring       = "endpointslicemirroring-controller.k8s.io"
)

// MaxEndpointsPerSlice is kube-controller-manager's default
// --max-endpoints-per-slice; mirrored slices hold up to
// maxMirroredEndpoints (--mirroring-max-endpoints-per-subset).
const (
	MaxEndpointsPerSlice = 100
	maxMirroredEndpoints = 1000
)

// reconcileEndpointSlices runs the EndpointSlice controller (slices of
// Services with a selector, from their pods), the mirroring controller
// (slices of selectorless Services, from their Endpoints) and the garbage
// collector for slices whose owner is gone. It writes only what differs,
// so a state that is already consistent stays equal.
func (t *txn) reconcileEndpointSlices() {
	owned := map[string][]*discoveryv1.EndpointSlice{} // by "managed-by/ns/owner-uid"
	for _, k := range sortedKeys(t.s.EndpointSlices) {
		es := t.s.EndpointSlices[k]
		mb := es.Labels[discoveryv1.LabelManagedBy]
		if mb != ManagedBySliceController && mb != ManagedByMirroring {
			continue // a user's slice
		}
		ref := metav1.GetControllerOf(es)
		if ref == nil {
			continue
		}
		ok := false
		switch mb {
		case ManagedBySliceController:
			svc := t.s.Services[key(es.Namespace, ref.Name)]
			ok = ref.Kind == "Service" && svc != nil && svc.UID == ref.UID
		case ManagedByMirroring:
			ep := t.s.Endpoints[key(es.Namespace, ref.Name)]
			ok = ref.Kind == "Endpoints" && ep != nil && ep.UID == ref.UID
		}
		if !ok {
			delete(t.s.EndpointSlices, k) // the garbage collector: owner deleted
			continue
		}
		o := mb + "/" + es.Namespace + "/" + string(ref.UID)
		owned[o] = append(owned[o], es)
	}
	for _, k := range sortedKeys(t.s.Services) {
		svc := t.s.Services[k]
		if svc.Spec.Selector == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
			// Services without a selector get slices from the mirroring
			// controller or from their users; ExternalName ones none.
			continue
		}
		t.reconcileServiceSlices(svc, owned[ManagedBySliceController+"/"+svc.Namespace+"/"+string(svc.UID)])
	}
	for _, k := range sortedKeys(t.s.Endpoints) {
		ep := t.s.Endpoints[k]
		t.mirrorEndpoints(ep, owned[ManagedByMirroring+"/"+ep.Namespace+"/"+string(ep.UID)])
	}
}

// sliceGroup is the set of endpoints that share one port list: the
// controller never mixes two port lists in one slice.
type sliceGroup struct {
	ports []discoveryv1.EndpointPort
	eps   []discoveryv1.Endpoint
}

// portsKey identifies a port list regardless of order.
func portsKey(ports []discoveryv1.EndpointPort) string {
	parts := make([]string, 0, len(ports))
	for _, p := range ports {
		s := deref(p.Name) + "/" + string(derefProto(p.Protocol)) + "/" + itoa32(p.Port) + "/" + deref(p.AppProtocol)
		parts = append(parts, s)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// endpointKey identifies an endpoint across syncs: its address and what it
// points at. Conditions and other fields may change under the same key.
func endpointKey(e *discoveryv1.Endpoint) string {
	k := strings.Join(e.Addresses, ",")
	if r := e.TargetRef; r != nil {
		k += "|" + r.Kind + "/" + r.Namespace + "/" + r.Name
	}
	return k
}

// desiredServiceSlices groups the endpoints of svc's pods by port list,
// as the EndpointSlice controller computes them.
func (t *txn) desiredServiceSlices(svc *corev1.Service) map[string]*sliceGroup {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	groups := map[string]*sliceGroup{}
	for _, pk := range sortedKeys(t.s.Pods) {
		p := t.s.Pods[pk]
		if p.Namespace != svc.Namespace || !sel.Matches(labels.Set(p.Labels)) || !podInSlices(p) {
			continue
		}
		nodeLabels, known := t.s.NodeLabels[p.Spec.NodeName]
		if !known && !svc.Spec.PublishNotReadyAddresses {
			continue // the controller skips pods of unknown nodes
		}
		ports := []discoveryv1.EndpointPort{}
		if !(len(svc.Spec.Ports) == 0 && svc.Spec.ClusterIP == corev1.ClusterIPNone) {
			for i := range svc.Spec.Ports {
				sp := &svc.Spec.Ports[i]
				n, ok := resolvePort(p, sp)
				if !ok {
					continue
				}
				name, proto := sp.Name, sp.Protocol
				ports = append(ports, discoveryv1.EndpointPort{Name: &name, Port: &n, Protocol: &proto, AppProtocol: sp.AppProtocol})
			}
		}
		ep := podEndpoint(p, nodeLabels, svc)
		if len(ep.Addresses) == 0 {
			continue
		}
		k := portsKey(ports)
		g := groups[k]
		if g == nil {
			g = &sliceGroup{ports: ports}
			groups[k] = g
		}
		g.eps = append(g.eps, ep)
	}
	return groups
}

// podInSlices tells whether a pod appears in EndpointSlices: it has an
// address and has not finished. Terminating pods stay (terminating: true).
func podInSlices(p *corev1.Pod) bool {
	if p.Status.PodIP == "" && len(p.Status.PodIPs) == 0 {
		return false
	}
	return p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded
}

// podEndpoint is the slice endpoint of one pod (IPv4 addresses only).
func podEndpoint(p *corev1.Pod, nodeLabels map[string]string, svc *corev1.Service) discoveryv1.Endpoint {
	serving := podReady(p)
	terminating := p.DeletionTimestamp != nil
	ready := svc.Spec.PublishNotReadyAddresses || (serving && !terminating)
	ep := discoveryv1.Endpoint{
		Addresses:  []string{},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
	}
	ips := p.Status.PodIPs
	if len(ips) == 0 {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	for _, a := range ips {
		if ip, err := netip.ParseAddr(a.IP); err == nil && ip.Is4() {
			ep.Addresses = append(ep.Addresses, ip.String())
		}
	}
	if p.Spec.NodeName != "" {
		n := p.Spec.NodeName
		ep.NodeName = &n
	}
	if z := nodeLabels[corev1.LabelTopologyZone]; z != "" {
		ep.Zone = &z
	}
	if p.Spec.Hostname != "" && p.Spec.Subdomain == svc.Name {
		h := p.Spec.Hostname
		ep.Hostname = &h
	}
	return ep
}

// sliceLabels are the labels of a controller's slice of svc: the Service's
// own (without the reserved keys), the headless marker where it applies,
// the service name and the manager.
func sliceLabels(svc *corev1.Service) map[string]string {
	l := map[string]string{}
	for k, v := range svc.Labels {
		if k != discoveryv1.LabelServiceName && k != discoveryv1.LabelManagedBy && k != corev1.IsHeadlessService {
			l[k] = v
		}
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Spec.ClusterIP == "" {
		l[corev1.IsHeadlessService] = ""
	}
	l[discoveryv1.LabelServiceName] = svc.Name
	l[discoveryv1.LabelManagedBy] = ManagedBySliceController
	return l
}

// reconcileServiceSlices brings the controller's slices of svc to the
// desired endpoints the way the EndpointSlice controller does: endpoints
// stay in the slice they are in (updated in place), removed ones leave
// their slice (an emptied slice is deleted), new ones fill slices being
// updated anyway, then the fullest unchanged slice they fit in, then new
// slices of at most MaxEndpointsPerSlice. A Service with no endpoints
// keeps one empty placeholder slice.
func (t *txn) reconcileServiceSlices(svc *corev1.Service, existing []*discoveryv1.EndpointSlice) {
	desired := t.desiredServiceSlices(svc)
	wantLabels := sliceLabels(svc)
	byPorts := map[string][]*discoveryv1.EndpointSlice{}
	for _, es := range existing {
		k := portsKey(es.Ports)
		byPorts[k] = append(byPorts[k], es)
	}
	var keep []*discoveryv1.EndpointSlice
	for _, k := range sortedKeys(desired) {
		keep = append(keep, t.fillSlices(svc, desired[k], byPorts[k], wantLabels)...)
	}
	if len(keep) == 0 {
		// The placeholder: reuse an existing empty slice with no ports.
		for _, es := range existing {
			if len(es.Endpoints) == 0 && len(es.Ports) == 0 {
				t.putControllerSlice(es, es.Ports, es.Endpoints, wantLabels)
				keep = append(keep, es)
				break
			}
		}
		if len(keep) == 0 {
			keep = append(keep, t.newControllerSlice(svc, []discoveryv1.EndpointPort{}, nil, wantLabels))
		}
	}
	kept := map[string]bool{}
	for _, es := range keep {
		kept[es.Name] = true
	}
	for _, es := range existing {
		if !kept[es.Name] {
			delete(t.s.EndpointSlices, key(es.Namespace, es.Name))
		}
	}
}

// fillSlices places one group's endpoints into its existing slices and new
// ones, and returns the slices that remain.
func (t *txn) fillSlices(svc *corev1.Service, g *sliceGroup, slices []*discoveryv1.EndpointSlice, wantLabels map[string]string) []*discoveryv1.EndpointSlice {
	want := map[string]discoveryv1.Endpoint{}
	for _, e := range g.eps {
		want[endpointKey(&e)] = e
	}
	type work struct {
		es      *discoveryv1.EndpointSlice
		eps     []discoveryv1.Endpoint
		changed bool
	}
	var ws []*work
	for _, es := range slices {
		w := &work{es: es}
		for i := range es.Endpoints {
			k := endpointKey(&es.Endpoints[i])
			e, ok := want[k]
			if !ok {
				w.changed = true
				continue
			}
			delete(want, k)
			if !apiequality.Semantic.DeepEqual(e, es.Endpoints[i]) {
				w.changed = true
			}
			w.eps = append(w.eps, e)
		}
		if len(w.eps) > 0 {
			ws = append(ws, w)
		}
	}
	// What is left is new, in address order.
	var left []discoveryv1.Endpoint
	for _, e := range g.eps {
		if _, ok := want[endpointKey(&e)]; ok {
			left = append(left, e)
		}
	}
	for _, w := range ws {
		for w.changed && len(left) > 0 && len(w.eps) < MaxEndpointsPerSlice {
			w.eps, left = append(w.eps, left[0]), left[1:]
		}
	}
	var out []*discoveryv1.EndpointSlice
	for len(left) > 0 {
		var fill *work
		if len(left) < MaxEndpointsPerSlice {
			best := MaxEndpointsPerSlice
			for _, w := range ws {
				if d := MaxEndpointsPerSlice - len(w.eps) - len(left); !w.changed && d >= 0 && d < best {
					best, fill = d, w
				}
			}
		}
		if fill == nil {
			n := min(len(left), MaxEndpointsPerSlice)
			out = append(out, t.newControllerSlice(svc, g.ports, left[:n], wantLabels))
			left = left[n:]
			continue
		}
		fill.changed = true
		fill.eps, left = append(fill.eps, left...), nil
	}
	for _, w := range ws {
		if w.changed || !apiequality.Semantic.DeepEqual(w.es.Labels, wantLabels) {
			t.putControllerSlice(w.es, g.ports, w.eps, wantLabels)
		}
		out = append(out, w.es)
	}
	return out
}

// newControllerSlice creates a slice of svc named like the API server's
// generateName does ("<service>-<5 random characters>").
func (t *txn) newControllerSlice(svc *corev1.Service, ports []discoveryv1.EndpointPort, eps []discoveryv1.Endpoint, lbls map[string]string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       svc.Namespace,
			GenerateName:    slicePrefix(svc.Name),
			Labels:          copyLabels(lbls),
			Annotations:     map[string]string{corev1.EndpointsLastChangeTriggerTime: triggerTime(t.now)},
			OwnerReferences: []metav1.OwnerReference{controllerRef(svc.UID, "Service", svc.Name)},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
		Endpoints:   append([]discoveryv1.Endpoint{}, eps...),
	}
	t.createSlice(es)
	return es
}

// putControllerSlice rewrites a slice the controller owns.
func (t *txn) putControllerSlice(es *discoveryv1.EndpointSlice, ports []discoveryv1.EndpointPort, eps []discoveryv1.Endpoint, lbls map[string]string) {
	if eps == nil {
		eps = []discoveryv1.Endpoint{}
	}
	if ports == nil && es.Ports != nil {
		ports = es.Ports
	}
	content := !apiequality.Semantic.DeepEqual(es.Endpoints, eps) || !apiequality.Semantic.DeepEqual(es.Ports, ports)
	if !content && apiequality.Semantic.DeepEqual(es.Labels, lbls) {
		return
	}
	es.Labels = copyLabels(lbls)
	es.Ports, es.Endpoints = ports, eps
	if content {
		if es.Annotations == nil {
			es.Annotations = map[string]string{}
		}
		es.Annotations[corev1.EndpointsLastChangeTriggerTime] = triggerTime(t.now)
		es.Generation++
	}
	es.ResourceVersion = t.s.nextRV()
}

// createSlice names and stores a new slice: generateName gets five
// characters of the name alphabet, drawn from a random sequence of their
// own so that slices do not shift the model's other random choices.
func (t *txn) createSlice(es *discoveryv1.EndpointSlice) {
	kinds["EndpointSlice"].setTypeMeta(es)
	base := es.GenerateName
	if len(base) > validation.DNS1123SubdomainMaxLength-5 {
		base = base[:validation.DNS1123SubdomainMaxLength-5]
	}
	for {
		b := make([]byte, 5)
		for i := range b {
			b[i] = nameAlphabet[t.s.sliceRand()%uint64(len(nameAlphabet))]
		}
		es.Name = base + string(b)
		if t.s.EndpointSlices[key(es.Namespace, es.Name)] == nil {
			break
		}
	}
	t.initMeta(&es.ObjectMeta, "EndpointSlice")
	es.Generation = 1
	t.s.EndpointSlices[key(es.Namespace, es.Name)] = es
}

// slicePrefix is the controllers' generateName: "<name>-", or the bare
// name when the dash would make it too long.
func slicePrefix(name string) string {
	if len(name)+1 > validation.DNS1123SubdomainMaxLength {
		return name
	}
	return name + "-"
}

func controllerRef(uid types.UID, kind, name string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: "v1", Kind: kind, Name: name, UID: uid, Controller: &yes, BlockOwnerDeletion: &yes}
}

func triggerTime(now time.Time) string { return now.UTC().Format(time.RFC3339Nano) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func derefProto(p *corev1.Protocol) corev1.Protocol {
	if p == nil {
		return ""
	}
	return *p
}

func itoa32(p *int32) string {
	if p == nil {
		return ""
	}
	return strconv.Itoa(int(*p))
}
