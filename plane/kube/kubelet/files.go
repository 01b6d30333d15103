package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func kernelVersion() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// resolvConf is the pod's /etc/resolv.conf from its dnsPolicy and
// dnsConfig, as the kubelet's DNS configurer builds it: ClusterFirst (and
// ClusterFirstWithHostNet for hostNetwork pods) points at the cluster DNS
// with the namespace's search path and ndots:5; Default (and ClusterFirst
// for a hostNetwork pod) is the node's resolv.conf; None is dnsConfig alone.
func (k *Kubelet) resolvConf(pod *corev1.Pod) string {
	var servers, search []string
	var opts []string
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	if policy == corev1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = corev1.DNSDefault
	}
	switch policy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet:
		d := k.cfg.ClusterDomain
		servers = []string{k.cfg.ClusterDNS.String()}
		search = []string{pod.Namespace + ".svc." + d, "svc." + d, d}
		_, hostSearch, _ := parseResolvConf(k.cfg.HostResolvConf)
		search = append(search, hostSearch...)
		opts = []string{"ndots:5"}
	case corev1.DNSDefault:
		servers, search, opts = parseResolvConf(k.cfg.HostResolvConf)
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		servers = appendNew(servers, dc.Nameservers...)
		search = appendNew(search, dc.Searches...)
		for _, o := range dc.Options {
			name := o.Name
			opts = slices.DeleteFunc(opts, func(s string) bool { return strings.SplitN(s, ":", 2)[0] == name })
			if o.Value != nil {
				name += ":" + *o.Value
			}
			opts = append(opts, name)
		}
	}
	var b strings.Builder
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(opts) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(opts, " "))
	}
	return b.String()
}

func appendNew(list []string, more ...string) []string {
	for _, m := range more {
		if !slices.Contains(list, m) {
			list = append(list, m)
		}
	}
	return list
}

func parseResolvConf(text string) (servers, search, opts []string) {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "nameserver":
			servers = append(servers, f[1])
		case "search", "domain":
			search = f[1:]
		case "options":
			opts = append(opts, f[1:]...)
		}
	}
	return servers, search, opts
}

