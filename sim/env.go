package sim

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// PodEnv returns the Service environment variables the kubelet gives the
// pod's containers: for every Service of the pod's namespace that existed
// when the pod was created and has a ClusterIP, {SVC}_SERVICE_HOST,
// {SVC}_SERVICE_PORT, {SVC}_SERVICE_PORT_{PORTNAME} and the Docker links
// variables ({SVC}_PORT, {SVC}_PORT_{port}_{PROTO}{,_PROTO,_PORT,_ADDR}).
// Services are taken in name order. It returns nil for an unknown pod and
// for a pod with spec.enableServiceLinks: false (the kubelet would still
// add the master "kubernetes" Service, which svcsim does not have).
func (c *Cluster) PodEnv(namespace, pod string) []corev1.EnvVar {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.st.Pods[key(namespaceOr(namespace), pod)]
	if p == nil {
		return nil
	}
	return serviceEnv(c.st, p)
}

func serviceEnv(s *store, p *corev1.Pod) []corev1.EnvVar {
	if p.Spec.EnableServiceLinks != nil && !*p.Spec.EnableServiceLinks {
		return nil
	}
	podSeq := s.Seq["Pod/"+key(p.Namespace, p.Name)]
	var svcs []*corev1.Service
	for _, svc := range s.Services {
		if svc.Namespace != p.Namespace || s.Seq["Service/"+key(svc.Namespace, svc.Name)] > podSeq {
			continue
		}
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone || len(svc.Spec.Ports) == 0 {
			continue
		}
		svcs = append(svcs, svc)
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Name < svcs[j].Name })
	var out []corev1.EnvVar
	for _, svc := range svcs {
		out = append(out, serviceVars(svc)...)
	}
	return out
}

// EnvName turns a Service or port name into the variable prefix the
// kubelet uses: upper case, dashes to underscores.
func EnvName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }

func serviceVars(svc *corev1.Service) []corev1.EnvVar {
	prefix := EnvName(svc.Name)
	ip := svc.Spec.ClusterIP
	out := []corev1.EnvVar{
		{Name: prefix + "_SERVICE_HOST", Value: ip},
		{Name: prefix + "_SERVICE_PORT", Value: strconv.Itoa(int(svc.Spec.Ports[0].Port))},
	}
	for _, p := range svc.Spec.Ports {
		if p.Name != "" {
			out = append(out, corev1.EnvVar{Name: prefix + "_SERVICE_PORT_" + EnvName(p.Name), Value: strconv.Itoa(int(p.Port))})
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
