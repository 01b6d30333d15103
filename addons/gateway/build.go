package gateway

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Inputs are the cluster's objects a configuration is built from.
type Inputs struct {
	Classes    []*gwv1.GatewayClass
	Gateways   []*gwv1.Gateway
	Routes     []*gwv1.HTTPRoute
	Grants     []*gwv1.ReferenceGrant
	Services   []*corev1.Service
	Slices     []*discoveryv1.EndpointSlice
	Secrets    []*corev1.Secret
	Namespaces []*corev1.Namespace
	// Ports are the pod's ports that serve each Gateway's listener port
	// ("namespace/name:port" -> pod port): the provisioned Service's
	// targetPorts. A listener port without one is not programmed yet.
	Ports map[string]int
	// Addresses are each Gateway's addresses ("namespace/name" -> the
	// provisioned Service's load-balancer addresses).
	Addresses map[string][]string
	// Now stamps the conditions' lastTransitionTime.
	Now time.Time
}

// Built is one configuration and the status it gives every object.
type Built struct {
	Plan Plan
	// Files are certificate and key files to write under the prefix
	// (named by their content's digest).
	Files map[string][]byte
	// Classes, Gateways and Routes are the statuses to write, by
	// "namespace/name" ("/name" for classes). Routes hold only this
	// controller's parents.
	Classes  map[string]gwv1.GatewayClassStatus
	Gateways map[string]gwv1.GatewayStatus
	Routes   map[string][]gwv1.RouteParentStatus
	// Listeners are each served Gateway's listener ports, for the
	// provisioned Services ("namespace/name" -> sorted ports).
	Listeners map[string][]int32
}

// ref is a Gateway's key.
func nsName(ns, name string) string { return ns + "/" + name }

func condition(typ string, ok bool, reason, msg string, gen int64, now time.Time) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(now)}
}

// listener is one accepted listener of a served Gateway.
type listener struct {
	gw       *gwv1.Gateway
	l        gwv1.Listener
	podPort  int
	cert     *TLSFiles
	resolved bool   // its certificateRefs resolve (HTTPS)
	refWhy   string // why not: a reason
	refMsg   string
	kindsOK  bool // every allowedRoutes kind is one it serves
	// takesHTTP: HTTPRoute is among its kinds (or it names none).
	takesHTTP bool
	attached  int32
}

