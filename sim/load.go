package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	extv1beta1 "k8s.io/api/extensions/v1beta1"
	networkingv1 "k8s.io/api/networking/v1"
	networkingv1beta1 "k8s.io/api/networking/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Object is one decoded manifest document.
type Object struct {
	// Source names where it came from: "file:index" with the 0-based index
	// of the document in the file ("-" for standard input).
	Source string
	// Obj is a pointer to a k8s.io/api type: *corev1.Namespace, *corev1.Pod,
	// *appsv1.Deployment, *appsv1.DaemonSet, *corev1.Service,
	// *corev1.Endpoints, *discoveryv1.EndpointSlice, *networkingv1.Ingress
	// or *corev1.Node. Older
	// Ingress versions are converted to networking.k8s.io/v1 on decoding.
	Obj runtime.Object
	// Raw is the document as written, as JSON, when Obj is its direct
	// decoding (nil for converted objects). Apply keeps it, not Obj's
	// encoding, as the last-applied configuration, as kubectl does: a field
	// the manifest leaves out stays out.
	Raw []byte
	// Warning is the API server's deprecation warning for a document
	// written in a version it no longer serves (converted to the served
	// one), "" otherwise. Apply prints it before the object's line.
	Warning string
}

// retiredVersion is an API version the API server no longer serves that
// the model accepts, converted: the releases that deprecated and removed
// it, and the served version it converts to.
type retiredVersion struct {
	deprecated, removed string
	served              string
}

// retired lists them by "apiVersion/Kind" ("apiVersion/" for every kind of
// the version).
var retired = map[string]retiredVersion{
	"extensions/v1beta1/Ingress":         {"1.14", "1.22", "networking.k8s.io/v1"},
	"networking.k8s.io/v1beta1/Ingress":  {"1.19", "1.22", "networking.k8s.io/v1"},
	"rbac.authorization.k8s.io/v1beta1/": {"1.17", "1.22", "rbac.authorization.k8s.io/v1"},
}

// RetiredWarning returns the deprecation warning for kind in apiVersion, in
// the API server's words, and the served version it converts to; ok is
// false for a served version.
func RetiredWarning(apiVersion, kind string) (warning, served string, ok bool) {
	r, ok := retired[apiVersion+"/"+kind]
	if !ok {
		r, ok = retired[apiVersion+"/"]
	}
	if !ok {
		return "", "", false
	}
	return fmt.Sprintf("%s %s is deprecated in v%s+, unavailable in v%s+; use %s %s (svcsim converted it)",
		apiVersion, kind, r.deprecated, r.removed, r.served, kind), r.served, true
}

// Stdin is read by Load for the path "-"; tests may replace it.
var Stdin io.Reader = os.Stdin

// Load reads manifests like `kubectl apply -f` (see ReadFiles) and decodes
// them. Every file may hold several documents.
func Load(paths ...string) ([]Object, error) {
	files, err := ReadFiles(Stdin, paths...)
	if err != nil {
		return nil, err
	}
	var out []Object
	for _, f := range files {
		objs, err := Decode(f.Data, f.Source)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// File is one manifest file as read, before decoding.
type File struct {
	// Source is the file's path, or "-" for standard input.
	Source string
	Data   []byte
}

// ReadFiles reads what `kubectl apply -f` takes: each path is a file, a
// directory (its .yaml, .yml and .json files in name order, not recursive)
// or "-" for stdin. A file over MaxManifestBytes is refused before it is
// read.
func ReadFiles(stdin io.Reader, paths ...string) ([]File, error) {
	var out []File
	for _, p := range paths {
		if p == "-" {
			if stdin == nil {
				return nil, errors.New("read standard input: no standard input")
			}
			data, err := io.ReadAll(io.LimitReader(stdin, MaxManifestBytes+1))
			if err != nil {
				return nil, fmt.Errorf("read standard input: %w", err)
			}
			if len(data) > MaxManifestBytes {
				return nil, tooBig("-", int64(len(data)))
			}
			out = append(out, File{Source: "-", Data: data})
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("the path %q does not exist", p)
			}
			return nil, fmt.Errorf("read manifests: %w", err)
		}
		files := []string{p}
		if fi.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, fmt.Errorf("read manifest directory: %w", err)
			}
			files = files[:0]
			for _, e := range entries {
				switch strings.ToLower(filepath.Ext(e.Name())) {
				case ".yaml", ".yml", ".json":
					if !e.IsDir() {
						files = append(files, filepath.Join(p, e.Name()))
					}
				}
			}
			sort.Strings(files)
		}
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil && fi.Size() > MaxManifestBytes {
				return nil, tooBig(f, fi.Size())
			}
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read manifest: %w", err)
			}
			out = append(out, File{Source: f, Data: data})
		}
	}
	return out, nil
}

