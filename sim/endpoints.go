package sim

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"
)

// txn is one change in progress on a copy of the state.
type txn struct {
	cfg   *Config
	nodes map[string]*NodeConfig
	s     *store
	now   time.Time
	// alloc is built by allocs on first use (see storeService).
	alloc *allocations
}

// reconcile runs the controllers until the state is consistent: workloads
// (which create and delete pods) first, then Endpoints from the pods, then
// EndpointSlices from the pods and the Endpoints.
func (t *txn) reconcile() error {
	if err := t.checkPodBudget(); err != nil {
		return err
	}
	t.reconcileWorkloads()
	t.reconcileEndpoints()
	t.reconcileEndpointSlices()
	return nil
}

// HeadlessLabel is set on Endpoints of headless Services, as the
// Endpoints controller does.
const HeadlessLabel = "service.kubernetes.io/headless"

// reconcileEndpoints is the Endpoints controller: every Service with a
// selector gets Endpoints listing its matching pods, ready ones in
// addresses, others in notReadyAddresses, ports resolved per pod.
func (t *txn) reconcileEndpoints() {
	for _, k := range sortedKeys(t.s.Services) {
		svc := t.s.Services[k]
		if svc.Spec.Selector == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		want := t.computeEndpoints(svc)
		cur := t.s.Endpoints[k]
		if cur != nil && apiequality.Semantic.DeepEqual(cur.Subsets, want.Subsets) &&
			apiequality.Semantic.DeepEqual(cur.Labels, want.Labels) {
			continue
		}
		if cur != nil {
			want.ObjectMeta.UID = cur.UID
			want.ObjectMeta.CreationTimestamp = cur.CreationTimestamp
			want.ObjectMeta.ResourceVersion = t.s.nextRV()
		} else {
			t.initMeta(&want.ObjectMeta, "Endpoints")
		}
		t.s.Endpoints[k] = want
	}
}

// resolvePort finds the container port a Service port targets in a pod.
func resolvePort(p *corev1.Pod, sp *corev1.ServicePort) (int32, bool) {
	if sp.TargetPort.Type == intstr.Int {
		return sp.TargetPort.IntVal, true
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == sp.TargetPort.StrVal && cp.Protocol == sp.Protocol {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

func (t *txn) computeEndpoints(svc *corev1.Service) *corev1.Endpoints {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	ep := &corev1.Endpoints{}
	kinds["Endpoints"].setTypeMeta(ep)
	ep.Name, ep.Namespace = svc.Name, svc.Namespace
	ep.Labels = copyLabels(svc.Labels)
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		ep.Labels = mergeLabels(ep.Labels, map[string]string{HeadlessLabel: ""})
	}
	type group struct {
		ports          []corev1.EndpointPort
		ready, unready []corev1.EndpointAddress
	}
	groups := map[string]*group{}
	var order []string
	for _, pk := range sortedKeys(t.s.Pods) {
		p := t.s.Pods[pk]
		if p.Namespace != svc.Namespace || p.Status.PodIP == "" || p.DeletionTimestamp != nil || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		var ports []corev1.EndpointPort
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			if n, ok := resolvePort(p, sp); ok {
				ports = append(ports, corev1.EndpointPort{Name: sp.Name, Port: n, Protocol: sp.Protocol})
			}
		}
		if len(ports) == 0 && len(svc.Spec.Ports) > 0 {
			continue // the pod has none of the named ports
		}
		nodeName := p.Spec.NodeName
		addr := corev1.EndpointAddress{IP: p.Status.PodIP, NodeName: &nodeName,
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID}}
		if p.Spec.Hostname != "" && p.Spec.Subdomain == svc.Name && svc.Namespace == p.Namespace {
			addr.Hostname = p.Spec.Hostname
		}
		sig := fmt.Sprint(ports)
		g := groups[sig]
		if g == nil {
			g = &group{ports: ports}
			groups[sig] = g
			order = append(order, sig)
		}
		if podReady(p) || svc.Spec.PublishNotReadyAddresses {
			g.ready = append(g.ready, addr)
		} else {
			g.unready = append(g.unready, addr)
		}
	}
	sort.Strings(order)
	for _, sig := range order {
		g := groups[sig]
		sortAddrs(g.ready)
		sortAddrs(g.unready)
		ep.Subsets = append(ep.Subsets, corev1.EndpointSubset{Addresses: g.ready, NotReadyAddresses: g.unready, Ports: g.ports})
	}
	return ep
}

func sortAddrs(a []corev1.EndpointAddress) {
	sort.Slice(a, func(i, j int) bool {
		x, _ := netip.ParseAddr(a[i].IP)
		y, _ := netip.ParseAddr(a[j].IP)
		if c := x.Compare(y); c != 0 {
			return c < 0
		}
		return a[i].TargetRef.Name < a[j].TargetRef.Name
	})
}

