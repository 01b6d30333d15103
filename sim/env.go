package sim

import (
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/svcsim/svcsim/sim/podenv"
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
		if !podenv.HasClusterIP(svc) {
			continue
		}
		svcs = append(svcs, svc)
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Name < svcs[j].Name })
	var out []corev1.EnvVar
	for _, svc := range svcs {
		out = append(out, podenv.ServiceVars(svc)...)
	}
	return out
}

// EnvName turns a Service or port name into the variable prefix the
// kubelet uses: upper case, dashes to underscores.
func EnvName(s string) string { return podenv.Name(s) }
