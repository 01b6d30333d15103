package sim

import (
	"fmt"
	"reflect"
	"strings"

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
	// ops, when set, stores and validates the kind outside apply.go's
	// switches (new kinds go there).
	ops kindOps
}

var kinds = map[string]*kindInfo{
	"Namespace":  {"Namespace", "", "v1", "namespaces", "namespace", false, func() runtime.Object { return &corev1.Namespace{} }, nil},
	"Pod":        {"Pod", "", "v1", "pods", "pod", true, func() runtime.Object { return &corev1.Pod{} }, nil},
	"Service":    {"Service", "", "v1", "services", "service", true, func() runtime.Object { return &corev1.Service{} }, nil},
	"Endpoints":  {"Endpoints", "", "v1", "endpoints", "endpoints", true, func() runtime.Object { return &corev1.Endpoints{} }, nil},
	"Node":       {"Node", "", "v1", "nodes", "node", false, func() runtime.Object { return &corev1.Node{} }, nil},
	"Deployment": {"Deployment", "apps", "v1", "deployments", "deployment.apps", true, func() runtime.Object { return &appsv1.Deployment{} }, nil},
	"DaemonSet":  {"DaemonSet", "apps", "v1", "daemonsets", "daemonset.apps", true, func() runtime.Object { return &appsv1.DaemonSet{} }, nil},
	"Ingress":    {"Ingress", "networking.k8s.io", "v1", "ingresses", "ingress.networking.k8s.io", true, func() runtime.Object { return &networkingv1.Ingress{} }, nil},
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

func lookupKind(s string) (*kindInfo, error) {
	if ki, ok := kinds[s]; ok {
		return ki, nil
	}
	if k, ok := kindAliases[strings.ToLower(s)]; ok {
		return kinds[k], nil
	}
	return nil, fmt.Errorf("the server doesn't have a resource type %q", s)
}

func kindOf(obj runtime.Object) *kindInfo {
	switch obj.(type) {
	case *corev1.Namespace:
		return kinds["Namespace"]
	case *corev1.Pod:
		return kinds["Pod"]
	case *corev1.Service:
		return kinds["Service"]
	case *corev1.Endpoints:
		return kinds["Endpoints"]
	case *corev1.Node:
		return kinds["Node"]
	case *appsv1.Deployment:
		return kinds["Deployment"]
	case *appsv1.DaemonSet:
		return kinds["DaemonSet"]
	case *networkingv1.Ingress:
		return kinds["Ingress"]
	}
	for _, ki := range kinds {
		if ki.ops != nil && reflect.TypeOf(ki.new()) == reflect.TypeOf(obj) {
			return ki
		}
	}
	return nil
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

// getObject returns the stored object (not a copy) or nil.
func getObject(s *store, ki *kindInfo, ns, name string) runtime.Object {
	k := key(ns, name)
	if ki.ops != nil {
		return ki.ops.get(s, k)
	}
	var o runtime.Object
	switch ki.Kind {
	case "Namespace":
		if v := s.Namespaces[name]; v != nil {
			o = v
		}
	case "Pod":
		if v := s.Pods[k]; v != nil {
			o = v
		}
	case "Service":
		if v := s.Services[k]; v != nil {
			o = v
		}
	case "Endpoints":
		if v := s.Endpoints[k]; v != nil {
			o = v
		}
	case "Deployment":
		if v := s.Deployments[k]; v != nil {
			o = v
		}
	case "DaemonSet":
		if v := s.DaemonSets[k]; v != nil {
			o = v
		}
	case "Ingress":
		if v := s.Ingresses[k]; v != nil {
			o = v
		}
	}
	return o
}

// kindOps is how apply.go's generic verbs reach a kind whose storage and
// validation live beside its controller rather than in apply.go's
// switches. Keys are "namespace/name".
type kindOps interface {
	get(s *store, k string) runtime.Object
	// put validates and stores obj; old is nil on create.
	put(t *txn, old, obj runtime.Object) error
	set(s *store, k string, obj runtime.Object)
	remove(s *store, k string)
	removeNamespace(s *store, ns string)
}