// Build computes the configuration and statuses for every Gateway whose
// class names controller.
func Build(controller string, in Inputs, base Plan) Built {
	b := Built{Plan: base, Files: map[string][]byte{}, Classes: map[string]gwv1.GatewayClassStatus{},
		Gateways: map[string]gwv1.GatewayStatus{}, Routes: map[string][]gwv1.RouteParentStatus{}, Listeners: map[string][]int32{}}
	now := in.Now
	ours := map[string]bool{}
	for _, gc := range in.Classes {
		if string(gc.Spec.ControllerName) != controller {
			continue
		}
		ours[gc.Name] = true
		st := gc.Status.DeepCopy()
		meta.SetStatusCondition(&st.Conditions, condition(string(gwv1.GatewayClassConditionStatusAccepted), true, string(gwv1.GatewayClassReasonAccepted), "Handled by svcsim's nginx gateway controller", gc.Generation, now))
		b.Classes["/"+gc.Name] = *st
	}
	nsLabels := map[string]labels.Set{}
	for _, ns := range in.Namespaces {
		nsLabels[ns.Name] = ns.Labels
	}
	secrets := map[string]*corev1.Secret{}
	for _, s := range in.Secrets {
		secrets[nsName(s.Namespace, s.Name)] = s
	}
	// Listeners of our Gateways, by Gateway.
	gws := append([]*gwv1.Gateway(nil), in.Gateways...)
	sort.Slice(gws, func(i, j int) bool {
		return nsName(gws[i].Namespace, gws[i].Name) < nsName(gws[j].Namespace, gws[j].Name)
	})
	byGateway := map[string][]*listener{}
	var served []*gwv1.Gateway
	for _, g := range gws {
		if !ours[string(g.Spec.GatewayClassName)] {
			continue
		}
		served = append(served, g)
		key := nsName(g.Namespace, g.Name)
		seen := map[int32]bool{}
		for _, l := range g.Spec.Listeners {
			if !seen[l.Port] {
				seen[l.Port] = true
				b.Listeners[key] = append(b.Listeners[key], l.Port)
			}
			ls := &listener{gw: g, l: l, podPort: in.Ports[fmt.Sprintf("%s:%d", key, l.Port)], resolved: true, kindsOK: true, takesHTTP: true}
			if l.AllowedRoutes != nil && len(l.AllowedRoutes.Kinds) > 0 {
				ls.takesHTTP = false
				for _, k := range l.AllowedRoutes.Kinds {
					if (k.Group != nil && *k.Group != gwv1.GroupName) || k.Kind != "HTTPRoute" {
						ls.kindsOK = false
					} else {
						ls.takesHTTP = true
					}
				}
			}
			if l.Protocol == gwv1.HTTPSProtocolType && l.TLS != nil {
				ls.cert, ls.refWhy, ls.refMsg = resolveCert(g, l, secrets, in.Grants, b.Files)
				ls.resolved = ls.refWhy == ""
			}
			byGateway[key] = append(byGateway[key], ls)
		}
		sort.Slice(b.Listeners[key], func(i, j int) bool { return b.Listeners[key][i] < b.Listeners[key][j] })
	}
	// Routes, in precedence order (oldest first, then by name).
	routes := append([]*gwv1.HTTPRoute(nil), in.Routes...)
	sort.SliceStable(routes, func(i, j int) bool {
		a, c := routes[i], routes[j]
		if !a.CreationTimestamp.Equal(&c.CreationTimestamp) {
			return a.CreationTimestamp.Before(&c.CreationTimestamp)
		}
		return nsName(a.Namespace, a.Name) < nsName(c.Namespace, c.Name)
	})
	svcs := map[string]*corev1.Service{}
	for _, s := range in.Services {
		svcs[nsName(s.Namespace, s.Name)] = s
	}
	rb := &routeBuilder{b: &b, in: in, svcs: svcs, now: now}
	for _, r := range routes {
		rb.route(r, byGateway, nsLabels)
	}
	// Gateways' status.
	for _, g := range served {
		key := nsName(g.Namespace, g.Name)
		st := g.Status.DeepCopy()
		st.Addresses = nil
		for _, a := range in.Addresses[key] {
			t := gwv1.IPAddressType
			st.Addresses = append(st.Addresses, gwv1.GatewayStatusAddress{Type: &t, Value: a})
		}
		programmed := len(st.Addresses) > 0
		var lstatus []gwv1.ListenerStatus
		allValid, anyAccepted := true, false
		for _, ls := range byGateway[key] {
			valid := ls.l.Protocol == gwv1.HTTPProtocolType || ls.l.Protocol == gwv1.HTTPSProtocolType
			old := findListenerStatus(g.Status.Listeners, ls.l.Name)
			cs := old.Conditions
			acceptReason, acceptMsg := string(gwv1.ListenerReasonAccepted), "Listener accepted"
			if !valid {
				acceptReason, acceptMsg = string(gwv1.ListenerReasonUnsupportedProtocol), fmt.Sprintf("protocol %s is not served (HTTP and HTTPS are)", ls.l.Protocol)
			}
			meta.SetStatusCondition(&cs, condition(string(gwv1.ListenerConditionAccepted), valid, acceptReason, acceptMsg, g.Generation, now))
			resolved := ls.resolved && ls.kindsOK
			reason, msg := string(gwv1.ListenerReasonResolvedRefs), "References resolved"
			switch {
			case !ls.kindsOK:
				reason, msg = string(gwv1.ListenerReasonInvalidRouteKinds), "only HTTPRoute is supported"
			case !ls.resolved:
				reason, msg = ls.refWhy, ls.refMsg
			}
			meta.SetStatusCondition(&cs, condition(string(gwv1.ListenerConditionResolvedRefs), resolved, reason, msg, g.Generation, now))
			meta.SetStatusCondition(&cs, condition(string(gwv1.ListenerConditionConflicted), false, string(gwv1.ListenerReasonNoConflicts), "No conflicts", g.Generation, now))
			lprog := valid && resolved && ls.podPort != 0 && programmed
			preason := string(gwv1.ListenerReasonProgrammed)
			if !lprog {
				preason = string(gwv1.ListenerReasonPending)
				if !valid || !resolved {
					preason = string(gwv1.ListenerReasonInvalid)
				}
			}
			meta.SetStatusCondition(&cs, condition(string(gwv1.ListenerConditionProgrammed), lprog, preason, "", g.Generation, now))
			allValid = allValid && valid && resolved
			anyAccepted = anyAccepted || valid
			kinds := []gwv1.RouteGroupKind{}
			if ls.takesHTTP && valid {
				grp := gwv1.Group(gwv1.GroupName)
				kinds = []gwv1.RouteGroupKind{{Group: &grp, Kind: "HTTPRoute"}}
			}
			lstatus = append(lstatus, gwv1.ListenerStatus{Name: ls.l.Name, SupportedKinds: kinds, AttachedRoutes: ls.attached, Conditions: cs})
		}
		st.Listeners = lstatus
		areason, amsg := string(gwv1.GatewayReasonAccepted), "Gateway accepted"
		if !allValid {
			areason, amsg = string(gwv1.GatewayReasonListenersNotValid), "some listeners are not valid"
		}
		// Accepted unless no listener is (the listener conditions say why).
		meta.SetStatusCondition(&st.Conditions, condition(string(gwv1.GatewayConditionAccepted), anyAccepted, areason, amsg, g.Generation, now))
		preason, pmsg := string(gwv1.GatewayReasonProgrammed), "nginx serves it"
		if !programmed {
			preason, pmsg = string(gwv1.GatewayReasonAddressNotAssigned), "waiting for the load balancer's address"
		}
		meta.SetStatusCondition(&st.Conditions, condition(string(gwv1.GatewayConditionProgrammed), programmed, preason, pmsg, g.Generation, now))
		b.Gateways[key] = *st
		// Listeners whose pod port is known are served.
		for _, ls := range byGateway[key] {
			if ls.podPort == 0 || !(ls.l.Protocol == gwv1.HTTPProtocolType || ls.l.Protocol == gwv1.HTTPSProtocolType) || !ls.resolved {
				continue
			}
			b.Plan.addListener(ls)
		}
	}
	rb.finish()
	return b
}

