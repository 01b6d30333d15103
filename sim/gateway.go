package sim

import (
	"fmt"
	"regexp"
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The Gateway API's kinds (gateway.networking.k8s.io/v1, sigs.k8s.io/gateway-api
// v1.6) are stored kinds: the model keeps, defaults and validates them as
// the CRDs' OpenAPI schema and CEL rules would on an API server (the rules
// a controller relies on; the rest of the schema is the Go type's), counts
// metadata.generation on spec changes, and keeps status apart from spec as
// the CRDs' status subresource does: apply never writes status, SetStatus
// (the controller's UpdateStatus) writes only status. A controller (package
// addons/gateway) serves them.
const GatewayGroup = "gateway.networking.k8s.io"

var gatewayKinds = []*kindInfo{
	gatewayStored("GatewayClass", "gatewayclasses", false, func() runtime.Object { return &gwv1.GatewayClass{} }, validateGatewayClass, "gc"),
	gatewayStored("Gateway", "gateways", true, func() runtime.Object { return &gwv1.Gateway{} }, validateGateway, "gtw"),
	gatewayStored("HTTPRoute", "httproutes", true, func() runtime.Object { return &gwv1.HTTPRoute{} }, validateHTTPRoute),
	gatewayStored("ReferenceGrant", "referencegrants", true, func() runtime.Object { return &gwv1.ReferenceGrant{} }, validateReferenceGrant, "refgrant"),
}

func gatewayStored(kind, res string, namespaced bool, newObj func() runtime.Object, validate func(obj, old runtime.Object) field.ErrorList, aliases ...string) *kindInfo {
	ki := stored(kind, GatewayGroup, "v1", res, strings.ToLower(kind)+"."+GatewayGroup, namespaced, newObj, validate, aliases...)
	ops := ki.ops.(storedOps)
	ops.prepare = prepareGatewayObject
	ki.ops = ops
	return ki
}

// prepareGatewayObject does what the API server does to a custom resource
// with a status subresource before validation: defaults the schema's
// defaults, keeps the stored status (a create starts without one), and
// moves metadata.generation on when the spec changed.
func prepareGatewayObject(obj, old runtime.Object) {
	switch o := obj.(type) {
	case *gwv1.GatewayClass:
		o.Status = gwv1.GatewayClassStatus{}
		o.Generation = 1
		if p, ok := old.(*gwv1.GatewayClass); ok {
			o.Status, o.Generation = p.Status, nextGeneration(p.Generation, p.Spec, o.Spec)
		}
	case *gwv1.Gateway:
		defaultGateway(o)
		o.Status = gwv1.GatewayStatus{}
		o.Generation = 1
		if p, ok := old.(*gwv1.Gateway); ok {
			o.Status, o.Generation = p.Status, nextGeneration(p.Generation, p.Spec, o.Spec)
		}
	case *gwv1.HTTPRoute:
		defaultHTTPRoute(o)
		o.Status = gwv1.HTTPRouteStatus{}
		o.Generation = 1
		if p, ok := old.(*gwv1.HTTPRoute); ok {
			o.Status, o.Generation = p.Status, nextGeneration(p.Generation, p.Spec, o.Spec)
		}
	case *gwv1.ReferenceGrant:
		o.Generation = 1
		if p, ok := old.(*gwv1.ReferenceGrant); ok {
			o.Generation = nextGeneration(p.Generation, p.Spec, o.Spec)
		}
	}
}

func nextGeneration(gen int64, old, spec any) int64 {
	if apiequality.Semantic.DeepEqual(old, spec) {
		return gen
	}
	return gen + 1
}

// defaultGateway fills the CRD's defaults: allowedRoutes.namespaces.from
// Same.
func defaultGateway(g *gwv1.Gateway) {
	for i := range g.Spec.Listeners {
		l := &g.Spec.Listeners[i]
		if l.AllowedRoutes == nil {
			l.AllowedRoutes = &gwv1.AllowedRoutes{}
		}
		if l.AllowedRoutes.Namespaces == nil {
			l.AllowedRoutes.Namespaces = &gwv1.RouteNamespaces{}
		}
		if l.AllowedRoutes.Namespaces.From == nil {
			l.AllowedRoutes.Namespaces.From = ptrTo(gwv1.NamespacesFromSame)
		}
		if l.TLS != nil && l.TLS.Mode == nil {
			l.TLS.Mode = ptrTo(gwv1.TLSModeTerminate)
		}
		if l.TLS == nil {
			continue
		}
		for j := range l.TLS.CertificateRefs {
			r := &l.TLS.CertificateRefs[j]
			if r.Group == nil {
				r.Group = ptrTo(gwv1.Group(""))
			}
			if r.Kind == nil {
				r.Kind = ptrTo(gwv1.Kind("Secret"))
			}
		}
	}
}

// defaultHTTPRoute fills the CRD's defaults: a rule without matches
// matches PathPrefix /, a match without a path has PathPrefix /, header
// and query matches are Exact, parentRefs are Gateways of the group,
// backendRefs core Services of weight 1, a redirect is a 302.
func defaultHTTPRoute(r *gwv1.HTTPRoute) {
	for i := range r.Spec.ParentRefs {
		p := &r.Spec.ParentRefs[i]
		if p.Group == nil {
			p.Group = ptrTo(gwv1.Group(GatewayGroup))
		}
		if p.Kind == nil {
			p.Kind = ptrTo(gwv1.Kind("Gateway"))
		}
	}
	if len(r.Spec.Rules) == 0 {
		r.Spec.Rules = []gwv1.HTTPRouteRule{{}}
	}
	for i := range r.Spec.Rules {
		rule := &r.Spec.Rules[i]
		if len(rule.Matches) == 0 {
			rule.Matches = []gwv1.HTTPRouteMatch{{}}
		}
		for j := range rule.Matches {
			m := &rule.Matches[j]
			if m.Path == nil {
				m.Path = &gwv1.HTTPPathMatch{}
			}
			if m.Path.Type == nil {
				m.Path.Type = ptrTo(gwv1.PathMatchPathPrefix)
			}
			if m.Path.Value == nil {
				m.Path.Value = ptrTo("/")
			}
			for k := range m.Headers {
				if m.Headers[k].Type == nil {
					m.Headers[k].Type = ptrTo(gwv1.HeaderMatchExact)
				}
			}
			for k := range m.QueryParams {
				if m.QueryParams[k].Type == nil {
					m.QueryParams[k].Type = ptrTo(gwv1.QueryParamMatchExact)
				}
			}
		}
		defaultFilters(rule.Filters)
		for j := range rule.BackendRefs {
			b := &rule.BackendRefs[j]
			if b.Group == nil {
				b.Group = ptrTo(gwv1.Group(""))
			}
			if b.Kind == nil {
				b.Kind = ptrTo(gwv1.Kind("Service"))
			}
			if b.Weight == nil {
				b.Weight = ptrTo(int32(1))
			}
			defaultFilters(b.Filters)
		}
	}
}

func defaultFilters(fs []gwv1.HTTPRouteFilter) {
	for i := range fs {
		if rr := fs[i].RequestRedirect; rr != nil && rr.StatusCode == nil {
			rr.StatusCode = ptrTo(302)
		}
	}
}

var (
	gwHostnameRE    = regexp.MustCompile(`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	gwSectionNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	gwHeaderNameRE  = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")
	gwPathRE        = regexp.MustCompile(`^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$`)
	gwControllerRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$`)
)

func validateGatewayClass(obj, old runtime.Object) field.ErrorList {
	gc := obj.(*gwv1.GatewayClass)
	el := nameErrs(gc.Name)
	cp := field.NewPath("spec", "controllerName")
	c := string(gc.Spec.ControllerName)
	switch {
	case c == "":
		el = append(el, field.Required(cp, ""))
	case len(c) > 253:
		el = append(el, field.TooLong(cp, "", 253))
	case !gwControllerRE.MatchString(c):
		el = append(el, field.Invalid(cp, c, "should match '"+gwControllerRE.String()+"'"))
	}
	if o, ok := old.(*gwv1.GatewayClass); ok && o.Spec.ControllerName != gc.Spec.ControllerName {
		el = append(el, field.Invalid(cp, c, "Value is immutable"))
	}
	return el
}

func validateGateway(obj, _ runtime.Object) field.ErrorList {
	g := obj.(*gwv1.Gateway)
	el := nameErrs(g.Name)
	sp := field.NewPath("spec")
	if g.Spec.GatewayClassName == "" {
		el = append(el, field.Required(sp.Child("gatewayClassName"), ""))
	}
	lp := sp.Child("listeners")
	switch n := len(g.Spec.Listeners); {
	case n == 0:
		el = append(el, field.Required(lp, ""))
	case n > 64:
		el = append(el, field.TooMany(lp, n, 64))
	}
	names := map[gwv1.SectionName]bool{}
	combos := map[string]bool{}
	for i, l := range g.Spec.Listeners {
		p := lp.Index(i)
		if !gwSectionNameRE.MatchString(string(l.Name)) || len(l.Name) > 253 {
			el = append(el, field.Invalid(p.Child("name"), l.Name, "should match '"+gwSectionNameRE.String()+"'"))
		}
		if names[l.Name] {
			el = append(el, field.Invalid(lp, "", "Listener name must be unique within the Gateway"))
		}
		names[l.Name] = true
		if l.Port < 1 || l.Port > 65535 {
			el = append(el, field.Invalid(p.Child("port"), l.Port, "should be in the range 1-65535"))
		}
		host := ""
		if l.Hostname != nil {
			host = string(*l.Hostname)
			if !gwHostnameRE.MatchString(host) || len(host) > 253 {
				el = append(el, field.Invalid(p.Child("hostname"), host, "should match '"+gwHostnameRE.String()+"'"))
			}
		}
		combo := fmt.Sprintf("%d/%s/%s", l.Port, l.Protocol, host)
		if combos[combo] {
			el = append(el, field.Invalid(lp, "", "Combination of port, protocol and hostname must be unique for each listener"))
		}
		combos[combo] = true
		switch l.Protocol {
		case gwv1.HTTPProtocolType, gwv1.TCPProtocolType, gwv1.UDPProtocolType:
			if l.TLS != nil {
				el = append(el, field.Invalid(p, "", "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']"))
			}
			if l.Protocol != gwv1.HTTPProtocolType && l.Hostname != nil {
				el = append(el, field.Invalid(p, "", "hostname must not be specified for protocols ['TCP', 'UDP']"))
			}
		case gwv1.HTTPSProtocolType:
			if l.TLS != nil && l.TLS.Mode != nil && *l.TLS.Mode != gwv1.TLSModeTerminate {
				el = append(el, field.Invalid(p, "", "tls mode must be Terminate for protocol HTTPS"))
			}
		case gwv1.TLSProtocolType:
			if l.TLS == nil || l.TLS.Mode == nil {
				el = append(el, field.Invalid(p, "", "tls mode must be set for protocol TLS"))
			}
		case "":
			el = append(el, field.Required(p.Child("protocol"), ""))
		}
		if l.TLS != nil && l.TLS.Mode != nil && *l.TLS.Mode == gwv1.TLSModeTerminate && len(l.TLS.CertificateRefs) == 0 && len(l.TLS.Options) == 0 {
			el = append(el, field.Invalid(p.Child("tls"), "", "certificateRefs or options must be specified when mode is Terminate"))
		}
		if l.TLS != nil && len(l.TLS.CertificateRefs) > 64 {
			el = append(el, field.TooMany(p.Child("tls", "certificateRefs"), len(l.TLS.CertificateRefs), 64))
		}
	}
	return el
}

func validateHTTPRoute(obj, _ runtime.Object) field.ErrorList {
	r := obj.(*gwv1.HTTPRoute)
	el := nameErrs(r.Name)
	sp := field.NewPath("spec")
	if n := len(r.Spec.ParentRefs); n > 32 {
		el = append(el, field.TooMany(sp.Child("parentRefs"), n, 32))
	}
	el = append(el, validateParentRefs(r.Spec.ParentRefs, sp.Child("parentRefs"))...)
	if n := len(r.Spec.Hostnames); n > 16 {
		el = append(el, field.TooMany(sp.Child("hostnames"), n, 16))
	}
	for i, h := range r.Spec.Hostnames {
		if !gwHostnameRE.MatchString(string(h)) || len(h) > 253 {
			el = append(el, field.Invalid(sp.Child("hostnames").Index(i), h, "should match '"+gwHostnameRE.String()+"'"))
		}
	}
	rp := sp.Child("rules")
	if n := len(r.Spec.Rules); n > 16 {
		el = append(el, field.TooMany(rp, n, 16))
	}
	total := 0
	for i, rule := range r.Spec.Rules {
		p := rp.Index(i)
		total += len(rule.Matches)
		if n := len(rule.Matches); n > 64 {
			el = append(el, field.TooMany(p.Child("matches"), n, 64))
		}
		for j, m := range rule.Matches {
			mp := p.Child("matches").Index(j)
			if m.Path != nil && m.Path.Value != nil && m.Path.Type != nil {
				el = append(el, validatePathMatch(*m.Path.Type, *m.Path.Value, mp.Child("path"))...)
			}
			if n := len(m.Headers); n > 16 {
				el = append(el, field.TooMany(mp.Child("headers"), n, 16))
			}
			seen := map[string]bool{}
			for k, h := range m.Headers {
				hp := mp.Child("headers").Index(k)
				if !gwHeaderNameRE.MatchString(string(h.Name)) || len(h.Name) > 256 {
					el = append(el, field.Invalid(hp.Child("name"), h.Name, "should match '"+gwHeaderNameRE.String()+"'"))
				}
				if len(h.Value) < 1 || len(h.Value) > 4096 {
					el = append(el, field.Invalid(hp.Child("value"), h.Value, "should be 1 to 4096 characters long"))
				}
				if n := strings.ToLower(string(h.Name)); seen[n] {
					el = append(el, field.Duplicate(hp, h.Name))
				} else {
					seen[n] = true
				}
			}
		}
		el = append(el, validateFilters(rule.Filters, p.Child("filters"))...)
		redirect := false
		for _, f := range rule.Filters {
			redirect = redirect || f.RequestRedirect != nil
		}
		if redirect && len(rule.BackendRefs) > 0 {
			el = append(el, field.Invalid(p, "", "RequestRedirect filter must not be used together with backendRefs"))
		}
		if n := len(rule.BackendRefs); n > 16 {
			el = append(el, field.TooMany(p.Child("backendRefs"), n, 16))
		}
		for j, b := range rule.BackendRefs {
			bp := p.Child("backendRefs").Index(j)
			if b.Weight != nil && (*b.Weight < 0 || *b.Weight > 1000000) {
				el = append(el, field.Invalid(bp.Child("weight"), *b.Weight, "should be in the range 0-1000000"))
			}
			if (b.Group == nil || *b.Group == "") && (b.Kind == nil || *b.Kind == "Service") && b.Port == nil {
				el = append(el, field.Invalid(bp, "", "Must have port for Service reference"))
			}
			el = append(el, validateFilters(b.Filters, bp.Child("filters"))...)
		}
	}
	if total > 128 {
		el = append(el, field.Invalid(rp, "", "While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route must be less than 128"))
	}
	return el
}

func validatePathMatch(t gwv1.PathMatchType, v string, p *field.Path) field.ErrorList {
	var el field.ErrorList
	bad := func(msg string) { el = append(el, field.Invalid(p, "", msg)) }
	if len(v) > 1024 {
		el = append(el, field.TooLong(p.Child("value"), "", 1024))
	}
	switch t {
	case gwv1.PathMatchExact, gwv1.PathMatchPathPrefix:
	case gwv1.PathMatchRegularExpression:
		return el
	default:
		bad("type must be one of ['Exact', 'PathPrefix', 'RegularExpression']")
		return el
	}
	if !strings.HasPrefix(v, "/") {
		bad("value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']")
	}
	for _, s := range []string{"//", "/./", "/../", "%2f", "%2F", "#"} {
		if strings.Contains(v, s) {
			bad(fmt.Sprintf("must not contain '%s' when type one of ['Exact', 'PathPrefix']", s))
		}
	}
	for _, s := range []string{"/..", "/."} {
		if strings.HasSuffix(v, s) {
			bad(fmt.Sprintf("must not end with '%s' when type one of ['Exact', 'PathPrefix']", s))
		}
	}
	if !gwPathRE.MatchString(v) {
		bad("must only contain valid characters (matching " + gwPathRE.String() + ") for types ['Exact', 'PathPrefix']")
	}
	return el
}

func validateFilters(fs []gwv1.HTTPRouteFilter, p *field.Path) field.ErrorList {
	var el field.ErrorList
	if n := len(fs); n > 16 {
		el = append(el, field.TooMany(p, n, 16))
	}
	count := map[gwv1.HTTPRouteFilterType]int{}
	for i, f := range fs {
		fp := p.Index(i)
		count[f.Type]++
		pairs := []struct {
			typ gwv1.HTTPRouteFilterType
			set bool
			fld string
		}{
			{gwv1.HTTPRouteFilterRequestHeaderModifier, f.RequestHeaderModifier != nil, "requestHeaderModifier"},
			{gwv1.HTTPRouteFilterResponseHeaderModifier, f.ResponseHeaderModifier != nil, "responseHeaderModifier"},
			{gwv1.HTTPRouteFilterRequestMirror, f.RequestMirror != nil, "requestMirror"},
			{gwv1.HTTPRouteFilterRequestRedirect, f.RequestRedirect != nil, "requestRedirect"},
			{gwv1.HTTPRouteFilterURLRewrite, f.URLRewrite != nil, "urlRewrite"},
			{gwv1.HTTPRouteFilterExtensionRef, f.ExtensionRef != nil, "extensionRef"},
		}
		for _, pr := range pairs {
			if pr.set && f.Type != pr.typ {
				el = append(el, field.Invalid(fp, "", fmt.Sprintf("filter.%s must be nil if the filter.type is not %s", pr.fld, pr.typ)))
			}
			if !pr.set && f.Type == pr.typ {
				el = append(el, field.Invalid(fp, "", fmt.Sprintf("filter.%s must be specified for %s filter.type", pr.fld, pr.typ)))
			}
		}
		for _, hf := range []*gwv1.HTTPHeaderFilter{f.RequestHeaderModifier, f.ResponseHeaderModifier} {
			if hf == nil {
				continue
			}
			for _, h := range append(append([]gwv1.HTTPHeader(nil), hf.Set...), hf.Add...) {
				if !gwHeaderNameRE.MatchString(string(h.Name)) {
					el = append(el, field.Invalid(fp, h.Name, "header name should match '"+gwHeaderNameRE.String()+"'"))
				}
			}
		}
		if rr := f.RequestRedirect; rr != nil {
			if rr.Hostname != nil && (!gwHostnameRE.MatchString(string(*rr.Hostname)) || strings.HasPrefix(string(*rr.Hostname), "*")) {
				el = append(el, field.Invalid(fp.Child("requestRedirect", "hostname"), *rr.Hostname, "should be a DNS name"))
			}
			if rr.StatusCode != nil && *rr.StatusCode != 301 && *rr.StatusCode != 302 && *rr.StatusCode != 303 && *rr.StatusCode != 307 && *rr.StatusCode != 308 {
				el = append(el, field.NotSupported(fp.Child("requestRedirect", "statusCode"), *rr.StatusCode, []string{"301", "302", "303", "307", "308"}))
			}
			if rr.Scheme != nil && *rr.Scheme != "http" && *rr.Scheme != "https" {
				el = append(el, field.NotSupported(fp.Child("requestRedirect", "scheme"), *rr.Scheme, []string{"http", "https"}))
			}
		}
	}
	if count[gwv1.HTTPRouteFilterRequestRedirect] > 0 && count[gwv1.HTTPRouteFilterURLRewrite] > 0 {
		el = append(el, field.Invalid(p, "", "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both"))
	}
	for _, t := range []gwv1.HTTPRouteFilterType{gwv1.HTTPRouteFilterRequestHeaderModifier, gwv1.HTTPRouteFilterResponseHeaderModifier, gwv1.HTTPRouteFilterRequestRedirect, gwv1.HTTPRouteFilterURLRewrite} {
		if count[t] > 1 {
			el = append(el, field.Invalid(p, "", fmt.Sprintf("%s filter cannot be repeated", t)))
		}
	}
	return el
}

func validateParentRefs(refs []gwv1.ParentReference, p *field.Path) field.ErrorList {
	type parent struct{ group, kind, ns, name string }
	bySection := map[parent][]gwv1.ParentReference{}
	for _, r := range refs {
		k := parent{name: string(r.Name)}
		if r.Group != nil {
			k.group = string(*r.Group)
		}
		if r.Kind != nil {
			k.kind = string(*r.Kind)
		}
		if r.Namespace != nil {
			k.ns = string(*r.Namespace)
		}
		bySection[k] = append(bySection[k], r)
	}
	var el field.ErrorList
	for _, rs := range bySection {
		if len(rs) < 2 {
			continue
		}
		seen := map[string]bool{}
		for _, r := range rs {
			if r.SectionName == nil && r.Port == nil {
				el = append(el, field.Invalid(p, "", "sectionName or port must be specified when parentRefs includes 2 or more references to the same parent"))
				return el
			}
			k := fmt.Sprint(r.SectionName != nil, ptrString(r.SectionName), r.Port != nil, ptrString(r.Port))
			if seen[k] {
				el = append(el, field.Invalid(p, "", "sectionName or port must be unique when parentRefs includes 2 or more references to the same parent"))
				return el
			}
			seen[k] = true
		}
	}
	return el
}

func ptrString[T any](p *T) string {
	if p == nil {
		return ""
	}
	return fmt.Sprint(*p)
}

func validateReferenceGrant(obj, _ runtime.Object) field.ErrorList {
	g := obj.(*gwv1.ReferenceGrant)
	el := nameErrs(g.Name)
	sp := field.NewPath("spec")
	if n := len(g.Spec.From); n < 1 || n > 16 {
		el = append(el, field.Invalid(sp.Child("from"), n, "should have 1 to 16 items"))
	}
	if n := len(g.Spec.To); n < 1 || n > 16 {
		el = append(el, field.Invalid(sp.Child("to"), n, "should have 1 to 16 items"))
	}
	for i, f := range g.Spec.From {
		if f.Kind == "" {
			el = append(el, field.Required(sp.Child("from").Index(i).Child("kind"), ""))
		}
		for _, msg := range validation.IsDNS1123Label(string(f.Namespace)) {
			el = append(el, field.Invalid(sp.Child("from").Index(i).Child("namespace"), f.Namespace, msg))
		}
	}
	for i, t := range g.Spec.To {
		if t.Kind == "" {
			el = append(el, field.Required(sp.Child("to").Index(i).Child("kind"), ""))
		}
	}
	return el
}

// SetStatus replaces the status of a Gateway API object (a GatewayClass,
// Gateway or HTTPRoute: obj's type says which) and nothing else, as
// UpdateStatus through the status subresource does. It returns the stored
// object.
func (c *Cluster) SetStatus(obj runtime.Object) (runtime.Object, error) {
	ki := kindOf(obj)
	if ki == nil || ki.Group != GatewayGroup {
		return nil, fmt.Errorf("set status: %T has no status the model takes", obj)
	}
	var out runtime.Object
	err := c.change(func(t *txn) error {
		m := objectMeta(obj)
		ns := ""
		if ki.Namespaced {
			ns = namespaceOr(m.Namespace)
		}
		cur := getObject(t.s, ki, ns, m.Name)
		if cur == nil {
			return ki.notFound(m.Name)
		}
		next := cur.DeepCopyObject()
		switch o := next.(type) {
		case *gwv1.GatewayClass:
			o.Status = obj.(*gwv1.GatewayClass).Status
		case *gwv1.Gateway:
			o.Status = obj.(*gwv1.Gateway).Status
		case *gwv1.HTTPRoute:
			o.Status = obj.(*gwv1.HTTPRoute).Status
		default:
			return fmt.Errorf("set status: %s has no status", ki.Kind)
		}
		if apiequality.Semantic.DeepEqual(cur, next) {
			out = cur.DeepCopyObject()
			return nil
		}
		objectMeta(next).ResourceVersion = t.s.nextRV()
		ki.ops.set(t, key(ns, m.Name), next)
		out = next.DeepCopyObject()
		return nil
	})
	return out, err
}
