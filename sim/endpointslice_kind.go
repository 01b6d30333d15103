package sim

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// sliceOps stores discovery.k8s.io/v1 EndpointSlices.
type sliceOps struct{}

func (sliceOps) get(s *store, k string) runtime.Object {
	if v := s.EndpointSlices[k]; v != nil {
		return v
	}
	return nil
}

func (sliceOps) set(t *txn, k string, obj runtime.Object) {
	t.s.EndpointSlices[k] = obj.(*discoveryv1.EndpointSlice)
}

func (sliceOps) remove(t *txn, k string) { delete(t.s.EndpointSlices, k) }

func (sliceOps) removeNamespace(t *txn, ns string) { deletePrefix(t.s.EndpointSlices, ns+"/", nil) }

// put stores a user's EndpointSlice after the API server's defaulting and
// validation. A slice labelled as managed by one of the controllers is
// theirs to rewrite on the next reconcile, as in Kubernetes.
func (sliceOps) put(t *txn, old, obj runtime.Object) error {
	es := obj.(*discoveryv1.EndpointSlice)
	defaultSlice(es)
	el := validateSlice(es)
	if o, ok := old.(*discoveryv1.EndpointSlice); ok && o.AddressType != es.AddressType {
		el = append(el, field.Invalid(field.NewPath("addressType"), es.AddressType, "field is immutable"))
	}
	if len(el) > 0 {
		return kinds["EndpointSlice"].invalid(es.Name, el)
	}
	if old == nil {
		t.initMeta(&es.ObjectMeta, "EndpointSlice")
		es.Generation = 1
	} else if o := old.(*discoveryv1.EndpointSlice); sliceContentChanged(o, es) {
		es.Generation = o.Generation + 1
	} else {
		es.Generation = o.Generation
	}
	t.s.EndpointSlices[key(es.Namespace, es.Name)] = es
	return nil
}

func sliceContentChanged(a, b *discoveryv1.EndpointSlice) bool {
	return !apiequality.Semantic.DeepEqual(a.Endpoints, b.Endpoints) || !apiequality.Semantic.DeepEqual(a.Ports, b.Ports) ||
		a.AddressType != b.AddressType
}

// defaultSlice sets what the API server defaults in discovery/v1: a port's
// name to "" and protocol to TCP. deprecatedTopology cannot be written
// through v1 and is dropped.
func defaultSlice(es *discoveryv1.EndpointSlice) {
	for i := range es.Ports {
		p := &es.Ports[i]
		if p.Name == nil {
			n := ""
			p.Name = &n
		}
		if p.Protocol == nil {
			tcp := corev1.ProtocolTCP
			p.Protocol = &tcp
		}
	}
	for i := range es.Endpoints {
		es.Endpoints[i].DeprecatedTopology = nil
	}
	if es.Endpoints == nil {
		es.Endpoints = []discoveryv1.Endpoint{}
	}
}

// The API server's limits on an EndpointSlice.
const (
	sliceMaxEndpoints = 1000
	sliceMaxAddresses = 100
	sliceMaxPorts     = 20000
	sliceMaxHints     = 8
)

// validateSlice checks an EndpointSlice the way the API server's discovery
// validation does.
func validateSlice(es *discoveryv1.EndpointSlice) field.ErrorList {
	el := validateName(es.Name, validation.IsDNS1123Subdomain)
	el = append(el, validateLabels(es.Labels, field.NewPath("metadata", "labels"))...)
	at := field.NewPath("addressType")
	switch es.AddressType {
	case "":
		el = append(el, field.Required(at, ""))
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
	default:
		el = append(el, field.NotSupported(at, es.AddressType, []string{"FQDN", "IPv4", "IPv6"}))
	}
	ep := field.NewPath("endpoints")
	if len(es.Endpoints) > sliceMaxEndpoints {
		return append(el, field.TooMany(ep, len(es.Endpoints), sliceMaxEndpoints))
	}
	for i := range es.Endpoints {
		el = append(el, validateSliceEndpoint(&es.Endpoints[i], es.AddressType, ep.Index(i))...)
	}
	pp := field.NewPath("ports")
	if len(es.Ports) > sliceMaxPorts {
		return append(el, field.TooMany(pp, len(es.Ports), sliceMaxPorts))
	}
	names := map[string]bool{}
	for i, p := range es.Ports {
		fld := pp.Index(i)
		name := deref(p.Name)
		if name != "" {
			el = append(el, dns1123Label(name, fld.Child("name"))...)
		}
		if names[name] {
			el = append(el, field.Duplicate(fld.Child("name"), name))
		}
		names[name] = true
		switch derefProto(p.Protocol) {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			el = append(el, field.NotSupported(fld.Child("protocol"), derefProto(p.Protocol), []string{"SCTP", "TCP", "UDP"}))
		}
		if p.Port != nil {
			for _, msg := range validation.IsInRange(int(*p.Port), 0, 65535) {
				el = append(el, field.Invalid(fld.Child("port"), *p.Port, msg))
			}
		}
		if p.AppProtocol != nil {
			for _, msg := range validation.IsQualifiedName(*p.AppProtocol) {
				el = append(el, field.Invalid(fld.Child("appProtocol"), *p.AppProtocol, msg))
			}
		}
	}
	return el
}

