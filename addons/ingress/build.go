package ingress

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/svcsim/svcsim/addons/ingress/nginxconf"
)

// Annotations the controller reads (ingress-nginx's names, under its
// default prefix). Others under the prefix are ignored, as unknown
// annotations are by ingress-nginx.
const (
	AnnotationPrefix          = "nginx.ingress.kubernetes.io/"
	AnnotationUseRegex        = AnnotationPrefix + "use-regex"
	AnnotationRewriteTarget   = AnnotationPrefix + "rewrite-target"
	AnnotationServiceUpstream = AnnotationPrefix + "service-upstream"
	AnnotationSSLRedirect     = AnnotationPrefix + "ssl-redirect"
	// ClassAnnotation is the class annotation of older Ingresses.
	ClassAnnotation = "kubernetes.io/ingress.class"
	// DefaultClassAnnotation marks the default IngressClass.
	DefaultClassAnnotation = networkingv1.AnnotationIsDefaultIngressClass
)

// Class says which Ingresses a controller serves.
type Class struct {
	// Name is the class name (--ingress-class, "nginx").
	Name string
	// Controller is the IngressClass spec.controller value it implements
	// (--controller-class, "k8s.io/ingress-nginx").
	Controller string
	// WithoutClass also takes Ingresses with no class at all
	// (--watch-ingress-without-class).
	WithoutClass bool
}

// Inputs are the objects a configuration is built from.
type Inputs struct {
	Ingresses []*networkingv1.Ingress
	Classes   []*networkingv1.IngressClass
	Services  []*corev1.Service
	Slices    []*discoveryv1.EndpointSlice
	Secrets   []*corev1.Secret
}

// Rejection is an Ingress, or one of its paths, left out of the
// configuration, with the reason.
type Rejection struct {
	// Ingress is "namespace/name".
	Ingress string
	Reason  string
}

func (r Rejection) String() string { return "Ingress " + r.Ingress + ": " + r.Reason }

// Built is a configuration and what it needs beside it.
type Built struct {
	Config nginxconf.Config
	// Files are written under the prefix before nginx reads the
	// configuration: certificate and key files, named by their digest.
	Files map[string][]byte
	// Served are the Ingresses in the configuration ("namespace/name").
	Served []string
	// Rejected are those (or their paths) left out, sorted.
	Rejected []Rejection
}

// Owns reports whether the controller of class c serves ing.
func (c Class) Owns(ing *networkingv1.Ingress, classes []*networkingv1.IngressClass) bool {
	if v, ok := ing.Annotations[ClassAnnotation]; ok {
		return v == c.Name
	}
	if n := ing.Spec.IngressClassName; n != nil {
		for _, ic := range classes {
			if ic.Name == *n {
				return ic.Spec.Controller == c.Controller
			}
		}
		// No IngressClass of that name: the name alone, as controllers
		// before IngressClass objects read it.
		return *n == c.Name
	}
	if c.WithoutClass {
		return true
	}
	for _, ic := range classes {
		if ic.Spec.Controller == c.Controller && ic.Annotations[DefaultClassAnnotation] == "true" {
			return true
		}
	}
	return false
}

// annotations are one Ingress's parsed annotations.
type annotations struct {
	useRegex, serviceUpstream bool
	sslRedirect               bool
	rewriteTarget             string
}