// validateEndpoints checks a user's Endpoints like the API server does. An
// address may be another Service's ClusterIP, as there: the seed's warning
// that this does not work is kube-proxy's limitation, not validation's.
func validateEndpoints(ep *corev1.Endpoints) field.ErrorList {
	el := validateName(ep.Name, validation.IsDNS1123Subdomain)
	for i, ss := range ep.Subsets {
		sp := field.NewPath("subsets").Index(i)
		for j, a := range ss.Addresses {
			el = append(el, validateEndpointAddress(a, sp.Child("addresses").Index(j))...)
		}
		for j, a := range ss.NotReadyAddresses {
			el = append(el, validateEndpointAddress(a, sp.Child("notReadyAddresses").Index(j))...)
		}
		if len(ss.Addresses) == 0 && len(ss.NotReadyAddresses) == 0 {
			el = append(el, field.Required(sp, "must specify `addresses` or `notReadyAddresses`"))
		}
		names := map[string]bool{}
		for j, p := range ss.Ports {
			pp := sp.Child("ports").Index(j)
			el = append(el, validatePortName(p.Name, len(ss.Ports) > 1, names, pp.Child("name"))...)
			for _, msg := range validation.IsValidPortNum(int(p.Port)) {
				el = append(el, field.Invalid(pp.Child("port"), p.Port, msg))
			}
			switch p.Protocol {
			case corev1.ProtocolTCP, corev1.ProtocolUDP:
			case corev1.ProtocolSCTP:
				// Valid in Kubernetes, but svcsim does not simulate SCTP.
				el = append(el, field.NotSupported(pp.Child("protocol"), p.Protocol, []string{"TCP", "UDP"}))
			default:
				el = append(el, field.NotSupported(pp.Child("protocol"), p.Protocol, []string{"SCTP", "TCP", "UDP"}))
			}
		}
	}
	return el
}

// validateEndpointAddress checks one address as the API server does: an IP
// (a string that is none gets its two messages), not a special one, and a
// hostname that is a DNS label.
func validateEndpointAddress(a corev1.EndpointAddress, fld *field.Path) field.ErrorList {
	var el field.ErrorList
	if _, err := netip.ParseAddr(a.IP); err != nil {
		el = append(el, field.Invalid(fld.Child("ip"), a.IP, validIPMsg))
	}
	el = append(el, validateNonSpecialIP(a.IP, fld.Child("ip"))...)
	if a.Hostname != "" {
		for _, msg := range validation.IsDNS1123Label(a.Hostname) {
			el = append(el, field.Invalid(fld.Child("hostname"), a.Hostname, msg))
		}
	}
	return el
}

// putEndpoints stores a user's Endpoints (create when old is nil). For a
// Service with a selector the controller overwrites it, as in Kubernetes.
func (t *txn) putEndpoints(old, ep *corev1.Endpoints) error {
	for i := range ep.Subsets {
		for j := range ep.Subsets[i].Ports {
			if ep.Subsets[i].Ports[j].Protocol == "" {
				ep.Subsets[i].Ports[j].Protocol = corev1.ProtocolTCP
			}
		}
	}
	if el := validateEndpoints(ep); len(el) > 0 {
		return kinds["Endpoints"].invalid(ep.Name, el)
	}
	if old == nil {
		t.initMeta(&ep.ObjectMeta, "Endpoints")
	}
	t.s.Endpoints[key(ep.Namespace, ep.Name)] = ep
	return nil
}

// putIngress stores an Ingress after the API server's validation; a new
// one without a class gets the default IngressClass (admission). The
// ingress add-on (package addons/ingress) serves them.
func (t *txn) putIngress(old, ing *networkingv1.Ingress) error {
	el := validateName(ing.Name, validation.IsDNS1123Subdomain)
	check := func(b *networkingv1.IngressBackend, fld *field.Path) {
		if b == nil {
			return
		}
		if b.Service == nil && b.Resource == nil {
			el = append(el, field.Invalid(fld, "", "backend must be specified"))
			return
		}
		if b.Service != nil {
			if b.Service.Name == "" {
				el = append(el, field.Required(fld.Child("service", "name"), ""))
			}
			if b.Service.Port.Name == "" && b.Service.Port.Number == 0 {
				el = append(el, field.Required(fld.Child("service", "port"), "port name or number is required"))
			}
		}
	}
	check(ing.Spec.DefaultBackend, specPath.Child("defaultBackend"))
	for i, r := range ing.Spec.Rules {
		rp := specPath.Child("rules").Index(i)
		if r.Host != "" {
			if netutils.ParseIPSloppy(r.Host) != nil {
				el = append(el, field.Invalid(rp.Child("host"), r.Host, "must be a DNS name, not an IP address"))
			}
			el = append(el, validateIngressHost(r.Host, rp.Child("host"))...)
		}
		if r.HTTP != nil {
			for j := range r.HTTP.Paths {
				pp := rp.Child("http", "paths").Index(j)
				p := &r.HTTP.Paths[j]
				if p.PathType == nil {
					el = append(el, field.Required(pp.Child("pathType"), "pathType must be specified"))
				} else {
					el = append(el, validateIngressPath(p.Path, *p.PathType, pp)...)
				}
				check(&p.Backend, pp.Child("backend"))
			}
		}
	}
	for i, tls := range ing.Spec.TLS {
		tp := specPath.Child("tls").Index(i)
		for j, h := range tls.Hosts {
			el = append(el, validateIngressHost(h, tp.Child("hosts").Index(j))...)
		}
		if tls.SecretName != "" {
			for _, msg := range validation.IsDNS1123Subdomain(tls.SecretName) {
				el = append(el, field.Invalid(tp.Child("secretName"), tls.SecretName, msg))
			}
		}
	}
	if c := ing.Spec.IngressClassName; c != nil {
		for _, msg := range validation.IsDNS1123Subdomain(*c) {
			el = append(el, field.Invalid(specPath.Child("ingressClassName"), *c, msg))
		}
	}
	if len(ing.Spec.Rules) == 0 && ing.Spec.DefaultBackend == nil {
		el = append(el, field.Invalid(specPath, ing.Spec, "either `defaultBackend` or `rules` must be specified"))
	}
	if len(el) > 0 {
		return kinds["Ingress"].invalid(ing.Name, el)
	}
	if old == nil {
		t.defaultIngressClass(ing)
		t.initMeta(&ing.ObjectMeta, "Ingress")
		ing.Generation = 1
	} else {
		ing.Status = old.Status
		ing.Generation = old.Generation
		if !apiequality.Semantic.DeepEqual(old.Spec, ing.Spec) {
			ing.Generation++
		}
	}
	t.s.Ingresses[key(ing.Namespace, ing.Name)] = ing
	return nil
}

