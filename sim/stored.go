package sim

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Stored kinds are kinds the model keeps, validates and serves but runs no
// controller for: configuration (ConfigMap, Secret), identities and their
// permissions (ServiceAccount, Role, ClusterRole, RoleBinding,
// ClusterRoleBinding), LimitRange and IngressClass, so that published
// manifests such as ingress-nginx's apply as they are written and add-ons
// can read them (a TLS Secret, the default IngressClass). RBAC is stored,
// not enforced: every client of the embedded model may read everything.
// LimitRanges are stored, not applied to pods. The Gateway API's kinds
// (gateway.go) are stored kinds too; package addons/gateway serves them.
var storedKinds = append([]*kindInfo{
	stored("ConfigMap", "", "v1", "configmaps", "configmap", true, func() runtime.Object { return &corev1.ConfigMap{} }, validateConfigMap, "cm"),
	stored("Secret", "", "v1", "secrets", "secret", true, func() runtime.Object { return &corev1.Secret{} }, validateSecret),
	stored("ServiceAccount", "", "v1", "serviceaccounts", "serviceaccount", true, func() runtime.Object { return &corev1.ServiceAccount{} }, validateServiceAccount, "sa"),
	stored("LimitRange", "", "v1", "limitranges", "limitrange", true, func() runtime.Object { return &corev1.LimitRange{} }, validateLimitRange, "limits"),
	stored("Role", "rbac.authorization.k8s.io", "v1", "roles", "role.rbac.authorization.k8s.io", true, func() runtime.Object { return &rbacv1.Role{} }, validateRole),
	stored("ClusterRole", "rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole.rbac.authorization.k8s.io", false, func() runtime.Object { return &rbacv1.ClusterRole{} }, validateClusterRole),
	stored("RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding.rbac.authorization.k8s.io", true, func() runtime.Object { return &rbacv1.RoleBinding{} }, validateRoleBinding),
	stored("ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding.rbac.authorization.k8s.io", false, func() runtime.Object { return &rbacv1.ClusterRoleBinding{} }, validateClusterRoleBinding),
	stored("IngressClass", "networking.k8s.io", "v1", "ingressclasses", "ingressclass.networking.k8s.io", false, func() runtime.Object { return &networkingv1.IngressClass{} }, validateIngressClass),
}, gatewayKinds...) // the Gateway API's kinds: gateway.go

func init() {
	for _, ki := range storedKinds {
		kinds[ki.Kind] = ki
		names := []string{strings.ToLower(ki.Kind), ki.Resource, ki.Singular}
		if ki.Group != "" {
			names = append(names, ki.Resource+"."+ki.Group)
		}
		names = append(names, ki.ops.(storedOps).aliases...)
		for _, n := range names {
			kindAliases[n] = ki.Kind
		}
	}
}

func stored(kind, group, version, res, singular string, namespaced bool, newObj func() runtime.Object,
	validate func(obj, old runtime.Object) field.ErrorList, aliases ...string) *kindInfo {
	return &kindInfo{Kind: kind, Group: group, Version: version, Resource: res, Singular: singular,
		Namespaced: namespaced, new: newObj, ops: storedOps{kind: kind, validate: validate, aliases: aliases}}
}

// storedObjects holds the stored kinds' objects: kind -> "namespace/name"
// (cluster-scoped: "/name") -> object. It encodes as JSON by kind, each
// object in its own type's encoding.
type storedObjects map[string]map[string]runtime.Object

func (s storedObjects) clone() storedObjects {
	if s == nil {
		return nil
	}
	out := make(storedObjects, len(s))
	for kind, m := range s {
		c := make(map[string]runtime.Object, len(m))
		for k, o := range m {
			c[k] = o.DeepCopyObject()
		}
		out[kind] = c
	}
	return out
}

// UnmarshalJSON decodes each kind's objects into its k8s.io/api type.
func (s *storedObjects) UnmarshalJSON(b []byte) error {
	var raw map[string]map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := storedObjects{}
	for kind, m := range raw {
		ki := kinds[kind]
		if ki == nil {
			return fmt.Errorf("stored objects: unknown kind %q", kind)
		}
		out[kind] = map[string]runtime.Object{}
		for k, r := range m {
			obj := ki.new()
			if err := json.Unmarshal(r, obj); err != nil {
				return fmt.Errorf("stored %s %s: %w", kind, k, err)
			}
			out[kind][k] = obj
		}
	}
	*s = out
	return nil
}

