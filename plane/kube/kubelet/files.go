package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/svcsim/svcsim/sim/podfiles"
)

func kernelVersion() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// resolvConf is the pod's /etc/resolv.conf (package sim/podfiles, shared
// with the embedded plane).
func (k *Kubelet) resolvConf(pod *corev1.Pod) string {
	return podfiles.ResolvConf(pod, podfiles.DNS{ClusterDNS: k.cfg.ClusterDNS, ClusterDomain: k.cfg.ClusterDomain, HostResolvConf: k.cfg.HostResolvConf})
}

// hostsFile is the kubelet-managed /etc/hosts (package sim/podfiles).
func (k *Kubelet) hostsFile(pod *corev1.Pod, ip string) string {
	return podfiles.Hosts(pod, ip, k.cfg.NodeName, k.cfg.ClusterDomain)
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