// hostsFile is the kubelet-managed /etc/hosts: localhost entries, the pod's
// own name (its FQDN first when it has hostname and subdomain) and its
// hostAliases.
func (k *Kubelet) hostsFile(pod *corev1.Pod, ip string) string {
	var b strings.Builder
	b.WriteString("# Kubernetes-managed hosts file.\n")
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	host := podHostname(pod)
	if pod.Spec.HostNetwork {
		host = k.cfg.NodeName
	}
	if sd := pod.Spec.Subdomain; sd != "" && !pod.Spec.HostNetwork {
		fmt.Fprintf(&b, "%s\t%s.%s.%s.svc.%s\t%s\n", ip, host, sd, pod.Namespace, k.cfg.ClusterDomain, host)
	} else {
		fmt.Fprintf(&b, "%s\t%s\n", ip, host)
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.String()
}

// podHostname is spec.hostname, or the pod name cut to 63 characters.
func podHostname(pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	h := pod.Name
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// writeVolumes materializes the pod's volumes under dir/volumes/<name> and
// returns their host paths. A missing ConfigMap or Secret that is not
// optional is an error (the pod waits, as with a real kubelet).
func (k *Kubelet) writeVolumes(ctx context.Context, pod *corev1.Pod, podIP, dir string) (map[string]string, error) {
	paths := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		p := filepath.Join(dir, "volumes", v.Name)
		files := map[string]file{}
		var err error
		switch {
		case v.HostPath != nil:
			paths[v.Name] = v.HostPath.Path
			continue
		case v.EmptyDir != nil:
		case v.ConfigMap != nil:
			err = k.configMapFiles(ctx, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, v.ConfigMap.DefaultMode, files)
		case v.Secret != nil:
			err = k.secretFiles(ctx, pod.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, v.Secret.DefaultMode, files)
		case v.DownwardAPI != nil:
			err = k.downwardFiles(pod, podIP, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode, files)
		case v.Projected != nil:
			err = k.projectedFiles(ctx, pod, podIP, v.Projected, files)
		default:
			k.logf("pod %s/%s: volume %s: kind not supported, left empty", pod.Namespace, pod.Name, v.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
		for name, f := range files {
			fp := filepath.Join(p, filepath.Clean("/"+name))
			if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(fp, f.data, f.mode); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			if err := os.Chmod(fp, f.mode); err != nil {
				return nil, err
			}
		}
		paths[v.Name] = p
	}
	return paths, nil
}

type file struct {
	data []byte
	mode os.FileMode
}

func modeOr(m *int32, def int32) os.FileMode {
	if m != nil {
		return os.FileMode(*m)
	}
	return os.FileMode(def)
}

// project adds data's keys (or only items, at their paths) to files.
func project(data map[string][]byte, items []corev1.KeyToPath, mode os.FileMode, what string, files map[string]file) error {
	if len(items) == 0 {
		for key, v := range data {
			files[key] = file{v, mode}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("%s has no key %q", what, it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		files[it.Path] = file{v, m}
	}
	return nil
}

func (k *Kubelet) configMapFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, mode *int32, files map[string]file) error {
	cm, err := k.cfg.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && ptr.Deref(optional, false) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("configmap %s/%s: %w", ns, name, err)
	}
	data := map[string][]byte{}
	for key, v := range cm.Data {
		data[key] = []byte(v)
	}
	for key, v := range cm.BinaryData {
		data[key] = v
	}
	return project(data, items, modeOr(mode, 0o644), "configmap "+ns+"/"+name, files)
}

func (k *Kubelet) secretFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, mode *int32, files map[string]file) error {
	s, err := k.cfg.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && ptr.Deref(optional, false) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secret %s/%s: %w", ns, name, err)
	}
	data := map[string][]byte{}
	for key, v := range s.Data {
		data[key] = v
	}
	for key, v := range s.StringData {
		data[key] = []byte(v)
	}
	return project(data, items, modeOr(mode, 0o644), "secret "+ns+"/"+name, files)
}

func (k *Kubelet) downwardFiles(pod *corev1.Pod, podIP string, items []corev1.DownwardAPIVolumeFile, mode *int32, files map[string]file) error {
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = k.fieldValue(pod, podIP, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			v, err = k.resourceValue(pod, it.ResourceFieldRef)
		}
		if err != nil {
			return err
		}
		m := modeOr(mode, 0o644)
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		files[it.Path] = file{[]byte(v), m}
	}
	return nil
}

// projectedFiles handles the projected volume the ServiceAccount admission
// plugin adds (kube-api-access-*: a bound token, kube-root-ca.crt's ca.crt
// and the namespace) and any other projection.
func (k *Kubelet) projectedFiles(ctx context.Context, pod *corev1.Pod, podIP string, v *corev1.ProjectedVolumeSource, files map[string]file) error {
	mode := modeOr(v.DefaultMode, 0o644)
	for _, src := range v.Sources {
		var err error
		switch {
		case src.ConfigMap != nil:
			m := int32(mode)
			err = k.configMapFiles(ctx, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, &m, files)
		case src.Secret != nil:
			m := int32(mode)
			err = k.secretFiles(ctx, pod.Namespace, src.Secret.Name, src.Secret.Items, src.Secret.Optional, &m, files)
		case src.DownwardAPI != nil:
			m := int32(mode)
			err = k.downwardFiles(pod, podIP, src.DownwardAPI.Items, &m, files)
		case src.ServiceAccountToken != nil:
			var tok string
			tok, err = k.token(ctx, pod, src.ServiceAccountToken)
			files[src.ServiceAccountToken.Path] = file{[]byte(tok), mode}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// token asks the TokenRequest API for a token bound to the pod.
func (k *Kubelet) token(ctx context.Context, pod *corev1.Pod, src *corev1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	exp := ptr.Deref(src.ExpirationSeconds, 3600)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	tr, err := k.cfg.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for service account %s/%s: %w", pod.Namespace, sa, err)
	}
	return tr.Status.Token, nil
}