// MaxManifestBytes bounds one manifest file (or standard input): decoding
// takes about 40 times its size in memory (a 50 MB file allocated 1.9 GB),
// and the API server itself takes at most 3 MiB per object.
const MaxManifestBytes = 32 << 20

func tooBig(source string, size int64) error {
	if size > MaxManifestBytes && source == "-" {
		return fmt.Errorf("standard input: more than %d bytes (32 MiB), the most svcsim reads from one manifest; split it into several files", MaxManifestBytes)
	}
	return fmt.Errorf("%s: %d bytes, more than the %d (32 MiB) svcsim reads from one manifest; split it into several files", source, size, MaxManifestBytes)
}

// Decode splits data into YAML or JSON documents and decodes each into its
// k8s.io/api type. Unknown fields are errors, as with kubectl's default
// strict field validation. A "List" document contributes its items.
func Decode(data []byte, source string) ([]Object, error) {
	if len(data) > MaxManifestBytes {
		return nil, tooBig(source, int64(len(data)))
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []Object
	for idx := 0; ; {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: split documents: %w", source, err)
		}
		if isEmptyDoc(doc) {
			continue
		}
		src := source + ":" + strconv.Itoa(idx)
		idx++
		objs, err := decodeDoc(doc, src)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

func isEmptyDoc(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") && line != "---" {
			return false
		}
	}
	return true
}

// SupportedKinds lists the kinds svcsim models, for error messages.
const SupportedKinds = "Namespace, Pod, Deployment, DaemonSet, Service, Endpoints, EndpointSlice, Ingress, IngressClass, Node, ConfigMap, Secret, ServiceAccount, Role, ClusterRole, RoleBinding, ClusterRoleBinding, LimitRange, GatewayClass, Gateway, HTTPRoute, ReferenceGrant (gateway.networking.k8s.io/v1) (and List)"

func decodeDoc(doc []byte, src string) ([]Object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if tm.Kind == "" {
		return nil, fmt.Errorf("%s: Object 'Kind' is missing", src)
	}
	if tm.APIVersion == "" {
		return nil, fmt.Errorf("%s: Object 'apiVersion' is missing (kind %s)", src, tm.Kind)
	}
	strict := func(into runtime.Object) ([]Object, error) {
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			return nil, fmt.Errorf("%s: decode %s (apiVersion %s): %w", src, tm.Kind, tm.APIVersion, err)
		}
		raw, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		return []Object{{Source: src, Obj: into, Raw: raw}}, nil
	}
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/Namespace":
		return strict(&corev1.Namespace{})
	case "v1/Pod":
		return strict(&corev1.Pod{})
	case "v1/Service":
		return strict(&corev1.Service{})
	case "v1/Endpoints":
		return strict(&corev1.Endpoints{})
	case "v1/Node":
		return strict(&corev1.Node{})
	case "apps/v1/Deployment":
		return strict(&appsv1.Deployment{})
	case "apps/v1/DaemonSet":
		return strict(&appsv1.DaemonSet{})
	case "networking.k8s.io/v1/Ingress":
		return strict(&networkingv1.Ingress{})
	case "networking.k8s.io/v1beta1/Ingress":
		var in networkingv1beta1.Ingress
		if _, err := strict(&in); err != nil {
			return nil, err
		}
		w, _, _ := RetiredWarning(tm.APIVersion, tm.Kind)
		return []Object{{Source: src, Obj: ingressFromV1beta1(in.ObjectMeta, in.Spec.IngressClassName, convertBeta(in.Spec)), Warning: w}}, nil
	case "extensions/v1beta1/Ingress":
		var in extv1beta1.Ingress
		if _, err := strict(&in); err != nil {
			return nil, err
		}
		w, _, _ := RetiredWarning(tm.APIVersion, tm.Kind)
		return []Object{{Source: src, Obj: ingressFromV1beta1(in.ObjectMeta, in.Spec.IngressClassName, convertExt(in.Spec)), Warning: w}}, nil
	case "v1/List":
		var list struct {
			Items []runtime.RawExtension `json:"items"`
		}
		if err := yaml.Unmarshal(doc, &list); err != nil {
			return nil, fmt.Errorf("%s: decode List: %w", src, err)
		}
		var out []Object
		for i, item := range list.Items {
			objs, err := decodeDoc(item.Raw, fmt.Sprintf("%s[%d]", src, i))
			if err != nil {
				return nil, err
			}
			out = append(out, objs...)
		}
		return out, nil
	}
	for _, ki := range kinds {
		if ki.ops != nil && ki.apiVersion() == tm.APIVersion && ki.Kind == tm.Kind {
			return strict(ki.new())
		}
	}
	// RBAC v1beta1 has v1's schema: decoded as v1, with the warning. The
	// last-applied configuration keeps the document as written.
	if w, served, ok := RetiredWarning(tm.APIVersion, tm.Kind); ok {
		if ki := kinds[tm.Kind]; ki != nil && ki.apiVersion() == served {
			objs, err := strict(ki.new())
			if err != nil {
				return nil, err
			}
			objs[0].Warning = w
			return objs, nil
		}
	}
	return nil, fmt.Errorf("%s: unsupported kind %q (apiVersion %q): svcsim models %s",
		src, tm.Kind, tm.APIVersion, SupportedKinds)
}

