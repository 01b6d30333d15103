package sim

import (
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
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
//     A with every ready endpoint address; for ExternalName, a CNAME.
//   - _<port>._<proto>.<svc>.<ns>.svc.<domain>: SRV per named port, pointing
//     at the Service name, or at each endpoint's name when headless.
//   - <hostname>.<svc>.<ns>.svc.<domain>: A per ready endpoint of a headless
//     Service; hostname is the pod's spec.hostname (with subdomain = the
//     Service's name) or the dashed IP.
//   - <a-b-c-d>.<ns>.pod.<domain>: A for every running pod.
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
	return sortedKeys(set)
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

// DNS returns the cluster DNS records as of now.
func (c *Cluster) DNS() *Records {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := canon(c.cfg.DNSDomain)
	r := &Records{Domain: d, a: map[string][]netip.Addr{}, srv: map[string][]SRV{}, cname: map[string]string{}, ptr: map[netip.Addr][]string{}}
	for _, k := range sortedKeys(c.st.Services) {
		svc := c.st.Services[k]
		name := canon(svc.Name + "." + svc.Namespace + ".svc." + d)
		switch {
		case svc.Spec.Type == corev1.ServiceTypeExternalName:
			r.cname[name] = canon(svc.Spec.ExternalName)
		case svc.Spec.ClusterIP == corev1.ClusterIPNone:
			c.headlessRecords(r, svc, name)
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
				srvName := "_" + p.Name + "._" + strings.ToLower(string(p.Protocol)) + "." + name
				r.srv[srvName] = append(r.srv[srvName], SRV{Target: name, Port: uint16(p.Port), Weight: 100})
			}
		}
	}
	for _, k := range sortedKeys(c.st.Pods) {
		p := c.st.Pods[k]
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

func dashed(ip netip.Addr) string { return strings.ReplaceAll(ip.String(), ".", "-") }

func (c *Cluster) headlessRecords(r *Records, svc *corev1.Service, name string) {
	ep := c.st.Endpoints[key(svc.Namespace, svc.Name)]
	if ep == nil {
		return
	}
	for _, ss := range ep.Subsets {
		for _, a := range ss.Addresses {
			ip, err := netip.ParseAddr(a.IP)
			if err != nil || !ip.Is4() {
				continue
			}
			host := a.Hostname
			if host == "" {
				host = dashed(ip)
			}
			hostName := canon(host + "." + name)
			r.addA(name, ip)
			r.addA(hostName, ip)
			r.addPTR(ip, hostName)
			for _, p := range ss.Ports {
				if p.Name == "" {
					continue
				}
				proto := p.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				srvName := "_" + p.Name + "._" + strings.ToLower(string(proto)) + "." + name
				r.srv[srvName] = append(r.srv[srvName], SRV{Target: hostName, Port: uint16(p.Port), Weight: 100})
			}
		}
	}
}
