package sim

import (
	"fmt"
	"reflect"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// kindInfo describes a kind svcsim models.
type kindInfo struct {
	Kind, Group, Version, Resource string
	// Singular is kubectl's name in output lines ("deployment.apps").
	Singular   string
	Namespaced bool
	new        func() runtime.Object
	// ops stores and validates the kind; nil for Node.
	ops kindOps
}

// kinds is the per-kind table the generic verbs (apply.go) work through:
// every kind the model stores has its kindOps; Node has none (nodes come
// from Config: apply and patch set their labels, nothing creates or deletes
// them).
var kinds = map[string]*kindInfo{
	"Namespace":  {"Namespace", "", "v1", "namespaces", "namespace", false, func() runtime.Object { return &corev1.Namespace{} }, namespaceOps{}},
	"Pod":        {"Pod", "", "v1", "pods", "pod", true, func() runtime.Object { return &corev1.Pod{} }, podOps{}},
	"Service":    {"Service", "", "v1", "services", "service", true, func() runtime.Object { return &corev1.Service{} }, serviceOps{}},
	"Endpoints":  {"Endpoints", "", "v1", "endpoints", "endpoints", true, func() runtime.Object { return &corev1.Endpoints{} }, endpointsOps{}},
	"Node":       {"Node", "", "v1", "nodes", "node", false, func() runtime.Object { return &corev1.Node{} }, nil},
	"Deployment": {"Deployment", "apps", "v1", "deployments", "deployment.apps", true, func() runtime.Object { return &appsv1.Deployment{} }, deploymentOps{}},
	"DaemonSet":  {"DaemonSet", "apps", "v1", "daemonsets", "daemonset.apps", true, func() runtime.Object { return &appsv1.DaemonSet{} }, daemonSetOps{}},
	"Ingress":    {"Ingress", "networking.k8s.io", "v1", "ingresses", "ingress.networking.k8s.io", true, func() runtime.Object { return &networkingv1.Ingress{} }, ingressOps{}},
	"EndpointSlice": {Kind: "EndpointSlice", Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices",
		Singular: "endpointslice.discovery.k8s.io", Namespaced: true, new: func() runtime.Object { return &discoveryv1.EndpointSlice{} }, ops: sliceOps{}},
}

var kindAliases = map[string]string{
	"ns": "Namespace", "namespace": "Namespace", "namespaces": "Namespace",
	"po": "Pod", "pod": "Pod", "pods": "Pod",
	"svc": "Service", "service": "Service", "services": "Service",
	"ep": "Endpoints", "endpoint": "Endpoints", "endpoints": "Endpoints",
	"no": "Node", "node": "Node", "nodes": "Node",
	"deploy": "Deployment", "deployment": "Deployment", "deployments": "Deployment", "deployment.apps": "Deployment", "deployments.apps": "Deployment",
	"ds": "DaemonSet", "daemonset": "DaemonSet", "daemonsets": "DaemonSet", "daemonset.apps": "DaemonSet", "daemonsets.apps": "DaemonSet",
	"ing": "Ingress", "ingress": "Ingress", "ingresses": "Ingress", "ingress.networking.k8s.io": "Ingress", "ingresses.networking.k8s.io": "Ingress",
	"endpointslice": "EndpointSlice", "endpointslices": "EndpointSlice", "endpointslice.discovery.k8s.io": "EndpointSlice", "endpointslices.discovery.k8s.io": "EndpointSlice",
}

// CanonicalKind maps kubectl's resource names and aliases ("svc",
// "deploy", "ep", ...) to the kind ("Service", "Deployment", ...).
func CanonicalKind(s string) (string, error) {
	ki, err := lookupKind(s)
	if err != nil {
		return "", err
	}
	return ki.Kind, nil
}

// KindNames returns a kind's kubectl name ("deployment.apps",
// "clusterrole.rbac.authorization.k8s.io") and whether it is namespaced.
func KindNames(s string) (singular string, namespaced bool, err error) {
	ki, err := lookupKind(s)
	if err != nil {
		return "", false, err
	}
	return ki.Singular, ki.Namespaced, nil
}

func lookupKind(s string) (*kindInfo, error) {
	if ki, ok := kinds[s]; ok {
		return ki, nil
	}
	if k, ok := kindAliases[strings.ToLower(s)]; ok {
		return kinds[k], nil
	}
	return nil, fmt.Errorf("the server doesn't have a resource type %q", s)
}

// kindsByType maps each kind's Go type to its entry, built on first use
// (after every init has added its kinds).
var kindsByType = sync.OnceValue(func() map[reflect.Type]*kindInfo {
	m := make(map[reflect.Type]*kindInfo, len(kinds))
	for _, ki := range kinds {
		m[reflect.TypeOf(ki.new())] = ki
	}
	return m
})

// kindOf is obj's entry in kinds, nil for a type svcsim does not model.
func kindOf(obj runtime.Object) *kindInfo {
	return kindsByType()[reflect.TypeOf(obj)]
}

func (k *kindInfo) notFound(name string) error {
	return apierrors.NewNotFound(schema.GroupResource{Group: k.Group, Resource: k.Resource}, name)
}

func (k *kindInfo) invalid(name string, errs field.ErrorList) error {
	return apierrors.NewInvalid(schema.GroupKind{Group: k.Group, Kind: k.Kind}, name, errs)
}

func (k *kindInfo) apiVersion() string {
	if k.Group == "" {
		return k.Version
	}
	return k.Group + "/" + k.Version
}

func (k *kindInfo) setTypeMeta(obj runtime.Object) {
	obj.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{Group: k.Group, Version: k.Version, Kind: k.Kind})
}

// getObject returns the stored object (not a copy) or nil. A cluster-scoped
// kind ignores ns.
func getObject(s *store, ki *kindInfo, ns, name string) runtime.Object {
	if ki.ops == nil {
		return nil
	}
	if !ki.Namespaced {
		ns = ""
	}
	return ki.ops.get(s, key(ns, name))
}

// kindOps is how the generic verbs (apply.go) reach a kind's storage and
// its own validation, which live beside its controller. Keys are
// "namespace/name" ("/name" for a cluster-scoped kind).
type kindOps interface {
	get(s *store, k string) runtime.Object
	// put validates and stores obj; old is nil on create.
	put(t *txn, old, obj runtime.Object) error
	// set puts a stored object back as it was (no validation).
	set(t *txn, k string, obj runtime.Object)
	// remove deletes the object and what goes with it.
	remove(t *txn, k string)
	// removeNamespace deletes every object of the kind in namespace ns.
	removeNamespace(t *txn, ns string)
}
