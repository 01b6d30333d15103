package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// DeleteNamespace deletes the Namespace ns and then, at once, everything
// in it, kind by kind. The genuine namespace controller does the same, but
// only 5 s after it sees the deletion (namespaceDeletionGracePeriod in
// pkg/controller/namespace) and then again by the pods' grace estimate, so
// a deleted namespace's Services stay programmed for about 10 s. Scenarios
// that share the plane wait for that between each other; nothing in them
// depends on the controller's pace. Deleting the Namespace first makes it
// Terminating, so the API server's NamespaceLifecycle admission refuses
// what controllers would recreate in it (ReplicaSet pods, the default
// ServiceAccount). The namespace controller still removes the Namespace
// object itself; pods still end gracefully through their kubelets.
func (c *Cluster) DeleteNamespace(ctx context.Context, ns string) error {
	err := c.admin.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	c.mdOnce.Do(func() {
		cfg, err := restIn(c.cp.AdminKubeconfig(), c.topo.ControlPlane(), nil)
		if err == nil {
			// Deleting the deprecated v1 Endpoints warns on every call.
			cfg.WarningHandler = rest.NoWarnings{}
			c.md, err = metadata.NewForConfig(cfg)
		}
		c.mdErr = err
	})
	if c.mdErr != nil {
		return fmt.Errorf("delete namespace %s: metadata client: %w", ns, c.mdErr)
	}
	lists, err := c.admin.Discovery().ServerPreferredNamespacedResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return fmt.Errorf("delete namespace %s: discover its kinds: %w", ns, err)
	}
	var errs []error
	background := metav1.DeletePropagationBackground
	for _, gvr := range deletable(lists) {
		err := c.md.Resource(gvr).Namespace(ns).DeleteCollection(ctx,
			metav1.DeleteOptions{PropagationPolicy: &background}, metav1.ListOptions{})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsMethodNotSupported(err) {
			errs = append(errs, fmt.Errorf("%s: %w", gvr.String(), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete namespace %s's objects: %w", ns, err)
	}
	return nil
}

// deletable lists the namespaced kinds that can be deleted as a
// collection, workload controllers first (so none replaces a pod deleted
// after it), then pods, then the rest, each group in name order.
func deletable(lists []*metav1.APIResourceList) []schema.GroupVersionResource {
	rank := func(g schema.GroupVersionResource) int {
		switch {
		case g.Group == "apps" || g.Group == "batch":
			return 0
		case g.Group == "" && g.Resource == "pods":
			return 1
		}
		return 2
	}
	var out []schema.GroupVersionResource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !r.Namespaced || !slices.Contains(r.Verbs, "deletecollection") {
				continue
			}
			out = append(out, gv.WithResource(r.Name))
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if ri, rj := rank(out[i]), rank(out[j]); ri != rj {
			return ri < rj
		}
		return out[i].String() < out[j].String()
	})
	return out
}