// validateIngressHost checks a rule's or a TLS entry's host as the API
// server does: a wildcard subdomain when it holds a "*" anywhere, else a
// DNS subdomain.
func validateIngressHost(host string, fld *field.Path) field.ErrorList {
	check := validation.IsDNS1123Subdomain
	if strings.Contains(host, "*") {
		check = validation.IsWildcardDNS1123Subdomain
	}
	var el field.ErrorList
	for _, msg := range check(host) {
		el = append(el, field.Invalid(fld, host, msg))
	}
	return el
}

// Path rules of the API server for Exact and Prefix paths.
var (
	invalidPathSequences = []string{"//", "/./", "/../", "%2f", "%2F"}
	invalidPathSuffixes  = []string{"/..", "/."}
)

func validateIngressPath(path string, pt networkingv1.PathType, fld *field.Path) field.ErrorList {
	var el field.ErrorList
	pf := fld.Child("path")
	switch pt {
	case networkingv1.PathTypeExact, networkingv1.PathTypePrefix:
		if !strings.HasPrefix(path, "/") {
			return append(el, field.Invalid(pf, path, "must be an absolute path"))
		}
		for _, seq := range invalidPathSequences {
			if strings.Contains(path, seq) {
				el = append(el, field.Invalid(pf, path, fmt.Sprintf("must not contain '%s'", seq)))
			}
		}
		for _, suf := range invalidPathSuffixes {
			if strings.HasSuffix(path, suf) {
				el = append(el, field.Invalid(pf, path, fmt.Sprintf("cannot end with '%s'", suf)))
			}
		}
	case networkingv1.PathTypeImplementationSpecific:
		if path != "" && !strings.HasPrefix(path, "/") {
			el = append(el, field.Invalid(pf, path, "must be an absolute path"))
		}
	default:
		el = append(el, field.NotSupported(fld.Child("pathType"), pt,
			[]string{string(networkingv1.PathTypeExact), string(networkingv1.PathTypeImplementationSpecific), string(networkingv1.PathTypePrefix)}))
	}
	return el
}

// defaultIngressClass is the API server's DefaultIngressClass admission on
// create: an Ingress with neither spec.ingressClassName nor the class
// annotation gets the IngressClass marked default (the newest, when
// several are).
func (t *txn) defaultIngressClass(ing *networkingv1.Ingress) {
	if ing.Spec.IngressClassName != nil {
		return
	}
	if _, ok := ing.Annotations[IngressClassAnnotation]; ok {
		return
	}
	var best *networkingv1.IngressClass
	for _, o := range t.s.Stored["IngressClass"] {
		ic := o.(*networkingv1.IngressClass)
		if ic.Annotations[DefaultIngressClassAnnotation] != "true" {
			continue
		}
		if best == nil || ic.CreationTimestamp.After(best.CreationTimestamp.Time) ||
			(ic.CreationTimestamp.Equal(&best.CreationTimestamp) && ic.Name < best.Name) {
			best = ic
		}
	}
	if best != nil {
		name := best.Name
		ing.Spec.IngressClassName = &name
	}
}

// SetIngressStatus replaces an Ingress's status (the ingress controller's
// write, through the status subresource: the spec is not touched).
func (c *Cluster) SetIngressStatus(namespace, name string, st networkingv1.IngressStatus) error {
	return c.change(func(t *txn) error {
		ing := t.s.Ingresses[key(namespaceOr(namespace), name)]
		if ing == nil {
			return kinds["Ingress"].notFound(name)
		}
		if apiequality.Semantic.DeepEqual(ing.Status, st) {
			return nil
		}
		ing.Status = *st.DeepCopy()
		ing.ResourceVersion = t.s.nextRV()
		return nil
	})
}
