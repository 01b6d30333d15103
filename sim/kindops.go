package sim

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The built-in kinds' storage: each kindOps below is how the generic verbs
// (apply.go) reach one map of the store and the kind's own create and
// update (beside its controller). Keys are "namespace/name"; a
// cluster-scoped kind's key has an empty namespace ("/name").

// namespaceOps stores Namespaces (keyed by name in the store).
type namespaceOps struct{}

func (namespaceOps) get(s *store, k string) runtime.Object {
	if v := s.Namespaces[strings.TrimPrefix(k, "/")]; v != nil {
		return v
	}
	return nil
}

func (namespaceOps) put(t *txn, old, obj runtime.Object) error {
	o := obj.(*corev1.Namespace)
	if old != nil {
		t.s.Namespaces[o.Name] = o
		return nil
	}
	if el := validateName(o.Name, validation.IsDNS1123Label); len(el) > 0 {
		return kinds["Namespace"].invalid(o.Name, el)
	}
	ns := t.newNamespace(o.Name)
	ns.Labels = mergeLabels(o.Labels, ns.Labels)
	ns.Annotations = o.Annotations
	t.s.Namespaces[o.Name] = ns
	return nil
}

func (namespaceOps) set(t *txn, k string, obj runtime.Object) {
	t.s.Namespaces[strings.TrimPrefix(k, "/")] = obj.(*corev1.Namespace)
}

// remove deletes a Namespace and everything in it.
func (namespaceOps) remove(t *txn, k string) {
	name := strings.TrimPrefix(k, "/")
	for _, ki := range kinds {
		if ki.ops != nil && ki.Namespaced {
			ki.ops.removeNamespace(t, name)
		}
	}
	delete(t.s.Namespaces, name)
}

func (namespaceOps) removeNamespace(*txn, string) {}

// podOps stores Pods; a pod's owner and creation order go with it.
type podOps struct{}

func (podOps) get(s *store, k string) runtime.Object {
	if v := s.Pods[k]; v != nil {
		return v
	}
	return nil
}

func (podOps) put(t *txn, old, obj runtime.Object) error {
	if old == nil {
		return t.createPod(obj.(*corev1.Pod))
	}
	return t.updatePod(old.(*corev1.Pod), obj.(*corev1.Pod))
}

func (podOps) set(t *txn, k string, obj runtime.Object) { t.s.Pods[k] = obj.(*corev1.Pod) }

func (podOps) remove(t *txn, k string) {
	delete(t.s.Pods, k)
	delete(t.s.Owner, k)
	delete(t.s.Seq, "Pod/"+k)
}

func (podOps) removeNamespace(t *txn, ns string) {
	deletePrefix(t.s.Pods, ns+"/", func(k string) { delete(t.s.Owner, k) })
}

// serviceOps stores Services; the allocations follow (servicesChanged), and
// a Service's Endpoints go with it.
type serviceOps struct{}

func (serviceOps) get(s *store, k string) runtime.Object {
	if v := s.Services[k]; v != nil {
		return v
	}
	return nil
}

func (serviceOps) put(t *txn, old, obj runtime.Object) error {
	if old == nil {
		return t.createService(obj.(*corev1.Service))
	}
	return t.updateService(old.(*corev1.Service), obj.(*corev1.Service))
}

func (serviceOps) set(t *txn, k string, obj runtime.Object) {
	t.s.Services[k] = obj.(*corev1.Service)
	t.servicesChanged()
}

func (serviceOps) remove(t *txn, k string) {
	delete(t.s.Services, k)
	t.servicesChanged()
	delete(t.s.Endpoints, k)
	delete(t.s.Seq, "Service/"+k)
}

func (serviceOps) removeNamespace(t *txn, ns string) {
	t.servicesChanged()
	deletePrefix(t.s.Services, ns+"/", nil)
}

// endpointsOps stores v1 Endpoints.
type endpointsOps struct{}

func (endpointsOps) get(s *store, k string) runtime.Object {
	if v := s.Endpoints[k]; v != nil {
		return v
	}
	return nil
}

