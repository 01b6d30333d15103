package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	apivalidation "k8s.io/apimachinery/pkg/api/validation"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// LastAppliedAnnotation holds the configuration last given to Apply, as
// kubectl keeps it; Apply computes its three-way merge from it, so fields
// set by Patch (the seed's sessionAffinity) survive a later Apply of a
// manifest that does not mention them.
const LastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// ObjectError is the rejection of one object of a batch.
type ObjectError struct {
	// Source is the object's Object.Source ("file:index").
	Source string
	Err    error
}

func (e *ObjectError) Error() string {
	if e.Source == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("error when applying %q: %v", e.Source, e.Err)
}

func (e *ObjectError) Unwrap() error { return e.Err }

// BatchError is Apply's error: every object that was rejected. Nothing of
// the batch was applied.
type BatchError struct {
	Errs []error
}

// Error lists one line per rejected object.
func (e *BatchError) Error() string {
	lines := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives errors.Is/As access to each object's error.
func (e *BatchError) Unwrap() []error { return e.Errs }

// Apply creates or updates objects like `kubectl apply`: all or nothing.
// It validates the whole batch against a copy of the state; if any object
// is invalid nothing changes and the error (*BatchError) lists every
// rejected object. On success it returns one kubectl-like line per object
// ("service/getip-service created", "... configured", "... unchanged"),
// preceded by "Warning: ..." for an object written in a version the API
// server no longer serves (Object.Warning), as kubectl prints it.
// Namespace objects of the batch are applied first.
func (c *Cluster) Apply(objs []Object) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.begin()
	order := make([]int, 0, len(objs))
	for i, o := range objs {
		if _, ok := o.Obj.(*corev1.Namespace); ok {
			order = append(order, i)
		}
	}
	for i, o := range objs {
		if _, ok := o.Obj.(*corev1.Namespace); !ok {
			order = append(order, i)
		}
	}
	lines := make([]string, len(objs))
	var errs []error
	for _, i := range order {
		o := objs[i]
		line, err := t.apply(o)
		if err != nil {
			errs = append(errs, &ObjectError{Source: o.Source, Err: err})
			continue
		}
		lines[i] = line
	}
	if len(errs) > 0 {
		return nil, &BatchError{Errs: errs}
	}
	if err := c.commit(t); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(lines))
	for i, l := range lines {
		if w := objs[i].Warning; w != "" {
			out = append(out, "Warning: "+w)
		}
		out = append(out, l)
	}
	return out, nil
}

// apply creates or updates one object in t.
func (t *txn) apply(o Object) (string, error) {
	if o.Obj == nil {
		return "", errors.New("no object")
	}
	ki := kindOf(o.Obj)
	if ki == nil {
		return "", fmt.Errorf("unsupported object type %T: svcsim models %s", o.Obj, SupportedKinds)
	}
	obj := o.Obj.DeepCopyObject()
	ki.setTypeMeta(obj)
	m, err := meta.Accessor(obj)
	if err != nil {
		return "", err
	}
	if ki.Namespaced {
		m.SetNamespace(namespaceOr(m.GetNamespace()))
	} else {
		m.SetNamespace("")
	}
	name := m.GetName()
	if name == "" {
		return "", ki.invalid(name, field.ErrorList{field.Required(field.NewPath("metadata", "name"), "name or generateName is required")})
	}
	if ki.Namespaced && t.s.Namespaces[m.GetNamespace()] == nil {
		return "", kinds["Namespace"].notFound(m.GetNamespace())
	}
	if node, ok := obj.(*corev1.Node); ok {
		return t.applyNode(node)
	}
	existing := getObject(t.s, ki, m.GetNamespace(), name)
	cfg, modified, err := applyConfig(obj, o.Raw, m.GetNamespace())
	if err != nil {
		return "", err
	}
	if existing == nil {
		setLastApplied(obj, cfg)
		if err := t.create(obj); err != nil {
			return "", err
		}
		return ki.Singular + "/" + name + " created", nil
	}
	merged, changed, err := threeWayMerge(ki, existing, modified)
	if err != nil {
		return "", err
	}
	if !changed {
		return ki.Singular + "/" + name + " unchanged", nil
	}
	before := existing.DeepCopyObject()
	if err := t.update(existing.DeepCopyObject(), merged); err != nil {
		return "", err
	}
	if after := getObject(t.s, ki, m.GetNamespace(), name); sameIgnoringRV(before, after) {
		// The merge changed nothing the server keeps (a defaulted field
		// spelled out or left out): keep the old object as it was.
		t.restore(before)
		return ki.Singular + "/" + name + " unchanged", nil
	}
	return ki.Singular + "/" + name + " configured", nil
}

