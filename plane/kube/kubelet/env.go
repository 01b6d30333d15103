package kubelet

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/svcsim/svcsim/sim/podenv"
)

// serviceEnv is the Service variables the kubelet gives a container: every
// Service with a ClusterIP in the pod's namespace (unless
// enableServiceLinks is false), plus the default namespace's "kubernetes"
// Service always, as of when the container starts.
func (k *Kubelet) serviceEnv(pod *corev1.Pod) (map[string]string, error) {
	links := ptr.Deref(pod.Spec.EnableServiceLinks, true)
	svcs, err := k.svcLst.List(everything)
	if err != nil {
		return nil, err
	}
	byName := map[string]*corev1.Service{}
	for _, s := range svcs {
		switch {
		case s.Namespace == pod.Namespace && links:
			byName[s.Name] = s
		case s.Namespace == metav1.NamespaceDefault && s.Name == "kubernetes":
			if byName[s.Name] == nil {
				byName[s.Name] = s
			}
		}
	}
	out := map[string]string{}
	for _, s := range byName {
		for _, v := range podenv.ServiceVars(s) {
			out[v.Name] = v.Value
		}
	}
	return out, nil
}

// containerEnv is the container's environment in the kubelet's way: envFrom
// sources, then env (values expanded with $(VAR) from what came before and
// the Service variables, valueFrom resolved: downward API, resources,
// ConfigMap and Secret keys), then the Service variables not set otherwise.
func (k *Kubelet) containerEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container, podIP string, svcEnv map[string]string) ([]string, error) {
	var order []string
	vals := map[string]string{}
	set := func(name, v string) {
		if _, ok := vals[name]; !ok {
			order = append(order, name)
		}
		vals[name] = v
	}
	for _, from := range c.EnvFrom {
		data := map[string]string{}
		switch {
		case from.ConfigMapRef != nil:
			cm, err := k.cfg.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) && ptr.Deref(from.ConfigMapRef.Optional, false) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("envFrom configmap %s: %w", from.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := k.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) && ptr.Deref(from.SecretRef.Optional, false) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("envFrom secret %s: %w", from.SecretRef.Name, err)
			}
			for key, v := range s.Data {
				data[key] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for key := range data {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			if name := from.Prefix + key; name != "" && !strings.Contains(name, "=") {
				set(name, data[key])
			}
		}
	}
	lookup := func(name string) (string, bool) {
		if v, ok := vals[name]; ok {
			return v, true
		}
		v, ok := svcEnv[name]
		return v, ok
	}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case v != "":
			v = expand(v, lookup)
		case e.ValueFrom != nil:
			var err error
			var skip bool
			v, skip, err = k.valueFrom(ctx, pod, c, podIP, e.ValueFrom)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			if skip {
				continue
			}
		}
		set(e.Name, v)
	}
	svcNames := make([]string, 0, len(svcEnv))
	for name := range svcEnv {
		svcNames = append(svcNames, name)
	}
	sort.Strings(svcNames)
	out := make([]string, 0, len(order)+len(svcNames))
	for _, name := range order {
		out = append(out, name+"="+vals[name])
	}
	for _, name := range svcNames {
		if _, ok := vals[name]; !ok {
			out = append(out, name+"="+svcEnv[name])
		}
	}
	return out, nil
}

func (k *Kubelet) valueFrom(ctx context.Context, pod *corev1.Pod, c *corev1.Container, podIP string, src *corev1.EnvVarSource) (v string, skip bool, err error) {
	switch {
	case src.FieldRef != nil:
		v, err = k.fieldValue(pod, podIP, src.FieldRef.FieldPath)
		return v, false, err
	case src.ResourceFieldRef != nil:
		ref := *src.ResourceFieldRef
		if ref.ContainerName == "" {
			ref.ContainerName = c.Name
		}
		v, err = k.resourceValue(pod, &ref)
		return v, false, err
	case src.ConfigMapKeyRef != nil:
		r := src.ConfigMapKeyRef
		cm, err := k.cfg.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) && ptr.Deref(r.Optional, false) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("configmap %s: %w", r.Name, err)
		}
		v, ok := cm.Data[r.Key]
		if !ok {
			if ptr.Deref(r.Optional, false) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("configmap %s has no key %q", r.Name, r.Key)
		}
		return v, false, nil
	case src.SecretKeyRef != nil:
		r := src.SecretKeyRef
		s, err := k.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) && ptr.Deref(r.Optional, false) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("secret %s: %w", r.Name, err)
		}
		b, ok := s.Data[r.Key]
		if !ok {
			if ptr.Deref(r.Optional, false) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("secret %s has no key %q", r.Name, r.Key)
		}
		return string(b), false, nil
	}
	return "", false, nil
}

// fieldValue resolves a downward-API field path.
func (k *Kubelet) fieldValue(pod *corev1.Pod, podIP, path string) (string, error) {
	if key, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[key], nil
	}
	if key, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[key], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return k.cfg.NodeIP.String(), nil
	case "status.podIP", "status.podIPs":
		return podIP, nil
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

// subscript parses `prefix['key']`.
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok || !strings.HasSuffix(rest, "']") {
		return "", false
	}
	return strings.TrimSuffix(rest, "']"), true
}

// formatMap is the downward API's key="value" lines, sorted by key.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, key := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", key, m[key])
	}
	return b.String()
}

// resourceValue resolves a resourceFieldRef: the container's limit or
// request, a missing limit being the node's allocatable, divided by the
// divisor and rounded up.
func (k *Kubelet) resourceValue(pod *corev1.Pod, ref *corev1.ResourceFieldSelector) (string, error) {
	var c *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == ref.ContainerName || (ref.ContainerName == "" && i == 0) {
			c = &pod.Spec.Containers[i]
		}
	}
	if c == nil {
		return "", fmt.Errorf("resourceFieldRef: no container %q", ref.ContainerName)
	}
	kind, res, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("resourceFieldRef: bad resource %q", ref.Resource)
	}
	var q resource.Quantity
	var have bool
	switch kind {
	case "limits":
		q, have = c.Resources.Limits[corev1.ResourceName(res)]
	case "requests":
		q, have = c.Resources.Requests[corev1.ResourceName(res)]
	default:
		return "", fmt.Errorf("resourceFieldRef: bad resource %q", ref.Resource)
	}
	if !have {
		if kind == "requests" && res != string(corev1.ResourceCPU) {
			return "0", nil
		}
		q = k.cfg.Capacity[corev1.ResourceName(res)]
	}
	div := ref.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	if res == string(corev1.ResourceCPU) {
		return fmt.Sprint(int64(math.Ceil(float64(q.MilliValue()) / float64(div.MilliValue())))), nil
	}
	return fmt.Sprint(int64(math.Ceil(float64(q.Value()) / float64(div.Value())))), nil
}

// expand replaces $(NAME) with lookup's value where it has one, and $$ with
// $, leaving other text (and unknown references) as written, like
// Kubernetes' third_party/forked/golang/expansion.
func expand(s string, lookup func(string) (string, bool)) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