func (endpointsOps) put(t *txn, old, obj runtime.Object) error {
	o, _ := old.(*corev1.Endpoints)
	return t.putEndpoints(o, obj.(*corev1.Endpoints))
}

func (endpointsOps) set(t *txn, k string, obj runtime.Object) {
	t.s.Endpoints[k] = obj.(*corev1.Endpoints)
}

func (endpointsOps) remove(t *txn, k string) { delete(t.s.Endpoints, k) }

func (endpointsOps) removeNamespace(t *txn, ns string) { deletePrefix(t.s.Endpoints, ns+"/", nil) }

// deploymentOps stores Deployments; deleting one deletes its pods.
type deploymentOps struct{}

func (deploymentOps) get(s *store, k string) runtime.Object {
	if v := s.Deployments[k]; v != nil {
		return v
	}
	return nil
}

func (deploymentOps) put(t *txn, old, obj runtime.Object) error {
	if old == nil {
		return t.createDeployment(obj.(*appsv1.Deployment))
	}
	return t.updateDeployment(old.(*appsv1.Deployment), obj.(*appsv1.Deployment))
}

func (deploymentOps) set(t *txn, k string, obj runtime.Object) {
	t.s.Deployments[k] = obj.(*appsv1.Deployment)
}

func (deploymentOps) remove(t *txn, k string) {
	delete(t.s.Deployments, k)
	t.deleteOwned("deployment/" + k)
}

func (deploymentOps) removeNamespace(t *txn, ns string) { deletePrefix(t.s.Deployments, ns+"/", nil) }

// daemonSetOps stores DaemonSets; deleting one deletes its pods.
type daemonSetOps struct{}

func (daemonSetOps) get(s *store, k string) runtime.Object {
	if v := s.DaemonSets[k]; v != nil {
		return v
	}
	return nil
}

func (daemonSetOps) put(t *txn, old, obj runtime.Object) error {
	if old == nil {
		return t.createDaemonSet(obj.(*appsv1.DaemonSet))
	}
	return t.updateDaemonSet(old.(*appsv1.DaemonSet), obj.(*appsv1.DaemonSet))
}

func (daemonSetOps) set(t *txn, k string, obj runtime.Object) {
	t.s.DaemonSets[k] = obj.(*appsv1.DaemonSet)
}

func (daemonSetOps) remove(t *txn, k string) {
	delete(t.s.DaemonSets, k)
	t.deleteOwned("daemonset/" + k)
}

func (daemonSetOps) removeNamespace(t *txn, ns string) { deletePrefix(t.s.DaemonSets, ns+"/", nil) }

// ingressOps stores Ingresses.
type ingressOps struct{}

func (ingressOps) get(s *store, k string) runtime.Object {
	if v := s.Ingresses[k]; v != nil {
		return v
	}
	return nil
}

func (ingressOps) put(t *txn, old, obj runtime.Object) error {
	o, _ := old.(*networkingv1.Ingress)
	return t.putIngress(o, obj.(*networkingv1.Ingress))
}

func (ingressOps) set(t *txn, k string, obj runtime.Object) {
	t.s.Ingresses[k] = obj.(*networkingv1.Ingress)
}

func (ingressOps) remove(t *txn, k string) { delete(t.s.Ingresses, k) }

func (ingressOps) removeNamespace(t *txn, ns string) { deletePrefix(t.s.Ingresses, ns+"/", nil) }

// deletePrefix deletes m's keys that start with prefix, calling also (when
// set) with each.
func deletePrefix[V any](m map[string]V, prefix string, also func(string)) {
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			delete(m, k)
			if also != nil {
				also(k)
			}
		}
	}
}

// deleteOwned deletes the pods of a workload ("deployment/ns/name").
func (t *txn) deleteOwned(owner string) {
	for k, o := range t.s.Owner {
		if o == owner {
			delete(t.s.Pods, k)
			delete(t.s.Owner, k)
		}
	}
}
