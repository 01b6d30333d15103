// Package podenv holds the kubelet's rules for the Service environment
// variables a container is given, shared by the embedded model (package sim)
// and svcsim's kubelet for the genuine control plane.
package podenv

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Name turns a Service or port name into the variable prefix the kubelet
// uses: upper case, dashes to underscores.
func Name(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }

// HasClusterIP reports whether svc gets variables at all: it has a ClusterIP
// (not headless) and at least one port.
func HasClusterIP(svc *corev1.Service) bool {
	ip := svc.Spec.ClusterIP
	return ip != "" && ip != corev1.ClusterIPNone && len(svc.Spec.Ports) > 0
}

// ServiceVars are one Service's variables: {SVC}_SERVICE_HOST,
// {SVC}_SERVICE_PORT, {SVC}_SERVICE_PORT_{PORTNAME} and the Docker links
// variables ({SVC}_PORT, {SVC}_PORT_{port}_{PROTO}{,_PROTO,_PORT,_ADDR}).
// It returns nil for a Service without a ClusterIP or ports.
func ServiceVars(svc *corev1.Service) []corev1.EnvVar {
	if !HasClusterIP(svc) {
		return nil
	}
	prefix := Name(svc.Name)
	ip := svc.Spec.ClusterIP
	out := []corev1.EnvVar{
		{Name: prefix + "_SERVICE_HOST", Value: ip},
		{Name: prefix + "_SERVICE_PORT", Value: strconv.Itoa(int(svc.Spec.Ports[0].Port))},
	}
	for _, p := range svc.Spec.Ports {
		if p.Name != "" {
			out = append(out, corev1.EnvVar{Name: prefix + "_SERVICE_PORT_" + Name(p.Name), Value: strconv.Itoa(int(p.Port))})
		}
	}
	for i, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		lower := strings.ToLower(proto)
		url := fmt.Sprintf("%s://%s", lower, net.JoinHostPort(ip, strconv.Itoa(int(p.Port))))
		if i == 0 {
			out = append(out, corev1.EnvVar{Name: prefix + "_PORT", Value: url})
		}
		pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
		out = append(out,
			corev1.EnvVar{Name: pp, Value: url},
			corev1.EnvVar{Name: pp + "_PROTO", Value: lower},
			corev1.EnvVar{Name: pp + "_PORT", Value: strconv.Itoa(int(p.Port))},
			corev1.EnvVar{Name: pp + "_ADDR", Value: ip},
		)
	}
	return out
}