func findListenerStatus(ls []gwv1.ListenerStatus, name gwv1.SectionName) gwv1.ListenerStatus {
	for _, l := range ls {
		if l.Name == name {
			return *l.DeepCopy()
		}
	}
	return gwv1.ListenerStatus{}
}

// resolveCert loads a listener's first certificateRef: a Secret of type
// kubernetes.io/tls (in another namespace only with a ReferenceGrant from
// the Gateway's) whose certificate and key parse. It returns the files, or
// the ResolvedRefs reason and message why not.
func resolveCert(g *gwv1.Gateway, l gwv1.Listener, secrets map[string]*corev1.Secret, grants []*gwv1.ReferenceGrant, files map[string][]byte) (*TLSFiles, string, string) {
	if len(l.TLS.CertificateRefs) == 0 {
		return nil, string(gwv1.ListenerReasonInvalidCertificateRef), "no certificateRefs"
	}
	r := l.TLS.CertificateRefs[0]
	if (r.Group != nil && *r.Group != "") || (r.Kind != nil && *r.Kind != "Secret") {
		return nil, string(gwv1.ListenerReasonInvalidCertificateRef), "only core Secrets are supported"
	}
	ns := g.Namespace
	if r.Namespace != nil && string(*r.Namespace) != g.Namespace {
		ns = string(*r.Namespace)
		if !granted(grants, gwv1.GroupName, "Gateway", g.Namespace, "", "Secret", ns, string(r.Name)) {
			return nil, string(gwv1.ListenerReasonRefNotPermitted), fmt.Sprintf("no ReferenceGrant in %s allows this Gateway to use Secret %s", ns, r.Name)
		}
	}
	s := secrets[nsName(ns, string(r.Name))]
	if s == nil {
		return nil, string(gwv1.ListenerReasonInvalidCertificateRef), fmt.Sprintf("Secret %s/%s not found", ns, r.Name)
	}
	cert, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		return nil, string(gwv1.ListenerReasonInvalidCertificateRef), fmt.Sprintf("Secret %s/%s does not hold a certificate and key: %v", ns, r.Name, err)
	}
	sum := sha256.Sum256(append(append([]byte{}, cert...), key...))
	name := "certs/" + hex.EncodeToString(sum[:16])
	files[name+".crt"], files[name+".key"] = cert, key
	return &TLSFiles{Cert: name + ".crt", Key: name + ".key"}, "", ""
}

