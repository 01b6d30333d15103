package clusterdns

import (
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SRV is one SRV record's data.
type SRV struct {
	Target           string
	Port             uint16
	Priority, Weight uint16
}

// Records is the cluster DNS view at one moment, what CoreDNS's kubernetes
// plugin serves. Names are fully qualified, lower case, without the
// trailing dot ("getip-service.default.svc.cluster.local"); lookups accept
// either form.
//
//   - <svc>.<ns>.svc.<domain>: A with the ClusterIP; for a headless Service,
//     A with every ready endpoint address of its EndpointSlices; for
//     ExternalName, a CNAME.
//   - _<port>._<proto>.<svc>.<ns>.svc.<domain>: SRV per named port, pointing
//     at the Service name, or at each endpoint's name when headless.
//   - <hostname>.<svc>.<ns>.svc.<domain>: A per ready endpoint of a headless
//     Service; hostname is the endpoint's (the pod's spec.hostname when its
//     subdomain is the Service's name) or the dashed IP.
//   - <a-b-c-d>.<ns>.pod.<domain>: A for every pod with an address.
//   - PTR for ClusterIPs and headless endpoints.
type Records struct {
	Domain string
	a      map[string][]netip.Addr
	srv    map[string][]SRV
	cname  map[string]string
	ptr    map[netip.Addr][]string
}

func canon(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// A returns the IPv4 addresses of name, sorted.
func (r *Records) A(name string) []netip.Addr { return append([]netip.Addr(nil), r.a[canon(name)]...) }

// SRV returns the SRV records of name, sorted by target and port.
func (r *Records) SRV(name string) []SRV { return append([]SRV(nil), r.srv[canon(name)]...) }

// CNAME returns the canonical name name points to.
func (r *Records) CNAME(name string) (string, bool) {
	t, ok := r.cname[canon(name)]
	return t, ok
}

// PTR returns the names of an address (ClusterIPs, headless endpoints).
func (r *Records) PTR(ip netip.Addr) []string { return append([]string(nil), r.ptr[ip]...) }

// Exists reports whether name has any record (NODATA vs NXDOMAIN).
func (r *Records) Exists(name string) bool {
	n := canon(name)
	_, a := r.a[n]
	_, s := r.srv[n]
	_, c := r.cname[n]
	return a || s || c
}

// Names lists every name with a record, sorted.
func (r *Records) Names() []string {
	set := map[string]bool{}
	for n := range r.a {
		set[n] = true
	}
	for n := range r.srv {
		set[n] = true
	}
	for n := range r.cname {
		set[n] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (r *Records) addA(name string, ip netip.Addr) {
	for _, x := range r.a[name] {
		if x == ip {
			return
		}
	}
	r.a[name] = append(r.a[name], ip)
}

func (r *Records) addPTR(ip netip.Addr, name string) {
	for _, x := range r.ptr[ip] {
		if x == name {
			return
		}
	}
	r.ptr[ip] = append(r.ptr[ip], name)
}

func (r *Records) addSRV(name string, s SRV) { r.srv[name] = append(r.srv[name], s) }

// Objects are the API objects the records are computed from.
type Objects struct {
	Services []*corev1.Service
	// EndpointSlices are matched to their Service by the
	// kubernetes.io/service-name label, as CoreDNS does.
	EndpointSlices []*discoveryv1.EndpointSlice
	Pods           []*corev1.Pod
}

// Build computes the records of domain ("cluster.local") from objs.
func Build(domain string, objs Objects) *Records {
	d := canon(domain)
	r := &Records{Domain: d, a: map[string][]netip.Addr{}, srv: map[string][]SRV{}, cname: map[string]string{}, ptr: map[netip.Addr][]string{}}
	// Listers return objects in no order; answers must not depend on it.
	byKey := func(a, b metav1.Object) bool {
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	}
	svcs := slices.Clone(objs.Services)
	sort.Slice(svcs, func(i, j int) bool { return byKey(svcs[i], svcs[j]) })
	eps := slices.Clone(objs.EndpointSlices)
	sort.Slice(eps, func(i, j int) bool { return byKey(eps[i], eps[j]) })
	pods := slices.Clone(objs.Pods)
	sort.Slice(pods, func(i, j int) bool { return byKey(pods[i], pods[j]) })
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range eps {
		if svc := s.Labels[discoveryv1.LabelServiceName]; svc != "" && s.AddressType == discoveryv1.AddressTypeIPv4 {
			k := s.Namespace + "/" + svc
			bySvc[k] = append(bySvc[k], s)
		}
	}
	for _, svc := range svcs {
		name := canon(svc.Name + "." + svc.Namespace + ".svc." + d)
		switch {
		case svc.Spec.Type == corev1.ServiceTypeExternalName:
			r.cname[name] = canon(svc.Spec.ExternalName)
		case svc.Spec.ClusterIP == corev1.ClusterIPNone:
			for _, s := range bySvc[svc.Namespace+"/"+svc.Name] {
				r.addHeadless(name, s)
			}
		default:
			ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
			if err != nil {
				continue
			}
			r.addA(name, ip)
			r.addPTR(ip, name)
			for _, p := range svc.Spec.Ports {
				if p.Name == "" {
					continue
				}
				r.addSRV(srvName(p.Name, p.Protocol, name), SRV{Target: name, Port: uint16(p.Port), Weight: 100})
			}
		}
	}
	for _, p := range pods {
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || !ip.Is4() {
			continue
		}
		r.addA(canon(dashed(ip)+"."+p.Namespace+".pod."+d), ip)
	}
	for n := range r.a {
		sort.Slice(r.a[n], func(i, j int) bool { return r.a[n][i].Less(r.a[n][j]) })
	}
	for n := range r.srv {
		s := r.srv[n]
		sort.Slice(s, func(i, j int) bool {
			if s[i].Target != s[j].Target {
				return s[i].Target < s[j].Target
			}
			return s[i].Port < s[j].Port
		})
	}
	return r
}

func srvName(port string, proto corev1.Protocol, name string) string {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	return "_" + port + "._" + strings.ToLower(string(proto)) + "." + name
}

func dashed(ip netip.Addr) string { return strings.ReplaceAll(ip.String(), ".", "-") }

// addHeadless adds the records of one slice of headless Service name: its
// ready endpoints (a nil ready condition means ready).
func (r *Records) addHeadless(name string, s *discoveryv1.EndpointSlice) {
	for _, ep := range s.Endpoints {
		if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
			continue
		}
		for _, a := range ep.Addresses {
			ip, err := netip.ParseAddr(a)
			if err != nil || !ip.Is4() {
				continue
			}
			host := dashed(ip)
			if ep.Hostname != nil && *ep.Hostname != "" {
				host = *ep.Hostname
			}
			hostName := canon(host + "." + name)
			r.addA(name, ip)
			r.addA(hostName, ip)
			r.addPTR(ip, hostName)
			for _, p := range s.Ports {
				if p.Name == nil || *p.Name == "" || p.Port == nil {
					continue
				}
				var proto corev1.Protocol
				if p.Protocol != nil {
					proto = *p.Protocol
				}
				r.addSRV(srvName(*p.Name, proto, name), SRV{Target: hostName, Port: uint16(*p.Port), Weight: 100})
			}
		}
	}
}
