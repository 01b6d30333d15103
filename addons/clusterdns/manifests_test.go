package clusterdns

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestKubeDNSVariants: the embedded plane's objects are the kube-system
// Namespace, the Deployment and the Service; the genuine CoreDNS's add its
// ServiceAccount and RBAC, the metrics port and the readiness probe, and
// leave the Namespace to the API server.
func TestKubeDNSVariants(t *testing.T) {
	kinds := func(s string) (out []string) {
		for _, d := range strings.Split(s, "\n---\n") {
			var m struct{ Kind string }
			if err := yaml.Unmarshal([]byte(d), &m); err != nil {
				t.Fatalf("%v in:\n%s", err, d)
			}
			out = append(out, m.Kind)
		}
		return out
	}
	own := KubeDNS{Image: Image, ServiceIP: ServiceIP}.Manifests()
	if got := strings.Join(kinds(own), ","); got != "Namespace,Deployment,Service" {
		t.Errorf("embedded kinds %s", got)
	}
	gen := KubeDNS{Image: "registry.k8s.io/coredns/coredns:v1.15.0", ServiceIP: ServiceIP, Genuine: true}.Manifests()
	if got := strings.Join(kinds(gen), ","); got != "ServiceAccount,ClusterRole,ClusterRoleBinding,Deployment,Service" {
		t.Errorf("genuine kinds %s", got)
	}
	for _, want := range []string{"serviceAccountName: coredns", "port: 9153", "path: /ready", "coredns:v1.15.0", "clusterIP: " + ServiceIP} {
		if !strings.Contains(gen, want) {
			t.Errorf("genuine manifests lack %q", want)
		}
		if want != "clusterIP: "+ServiceIP && strings.Contains(own, want) {
			t.Errorf("embedded manifests have %q", want)
		}
	}
}