func parseBool(anns map[string]string, key string, def bool) (bool, error) {
	v, ok := anns[key]
	if !ok {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil || (v != "true" && v != "false") {
		return false, fmt.Errorf("annotation %s: %q is not \"true\" or \"false\"", key, v)
	}
	return b, nil
}

func parseAnnotations(anns map[string]string) (annotations, error) {
	var a annotations
	var err error
	if a.useRegex, err = parseBool(anns, AnnotationUseRegex, false); err != nil {
		return a, err
	}
	if a.serviceUpstream, err = parseBool(anns, AnnotationServiceUpstream, false); err != nil {
		return a, err
	}
	if a.sslRedirect, err = parseBool(anns, AnnotationSSLRedirect, true); err != nil {
		return a, err
	}
	if t, ok := anns[AnnotationRewriteTarget]; ok {
		if err := nginxconf.ValidateRewriteTarget(t); err != nil {
			return a, fmt.Errorf("annotation %s: %w", AnnotationRewriteTarget, err)
		}
		a.rewriteTarget = t
	}
	return a, nil
}

// ingressPath is one path of an accepted Ingress before its host's mode is
// known.
type ingressPath struct {
	src      string
	path     string
	pathType networkingv1.PathType
	backend  *networkingv1.IngressServiceBackend
	ns       string
	ann      annotations
}

// Build turns the Ingresses of class c into one configuration. An Ingress
// with an invalid host, path or annotation is left out whole; a path that
// another (older) Ingress already has for the same host is left out
// alone. Hosts whose Ingresses ask for use-regex or rewrite-target get
// every path as a case-insensitive regular expression, longest first.
func Build(c Class, in Inputs, base nginxconf.Config) Built {
	out := Built{Config: base, Files: map[string][]byte{}}
	out.Config.Servers, out.Config.Upstreams = nil, nil
	ings := append([]*networkingv1.Ingress(nil), in.Ingresses...)
	sort.Slice(ings, func(i, j int) bool {
		a, b := ings[i], ings[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
	})
	byHost := map[string][]ingressPath{}
	var hostOrder []string
	regexHost := map[string]bool{}
	type tlsWant struct {
		secret      string
		src         string
		sslRedirect bool
	}
	tlsFor := map[string]tlsWant{}
	for _, ing := range ings {
		if !c.Owns(ing, in.Classes) {
			continue
		}
		src := ing.Namespace + "/" + ing.Name
		ann, err := parseAnnotations(ing.Annotations)
		if err == nil {
			err = checkIngress(ing)
		}
		if err != nil {
			out.Rejected = append(out.Rejected, Rejection{src, err.Error()})
			continue
		}
		out.Served = append(out.Served, src)
		add := func(host string, p ingressPath) {
			if _, ok := byHost[host]; !ok {
				hostOrder = append(hostOrder, host)
			}
			byHost[host] = append(byHost[host], p)
			if ann.useRegex || ann.rewriteTarget != "" {
				regexHost[host] = true
			}
		}
		if b := ing.Spec.DefaultBackend; b != nil && b.Service != nil {
			add("", ingressPath{src: src, path: "/", pathType: networkingv1.PathTypeImplementationSpecific, backend: b.Service, ns: ing.Namespace, ann: ann})
		}
		for _, r := range ing.Spec.Rules {
			if r.HTTP == nil {
				continue
			}
			for _, p := range r.HTTP.Paths {
				pt := networkingv1.PathTypeImplementationSpecific
				if p.PathType != nil {
					pt = *p.PathType
				}
				path := p.Path
				if path == "" {
					path = "/"
				}
				if p.Backend.Service == nil {
					continue
				}
				add(r.Host, ingressPath{src: src, path: path, pathType: pt, backend: p.Backend.Service, ns: ing.Namespace, ann: ann})
			}
		}
		for _, t := range ing.Spec.TLS {
			for _, h := range t.Hosts {
				if _, ok := tlsFor[h]; !ok && t.SecretName != "" {
					tlsFor[h] = tlsWant{secret: ing.Namespace + "/" + t.SecretName, src: src, sslRedirect: ann.sslRedirect}
				}
			}
		}
	}
	ups := map[string]nginxconf.Upstream{}
	for _, host := range hostOrder {
		srv := nginxconf.Server{Host: host}
		seen := map[string]string{}
		for _, p := range byHost[host] {
			l := nginxconf.Location{Path: p.path, Source: p.src}
			switch {
			case regexHost[host]:
				l.Kind = nginxconf.Regex
				l.RewriteTarget = p.ann.rewriteTarget
			case p.pathType == networkingv1.PathTypeExact:
				l.Kind = nginxconf.Exact
			case p.pathType == networkingv1.PathTypePrefix:
				l.Kind = nginxconf.Prefix
			default:
				l.Kind = nginxconf.Plain
			}
			if err := nginxconf.ValidatePath(l.Path, l.Kind); err != nil {
				out.Rejected = append(out.Rejected, Rejection{p.src, fmt.Sprintf("host %q: %v", host, err)})
				continue
			}
			clash := ""
			for _, k := range nginxconf.LocationKeys(l) {
				if other, ok := seen[k]; ok {
					clash = fmt.Sprintf("host %q: location %s is already Ingress %s's", host, k, other)
				}
			}
			if clash != "" {
				out.Rejected = append(out.Rejected, Rejection{p.src, clash})
				continue
			}
			for _, k := range nginxconf.LocationKeys(l) {
				seen[k] = p.src
			}
			if u, ok := upstream(p, in); ok {
				ups[u.Name] = u
				l.Upstream = u.Name
			}
			srv.Locations = append(srv.Locations, l)
		}
		if host == "" {
			out.Config.DefaultLocations = srv.Locations
			continue
		}
		if t, ok := tlsFor[host]; ok {
			files, err := tlsFiles(t.secret, in.Secrets)
			if err != nil {
				out.Rejected = append(out.Rejected, Rejection{t.src, fmt.Sprintf("host %q: TLS: %v", host, err)})
			} else {
				for name, b := range files.data {
					out.Files[name] = b
				}
				srv.TLS = &nginxconf.TLSFiles{Cert: files.cert, Key: files.key}
				srv.SSLRedirect = t.sslRedirect
			}
		}
		out.Config.Servers = append(out.Config.Servers, srv)
	}
	for _, u := range ups {
		out.Config.Upstreams = append(out.Config.Upstreams, u)
	}
	sort.Slice(out.Config.Upstreams, func(i, j int) bool { return out.Config.Upstreams[i].Name < out.Config.Upstreams[j].Name })
	sort.Slice(out.Rejected, func(i, j int) bool {
		if out.Rejected[i].Ingress != out.Rejected[j].Ingress {
			return out.Rejected[i].Ingress < out.Rejected[j].Ingress
		}
		return out.Rejected[i].Reason < out.Rejected[j].Reason
	})
	return out
}

// checkIngress validates what the configuration takes from an Ingress
// beyond its paths: hosts (rules and TLS) must be DNS names.
func checkIngress(ing *networkingv1.Ingress) error {
	for _, r := range ing.Spec.Rules {
		if r.Host != "" {
			if err := nginxconf.ValidateHost(r.Host); err != nil {
				return err
			}
		}
		if r.HTTP == nil {
			continue
		}
		for _, p := range r.HTTP.Paths {
			if len(p.Path) > nginxconf.MaxPathLen {
				return fmt.Errorf("path of %d bytes: at most %d", len(p.Path), nginxconf.MaxPathLen)
			}
			if p.Backend.Service != nil && !dnsLabel(p.Backend.Service.Name) {
				return fmt.Errorf("backend service name %q is not a DNS label", p.Backend.Service.Name)
			}
		}
	}
	for _, t := range ing.Spec.TLS {
		for _, h := range t.Hosts {
			if err := nginxconf.ValidateHost(h); err != nil {
				return fmt.Errorf("tls: %w", err)
			}
		}
	}
	return nil
}

func dnsLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (r == '-' && i > 0 && i < len(s)-1)
		if !ok {
			return false
		}
	}
	return true
}

