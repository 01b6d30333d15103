package kube

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// clusterName names the cluster in every kubeconfig (kubeadm's default).
const clusterName = "kubernetes"

// kubeconfig renders a kubeconfig for one user authenticating with a client
// certificate against server, every credential embedded so the file stands
// alone. The format is client-go's v1 Config; it is written by hand so the
// main module needs no client-go for it.
func kubeconfig(server string, caPEM []byte, user string, kp KeyPair) []byte {
	b64 := func(p []byte) string { return base64.StdEncoding.EncodeToString(p) }
	ctx := user + "@" + clusterName
	var s strings.Builder
	fmt.Fprintf(&s, `apiVersion: v1
kind: Config
clusters:
- name: %q
  cluster:
    server: %q
    certificate-authority-data: %s
users:
- name: %q
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: %q
  context:
    cluster: %q
    user: %q
current-context: %q
preferences: {}
`, clusterName, server, b64(caPEM), user, b64(kp.CertPEM), b64(kp.KeyPEM), ctx, clusterName, user, ctx)
	return []byte(s.String())
}
