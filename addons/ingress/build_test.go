package ingress

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/svcsim/svcsim/addons/ingress/nginxconf"
	"github.com/svcsim/svcsim/sim"
)

// model applies manifests to a fresh two-node model and returns what the
// controller would read.
func model(t *testing.T, manifests ...string) Inputs {
	t.Helper()
	c, err := sim.New(sim.DefaultConfig(2))
	require.NoError(t, err)
	var objs []sim.Object
	for _, m := range manifests {
		o, err := sim.Decode([]byte(m), "test")
		require.NoError(t, err)
		objs = append(objs, o...)
	}
	_, err = c.Apply(objs)
	require.NoError(t, err)
	var in Inputs
	for _, o := range c.Ingresses() {
		in.Ingresses = append(in.Ingresses, &o)
	}
	for _, o := range c.Services() {
		in.Services = append(in.Services, &o)
	}
	for _, o := range c.EndpointSlices() {
		in.Slices = append(in.Slices, &o)
	}
	cls, _ := c.Stored("IngressClass")
	for _, o := range cls {
		in.Classes = append(in.Classes, o.(*networkingv1.IngressClass))
	}
	secs, _ := c.Stored("Secret")
	for _, o := range secs {
		in.Secrets = append(in.Secrets, o.(*corev1.Secret))
	}
	return in
}

var _ = discoveryv1.LabelServiceName

func base() nginxconf.Config {
	return nginxconf.Config{Generation: 1, Prefix: "/run/x", HTTPPort: 80, HTTPSPort: 443, StatusPort: 10246}
}

func nginxClass() Class { return Class{Name: "nginx", Controller: "k8s.io/ingress-nginx"} }

func TestBuildSeed(t *testing.T) {
	objs, err := sim.Load("../../sim/testdata/seed")
	require.NoError(t, err)
	c, err := sim.New(sim.DefaultConfig(2))
	require.NoError(t, err)
	_, err = c.Apply(objs)
	require.NoError(t, err)
	var in Inputs
	for _, o := range c.Ingresses() {
		in.Ingresses = append(in.Ingresses, &o)
	}
	for _, o := range c.Services() {
		in.Services = append(in.Services, &o)
	}
	for _, o := range c.EndpointSlices() {
		in.Slices = append(in.Slices, &o)
	}
	b := Build(nginxClass(), in, base())
	require.Empty(t, b.Rejected)
	text, tree, err := nginxconf.Render(&b.Config)
	require.NoError(t, err)
	require.NoError(t, nginxconf.Check(text, tree))
	// use-regex: every path of both hosts a case-insensitive regex; the
	// upstreams are the endpoints.
	require.Contains(t, text, "server_name www.pdd.com;\n        location ~* ^/ {\n            proxy_pass http://default.myhttp-service.80;")
	require.Contains(t, text, "upstream default.getip-service.80 {\n        server 10.244.1.2:80 max_fails=0;\n        server 10.244.2.2:80 max_fails=0;")
	require.Equal(t, []string{"default/ingress-http"}, b.Served)
}

// Which Ingresses a controller takes: the annotation, spec.ingressClassName
// through its IngressClass, and class-less ones only with a default class.
func TestClassOwns(t *testing.T) {
	c := nginxClass()
	name := func(s string) *string { return &s }
	ing := func(ann string, class *string) *networkingv1.Ingress {
		i := &networkingv1.Ingress{}
		if ann != "" {
			i.Annotations = map[string]string{ClassAnnotation: ann}
		}
		i.Spec.IngressClassName = class
		return i
	}
	ours := &networkingv1.IngressClass{Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}}
	ours.Name = "mine"
	other := &networkingv1.IngressClass{Spec: networkingv1.IngressClassSpec{Controller: "example.com/other"}}
	other.Name = "nginx"
	classes := []*networkingv1.IngressClass{ours, other}
	require.True(t, c.Owns(ing("nginx", nil), classes))
	require.False(t, c.Owns(ing("traefik", name("mine")), classes), "the annotation wins")
	require.True(t, c.Owns(ing("", name("mine")), classes))
	require.False(t, c.Owns(ing("", name("nginx")), classes), "class nginx belongs to another controller here")
	require.True(t, c.Owns(ing("", name("nginx")), nil), "no IngressClass objects: the name")
	require.False(t, c.Owns(ing("", nil), classes))
	ours.Annotations = map[string]string{DefaultClassAnnotation: "true"}
	require.True(t, c.Owns(ing("", nil), classes))
}

// A hostile Ingress is left out whole with a clear reason; the others
// stay served.
func TestBuildRejectsHostile(t *testing.T) {
	in := model(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: evil
  annotations: {kubernetes.io/ingress.class: nginx}
spec:
  rules:
  - host: a.example
    http:
      paths:
      - path: "/x;}
    location /admin {"
        pathType: ImplementationSpecific
        backend: {service: {name: web, port: {number: 80}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: evil-rewrite
  annotations: {kubernetes.io/ingress.class: nginx, nginx.ingress.kubernetes.io/rewrite-target: "/$1; } server { listen 8080"}
spec:
  rules:
  - host: b.example
    http:
      paths:
      - {path: /b, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: good
  annotations: {kubernetes.io/ingress.class: nginx}
spec:
  rules:
  - host: c.example
    http:
      paths:
      - {path: /c, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
`)
	b := Build(nginxClass(), in, base())
	require.Len(t, b.Rejected, 2)
	require.Equal(t, "default/evil", b.Rejected[0].Ingress)
	require.Contains(t, b.Rejected[0].Reason, `may hold only letters, digits`)
	require.Equal(t, "default/evil-rewrite", b.Rejected[1].Ingress)
	require.Contains(t, b.Rejected[1].Reason, "rewrite-target")
	text, tree, err := nginxconf.Render(&b.Config)
	require.NoError(t, err)
	require.NoError(t, nginxconf.Check(text, tree))
	require.NotContains(t, text, "admin")
	require.NotContains(t, text, "8080")
	require.Contains(t, text, "server_name c.example;")
}