// upstream resolves a path's backend: its Service's ready endpoints on the
// port's target (ingress-nginx's default), or the ClusterIP with
// service-upstream. No Service, port or endpoint: no upstream (503).
func upstream(p ingressPath, in Inputs) (nginxconf.Upstream, bool) {
	var svc *corev1.Service
	for _, s := range in.Services {
		if s.Namespace == p.ns && s.Name == p.backend.Name {
			svc = s
		}
	}
	if svc == nil {
		return nginxconf.Upstream{}, false
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		q := &svc.Spec.Ports[i]
		if q.Protocol != "" && q.Protocol != corev1.ProtocolTCP {
			continue
		}
		if (p.backend.Port.Name != "" && q.Name == p.backend.Port.Name) || (p.backend.Port.Name == "" && q.Port == p.backend.Port.Number) {
			sp = q
		}
	}
	if sp == nil {
		return nginxconf.Upstream{}, false
	}
	name := fmt.Sprintf("%s.%s.%d", p.ns, svc.Name, sp.Port)
	if p.ann.serviceUpstream {
		ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil {
			return nginxconf.Upstream{}, false
		}
		return nginxconf.Upstream{Name: name + ".cluster-ip", Servers: []netip.AddrPort{netip.AddrPortFrom(ip, uint16(sp.Port))}}, true
	}
	seen := map[netip.AddrPort]bool{}
	var servers []netip.AddrPort
	for _, es := range in.Slices {
		if es.Namespace != p.ns || es.Labels[discoveryv1.LabelServiceName] != svc.Name || es.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		port := int32(0)
		for _, ep := range es.Ports {
			if ep.Port != nil && (ep.Name == nil && sp.Name == "" || ep.Name != nil && *ep.Name == sp.Name) {
				port = *ep.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range es.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				ap := netip.AddrPortFrom(ip, uint16(port))
				if !seen[ap] {
					seen[ap] = true
					servers = append(servers, ap)
				}
			}
		}
	}
	if len(servers) == 0 {
		return nginxconf.Upstream{}, false
	}
	sort.Slice(servers, func(i, j int) bool { return servers[i].Compare(servers[j]) < 0 })
	return nginxconf.Upstream{Name: name, Servers: servers}, true
}