func validateSliceEndpoint(e *discoveryv1.Endpoint, at discoveryv1.AddressType, fld *field.Path) field.ErrorList {
	var el field.ErrorList
	ap := fld.Child("addresses")
	switch {
	case len(e.Addresses) == 0:
		el = append(el, field.Required(ap, "must contain at least 1 address"))
	case len(e.Addresses) > sliceMaxAddresses:
		el = append(el, field.TooMany(ap, len(e.Addresses), sliceMaxAddresses))
	}
	for i, a := range e.Addresses {
		f := ap.Index(i)
		switch at {
		case discoveryv1.AddressTypeIPv4:
			if ip, err := netip.ParseAddr(a); err != nil {
				el = append(el, field.Invalid(f, a, validIPMsg))
			} else if !ip.Is4() {
				el = append(el, field.Invalid(f, a, "must be a valid IPv4 address"))
			} else {
				el = append(el, validateNonSpecialIP(a, f)...)
			}
		case discoveryv1.AddressTypeIPv6:
			if ip, err := netip.ParseAddr(a); err != nil || !ip.Is6() || ip.Is4In6() {
				el = append(el, field.Invalid(f, a, "must be a valid IPv6 address"))
			}
		case discoveryv1.AddressTypeFQDN:
			el = append(el, validation.IsFullyQualifiedDomainName(f, a)...)
		}
	}
	if e.NodeName != nil {
		for _, msg := range validation.IsDNS1123Subdomain(*e.NodeName) {
			el = append(el, field.Invalid(fld.Child("nodeName"), *e.NodeName, msg))
		}
	}
	if e.Hostname != nil {
		el = append(el, dns1123Label(*e.Hostname, fld.Child("hostname"))...)
	}
	if h := e.Hints; h != nil {
		zp := fld.Child("hints", "forZones")
		if len(h.ForZones) > sliceMaxHints {
			el = append(el, field.TooMany(zp, len(h.ForZones), sliceMaxHints))
		}
		seen := map[string]bool{}
		for i, z := range h.ForZones {
			f := zp.Index(i).Child("name")
			if seen[z.Name] {
				el = append(el, field.Duplicate(f, z.Name))
			}
			seen[z.Name] = true
			for _, msg := range validation.IsValidLabelValue(z.Name) {
				el = append(el, field.Invalid(f, z.Name, msg))
			}
		}
		np := fld.Child("hints", "forNodes")
		if len(h.ForNodes) > sliceMaxHints {
			el = append(el, field.TooMany(np, len(h.ForNodes), sliceMaxHints))
		}
		seen = map[string]bool{}
		for i, n := range h.ForNodes {
			f := np.Index(i).Child("name")
			if seen[n.Name] {
				el = append(el, field.Duplicate(f, n.Name))
			}
			seen[n.Name] = true
			for _, msg := range validation.IsDNS1123Subdomain(n.Name) {
				el = append(el, field.Invalid(f, n.Name, msg))
			}
		}
	}
	return el
}

func dns1123Label(s string, fld *field.Path) field.ErrorList {
	var el field.ErrorList
	for _, msg := range validation.IsDNS1123Label(s) {
		el = append(el, field.Invalid(fld, s, msg))
	}
	return el
}

// EndpointSlices returns copies of all EndpointSlices (discovery.k8s.io/v1),
// sorted by namespace and name: the controllers' and the users'.
func (c *Cluster) EndpointSlices() []discoveryv1.EndpointSlice {
	c.mu.Lock()
	defer c.mu.Unlock()
	return listOf(c.st.EndpointSlices)
}