// applyNode sets the labels of an existing node (nodes themselves come
// from Config).
func (t *txn) applyNode(n *corev1.Node) (string, error) {
	cur, ok := t.s.NodeLabels[n.Name]
	if !ok {
		return "", kinds["Node"].notFound(n.Name)
	}
	if el := validateLabels(n.Labels, field.NewPath("metadata", "labels")); len(el) > 0 {
		return "", kinds["Node"].invalid(n.Name, el)
	}
	changed := false
	for k, v := range n.Labels {
		if cur[k] != v {
			cur[k] = v
			changed = true
		}
	}
	if !changed {
		return "node/" + n.Name + " unchanged", nil
	}
	return "node/" + n.Name + " configured", nil
}

// Patch applies a strategic merge patch (JSON or YAML) to one object like
// `kubectl patch`, e.g. Patch("svc", "default", "getip-service",
// []byte(`{"spec":{"sessionAffinity":"ClientIP"}}`)). The result is
// validated like any update; an invalid result changes nothing.
func (c *Cluster) Patch(kind, namespace, name string, patch []byte) error {
	ki, err := lookupKind(kind)
	if err != nil {
		return err
	}
	pj, err := yaml.YAMLToJSON(patch)
	if err != nil {
		return fmt.Errorf("parse patch: %w", err)
	}
	if ki.Kind == "Node" {
		var n corev1.Node
		if err := json.Unmarshal(pj, &n); err != nil {
			return fmt.Errorf("parse node patch: %w", err)
		}
		n.Name = name
		return c.change(func(t *txn) error {
			_, err := t.applyNode(&n)
			return err
		})
	}
	return c.change(func(t *txn) error {
		ns := ""
		if ki.Namespaced {
			ns = namespaceOr(namespace)
		}
		cur := getObject(t.s, ki, ns, name)
		if cur == nil {
			return ki.notFound(name)
		}
		raw, err := json.Marshal(cur)
		if err != nil {
			return err
		}
		obj, err := mergePatch(ki, raw, pj)
		if err != nil {
			return err
		}
		m, _ := meta.Accessor(obj)
		if m.GetName() != name || m.GetNamespace() != ns {
			return apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), name))
		}
		before := cur.DeepCopyObject()
		if err := t.update(cur.DeepCopyObject(), obj); err != nil {
			return err
		}
		if sameIgnoringRV(before, getObject(t.s, ki, ns, name)) {
			t.restore(before)
		}
		return nil
	})
}

// Scale sets a Deployment's replicas, like `kubectl scale deployment`.
func (c *Cluster) Scale(kind, namespace, name string, replicas int32) error {
	ki, err := lookupKind(kind)
	if err != nil {
		return err
	}
	if ki.Kind != "Deployment" {
		return fmt.Errorf("cannot scale %s: only deployments can be scaled", ki.Resource)
	}
	return c.change(func(t *txn) error {
		d := t.s.Deployments[key(namespaceOr(namespace), name)]
		if d == nil {
			return ki.notFound(name)
		}
		if replicas < 0 {
			return ki.invalid(name, field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), replicas, "must be greater than or equal to 0")})
		}
		if d.Spec.Replicas != nil && *d.Spec.Replicas == replicas {
			return nil
		}
		nd := d.DeepCopy()
		nd.Spec.Replicas = &replicas
		return t.update(d.DeepCopy(), nd)
	})
}

// Delete removes an object like `kubectl delete`. Deleting a Deployment or
// DaemonSet deletes its pods, a Service its Endpoints, a Namespace
// everything in it. A deleted pod of a workload is replaced by a new one;
// a pod with a preStop sleep terminates first (termination.go). Nodes
// cannot be deleted.
func (c *Cluster) Delete(kind, namespace, name string) error {
	ki, err := lookupKind(kind)
	if err != nil {
		return err
	}
	if ki.Kind == "Node" {
		return fmt.Errorf("svcsim: nodes are fixed by the configuration and cannot be deleted")
	}
	return c.change(func(t *txn) error {
		ns := namespaceOr(namespace)
		if getObject(t.s, ki, ns, name) == nil {
			return ki.notFound(name)
		}
		if ki.Kind == "Namespace" && (name == "default" || name == "kube-system" || name == "kube-public") {
			return apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, name,
				errors.New("this namespace may not be deleted"))
		}
		if ki.Kind == "Pod" {
			t.deletePod(t.s.Pods[key(ns, name)])
			return nil
		}
		t.delete(ki.Kind, ns, name)
		return nil
	})
}

func (t *txn) delete(kind, ns, name string) {
	ki := kinds[kind]
	if !ki.Namespaced {
		ns = ""
	}
	ki.ops.remove(t, key(ns, name))
}