type certFiles struct {
	cert, key string
	data      map[string][]byte
}

// tlsFiles checks a kubernetes.io/tls Secret's pair (it must load as a
// certificate and its key) and returns its files: only the PEM blocks that
// belong there, re-encoded, named by their digest.
func tlsFiles(secret string, secrets []*corev1.Secret) (certFiles, error) {
	var s *corev1.Secret
	for _, x := range secrets {
		if x.Namespace+"/"+x.Name == secret {
			s = x
		}
	}
	if s == nil {
		return certFiles{}, fmt.Errorf("secret %s not found", secret)
	}
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if _, err := tls.X509KeyPair(crt, key); err != nil {
		return certFiles{}, fmt.Errorf("secret %s: %s and %s are not a certificate and its key: %w", secret, corev1.TLSCertKey, corev1.TLSPrivateKeyKey, err)
	}
	crtPEM, err := pemBlocks(crt, func(t string) bool { return t == "CERTIFICATE" })
	if err != nil {
		return certFiles{}, fmt.Errorf("secret %s: %s: %w", secret, corev1.TLSCertKey, err)
	}
	keyPEM, err := pemBlocks(key, func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") })
	if err != nil {
		return certFiles{}, fmt.Errorf("secret %s: %s: %w", secret, corev1.TLSPrivateKeyKey, err)
	}
	sum := sha256.Sum256(append(append([]byte{}, crtPEM...), keyPEM...))
	id := hex.EncodeToString(sum[:12])
	f := certFiles{cert: "certs/" + id + ".crt", key: "certs/" + id + ".key"}
	f.data = map[string][]byte{f.cert: crtPEM, f.key: keyPEM}
	return f, nil
}

func pemBlocks(data []byte, want func(string) bool) ([]byte, error) {
	var out []byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if !want(b.Type) {
			continue
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: b.Type, Bytes: b.Bytes})...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PEM block")
	}
	return out, nil
}
