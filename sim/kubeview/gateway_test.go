package kubeview

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"

	"github.com/svcsim/svcsim/sim"
)

type serviceWriter struct{ c *sim.Cluster }

func (w serviceWriter) Apply(svc *corev1.Service) (*corev1.Service, error) {
	if _, err := w.c.Apply([]sim.Object{{Source: "client", Obj: svc}}); err != nil {
		return nil, err
	}
	o, err := w.c.Get("service", svc.Namespace, svc.Name)
	if err != nil {
		return nil, err
	}
	return o.(*corev1.Service), nil
}

func (w serviceWriter) Delete(ns, name string) error { return w.c.Delete("service", ns, name) }

// The Gateway API kinds reach informers through GatewayClient; their
// status writes go to the model through OnGatewayStatus, spec writes are
// refused; Service writes go to the model through a ServiceWriter.
func TestGatewayClient(t *testing.T) {
	c := newCluster(t)
	v := New()
	defer v.Close()
	apply(t, c, v, "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  gatewayClassName: svcsim\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n")
	f := gwinformers.NewSharedInformerFactory(v.GatewayClient(), 0)
	inf := f.Gateway().V1().Gateways().Informer()
	stop := make(chan struct{})
	defer close(stop)
	f.Start(stop)
	require.True(t, cache.WaitForCacheSync(stop, inf.HasSynced))
	require.Len(t, inf.GetStore().List(), 1)

	ctx := context.Background()
	g, err := v.GatewayClient().GatewayV1().Gateways("default").Get(ctx, "gw", metav1.GetOptions{})
	require.NoError(t, err)
	g.Status.Addresses = []gwv1.GatewayStatusAddress{{Value: "198.18.1.7"}}
	_, err = v.GatewayClient().GatewayV1().Gateways("default").UpdateStatus(ctx, g, metav1.UpdateOptions{})
	require.True(t, apierrors.IsForbidden(err), "without a status writer: %v", err)
	v.OnGatewayStatus(func(obj runtime.Object) (runtime.Object, error) { return c.SetStatus(obj) })
	_, err = v.GatewayClient().GatewayV1().Gateways("default").UpdateStatus(ctx, g, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, v.Sync(c))
	require.Eventually(t, func() bool {
		o, ok, _ := inf.GetStore().GetByKey("default/gw")
		return ok && len(o.(*gwv1.Gateway).Status.Addresses) == 1
	}, 2*time.Second, 10*time.Millisecond)
	_, err = v.GatewayClient().GatewayV1().Gateways("default").Update(ctx, g, metav1.UpdateOptions{})
	require.True(t, apierrors.IsForbidden(err), "spec write: %v", err)

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	_, err = v.Client().CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	require.True(t, apierrors.IsForbidden(err), "without a service writer: %v", err)
	v.SetServiceWriter(serviceWriter{c})
	out, err := v.Client().CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, out.Spec.ClusterIP)
	require.NoError(t, v.Client().CoreV1().Services("default").Delete(ctx, "gw", metav1.DeleteOptions{}))
	_, err = c.Get("service", "default", "gw")
	require.Error(t, err)
}
