// Package desired derives a node proxy's desired state (state.NodeState)
// from Kubernetes objects: Services, discovery.k8s.io/v1 EndpointSlices and
// the proxy's own Node, the way kube-proxy's service and endpoint change
// trackers build their maps. It is one pure function so that the embedded
// model (package sim) and a proxy fed by informers from a real API server
// compute exactly the same state from the same objects.
//
// What it follows from kube-proxy:
//   - Services labelled service.kubernetes.io/service-proxy-name, headless
//     Services (clusterIP None) and ExternalName Services are not proxied;
//     neither are slices labelled service.kubernetes.io/headless. Each label
//     filters only its own kind, as kube-proxy's two informers do
//     (cmd/kube-proxy/app/server.go, v1.37): a Service with a ClusterIP
//     that carries the headless label is proxied.
//   - A slice belongs to the Service named by its kubernetes.io/service-name
//     label in its namespace; all slices of a Service are merged, in name
//     order. An endpoint port matches a Service port by name and protocol.
//   - Endpoints are deduplicated by address and port (the first one wins,
//     unless a later duplicate is on this node); only the first address of
//     an endpoint counts. Only IPv4 slices and addresses are used (svcsim
//     simulates IPv4).
//   - Missing conditions read as ready and serving, not terminating.
package desired

import (
	"net/netip"
	"sort"
	"strings"

	"github.com/svcsim/svcsim/sim/state"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// SchedulerAnnotation on a Service selects a load-balancing algorithm for
// modes that have one (IPVS: rr, wrr, lc, sh, ...); it becomes
// state.ServicePort.Scheduler.
const SchedulerAnnotation = "svcsim.io/ipvs-scheduler"

// ServiceProxyNameLabel marks a Service (and its slices) as handled by
// another proxy: kube-proxy ignores it.
const ServiceProxyNameLabel = "service.kubernetes.io/service-proxy-name"

// Options are the proxy's own settings (kube-proxy flags) and the
// generation the state is stamped with.
type Options struct {
	// ClusterCIDR is kube-proxy's --cluster-cidr.
	ClusterCIDR netip.Prefix
	// ServiceCIDR is the range ClusterIPs come from.
	ServiceCIDR netip.Prefix
	// Generation is copied to NodeState.Generation.
	Generation uint64
}

// NodeState returns the desired state of the proxy on node. The result is
// fresh and sorted; the inputs are only read. Nil entries are skipped.
func NodeState(node *corev1.Node, services []*corev1.Service, slices []*discoveryv1.EndpointSlice, opt Options) *state.NodeState {
	ns := &state.NodeState{
		Version:     state.Version,
		Generation:  opt.Generation,
		ClusterCIDR: opt.ClusterCIDR,
		ServiceCIDR: opt.ServiceCIDR,
		Services:    []state.ServicePort{},
	}
	if node != nil {
		ns.Node = node.Name
		ns.Zone = node.Labels[corev1.LabelTopologyZone]
		ns.NodeIPs = nodeIPs(node)
		if p, err := netip.ParsePrefix(node.Spec.PodCIDR); err == nil {
			ns.PodCIDR = p
		}
	}
	bySvc := endpointsByService(ns.Node, slices)
	for _, svc := range services {
		if svc == nil || skipService(svc) {
			continue
		}
		vip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil || !vip.Is4() {
			continue
		}
		eps := bySvc[svc.Namespace+"/"+svc.Name]
		for i := range svc.Spec.Ports {
			p := &svc.Spec.Ports[i]
			proto := protocol(p.Protocol)
			if proto != state.TCP && proto != state.UDP {
				continue // SCTP: no mode implements it
			}
			sp := servicePort(svc, p, vip)
			for _, e := range eps[portKey{p.Name, proto}] {
				if e.Ready {
					sp.Endpoints = append(sp.Endpoints, e)
				} else {
					sp.NotReadyEndpoints = append(sp.NotReadyEndpoints, e)
				}
			}
			ns.Services = append(ns.Services, sp)
		}
	}
	ns.Sort()
	return ns
}

// skipService tells which Services kube-proxy does not program.
func skipService(svc *corev1.Service) bool {
	if _, ok := svc.Labels[ServiceProxyNameLabel]; ok {
		return true
	}
	return svc.Spec.Type == corev1.ServiceTypeExternalName ||
		svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Spec.ClusterIP == ""
}

// servicePort is the Service-level part of one port, without endpoints.
func servicePort(svc *corev1.Service, p *corev1.ServicePort, vip netip.Addr) state.ServicePort {
	sp := state.ServicePort{
		Namespace:             svc.Namespace,
		Name:                  svc.Name,
		PortName:              p.Name,
		Protocol:              protocol(p.Protocol),
		ClusterIP:             vip,
		Port:                  p.Port,
		ExternalIPs:           parseAddrs(svc.Spec.ExternalIPs),
		Scheduler:             svc.Annotations[SchedulerAnnotation],
		Type:                  string(svc.Spec.Type),
		ExternalTrafficPolicy: state.PolicyCluster,
		InternalTrafficPolicy: state.PolicyCluster,
		Endpoints:             []state.Endpoint{},
	}
	if sp.Type == "" {
		sp.Type = string(corev1.ServiceTypeClusterIP)
	}
	sp.NodePort = p.NodePort // the API server clears it for other types
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		sp.SessionAffinity = true
		sp.AffinityTimeout = state.DefaultAffinityTimeout
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			sp.AffinityTimeout = *c.ClientIP.TimeoutSeconds
		}
	}
	external := svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer || len(sp.ExternalIPs) > 0
	local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	if external && local {
		sp.ExternalTrafficPolicy = state.PolicyLocal
	}
	if itp := svc.Spec.InternalTrafficPolicy; itp != nil && *itp == corev1.ServiceInternalTrafficPolicyLocal {
		sp.InternalTrafficPolicy = state.PolicyLocal
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && local {
		sp.HealthCheckNodePort = svc.Spec.HealthCheckNodePort
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.IPMode != nil && *in.IPMode != corev1.LoadBalancerIPModeVIP {
			continue // ipMode Proxy: the load balancer delivers to the nodes
		}
		if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
			sp.LoadBalancerIPs = append(sp.LoadBalancerIPs, a)
		}
	}
	sort.Slice(sp.LoadBalancerIPs, func(i, j int) bool { return sp.LoadBalancerIPs[i].Less(sp.LoadBalancerIPs[j]) })
	for _, r := range svc.Spec.LoadBalancerSourceRanges {
		if pf, err := netip.ParsePrefix(strings.TrimSpace(r)); err == nil && pf.Addr().Is4() {
			sp.LoadBalancerSourceRanges = append(sp.LoadBalancerSourceRanges, pf.Masked())
		}
	}
	return sp
}

