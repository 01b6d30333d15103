// Package seeddir finds the seed's shared reference files for tests:
// ingress-nginx's published manifests live in the team's shared folder
// (shared/seed/ingress-nginx), beside the repository, and are read from
// there as test input, never copied into the project.
package seeddir

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Env names a directory to use instead of searching (the folder holding
// mandatory.yaml and service-nodeport.yaml).
const Env = "SVCSIM_INGRESS_NGINX_DIR"

// Find returns the directory holding ingress-nginx's published manifests:
// $SVCSIM_INGRESS_NGINX_DIR (when it holds mandatory.yaml), or
// shared/seed/ingress-nginx in the first directory above this package's
// source that has one. ok is false when there is none.
func Find() (string, bool) {
	if d := os.Getenv(Env); d != "" {
		_, err := os.Stat(filepath.Join(d, "mandatory.yaml"))
		return d, err == nil
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", false
	}
	for dir := filepath.Dir(file); ; {
		cand := filepath.Join(dir, "shared", "seed", "ingress-nginx")
		if _, err := os.Stat(filepath.Join(cand, "mandatory.yaml")); err == nil {
			return cand, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// IngressNginx returns that directory for a test: without it the test
// skips and says where it looked and how to point it there. It skips under
// CI too: a clone need not sit beside the shared folder (a clean clone in
// /tmp has none), and the files must not be copied into the project.
func IngressNginx(tb testing.TB) string {
	tb.Helper()
	d, ok := Find()
	if ok {
		return d
	}
	tb.Skip(Missing())
	return ""
}

// Missing says why the manifests cannot be read and how to point a test at
// them, or "" when Find finds them (a scenario's skip reason).
func Missing() string {
	if _, ok := Find(); ok {
		return ""
	}
	if d := os.Getenv(Env); d != "" {
		return "ingress-nginx's published manifests not found: " + Env + "=" + d + " holds no mandatory.yaml"
	}
	return "ingress-nginx's published manifests not found: no shared/seed/ingress-nginx in a directory above the repository; set " + Env + " to the folder holding mandatory.yaml"
}

// Read returns one of its files (mandatory.yaml, service-nodeport.yaml).
func Read(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(IngressNginx(tb), name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// WithTag returns mandatory.yaml with the controller image's tag replaced
// (the published file says master; the seed ran 0.28.0).
func WithTag(mandatory []byte, tag string) []byte {
	return []byte(strings.ReplaceAll(string(mandatory), "nginx-ingress-controller:master", "nginx-ingress-controller:"+tag))
}

// DaemonSetMode applies the seed's edit for deployment mode 3 to
// mandatory.yaml, line by line as the seed describes it: Deployment ->
// DaemonSet, no replicas, nodeSelector isIngress: "true" instead of
// kubernetes.io/os: linux, and hostNetwork: true beside it.
func DaemonSetMode(mandatory []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(mandatory), "\n") {
		t := strings.TrimSpace(l)
		indent := l[:len(l)-len(strings.TrimLeft(l, " "))]
		switch {
		case t == "kind: Deployment":
			l = indent + "kind: DaemonSet"
		case strings.HasPrefix(t, "replicas:"):
			l = indent + "# " + t
		case t == "kubernetes.io/os: linux":
			out = append(out, indent+"# "+t)
			l = indent + `isIngress: "true"`
		case t == "nodeSelector:":
			out = append(out, indent+"hostNetwork: true")
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n"))
}

// LoadBalancerMode turns service-nodeport.yaml into deployment mode 1's
// Service: the same Service with type LoadBalancer instead of NodePort
// (ingress-nginx's cloud manifests publish the controller that way).
func LoadBalancerMode(serviceNodePort []byte) []byte {
	return []byte(strings.Replace(string(serviceNodePort), "type: NodePort", "type: LoadBalancer", 1))
}
