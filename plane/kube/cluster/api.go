package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/kube"
)

// kubectl runs the genuine kubectl against the cluster with stdin and
// returns its standard output; a failure carries kubectl's own message
// (the API server's error).
func (c *Cluster) kubectl(ctx context.Context, stdin []byte, args ...string) (string, error) {
	var out, errb bytes.Buffer
	o := kube.KubectlOptions{Out: &out, Err: &errb, Dir: c.run.Dir}
	if stdin != nil {
		o.In = bytes.NewReader(stdin)
	}
	if err := c.cp.Kubectl(ctx, o, args...); err != nil {
		msg := strings.TrimSpace(errb.String())
		var ee *exec.ExitError
		if errors.As(err, &ee) && msg != "" {
			return out.String(), errors.New(msg)
		}
		if msg != "" {
			return out.String(), fmt.Errorf("%w: %s", err, msg)
		}
		return out.String(), err
	}
	return out.String(), nil
}

func namespaceOr(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

// Apply implements plane.Plane with `kubectl apply -f -`, each manifest's
// bytes on its standard input, after converting objects of API versions
// the server no longer serves (the seed's extensions/v1beta1 Ingress, RBAC
// v1beta1) to served ones, with a line saying so. Objects without a
// namespace go to namespace, objects that name one (ingress-nginx's
// manifests) to theirs, as on the embedded plane: kubectl runs with a
// kubeconfig whose context has namespace as its default, since `-n` would
// make it refuse every object of another namespace. kubectl is not
// all-or-nothing across objects: a manifest that fails part-way leaves the
// objects before the failing one applied, as on a real cluster.
func (c *Cluster) Apply(ctx context.Context, namespace string, manifests ...plane.Manifest) ([]string, error) {
	kc, err := c.kubeconfigIn(namespaceOr(namespace))
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, m := range manifests {
		data, notes, err := convertRetired(m.Data, m.Source)
		if err != nil {
			return lines, err
		}
		lines = append(lines, notes...)
		out, err := c.kubectl(ctx, data, "--kubeconfig", kc, "apply", "-f", "-")
		for l := range strings.Lines(out) {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		if err != nil {
			return lines, fmt.Errorf("%s: %w", m.Source, err)
		}
	}
	return lines, nil
}

// kubeconfigIn returns the path of a copy of the admin kubeconfig whose
// current context defaults to namespace, written once into the run
// directory.
func (c *Cluster) kubeconfigIn(namespace string) (string, error) {
	c.kubeconfigMu.Lock()
	defer c.kubeconfigMu.Unlock()
	path := c.run.Path(filepath.Join(kube.DirName, "namespaced", namespace+".kubeconfig"))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	cfg, err := clientcmd.LoadFromFile(c.cp.AdminKubeconfig())
	if err != nil {
		return "", fmt.Errorf("kubeconfig for namespace %s: %w", namespace, err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		return "", fmt.Errorf("kubeconfig for namespace %s: admin kubeconfig has no context %q", namespace, cfg.CurrentContext)
	}
	ctx.Namespace = namespace
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("kubeconfig for namespace %s: %w", namespace, err)
	}
	tmp := path + ".tmp"
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		return "", fmt.Errorf("kubeconfig for namespace %s: %w", namespace, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("kubeconfig for namespace %s: %w", namespace, err)
	}
	return path, nil
}

func refArgs(r plane.Ref) []string {
	return []string{r.Kind, r.Name, "-n", namespaceOr(r.Namespace)}
}

// Patch implements plane.Plane (`kubectl patch`, a strategic merge patch).
func (c *Cluster) Patch(ctx context.Context, r plane.Ref, patch []byte) error {
	_, err := c.kubectl(ctx, nil, append(append([]string{"patch"}, refArgs(r)...), "--type=strategic", "-p", string(patch))...)
	return err
}

// Scale implements plane.Plane (`kubectl scale`).
func (c *Cluster) Scale(ctx context.Context, r plane.Ref, replicas int32) error {
	_, err := c.kubectl(ctx, nil, append([]string{"scale", fmt.Sprintf("--replicas=%d", replicas)}, refArgs(r)...)...)
	return err
}

// Delete implements plane.Plane (`kubectl delete --wait=false`: the
// barrier waits for what the deletion removes).
func (c *Cluster) Delete(ctx context.Context, r plane.Ref) error {
	_, err := c.kubectl(ctx, nil, append([]string{"delete", "--wait=false"}, refArgs(r)...)...)
	return err
}

// Label implements plane.Plane (`kubectl label --overwrite`).
func (c *Cluster) Label(ctx context.Context, r plane.Ref, labels map[string]string) error {
	args := append([]string{"label", "--overwrite"}, refArgs(r)...)
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.HasSuffix(k, "-") {
			args = append(args, k)
		} else {
			args = append(args, k+"="+labels[k])
		}
	}
	_, err := c.kubectl(ctx, nil, args...)
	return err
}

// decode turns one object of kubectl's JSON into its k8s.io/api type.
// decodeScheme knows client-go's kinds and the Gateway API's.
var decodeScheme = func() *serializer.CodecFactory {
	s := runtime.NewScheme()
	utilruntime.Must(scheme.AddToScheme(s))
	utilruntime.Must(gwv1.Install(s))
	f := serializer.NewCodecFactory(s)
	return &f
}()

func decode(data []byte) (runtime.Object, error) {
	obj, _, err := decodeScheme.UniversalDeserializer().Decode(data, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return obj, nil
}

// Get implements plane.Plane (`kubectl get -o json`).
func (c *Cluster) Get(ctx context.Context, r plane.Ref) (runtime.Object, error) {
	out, err := c.kubectl(ctx, nil, append([]string{"get", "-o", "json"}, refArgs(r)...)...)
	if err != nil {
		return nil, err
	}
	return decode([]byte(out))
}

// List implements plane.Plane (`kubectl get -o json -l selector`).
func (c *Cluster) List(ctx context.Context, kind, namespace, selector string) ([]runtime.Object, error) {
	args := []string{"get", kind, "-o", "json", "-n", namespaceOr(namespace)}
	if selector != "" {
		args = append(args, "-l", selector)
	}
	out, err := c.kubectl(ctx, nil, args...)
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	var objs []runtime.Object
	for _, it := range list.Items {
		o, err := decode(it)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", kind, err)
		}
		objs = append(objs, o)
	}
	sort.SliceStable(objs, func(i, j int) bool {
		a, _ := meta.Accessor(objs[i])
		b, _ := meta.Accessor(objs[j])
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	})
	return objs, nil
}

// SetPodReady implements plane.Plane: the pod's kubelet reports it ready
// or not, as its readiness probe would.
func (c *Cluster) SetPodReady(ctx context.Context, namespace, name string, ready bool) error {
	p, err := c.admin.CoreV1().Pods(namespaceOr(namespace)).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	k := c.kubeletOf(p.Spec.NodeName)
	if k == nil {
		return fmt.Errorf("pod %s/%s: no kubelet runs node %q", p.Namespace, name, p.Spec.NodeName)
	}
	return k.SetReady(p.Namespace, p.Name, ready)
}

var _ = corev1.PodRunning
