package sim

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// leaderElectionAnnotation marks Endpoints used as a leader-election lock;
// the mirroring controller leaves them alone.
const leaderElectionAnnotation = "control-plane.alpha.kubernetes.io/leader"

// mirrorEndpoints is the EndpointSlice mirroring controller for one
// Endpoints object: the Endpoints of a Service without a selector (written
// by a user) are copied into slices, one per port list, ready addresses
// with ready: true and notReadyAddresses with ready: false. Endpoints of
// other Services, of no Service, or labelled
// endpointslice.kubernetes.io/skip-mirror=true get no mirrored slices.
func (t *txn) mirrorEndpoints(ep *corev1.Endpoints, existing []*discoveryv1.EndpointSlice) {
	svc := t.s.Services[key(ep.Namespace, ep.Name)]
	mirror := svc != nil && svc.Spec.Selector == nil &&
		ep.Labels[discoveryv1.LabelSkipMirror] != "true" && ep.Annotations[leaderElectionAnnotation] == ""
	desired := map[string]*sliceGroup{}
	if mirror {
		desired = mirroredGroups(ep)
	}
	wantLabels, wantAnn := mirroredMeta(ep)
	byPorts := map[string]*discoveryv1.EndpointSlice{}
	for _, es := range existing {
		k := portsKey(es.Ports)
		if _, dup := byPorts[k]; dup || desired[k] == nil {
			delete(t.s.EndpointSlices, key(es.Namespace, es.Name))
			continue
		}
		byPorts[k] = es
	}
	for _, k := range sortedKeys(desired) {
		g := desired[k]
		es := byPorts[k]
		if es == nil {
			es = &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: ep.Namespace, GenerateName: slicePrefix(ep.Name),
					Labels: wantLabels, Annotations: wantAnn,
					OwnerReferences: []metav1.OwnerReference{controllerRef(ep.UID, "Endpoints", ep.Name)},
				},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       g.ports,
				Endpoints:   g.eps,
			}
			t.createSlice(es)
			continue
		}
		if apiequality.Semantic.DeepEqual(es.Endpoints, g.eps) && apiequality.Semantic.DeepEqual(es.Ports, g.ports) &&
			apiequality.Semantic.DeepEqual(es.Labels, wantLabels) && apiequality.Semantic.DeepEqual(es.Annotations, wantAnn) {
			continue
		}
		if !apiequality.Semantic.DeepEqual(es.Endpoints, g.eps) || !apiequality.Semantic.DeepEqual(es.Ports, g.ports) {
			es.Generation++
		}
		es.Endpoints, es.Ports, es.Labels, es.Annotations = g.eps, g.ports, copyLabels(wantLabels), copyLabels(wantAnn)
		es.ResourceVersion = t.s.nextRV()
	}
}

// mirroredGroups turns an Endpoints' subsets into slice contents: one
// group per port list, addresses deduplicated, at most
// maxMirroredEndpoints each (the controller truncates the rest). svcsim
// simulates IPv4, so IPv6 addresses are not mirrored.
func mirroredGroups(ep *corev1.Endpoints) map[string]*sliceGroup {
	groups := map[string]*sliceGroup{}
	seen := map[string]map[string]bool{}
	for _, ss := range ep.Subsets {
		ports := make([]discoveryv1.EndpointPort, 0, len(ss.Ports))
		for _, p := range ss.Ports {
			p := p.DeepCopy()
			ports = append(ports, discoveryv1.EndpointPort{Name: &p.Name, Port: &p.Port, Protocol: &p.Protocol, AppProtocol: p.AppProtocol})
		}
		k := portsKey(ports)
		g := groups[k]
		if g == nil {
			g = &sliceGroup{ports: ports, eps: []discoveryv1.Endpoint{}}
			groups[k] = g
			seen[k] = map[string]bool{}
		}
		add := func(a corev1.EndpointAddress, ready bool) {
			ip, err := netip.ParseAddr(a.IP)
			if err != nil || !ip.Is4() || seen[k][ip.String()] || len(g.eps) >= maxMirroredEndpoints {
				return
			}
			seen[k][ip.String()] = true
			a = *a.DeepCopy()
			e := discoveryv1.Endpoint{
				Addresses:  []string{ip.String()},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready},
				TargetRef:  a.TargetRef,
				NodeName:   a.NodeName,
			}
			if a.Hostname != "" {
				e.Hostname = &a.Hostname
			}
			g.eps = append(g.eps, e)
		}
		for _, a := range ss.Addresses {
			add(a, true)
		}
		for _, a := range ss.NotReadyAddresses {
			add(a, false)
		}
	}
	return groups
}

// mirroredMeta is the labels and annotations of a mirrored slice: the
// Endpoints' own, with the service name and manager set and the trigger
// time and last-applied configuration left out.
func mirroredMeta(ep *corev1.Endpoints) (map[string]string, map[string]string) {
	l := copyLabels(ep.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[discoveryv1.LabelServiceName] = ep.Name
	l[discoveryv1.LabelManagedBy] = ManagedByMirroring
	a := map[string]string{}
	for k, v := range ep.Annotations {
		if k != corev1.EndpointsLastChangeTriggerTime && k != corev1.LastAppliedConfigAnnotation {
			a[k] = v
		}
	}
	if len(a) == 0 {
		a = nil
	}
	return l, a
}