// storedOps is kindOps for a stored kind.
type storedOps struct {
	kind string
	// validate checks obj as the API server's validation does (old is nil
	// on create).
	validate func(obj, old runtime.Object) field.ErrorList
	aliases  []string
	// prepare, when set, defaults obj before validation (old is nil on
	// create): what an API server does before it validates a kind.
	prepare func(obj, old runtime.Object)
}

func (o storedOps) get(s *store, k string) runtime.Object {
	if v, ok := s.Stored[o.kind][k]; ok {
		return v
	}
	return nil
}

func (o storedOps) set(t *txn, k string, obj runtime.Object) { o.store(t.s, k, obj) }

func (o storedOps) store(s *store, k string, obj runtime.Object) {
	if s.Stored == nil {
		s.Stored = storedObjects{}
	}
	if s.Stored[o.kind] == nil {
		s.Stored[o.kind] = map[string]runtime.Object{}
	}
	s.Stored[o.kind][k] = obj
}

func (o storedOps) remove(t *txn, k string) {
	delete(t.s.Stored[o.kind], k)
	if len(t.s.Stored[o.kind]) == 0 {
		delete(t.s.Stored, o.kind)
	}
}

func (o storedOps) removeNamespace(t *txn, ns string) {
	deletePrefix(t.s.Stored[o.kind], ns+"/", nil)
	if len(t.s.Stored[o.kind]) == 0 {
		delete(t.s.Stored, o.kind)
	}
}

func (o storedOps) put(t *txn, old, obj runtime.Object) error {
	ki := kinds[o.kind]
	if sec, ok := obj.(*corev1.Secret); ok {
		defaultSecret(sec)
	}
	if o.prepare != nil {
		o.prepare(obj, old)
	}
	m, _ := meta.Accessor(obj)
	el := o.validate(obj, old)
	el = append(el, validateLabels(m.GetLabels(), field.NewPath("metadata", "labels"))...)
	if len(el) > 0 {
		return ki.invalid(m.GetName(), el)
	}
	if old == nil {
		// initMeta takes the ObjectMeta; every stored kind embeds one.
		om := objectMeta(obj)
		t.initMeta(om, o.kind)
	}
	ki.setTypeMeta(obj)
	o.store(t.s, key(m.GetNamespace(), m.GetName()), obj)
	return nil
}

// Stored returns copies of every object of a stored kind (a kind or one of
// its names: "configmaps", "secret", "ingressclass", ...), sorted by
// namespace and name; ok is false for kinds that are not stored kinds.
func (c *Cluster) Stored(kind string) (objs []runtime.Object, ok bool) {
	ki, err := lookupKind(kind)
	if err != nil {
		return nil, false
	}
	if _, isStored := ki.ops.(storedOps); !isStored {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.st.Stored[ki.Kind]
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	objs = make([]runtime.Object, 0, len(keys))
	for _, k := range keys {
		objs = append(objs, m[k].DeepCopyObject())
	}
	return objs, true
}

// StoredKinds lists the stored kinds, in the order Stored's callers should
// mirror them.
func StoredKinds() []string {
	out := make([]string, len(storedKinds))
	for i, ki := range storedKinds {
		out[i] = ki.Kind
	}
	return out
}

// StoredResource returns a stored kind's API group, version and resource.
func StoredResource(kind string) (group, version, res string, ok bool) {
	for _, ki := range storedKinds {
		if ki.Kind == kind {
			return ki.Group, ki.Version, ki.Resource, true
		}
	}
	return "", "", "", false
}

func objectMeta(obj runtime.Object) *metav1.ObjectMeta {
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		return &o.ObjectMeta
	case *corev1.Secret:
		return &o.ObjectMeta
	case *corev1.ServiceAccount:
		return &o.ObjectMeta
	case *corev1.LimitRange:
		return &o.ObjectMeta
	case *rbacv1.Role:
		return &o.ObjectMeta
	case *rbacv1.ClusterRole:
		return &o.ObjectMeta
	case *rbacv1.RoleBinding:
		return &o.ObjectMeta
	case *rbacv1.ClusterRoleBinding:
		return &o.ObjectMeta
	case *networkingv1.IngressClass:
		return &o.ObjectMeta
	case *gwv1.GatewayClass:
		return &o.ObjectMeta
	case *gwv1.Gateway:
		return &o.ObjectMeta
	case *gwv1.HTTPRoute:
		return &o.ObjectMeta
	case *gwv1.ReferenceGrant:
		return &o.ObjectMeta
	}
	panic(fmt.Sprintf("objectMeta: %T is not a stored kind", obj))
}