// granted reports whether a ReferenceGrant in toNS lets objects of
// fromGroup/fromKind in fromNS refer to toKind toName of core group
// toGroup.
func granted(grants []*gwv1.ReferenceGrant, fromGroup, fromKind, fromNS, toGroup, toKind, toNS, toName string) bool {
	for _, g := range grants {
		if g.Namespace != toNS {
			continue
		}
		from := false
		for _, f := range g.Spec.From {
			from = from || (string(f.Group) == fromGroup && string(f.Kind) == fromKind && string(f.Namespace) == fromNS)
		}
		if !from {
			continue
		}
		for _, t := range g.Spec.To {
			if string(t.Group) == toGroup && string(t.Kind) == toKind && (t.Name == nil || string(*t.Name) == toName) {
				return true
			}
		}
	}
	return false
}

// hostMatches reports whether a route hostname and a listener hostname
// intersect, and the intersection (the more specific of the two).
func hostIntersect(listenerHost, routeHost string) (string, bool) {
	switch {
	case listenerHost == "":
		return routeHost, true
	case routeHost == "":
		return listenerHost, true
	case listenerHost == routeHost:
		return routeHost, true
	case strings.HasPrefix(listenerHost, "*.") && strings.HasSuffix(routeHost, listenerHost[1:]) && len(routeHost) > len(listenerHost)-1:
		return routeHost, true
	case strings.HasPrefix(routeHost, "*.") && strings.HasSuffix(listenerHost, routeHost[1:]) && len(listenerHost) > len(routeHost)-1:
		return listenerHost, true
	}
	return "", false
}

// routeBuilder attaches routes to listeners and collects their rules.
type routeBuilder struct {
	b    *Built
	in   Inputs
	svcs map[string]*corev1.Service
	now  time.Time
	// rules by listener, with the hosts they serve there.
	attach []attachment
	order  int
}

type attachment struct {
	ls    *listener
	hosts []string // "" for any host the listener takes
	rules []*Rule
}

func (rb *routeBuilder) route(r *gwv1.HTTPRoute, byGateway map[string][]*listener, nsLabels map[string]labels.Set) {
	key := nsName(r.Namespace, r.Name)
	var rules []*Rule
	resolved, rreason, rmsg := true, string(gwv1.RouteReasonResolvedRefs), "References resolved"
	accepted, areasonUnsupported := true, ""
	for i, rule := range r.Spec.Rules {
		rl, why, msg, unsupported := rb.rule(r, i, rule)
		if unsupported != "" {
			accepted, areasonUnsupported = false, unsupported
		}
		if why != "" && resolved {
			resolved, rreason, rmsg = false, why, msg
		}
		rules = append(rules, rl)
	}
	var parents []gwv1.RouteParentStatus
	for _, pr := range r.Spec.ParentRefs {
		if (pr.Group != nil && *pr.Group != gwv1.GroupName) || (pr.Kind != nil && *pr.Kind != "Gateway") {
			continue
		}
		ns := r.Namespace
		if pr.Namespace != nil {
			ns = string(*pr.Namespace)
		}
		lss, ok := byGateway[nsName(ns, string(pr.Name))]
		if !ok {
			continue // not our Gateway (or none): another controller's to report
		}
		ps := gwv1.RouteParentStatus{ParentRef: pr, ControllerName: gwv1.GatewayController(ControllerName)}
		for _, old := range r.Status.Parents {
			if string(old.ControllerName) == ControllerName && sameParent(old.ParentRef, pr, r.Namespace) {
				ps.Conditions = append(ps.Conditions, old.Conditions...)
			}
		}
		reason, msg := string(gwv1.RouteReasonNoMatchingParent), "no listener matches the parentRef's sectionName or port"
		attachedAny := false
		for _, ls := range lss {
			if pr.SectionName != nil && *pr.SectionName != ls.l.Name {
				continue
			}
			if pr.Port != nil && *pr.Port != ls.l.Port {
				continue
			}
			if !ls.takesHTTP || !(ls.l.Protocol == gwv1.HTTPProtocolType || ls.l.Protocol == gwv1.HTTPSProtocolType) {
				reason, msg = string(gwv1.RouteReasonNotAllowedByListeners), "the listener does not take HTTPRoutes"
				continue
			}
			if !allowed(ls, r.Namespace, nsLabels) {
				reason, msg = string(gwv1.RouteReasonNotAllowedByListeners), "the listener's allowedRoutes do not take routes from namespace "+r.Namespace
				continue
			}
			lh := ""
			if ls.l.Hostname != nil {
				lh = string(*ls.l.Hostname)
			}
			var hosts []string
			if len(r.Spec.Hostnames) == 0 {
				hosts = []string{lh}
			}
			for _, h := range r.Spec.Hostnames {
				if x, ok := hostIntersect(lh, string(h)); ok {
					hosts = append(hosts, x)
				}
			}
			if len(hosts) == 0 {
				reason, msg = string(gwv1.RouteReasonNoMatchingListenerHostname), "no hostname of the route matches the listener's"
				continue
			}
			attachedAny = true
			if accepted {
				ls.attached++
				rb.attach = append(rb.attach, attachment{ls: ls, hosts: hosts, rules: rules})
			}
		}
		gen := r.Generation
		switch {
		case attachedAny && accepted:
			meta.SetStatusCondition(&ps.Conditions, condition(string(gwv1.RouteConditionAccepted), true, string(gwv1.RouteReasonAccepted), "Route accepted", gen, rb.now))
		case attachedAny:
			meta.SetStatusCondition(&ps.Conditions, condition(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonUnsupportedValue), areasonUnsupported, gen, rb.now))
		default:
			meta.SetStatusCondition(&ps.Conditions, condition(string(gwv1.RouteConditionAccepted), false, reason, msg, gen, rb.now))
		}
		meta.SetStatusCondition(&ps.Conditions, condition(string(gwv1.RouteConditionResolvedRefs), resolved, rreason, rmsg, gen, rb.now))
		parents = append(parents, ps)
	}
	if parents != nil {
		rb.b.Routes[key] = parents
	}
}

