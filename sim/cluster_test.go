package sim

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDefaultConfig(t *testing.T) {
	cfg := DefaultConfig(3)
	require.Len(t, cfg.Nodes, 3)
	n := cfg.Nodes[2]
	require.Equal(t, "node3", n.Name)
	require.Equal(t, "198.18.0.13", n.IP.String())
	require.Equal(t, "10.244.3.0/24", n.PodCIDR.String())
	require.Equal(t, map[string]string{HostnameLabel: "node3"}, n.Labels)
	require.Equal(t, "10.96.0.0/12", cfg.ServiceCIDR.String())
	require.Equal(t, "10.244.0.0/16", cfg.ClusterCIDR.String())
	require.Equal(t, int32(30000), cfg.NodePortMin)
	require.Equal(t, int32(32767), cfg.NodePortMax)
	require.Equal(t, "cluster.local", cfg.DNSDomain)

	bad := DefaultConfig(1)
	bad.Nodes = append(bad.Nodes, bad.Nodes[0])
	_, err := New(bad)
	require.ErrorContains(t, err, "listed twice")
	_, err = New(Config{})
	require.ErrorContains(t, err, "no nodes")
}

func TestDeleteAndLabel(t *testing.T) {
	c, _ := newCluster(t, 2)
	ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	ing := &networkingv1.Ingress{TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "ing"},
		Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
			Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}
	mustApply(t, c, ns, makeDeployment("shop", "web", 2), makeService("shop", "web"), ing, makeService("default", "keep"))
	require.Len(t, c.Pods(), 2)

	require.EqualError(t, c.Delete("widget", "shop", "x"), `the server doesn't have a resource type "widget"`)
	require.EqualError(t, c.Delete("svc", "shop", "nope"), `services "nope" not found`)
	require.ErrorContains(t, c.Delete("node", "", "node1"), "cannot be deleted")
	require.EqualError(t, c.Delete("ns", "", "default"), `namespaces "default" is forbidden: this namespace may not be deleted`)
	require.NoError(t, c.Label("svc", "shop", "web", map[string]string{"tier": "front"}))
	require.Equal(t, "front", svcOf(t, c, "shop", "web").Labels["tier"])
	require.NoError(t, c.Label("svc", "shop", "web", map[string]string{"tier-": ""}))
	require.NotContains(t, svcOf(t, c, "shop", "web").Labels, "tier")
	require.Error(t, c.Label("svc", "shop", "web", map[string]string{"bad key!": "x"}))
	require.EqualError(t, c.Label("node", "", "node9", map[string]string{"a": "b"}), `nodes "node9" not found`)

	require.NoError(t, c.Delete("ing", "shop", "ing"))
	require.Empty(t, c.Ingresses())
	require.NoError(t, c.Delete("deploy", "shop", "web"))
	require.Empty(t, c.Pods())
	mustApply(t, c, makeDeployment("shop", "web", 1))
	require.NoError(t, c.Delete("ns", "", "shop"))
	require.Empty(t, c.Pods())
	require.Len(t, c.Services(), 1)
	_, err := c.Apply(objs(makeService("shop", "web")))
	require.ErrorContains(t, err, `namespaces "shop" not found`)
	require.Len(t, c.Namespaces(), 4)
}

func TestConcurrentUse(t *testing.T) {
	c, _ := newCluster(t, 2)
	mustApply(t, c, makeDeployment("default", "web", 1), makeService("default", "web"))
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				_ = c.Scale("deploy", "default", "web", int32(1+(i+j)%3))
			}
		}(i)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				st := c.NodeState("node1")
				if err := st.Validate(); err != nil {
					t.Error(err)
				}
				_ = c.Pods()
			}
		}()
	}
	wg.Wait()
	d, err := c.Get("deploy", "default", "web")
	require.NoError(t, err)
	require.NotNil(t, d)
}
