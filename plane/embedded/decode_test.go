package embedded

import (
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/svcsim/svcsim/plane"
)

// TestDecodeNamespace: like `kubectl apply -n NS`, namespaced objects that
// name no namespace go into NS; those that name one keep it; Namespaces
// stay cluster-scoped.
func TestDecodeNamespace(t *testing.T) {
	m := plane.Text("scenario", `apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
    - port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: dns
  namespace: kube-system
spec:
  containers:
    - name: c
      image: x
`)
	objs, err := Decode("demo", m)
	require.NoError(t, err)
	var got []string
	for _, o := range objs {
		a, err := meta.Accessor(o.Obj)
		require.NoError(t, err)
		got = append(got, o.Source+" "+a.GetNamespace()+"/"+a.GetName())
	}
	require.Equal(t, []string{"scenario:0 /demo", "scenario:1 demo/web", "scenario:2 kube-system/dns"}, got)

	objs, err = Decode("", m)
	require.NoError(t, err)
	a, _ := meta.Accessor(objs[1].Obj)
	require.Equal(t, "", a.GetNamespace(), "no namespace given: the model's default applies")

	_, err = Decode("demo", plane.Text("broken.yaml", "kind: [\n"))
	require.ErrorContains(t, err, "broken.yaml")
}

// TestDNSServiceIP: the cluster DNS add-on serves on the address package
// plane promises every plane uses.
func TestDNSServiceIP(t *testing.T) {
	require.Equal(t, plane.DNSServiceIP, DNSServiceIP)
}
