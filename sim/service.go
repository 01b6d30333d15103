package sim

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxAffinityTimeout is the API server's limit for
// sessionAffinityConfig.clientIP.timeoutSeconds (one day).
const MaxAffinityTimeout = 86400

var (
	specPath  = field.NewPath("spec")
	portsPath = specPath.Child("ports")
)

// defaultService fills the API server's defaults.
func defaultService(svc *corev1.Service) {
	if svc.Spec.Type == "" {
		svc.Spec.Type = corev1.ServiceTypeClusterIP
	}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal == 0 {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	if svc.Spec.SessionAffinity == "" {
		svc.Spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityNone {
		// The API server's defaulting drops a config that has no use.
		svc.Spec.SessionAffinityConfig = nil
	}
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		if svc.Spec.SessionAffinityConfig == nil {
			svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{}
		}
		if svc.Spec.SessionAffinityConfig.ClientIP == nil {
			svc.Spec.SessionAffinityConfig.ClientIP = &corev1.ClientIPConfig{}
		}
		if svc.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds == nil {
			v := int32(corev1.DefaultClientIPServiceAffinitySeconds)
			svc.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds = &v
		}
	}
	if svc.Spec.ClusterIP == "" && len(svc.Spec.ClusterIPs) > 0 {
		svc.Spec.ClusterIP = svc.Spec.ClusterIPs[0]
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return
	}
	if svc.Spec.InternalTrafficPolicy == nil {
		v := corev1.ServiceInternalTrafficPolicyCluster
		svc.Spec.InternalTrafficPolicy = &v
	}
	if externallyAccessible(svc) && svc.Spec.ExternalTrafficPolicy == "" {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.AllocateLoadBalancerNodePorts == nil {
		v := true
		svc.Spec.AllocateLoadBalancerNodePorts = &v
	}
}

func needsNodePorts(t corev1.ServiceType) bool {
	return t == corev1.ServiceTypeNodePort || t == corev1.ServiceTypeLoadBalancer
}

// externallyAccessible is the API server's test for Services that may have
// an externalTrafficPolicy: NodePorts, LoadBalancers and ClusterIPs with
// external IPs.
func externallyAccessible(svc *corev1.Service) bool {
	return needsNodePorts(svc.Spec.Type) || svc.Spec.Type == corev1.ServiceTypeClusterIP && len(svc.Spec.ExternalIPs) > 0
}

// needsHealthCheck: a LoadBalancer with externalTrafficPolicy Local gets a
// healthCheckNodePort.
func needsHealthCheck(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

// duplicatePortKey is the value the API server reports for a duplicate
// port: its internal ServicePort with only port and protocol set, printed
// with the internal type's field names.
type duplicatePortKey struct {
	Name        string
	Protocol    corev1.Protocol
	AppProtocol *string
	Port        int32
	TargetPort  intstr.IntOrString
	NodePort    int32
}

// validateService checks a defaulted Service like the API server's
// ValidateService (the parts svcsim implements), plus what svcsim does not
// support (SCTP, IPv6). old is nil on create.
func validateService(svc, old *corev1.Service) field.ErrorList {
	var el field.ErrorList
	// Service names are RFC 1123 labels (relaxed from RFC 1035 upstream).
	el = append(el, validateName(svc.Name, validation.IsDNS1123Label)...)
	el = append(el, validateLabels(svc.Labels, field.NewPath("metadata", "labels"))...)
	s := &svc.Spec
	switch s.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName:
	default:
		el = append(el, field.NotSupported(specPath.Child("type"), s.Type,
			[]string{"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"}))
	}
	headless := s.ClusterIP == corev1.ClusterIPNone
	if s.Type == corev1.ServiceTypeExternalName {
		if s.ExternalName == "" {
			el = append(el, field.Required(specPath.Child("externalName"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Subdomain(trimDot(s.ExternalName)) {
				el = append(el, field.Invalid(specPath.Child("externalName"), s.ExternalName, msg))
			}
		}
		if s.ClusterIP != "" && (old == nil || old.Spec.Type == corev1.ServiceTypeExternalName) {
			el = append(el, field.Forbidden(specPath.Child("clusterIPs"), "may not be set for ExternalName services"))
		}
	} else if len(s.Ports) == 0 && !headless {
		el = append(el, field.Required(portsPath, ""))
	}
	if headless && needsNodePorts(s.Type) {
		el = append(el, field.Invalid(specPath.Child("clusterIPs").Index(0), s.ClusterIP,
			fmt.Sprintf("may not be set to 'None' for %s services", s.Type)))
	}
	if s.ClusterIP != "" && !headless && s.Type != corev1.ServiceTypeExternalName {
		if _, err := netip.ParseAddr(s.ClusterIP); err != nil {
			el = append(el, field.Invalid(specPath.Child("clusterIPs").Index(0), s.ClusterIP, validIPMsg))
		}
	}
	if old != nil && old.Spec.Type != corev1.ServiceTypeExternalName && s.Type != corev1.ServiceTypeExternalName &&
		old.Spec.ClusterIP != "" && s.ClusterIP != old.Spec.ClusterIP {
		el = append(el, field.Invalid(specPath.Child("clusterIPs").Index(0), s.ClusterIPs, "may not change once set"))
	}

	names := map[string]bool{}
	type portKey struct {
		port  int32
		proto corev1.Protocol
	}
	ports := map[portKey]bool{}
	for i := range s.Ports {
		p := &s.Ports[i]
		pp := portsPath.Index(i)
		el = append(el, validatePortName(p.Name, len(s.Ports) > 1, names, pp.Child("name"))...)
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
		if p.TargetPort.Type == intstr.String {
			for _, msg := range validation.IsValidPortName(p.TargetPort.StrVal) {
				el = append(el, field.Invalid(pp.Child("targetPort"), p.TargetPort.StrVal, msg))
			}
		} else {
			for _, msg := range validation.IsValidPortNum(int(p.TargetPort.IntVal)) {
				el = append(el, field.Invalid(pp.Child("targetPort"), p.TargetPort.IntVal, msg))
			}
		}
		k := portKey{p.Port, p.Protocol}
		if ports[k] {
			el = append(el, field.Duplicate(pp, duplicatePortKey{Protocol: p.Protocol, Port: p.Port}))
		}
		ports[k] = true
		// A nodePort used twice with one protocol is the allocator's
		// "already allocated", which comes first (checkAllocation).
		if p.NodePort != 0 {
			if !needsNodePorts(s.Type) {
				el = append(el, field.Forbidden(pp.Child("nodePort"),
					fmt.Sprintf("may not be used when `type` is '%s'", s.Type)))
			} else {
				for _, msg := range validation.IsValidPortNum(int(p.NodePort)) {
					el = append(el, field.Invalid(pp.Child("nodePort"), p.NodePort, msg))
				}
			}
		}
	}

	switch s.SessionAffinity {
	case corev1.ServiceAffinityNone:
		if s.SessionAffinityConfig != nil {
			el = append(el, field.Forbidden(specPath.Child("sessionAffinityConfig"),
				fmt.Sprintf("must not be set when session affinity is %s", corev1.ServiceAffinityNone)))
		}
	case corev1.ServiceAffinityClientIP:
		if ts := s.SessionAffinityConfig.ClientIP.TimeoutSeconds; *ts <= 0 || *ts > MaxAffinityTimeout {
			el = append(el, field.Invalid(specPath.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds"), *ts,
				fmt.Sprintf("must be greater than 0 and less than %d", MaxAffinityTimeout)))
		}
	default:
		el = append(el, field.NotSupported(specPath.Child("sessionAffinity"), s.SessionAffinity, []string{"ClientIP", "None"}))
	}
	for i, ip := range s.ExternalIPs {
		fld := specPath.Child("externalIPs").Index(i)
		if _, err := netip.ParseAddr(ip); err != nil {
			el = append(el, field.Invalid(fld, ip, validIPMsg))
			continue
		}
		el = append(el, validateNonSpecialIP(ip, fld)...)
	}
	el = append(el, validateTrafficFields(svc)...)
	for k, v := range s.Selector {
		for _, msg := range validation.IsValidLabelValue(v) {
			el = append(el, field.Invalid(specPath.Child("selector"), v, msg))
		}
		for _, msg := range validation.IsQualifiedName(k) {
			el = append(el, field.Invalid(specPath.Child("selector"), k, msg))
		}
	}
	return el
}

func trimDot(s string) string {
	if len(s) > 0 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}

// validIPMsg is the API server's message for a string that is no IP address.
const validIPMsg = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"

// validateTrafficFields checks the traffic policies, the health check port
// and load-balancer source ranges as the API server does, with its
// messages.
func validateTrafficFields(svc *corev1.Service) field.ErrorList {
	var el field.ErrorList
	s := &svc.Spec
	if !externallyAccessible(svc) {
		if s.ExternalTrafficPolicy != "" {
			el = append(el, field.Invalid(specPath.Child("externalTrafficPolicy"), s.ExternalTrafficPolicy,
				"may only be set for externally-accessible services"))
		}
	} else {
		switch s.ExternalTrafficPolicy {
		case corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal:
		default:
			el = append(el, field.NotSupported(specPath.Child("externalTrafficPolicy"), s.ExternalTrafficPolicy, []string{"Cluster", "Local"}))
		}
	}
	if !needsHealthCheck(svc) && s.HealthCheckNodePort != 0 {
		el = append(el, field.Invalid(specPath.Child("healthCheckNodePort"), s.HealthCheckNodePort,
			"may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
	}
	if s.Type != corev1.ServiceTypeExternalName && s.InternalTrafficPolicy != nil {
		switch *s.InternalTrafficPolicy {
		case corev1.ServiceInternalTrafficPolicyCluster, corev1.ServiceInternalTrafficPolicyLocal:
		default:
			el = append(el, field.NotSupported(specPath.Child("internalTrafficPolicy"), *s.InternalTrafficPolicy, []string{"Cluster", "Local"}))
		}
	}
	if len(s.LoadBalancerSourceRanges) > 0 && s.Type != corev1.ServiceTypeLoadBalancer {
		el = append(el, field.Forbidden(specPath.Child("LoadBalancerSourceRanges"), "may only be used when `type` is 'LoadBalancer'"))
	}
	for i, r := range s.LoadBalancerSourceRanges {
		// The API server names the field with a capital L here.
		if _, err := netip.ParsePrefix(strings.TrimSpace(r)); err != nil {
			el = append(el, field.Invalid(specPath.Child("LoadBalancerSourceRanges").Index(i), r, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
		}
	}
	return el
}

// validateIPFamilies checks the IP family fields as the API server's
// allocator does on a single-stack IPv4 cluster.
func validateIPFamilies(svc *corev1.Service) field.ErrorList {
	var el field.ErrorList
	s := &svc.Spec
	if p := s.IPFamilyPolicy; p != nil {
		switch *p {
		case corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyPreferDualStack:
		case corev1.IPFamilyPolicyRequireDualStack:
			el = append(el, field.Invalid(specPath.Child("ipFamilyPolicy"), *p, "this cluster is not configured for dual-stack services"))
		default:
			el = append(el, field.NotSupported(specPath.Child("ipFamilyPolicy"), *p, []string{"PreferDualStack", "RequireDualStack", "SingleStack"}))
		}
	}
	for i, f := range s.IPFamilies {
		if f != corev1.IPv4Protocol {
			el = append(el, field.Invalid(specPath.Child("ipFamilies").Index(i), f, "not configured on this cluster"))
		}
	}
	if s.ClusterIP != "" && s.ClusterIP != corev1.ClusterIPNone {
		if ip, err := netip.ParseAddr(s.ClusterIP); err == nil && !ip.Is4() {
			el = append(el, field.Invalid(specPath.Child("clusterIPs").Index(0), []string{s.ClusterIP},
				"IPv6 is not configured on this cluster"))
		}
	}
	return el
}

// validateNonSpecialIP rejects what may not be an endpoint or external IP,
// with the API server's messages, plus IPv6 (svcsim is IPv4 only).
func validateNonSpecialIP(s string, fld *field.Path) field.ErrorList {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return field.ErrorList{field.Invalid(fld, s, "must be a valid IP address")}
	}
	var el field.ErrorList
	if ip.IsUnspecified() {
		el = append(el, field.Invalid(fld, s, fmt.Sprintf("may not be unspecified (%v)", s)))
	}
	if ip.IsLoopback() {
		el = append(el, field.Invalid(fld, s, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
	}
	if ip.IsLinkLocalUnicast() {
		el = append(el, field.Invalid(fld, s, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
	}
	if ip.IsLinkLocalMulticast() {
		el = append(el, field.Invalid(fld, s, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
	}
	if len(el) == 0 && !ip.Is4() {
		el = append(el, field.Invalid(fld, s, "svcsim simulates IPv4 only"))
	}
	return el
}

func (t *txn) createService(svc *corev1.Service) error {
	defaultService(svc)
	ki := kinds["Service"]
	if err := t.checkAllocation(svc, nil); err != nil {
		return err
	}
	if el := validateService(svc, nil); len(el) > 0 {
		return ki.invalid(svc.Name, el)
	}
	if err := t.allocateService(svc, nil); err != nil {
		return err
	}
	svc.Status = corev1.ServiceStatus{}
	t.initMeta(&svc.ObjectMeta, "Service")
	t.storeService(nil, svc)
	return nil
}

func (t *txn) updateService(old, svc *corev1.Service) error {
	// The singular field wins when a merge left the two disagreeing.
	if svc.Spec.ClusterIP != "" && len(svc.Spec.ClusterIPs) > 0 && svc.Spec.ClusterIPs[0] != svc.Spec.ClusterIP {
		svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
	}
	// What the API server does on update before validating: an omitted
	// clusterIP keeps the allocated one, and fields that only belong to
	// the old type are dropped when the type changes.
	if svc.Spec.ClusterIP == "" && len(svc.Spec.ClusterIPs) == 0 && svc.Spec.Type != corev1.ServiceTypeExternalName {
		svc.Spec.ClusterIP = old.Spec.ClusterIP
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName && old.Spec.Type != corev1.ServiceTypeExternalName &&
		svc.Spec.ClusterIP == old.Spec.ClusterIP {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs, svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy = "", nil, nil, nil
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		svc.Spec.InternalTrafficPolicy = nil
	}
	if needsHealthCheck(old) && !needsHealthCheck(svc) && svc.Spec.HealthCheckNodePort == old.Spec.HealthCheckNodePort {
		svc.Spec.HealthCheckNodePort = 0
	}
	if needsNodePorts(old.Spec.Type) && !needsNodePorts(svc.Spec.Type) {
		for i := range svc.Spec.Ports {
			svc.Spec.Ports[i].NodePort = 0
		}
	}
	if externallyAccessible(old) && !externallyAccessible(svc) && svc.Spec.ExternalTrafficPolicy == old.Spec.ExternalTrafficPolicy {
		svc.Spec.ExternalTrafficPolicy = ""
	}
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityNone || svc.Spec.SessionAffinity == "" {
		// Switching affinity off leaves a defaulted config behind when it
		// came from the old object; drop it like a client would have to.
		if old.Spec.SessionAffinity == corev1.ServiceAffinityClientIP &&
			apiequalityDeref(svc.Spec.SessionAffinityConfig, old.Spec.SessionAffinityConfig) {
			svc.Spec.SessionAffinityConfig = nil
		}
	}
	defaultService(svc)
	ki := kinds["Service"]
	if err := t.checkAllocation(svc, old); err != nil {
		return err
	}
	if el := validateService(svc, old); len(el) > 0 {
		return ki.invalid(svc.Name, el)
	}
	if err := t.allocateService(svc, old); err != nil {
		return err
	}
	svc.Status = old.Status
	t.storeService(old, svc)
	return nil
}

func apiequalityDeref(a, b *corev1.SessionAffinityConfig) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.ClientIP == nil || b.ClientIP == nil {
		return a.ClientIP == b.ClientIP
	}
	if a.ClientIP.TimeoutSeconds == nil || b.ClientIP.TimeoutSeconds == nil {
		return a.ClientIP.TimeoutSeconds == b.ClientIP.TimeoutSeconds
	}
	return *a.ClientIP.TimeoutSeconds == *b.ClientIP.TimeoutSeconds
}

// validatePortName checks one port's name the way Services and Endpoints
// share: required when there are several ports, a DNS label, unique in names.
func validatePortName(name string, several bool, names map[string]bool, path *field.Path) field.ErrorList {
	var el field.ErrorList
	if several && name == "" {
		return append(el, field.Required(path, ""))
	}
	if name == "" {
		return nil
	}
	for _, msg := range validation.IsDNS1123Label(name) {
		el = append(el, field.Invalid(path, name, msg))
	}
	if names[name] {
		el = append(el, field.Duplicate(path, name))
	}
	names[name] = true
	return el
}