func nameErrs(name string) field.ErrorList { return validateName(name, validation.IsDNS1123Subdomain) }

// maxConfigBytes is the API server's bound on a ConfigMap's or Secret's
// data (corev1.MaxSecretSize).
const maxConfigBytes = 1 << 20

func validateDataKeys[V string | []byte](data map[string]V, fld *field.Path, total *int) field.ErrorList {
	var el field.ErrorList
	for k, v := range data {
		for _, msg := range validation.IsConfigMapKey(k) {
			el = append(el, field.Invalid(fld.Key(k), k, msg))
		}
		*total += len(v)
	}
	return el
}

func validateConfigMap(obj, _ runtime.Object) field.ErrorList {
	cm := obj.(*corev1.ConfigMap)
	el := nameErrs(cm.Name)
	total := 0
	el = append(el, validateDataKeys(cm.Data, field.NewPath("data"), &total)...)
	el = append(el, validateDataKeys(cm.BinaryData, field.NewPath("binaryData"), &total)...)
	for k := range cm.BinaryData {
		if _, dup := cm.Data[k]; dup {
			el = append(el, field.Invalid(field.NewPath("binaryData").Key(k), k, "duplicate of key present in data"))
		}
	}
	if total > maxConfigBytes {
		el = append(el, field.TooLong(field.NewPath(""), "", maxConfigBytes))
	}
	return el
}

// defaultSecret does what the API server does on a write: stringData is
// merged into data (winning on equal keys) and dropped; the type defaults
// to Opaque.
func defaultSecret(s *corev1.Secret) {
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
	if len(s.StringData) > 0 && s.Data == nil {
		s.Data = map[string][]byte{}
	}
	for k, v := range s.StringData {
		s.Data[k] = []byte(v)
	}
	s.StringData = nil
}