func sameParent(a, b gwv1.ParentReference, routeNS string) bool {
	ns := func(p gwv1.ParentReference) string {
		if p.Namespace != nil {
			return string(*p.Namespace)
		}
		return routeNS
	}
	return a.Name == b.Name && ns(a) == ns(b) && ptrStr(a.SectionName) == ptrStr(b.SectionName) && ptrStr(a.Port) == ptrStr(b.Port)
}

func ptrStr[T any](p *T) string {
	if p == nil {
		return ""
	}
	return fmt.Sprint(*p)
}

// allowed applies a listener's allowedRoutes.namespaces to a route's
// namespace.
func allowed(ls *listener, routeNS string, nsLabels map[string]labels.Set) bool {
	from := gwv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	if ar := ls.l.AllowedRoutes; ar != nil && ar.Namespaces != nil {
		if ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
		}
		sel = ar.Namespaces.Selector
	}
	switch from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSame:
		return routeNS == ls.gw.Namespace
	case gwv1.NamespacesFromSelector:
		if sel == nil {
			return false
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		return err == nil && s.Matches(nsLabels[routeNS])
	}
	return false
}

// rule turns one HTTPRoute rule into a Rule; it returns the first
// ResolvedRefs failure (reason, message) and why the rule is unsupported
// ("" when it is).
func (rb *routeBuilder) rule(r *gwv1.HTTPRoute, idx int, rule gwv1.HTTPRouteRule) (*Rule, string, string, string) {
	rb.order++
	out := &Rule{Route: nsName(r.Namespace, r.Name), Index: idx, Order: rb.order}
	for _, m := range rule.Matches {
		mt := Match{Path: "/", Kind: PathPrefix}
		if m.Path != nil {
			if m.Path.Value != nil {
				mt.Path = *m.Path.Value
			}
			if m.Path.Type != nil {
				switch *m.Path.Type {
				case gwv1.PathMatchExact:
					mt.Kind = PathExact
				case gwv1.PathMatchPathPrefix:
					mt.Kind = PathPrefix
				default:
					return out, "", "", fmt.Sprintf("path match type %s is not supported", *m.Path.Type)
				}
			}
		}
		if m.Method != nil {
			mt.Method = string(*m.Method)
		}
		for _, h := range m.Headers {
			if h.Type != nil && *h.Type != gwv1.HeaderMatchExact {
				return out, "", "", fmt.Sprintf("header match type %s is not supported", *h.Type)
			}
			mt.Headers = append(mt.Headers, HeaderMatch{Name: string(h.Name), Value: h.Value})
		}
		for _, q := range m.QueryParams {
			if q.Type != nil && *q.Type != gwv1.QueryParamMatchExact {
				return out, "", "", fmt.Sprintf("query parameter match type %s is not supported", *q.Type)
			}
			mt.Query = append(mt.Query, HeaderMatch{Name: string(q.Name), Value: q.Value})
		}
		out.Matches = append(out.Matches, mt)
	}
	for _, f := range rule.Filters {
		switch f.Type {
		case gwv1.HTTPRouteFilterRequestHeaderModifier:
			hm := f.RequestHeaderModifier
			for _, h := range hm.Set {
				out.SetHeaders = append(out.SetHeaders, Header{Name: string(h.Name), Value: h.Value})
			}
			for _, h := range hm.Add {
				out.AddHeaders = append(out.AddHeaders, Header{Name: string(h.Name), Value: h.Value})
			}
			out.RemoveHeaders = append(out.RemoveHeaders, hm.Remove...)
		case gwv1.HTTPRouteFilterRequestRedirect:
			rr := f.RequestRedirect
			red := &Redirect{Code: 302}
			if rr.StatusCode != nil {
				red.Code = *rr.StatusCode
			}
			if rr.Scheme != nil {
				red.Scheme = *rr.Scheme
			}
			if rr.Hostname != nil {
				red.Host = string(*rr.Hostname)
			}
			if rr.Port != nil {
				red.Port = int(*rr.Port)
			}
			if rr.Path != nil {
				return out, "", "", "redirect path modifiers are not supported"
			}
			out.Redirect = red
		default:
			return out, "", "", fmt.Sprintf("filter %s is not supported", f.Type)
		}
	}
	var why, msg string
	for _, br := range rule.BackendRefs {
		if len(br.Filters) > 0 {
			return out, "", "", "backendRef filters are not supported"
		}
		w := int32(1)
		if br.Weight != nil {
			w = *br.Weight
		}
		be, bwhy, bmsg := rb.backend(r, br.BackendObjectReference)
		if bwhy != "" {
			if why == "" {
				why, msg = bwhy, bmsg
			}
			out.Invalid += int(w)
			continue
		}
		be.Weight = int(w)
		out.Backends = append(out.Backends, be)
	}
	return out, why, msg, ""
}