// portKey is kube-proxy's ServicePortName without the Service: an
// endpoint port serves the Service port of the same name and protocol.
type portKey struct {
	name  string
	proto state.Protocol
}

// endpointsByService merges the slices of each Service ("ns/name") into
// deduplicated endpoints per port, in slice-name order.
func endpointsByService(node string, slices []*discoveryv1.EndpointSlice) map[string]map[portKey][]state.Endpoint {
	sorted := make([]*discoveryv1.EndpointSlice, 0, len(slices))
	for _, es := range slices {
		if es == nil || es.AddressType != discoveryv1.AddressTypeIPv4 || es.Labels[discoveryv1.LabelServiceName] == "" {
			continue
		}
		if _, ok := es.Labels[corev1.IsHeadlessService]; ok {
			continue
		}
		sorted = append(sorted, es)
	}
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Namespace != sorted[j].Namespace {
			return sorted[i].Namespace < sorted[j].Namespace
		}
		return sorted[i].Name < sorted[j].Name
	})
	type slot struct {
		svc string
		pk  portKey
		ep  string
	}
	index := map[slot]int{}
	out := map[string]map[portKey][]state.Endpoint{}
	for _, es := range sorted {
		svc := es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName]
		for _, p := range es.Ports {
			if p.Name == nil || p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
				continue // kube-proxy ignores ports without a name or number
			}
			proto := state.TCP
			if p.Protocol != nil {
				proto = protocol(*p.Protocol)
			}
			pk := portKey{*p.Name, proto}
			for i := range es.Endpoints {
				e, ok := endpoint(&es.Endpoints[i], *p.Port)
				if !ok {
					continue
				}
				if out[svc] == nil {
					out[svc] = map[portKey][]state.Endpoint{}
				}
				k := slot{svc, pk, e.String()}
				if at, dup := index[k]; dup {
					if e.Node != "" && e.Node == node {
						out[svc][pk][at] = e // a local duplicate is preferred
					}
					continue
				}
				index[k] = len(out[svc][pk])
				out[svc][pk] = append(out[svc][pk], e)
			}
		}
	}
	return out
}

// endpoint reads one slice endpoint for one port; false when it has no
// usable IPv4 address.
func endpoint(se *discoveryv1.Endpoint, port int32) (state.Endpoint, bool) {
	if len(se.Addresses) == 0 {
		return state.Endpoint{}, false
	}
	ip, err := netip.ParseAddr(se.Addresses[0])
	if err != nil || !ip.Is4() {
		return state.Endpoint{}, false
	}
	c := se.Conditions
	e := state.Endpoint{
		IP:          ip,
		Port:        port,
		Ready:       c.Ready == nil || *c.Ready,
		Serving:     c.Serving == nil || *c.Serving,
		Terminating: c.Terminating != nil && *c.Terminating,
	}
	if se.NodeName != nil {
		e.Node = *se.NodeName
	}
	if se.Zone != nil {
		e.Zone = *se.Zone
	}
	if r := se.TargetRef; r != nil && r.Kind == "Pod" {
		e.Pod = r.Name
	}
	return e, true
}

// nodeIPs are the node's InternalIP addresses, then its ExternalIP ones
// (IPv4), as kube-proxy picks the node's addresses.
func nodeIPs(n *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, typ := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			if a.Type != typ {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				out = append(out, ip)
			}
		}
	}
	return out
}

func protocol(p corev1.Protocol) state.Protocol {
	if p == "" {
		return state.TCP
	}
	return state.Protocol(p)
}

func parseAddrs(ss []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			out = append(out, a)
		}
	}
	return out
}