func validateSecret(obj, old runtime.Object) field.ErrorList {
	s := obj.(*corev1.Secret)
	el := nameErrs(s.Name)
	dp := field.NewPath("data")
	total := 0
	el = append(el, validateDataKeys(s.Data, dp, &total)...)
	if total > maxConfigBytes {
		el = append(el, field.TooLong(dp, "", maxConfigBytes))
	}
	if o, ok := old.(*corev1.Secret); ok && o.Type != s.Type {
		el = append(el, field.Invalid(field.NewPath("type"), s.Type, "field is immutable"))
	}
	need := func(keys ...string) {
		for _, k := range keys {
			if _, ok := s.Data[k]; !ok {
				el = append(el, field.Required(dp.Key(k), ""))
			}
		}
	}
	switch s.Type {
	case corev1.SecretTypeTLS:
		need(corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	case corev1.SecretTypeBasicAuth:
		if len(s.Data[corev1.BasicAuthUsernameKey]) == 0 && len(s.Data[corev1.BasicAuthPasswordKey]) == 0 {
			el = append(el, field.Required(dp.Key(corev1.BasicAuthUsernameKey), ""))
		}
	case corev1.SecretTypeSSHAuth:
		need(corev1.SSHAuthPrivateKey)
	case corev1.SecretTypeDockerConfigJson:
		need(corev1.DockerConfigJsonKey)
	}
	return el
}

func validateServiceAccount(obj, _ runtime.Object) field.ErrorList {
	return nameErrs(obj.(*corev1.ServiceAccount).Name)
}

func validateLimitRange(obj, _ runtime.Object) field.ErrorList {
	lr := obj.(*corev1.LimitRange)
	el := nameErrs(lr.Name)
	lp := field.NewPath("spec", "limits")
	for i, l := range lr.Spec.Limits {
		f := lp.Index(i)
		switch l.Type {
		case corev1.LimitTypePod, corev1.LimitTypeContainer, corev1.LimitTypePersistentVolumeClaim:
		case "":
			el = append(el, field.Required(f.Child("type"), ""))
		}
		for _, lst := range []struct {
			name string
			rl   corev1.ResourceList
		}{{"max", l.Max}, {"min", l.Min}, {"default", l.Default}, {"defaultRequest", l.DefaultRequest}} {
			for r, q := range lst.rl {
				if q.Sign() < 0 {
					el = append(el, field.Invalid(f.Child(lst.name).Key(string(r)), q.String(), "must be greater than or equal to 0"))
				}
			}
		}
		for r, min := range l.Min {
			if max, ok := l.Max[r]; ok && min.Cmp(max) > 0 {
				el = append(el, field.Invalid(f.Child("min").Key(string(r)), min.String(), fmt.Sprintf("min value %s is greater than max value %s", min.String(), max.String())))
			}
			for _, d := range []resource.Quantity{l.Default[r], l.DefaultRequest[r]} {
				if !d.IsZero() && min.Cmp(d) > 0 {
					el = append(el, field.Invalid(f.Child("default").Key(string(r)), d.String(), fmt.Sprintf("min value %s is greater than default value %s", min.String(), d.String())))
				}
			}
		}
	}
	return el
}

// rbacName is the API server's rule for RBAC object names: any path
// segment name (not "." or "..", no "/" or "%").
func rbacName(name string) field.ErrorList {
	var el field.ErrorList
	switch {
	case name == "":
		el = append(el, field.Required(field.NewPath("metadata", "name"), "name or generateName is required"))
	case name == "." || name == "..":
		el = append(el, field.Invalid(field.NewPath("metadata", "name"), name, fmt.Sprintf("may not be '%s'", name)))
	case strings.ContainsAny(name, "/%"):
		el = append(el, field.Invalid(field.NewPath("metadata", "name"), name, `may not contain '/' or '%'`))
	}
	return el
}

func validateRules(rules []rbacv1.PolicyRule) field.ErrorList {
	var el field.ErrorList
	for i, r := range rules {
		f := field.NewPath("rules").Index(i)
		if len(r.Verbs) == 0 {
			el = append(el, field.Required(f.Child("verbs"), "verbs must contain at least one value"))
		}
		if len(r.NonResourceURLs) > 0 {
			if len(r.APIGroups) > 0 || len(r.Resources) > 0 || len(r.ResourceNames) > 0 {
				el = append(el, field.Invalid(f.Child("nonResourceURLs"), r.NonResourceURLs, "rules cannot apply to both regular resources and non-resource URLs"))
			}
			continue
		}
		if len(r.APIGroups) == 0 {
			el = append(el, field.Required(f.Child("apiGroups"), "resource rules must supply at least one api group"))
		}
		if len(r.Resources) == 0 {
			el = append(el, field.Required(f.Child("resources"), "resource rules must supply at least one resource"))
		}
	}
	return el
}

func validateRole(obj, _ runtime.Object) field.ErrorList {
	r := obj.(*rbacv1.Role)
	return append(rbacName(r.Name), validateRules(r.Rules)...)
}

func validateClusterRole(obj, _ runtime.Object) field.ErrorList {
	r := obj.(*rbacv1.ClusterRole)
	return append(rbacName(r.Name), validateRules(r.Rules)...)
}

func validateBinding(ref rbacv1.RoleRef, oldRef *rbacv1.RoleRef, subjects []rbacv1.Subject, clusterScoped bool) field.ErrorList {
	var el field.ErrorList
	rp := field.NewPath("roleRef")
	if ref.APIGroup != rbacv1.GroupName {
		el = append(el, field.NotSupported(rp.Child("apiGroup"), ref.APIGroup, []string{rbacv1.GroupName}))
	}
	kindsOK := []string{"ClusterRole", "Role"}
	if clusterScoped {
		kindsOK = []string{"ClusterRole"}
	}
	okKind := false
	for _, k := range kindsOK {
		okKind = okKind || ref.Kind == k
	}
	if !okKind {
		el = append(el, field.NotSupported(rp.Child("kind"), ref.Kind, kindsOK))
	}
	if ref.Name == "" {
		el = append(el, field.Required(rp.Child("name"), ""))
	} else {
		for _, e := range rbacName(ref.Name) {
			el = append(el, field.Invalid(rp.Child("name"), ref.Name, e.Detail))
		}
	}
	if oldRef != nil && *oldRef != ref {
		el = append(el, field.Invalid(rp, ref, "cannot change roleRef"))
	}
	for i, s := range subjects {
		f := field.NewPath("subjects").Index(i)
		if s.Name == "" {
			el = append(el, field.Required(f.Child("name"), ""))
		}
		switch s.Kind {
		case rbacv1.ServiceAccountKind:
			if s.APIGroup != "" {
				el = append(el, field.NotSupported(f.Child("apiGroup"), s.APIGroup, []string{""}))
			}
			if clusterScoped && s.Namespace == "" {
				el = append(el, field.Required(f.Child("namespace"), ""))
			}
			if s.Name != "" {
				for _, msg := range validation.IsDNS1123Subdomain(s.Name) {
					el = append(el, field.Invalid(f.Child("name"), s.Name, msg))
				}
			}
		case rbacv1.UserKind, rbacv1.GroupKind:
			if s.APIGroup != rbacv1.GroupName {
				el = append(el, field.NotSupported(f.Child("apiGroup"), s.APIGroup, []string{rbacv1.GroupName}))
			}
		default:
			el = append(el, field.NotSupported(f.Child("kind"), s.Kind, []string{rbacv1.ServiceAccountKind, rbacv1.UserKind, rbacv1.GroupKind}))
		}
	}
	return el
}

func validateRoleBinding(obj, old runtime.Object) field.ErrorList {
	b := obj.(*rbacv1.RoleBinding)
	var oldRef *rbacv1.RoleRef
	if o, ok := old.(*rbacv1.RoleBinding); ok {
		oldRef = &o.RoleRef
	}
	return append(rbacName(b.Name), validateBinding(b.RoleRef, oldRef, b.Subjects, false)...)
}

func validateClusterRoleBinding(obj, old runtime.Object) field.ErrorList {
	b := obj.(*rbacv1.ClusterRoleBinding)
	var oldRef *rbacv1.RoleRef
	if o, ok := old.(*rbacv1.ClusterRoleBinding); ok {
		oldRef = &o.RoleRef
	}
	return append(rbacName(b.Name), validateBinding(b.RoleRef, oldRef, b.Subjects, true)...)
}

// DefaultIngressClassAnnotation marks the IngressClass that Ingresses
// without a class get (the API server's DefaultIngressClass admission).
const DefaultIngressClassAnnotation = networkingv1.AnnotationIsDefaultIngressClass

// IngressClassAnnotation is the class annotation older Ingresses use.
const IngressClassAnnotation = "kubernetes.io/ingress.class"

const maxIngressClassController = 250

func validateIngressClass(obj, old runtime.Object) field.ErrorList {
	ic := obj.(*networkingv1.IngressClass)
	el := nameErrs(ic.Name)
	cp := field.NewPath("spec", "controller")
	switch c := ic.Spec.Controller; {
	case c == "":
		el = append(el, field.Required(cp, ""))
	case len(c) > maxIngressClassController:
		el = append(el, field.TooLong(cp, "", maxIngressClassController))
	default:
		for _, msg := range validation.IsDomainPrefixedPath(cp, c) {
			el = append(el, msg)
		}
	}
	if o, ok := old.(*networkingv1.IngressClass); ok && o.Spec.Controller != ic.Spec.Controller {
		el = append(el, field.Invalid(cp, ic.Spec.Controller, "field is immutable"))
	}
	if p := ic.Spec.Parameters; p != nil {
		pp := field.NewPath("spec", "parameters")
		if p.Kind == "" {
			el = append(el, field.Required(pp.Child("kind"), "kind is required"))
		}
		if p.Name == "" {
			el = append(el, field.Required(pp.Child("name"), "name is required"))
		}
	}
	return el
}