// backend resolves a backendRef to a Service port's ready endpoints.
func (rb *routeBuilder) backend(r *gwv1.HTTPRoute, ref gwv1.BackendObjectReference) (Backend, string, string) {
	if (ref.Group != nil && *ref.Group != "") || (ref.Kind != nil && *ref.Kind != "Service") {
		return Backend{}, string(gwv1.RouteReasonInvalidKind), fmt.Sprintf("backendRef %s: only core Services are supported", ref.Name)
	}
	ns := r.Namespace
	if ref.Namespace != nil && string(*ref.Namespace) != r.Namespace {
		ns = string(*ref.Namespace)
		if !granted(rb.in.Grants, gwv1.GroupName, "HTTPRoute", r.Namespace, "", "Service", ns, string(ref.Name)) {
			return Backend{}, string(gwv1.RouteReasonRefNotPermitted), fmt.Sprintf("no ReferenceGrant in %s allows this route to use Service %s", ns, ref.Name)
		}
	}
	svc := rb.svcs[nsName(ns, string(ref.Name))]
	if svc == nil {
		return Backend{}, string(gwv1.RouteReasonBackendNotFound), fmt.Sprintf("Service %s/%s not found", ns, ref.Name)
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if ref.Port != nil && svc.Spec.Ports[i].Port == int32(*ref.Port) && svc.Spec.Ports[i].Protocol != corev1.ProtocolUDP {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return Backend{}, string(gwv1.RouteReasonBackendNotFound), fmt.Sprintf("Service %s/%s has no TCP port %s", ns, ref.Name, ptrStr(ref.Port))
	}
	be := Backend{Service: nsName(ns, svc.Name)}
	for _, s := range rb.in.Slices {
		if s.Namespace != ns || s.Labels[discoveryv1.LabelServiceName] != svc.Name || s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		port := 0
		for _, p := range s.Ports {
			if p.Port != nil && ptrStr(p.Name) == sp.Name && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) {
				port = int(*p.Port)
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					be.Servers = append(be.Servers, netip.AddrPortFrom(ip, uint16(port)))
				}
			}
		}
	}
	sort.Slice(be.Servers, func(i, j int) bool { return be.Servers[i].String() < be.Servers[j].String() })
	return be, "", ""
}

// finish puts every attached rule under its listener's servers.
func (rb *routeBuilder) finish() {
	for _, a := range rb.attach {
		// Only listeners nginx serves (valid, resolved, with a pod port).
		if pt := rb.b.Plan.Ports[a.ls.podPort]; a.ls.podPort == 0 || pt == nil || pt.Listener == 0 {
			continue
		}
		for _, h := range a.hosts {
			rb.b.Plan.addRules(a.ls.podPort, h, a.rules)
		}
	}
}