// betaRule and betaPath are the common shape of the two v1beta1 Ingress
// versions, which only differ in their Go types.
type betaBackend struct {
	ServiceName string
	ServicePort intstr.IntOrString
}

type betaPath struct {
	Path     string
	PathType *networkingv1.PathType
	Backend  betaBackend
}

type betaRule struct {
	Host  string
	Paths []betaPath
	HTTP  bool
}

type betaSpec struct {
	Default *betaBackend
	TLS     []networkingv1.IngressTLS
	Rules   []betaRule
}

func convertExt(s extv1beta1.IngressSpec) betaSpec {
	var out betaSpec
	if s.Backend != nil {
		out.Default = &betaBackend{s.Backend.ServiceName, s.Backend.ServicePort}
	}
	for _, t := range s.TLS {
		out.TLS = append(out.TLS, networkingv1.IngressTLS{Hosts: t.Hosts, SecretName: t.SecretName})
	}
	for _, r := range s.Rules {
		br := betaRule{Host: r.Host, HTTP: r.HTTP != nil}
		if r.HTTP != nil {
			for _, p := range r.HTTP.Paths {
				var pt *networkingv1.PathType
				if p.PathType != nil {
					v := networkingv1.PathType(*p.PathType)
					pt = &v
				}
				br.Paths = append(br.Paths, betaPath{p.Path, pt, betaBackend{p.Backend.ServiceName, p.Backend.ServicePort}})
			}
		}
		out.Rules = append(out.Rules, br)
	}
	return out
}

// convertBeta reads a networking.k8s.io/v1beta1 spec through the
// extensions/v1beta1 converter: the two versions share one wire format.
func convertBeta(s networkingv1beta1.IngressSpec) betaSpec {
	var ext extv1beta1.IngressSpec
	if b, err := json.Marshal(s); err == nil {
		_ = json.Unmarshal(b, &ext)
	}
	return convertExt(ext)
}

// ingressFromV1beta1 converts like the API server does: serviceName and
// servicePort become backend.service.name and .port.{number,name}, and a
// missing pathType becomes ImplementationSpecific.
func ingressFromV1beta1(meta metav1.ObjectMeta, class *string, s betaSpec) *networkingv1.Ingress {
	conv := func(b betaBackend) *networkingv1.IngressBackend {
		port := networkingv1.ServiceBackendPort{}
		if b.ServicePort.Type == intstr.String {
			port.Name = b.ServicePort.StrVal
		} else {
			port.Number = b.ServicePort.IntVal
		}
		return &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: b.ServiceName, Port: port}}
	}
	out := &networkingv1.Ingress{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: meta,
		Spec:       networkingv1.IngressSpec{IngressClassName: class, TLS: s.TLS},
	}
	if s.Default != nil {
		out.Spec.DefaultBackend = conv(*s.Default)
	}
	for _, r := range s.Rules {
		rule := networkingv1.IngressRule{Host: r.Host}
		if r.HTTP {
			rule.HTTP = &networkingv1.HTTPIngressRuleValue{}
			for _, p := range r.Paths {
				pt := p.PathType
				if pt == nil {
					v := networkingv1.PathTypeImplementationSpecific
					pt = &v
				}
				rule.HTTP.Paths = append(rule.HTTP.Paths, networkingv1.HTTPIngressPath{Path: p.Path, PathType: pt, Backend: *conv(p.Backend)})
			}
		}
		out.Spec.Rules = append(out.Spec.Rules, rule)
	}
	return out
}
