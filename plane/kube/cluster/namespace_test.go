package cluster

import (
	"testing"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDeletableOrdersWorkloadsFirst(t *testing.T) {
	all := metav1.Verbs{"create", "delete", "deletecollection", "get", "list"}
	lists := []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "services", Namespaced: true, Verbs: all},
			{Name: "pods", Namespaced: true, Verbs: all},
			{Name: "pods/status", Namespaced: true, Verbs: all},
			{Name: "nodes", Namespaced: false, Verbs: all},
			{Name: "bindings", Namespaced: true, Verbs: metav1.Verbs{"create"}},
		}},
		{GroupVersion: "networking.k8s.io/v1", APIResources: []metav1.APIResource{
			{Name: "ingresses", Namespaced: true, Verbs: all},
		}},
		{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{
			{Name: "replicasets", Namespaced: true, Verbs: all},
			{Name: "deployments", Namespaced: true, Verbs: all},
		}},
		{GroupVersion: "batch/v1", APIResources: []metav1.APIResource{
			{Name: "jobs", Namespaced: true, Verbs: all},
		}},
	}
	var got []string
	for _, g := range deletable(lists) {
		got = append(got, g.String())
	}
	assert.Equal(t, []string{
		"apps/v1, Resource=deployments",
		"apps/v1, Resource=replicasets",
		"batch/v1, Resource=jobs",
		"/v1, Resource=pods",
		"/v1, Resource=services",
		"networking.k8s.io/v1, Resource=ingresses",
	}, got, "workload controllers, then pods, then the rest; no subresource, cluster-scoped kind or kind without deletecollection")
}
