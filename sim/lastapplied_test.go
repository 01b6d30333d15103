package sim

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

func applyYAML(t *testing.T, c *Cluster, manifest string) []string {
	t.Helper()
	objs, err := Decode([]byte(manifest), "svc.yaml")
	require.NoError(t, err)
	lines, err := c.Apply(objs)
	require.NoError(t, err)
	return lines
}

// TestLastAppliedIsTheManifest: the annotation holds the manifest as
// written (kubectl's form: compact JSON with sorted keys, the annotation
// itself removed but an annotations map kept, the namespace filled in, a
// newline), not svcsim's defaulted object: a port without targetPort stays
// without it. The three-way merge uses it: a field removed from the
// manifest is removed from the object (and defaulted again), a field set by
// patch and never in the manifest survives.
func TestLastAppliedIsTheManifest(t *testing.T) {
	c, _ := newCluster(t, 2)
	require.Equal(t, []string{"service/web created"}, applyYAML(t, c, `apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    tier: front
spec:
  selector:
    app: web
  ports:
  - port: 80
  externalTrafficPolicy: Local
  type: NodePort
`))
	svc := svcOf(t, c, "default", "web")
	require.Equal(t, `{"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},"labels":{"tier":"front"},"name":"web","namespace":"default"},`+
		`"spec":{"externalTrafficPolicy":"Local","ports":[{"port":80}],"selector":{"app":"web"},"type":"NodePort"}}`+"\n",
		svc.Annotations[LastAppliedAnnotation])
	require.Equal(t, int32(80), svc.Spec.Ports[0].TargetPort.IntVal, "the object itself is defaulted")
	nodePort := svc.Spec.Ports[0].NodePort
	require.NotZero(t, nodePort)

	// The same manifest again changes nothing.
	require.Equal(t, []string{"service/web unchanged"}, applyYAML(t, c, `apiVersion: v1
kind: Service
metadata: {name: web, labels: {tier: front}}
spec: {selector: {app: web}, ports: [{port: 80}], externalTrafficPolicy: Local, type: NodePort}
`))

	// A field set by patch, never in the manifest.
	require.NoError(t, c.Patch("svc", "default", "web", []byte(`{"spec":{"sessionAffinity":"ClientIP"}}`)))

	// The manifest drops externalTrafficPolicy and the label, and gives
	// the port a name and an annotation of its own.
	require.Equal(t, []string{"service/web configured"}, applyYAML(t, c, `apiVersion: v1
kind: Service
metadata:
  name: web
  annotations:
    owner: team-a
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
  type: NodePort
`))
	svc = svcOf(t, c, "default", "web")
	require.Equal(t, `{"apiVersion":"v1","kind":"Service","metadata":{"annotations":{"owner":"team-a"},"name":"web","namespace":"default"},`+
		`"spec":{"ports":[{"name":"http","port":80}],"selector":{"app":"web"},"type":"NodePort"}}`+"\n",
		svc.Annotations[LastAppliedAnnotation])
	require.NotContains(t, svc.Labels, "tier", "a label removed from the manifest is removed")
	require.Equal(t, corev1.ServiceExternalTrafficPolicyCluster, svc.Spec.ExternalTrafficPolicy, "removed, then defaulted again")
	require.Equal(t, corev1.ServiceAffinityClientIP, svc.Spec.SessionAffinity, "the patched field survives")
	require.Equal(t, "team-a", svc.Annotations["owner"])
	require.Equal(t, "http", svc.Spec.Ports[0].Name)
	require.Equal(t, int32(80), svc.Spec.Ports[0].TargetPort.IntVal)
	require.Equal(t, nodePort, svc.Spec.Ports[0].NodePort, "the allocated nodePort is kept")
}