// Label sets labels on an object like `kubectl label --overwrite`; a key
// ending in "-" removes that label. Relabelling a node reschedules
// DaemonSets; relabelling a pod updates Endpoints. Kinds: node, pod, svc,
// deploy, ds, ns, ing, ep.
func (c *Cluster) Label(kind, namespace, name string, labels map[string]string) error {
	ki, err := lookupKind(kind)
	if err != nil {
		return err
	}
	set := map[string]string{}
	var remove []string
	for k, v := range labels {
		if strings.HasSuffix(k, "-") {
			remove = append(remove, strings.TrimSuffix(k, "-"))
			continue
		}
		set[k] = v
	}
	sort.Strings(remove)
	if el := validateLabels(set, field.NewPath("metadata", "labels")); len(el) > 0 {
		return ki.invalid(name, el)
	}
	return c.change(func(t *txn) error {
		if ki.Kind == "Node" {
			cur, ok := t.s.NodeLabels[name]
			if !ok {
				return ki.notFound(name)
			}
			for k, v := range set {
				cur[k] = v
			}
			for _, k := range remove {
				delete(cur, k)
			}
			return nil
		}
		ns := ""
		if ki.Namespaced {
			ns = namespaceOr(namespace)
		}
		cur := getObject(t.s, ki, ns, name)
		if cur == nil {
			return ki.notFound(name)
		}
		m, _ := meta.Accessor(cur)
		l := copyLabels(m.GetLabels())
		if l == nil {
			l = map[string]string{}
		}
		for k, v := range set {
			l[k] = v
		}
		for _, k := range remove {
			delete(l, k)
		}
		if len(l) == 0 {
			l = nil
		}
		if apiequality.Semantic.DeepEqual(l, m.GetLabels()) {
			return nil
		}
		m.SetLabels(l)
		m.SetResourceVersion(t.s.nextRV())
		return nil
	})
}

func validateLabels(labels map[string]string, fld *field.Path) field.ErrorList {
	var el field.ErrorList
	for _, k := range sortedKeys(labels) {
		for _, msg := range validation.IsQualifiedName(k) {
			el = append(el, field.Invalid(fld, k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(labels[k]) {
			el = append(el, field.Invalid(fld, labels[k], msg))
		}
	}
	return el
}

// create stores a new object after defaulting, validation and allocation.
func (t *txn) create(obj runtime.Object) error {
	if err := validateMeta(obj); err != nil {
		return err
	}
	ki := kindOf(obj)
	if ki == nil || ki.ops == nil {
		return fmt.Errorf("unsupported object type %T", obj)
	}
	return ki.ops.put(t, nil, obj)
}

// validateMeta applies the API server's object-metadata rules every kind
// shares, with its messages: annotation keys are qualified names and all
// annotations, the last-applied configuration included, hold at most
// 256 KiB.
func validateMeta(obj runtime.Object) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	if el := apivalidation.ValidateAnnotations(m.GetAnnotations(), field.NewPath("metadata", "annotations")); len(el) > 0 {
		if ki := kindOf(obj); ki != nil {
			return ki.invalid(m.GetName(), el)
		}
		return el.ToAggregate()
	}
	return nil
}

// update replaces old with obj after validation.
func (t *txn) update(old, obj runtime.Object) error {
	if err := validateMeta(obj); err != nil {
		return err
	}
	ki := kindOf(obj)
	if ki == nil || ki.ops == nil {
		return fmt.Errorf("unsupported object type %T", obj)
	}
	om, _ := meta.Accessor(old)
	nm, _ := meta.Accessor(obj)
	nm.SetUID(om.GetUID())
	nm.SetCreationTimestamp(om.GetCreationTimestamp())
	nm.SetResourceVersion(t.s.nextRV())
	return ki.ops.put(t, old, obj)
}

func (t *txn) newNamespace(name string) *corev1.Namespace {
	ns := &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/metadata.name": name}},
		Spec:       corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}},
		Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
	}
	kinds["Namespace"].setTypeMeta(ns)
	t.initMeta(&ns.ObjectMeta, "Namespace")
	return ns
}

// initMeta fills what the API server sets on creation.
func (t *txn) initMeta(m *metav1.ObjectMeta, kind string) {
	m.UID = t.s.uid()
	m.CreationTimestamp = metav1.NewTime(t.now)
	m.ResourceVersion = t.s.nextRV()
	t.s.nextSeq(kind + "/" + key(m.Namespace, m.Name))
}

func mergeLabels(a, b map[string]string) map[string]string {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := copyLabels(a)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func validateName(name string, f func(string) []string) field.ErrorList {
	var el field.ErrorList
	for _, msg := range f(name) {
		el = append(el, field.Invalid(field.NewPath("metadata", "name"), name, msg))
	}
	return el
}

// sameIgnoringRV compares two objects ignoring metadata.resourceVersion.
func sameIgnoringRV(a, b runtime.Object) bool {
	if a == nil || b == nil {
		return a == b
	}
	a, b = a.DeepCopyObject(), b.DeepCopyObject()
	am, _ := meta.Accessor(a)
	bm, _ := meta.Accessor(b)
	am.SetResourceVersion("")
	bm.SetResourceVersion("")
	return apiequality.Semantic.DeepEqual(a, b)
}

// restore puts a stored object back as it was.
func (t *txn) restore(obj runtime.Object) {
	m, _ := meta.Accessor(obj)
	if ki := kindOf(obj); ki != nil && ki.ops != nil {
		ki.ops.set(t, key(m.GetNamespace(), m.GetName()), obj)
	}
}
