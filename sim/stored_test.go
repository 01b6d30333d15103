package sim

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/svcsim/svcsim/sim/seeddir"
)

// rbacWarning is the API server's warning for an RBAC v1beta1 kind.
func rbacWarning(kind string) string {
	return "Warning: rbac.authorization.k8s.io/v1beta1 " + kind + " is deprecated in v1.17+, unavailable in v1.22+; use rbac.authorization.k8s.io/v1 " + kind + " (svcsim converted it)"
}

// ingress-nginx's published manifests (the seed's deployment mode 2) apply
// as written: every kind stored, RBAC v1beta1 with the API server's
// deprecation warning, and the controller's pod scheduled by its
// nodeSelector kubernetes.io/os: linux. Applying again changes nothing.
func TestIngressNginxManifestsApplyAsWritten(t *testing.T) {
	mandatory := seeddir.Read(t, "mandatory.yaml")
	for _, tag := range []string{"master", "0.28.0"} {
		t.Run(tag, func(t *testing.T) {
			c, _ := newCluster(t, 2)
			objs, err := Decode(seeddir.WithTag(mandatory, tag), "mandatory.yaml")
			require.NoError(t, err)
			svc, err := Decode(seeddir.Read(t, "service-nodeport.yaml"), "service-nodeport.yaml")
			require.NoError(t, err)
			lines, err := c.Apply(append(objs, svc...))
			require.NoError(t, err)
			require.Equal(t, []string{
				"namespace/ingress-nginx created",
				"configmap/nginx-configuration created",
				"configmap/tcp-services created",
				"configmap/udp-services created",
				"serviceaccount/nginx-ingress-serviceaccount created",
				rbacWarning("ClusterRole"),
				"clusterrole.rbac.authorization.k8s.io/nginx-ingress-clusterrole created",
				rbacWarning("Role"),
				"role.rbac.authorization.k8s.io/nginx-ingress-role created",
				rbacWarning("RoleBinding"),
				"rolebinding.rbac.authorization.k8s.io/nginx-ingress-role-nisa-binding created",
				rbacWarning("ClusterRoleBinding"),
				"clusterrolebinding.rbac.authorization.k8s.io/nginx-ingress-clusterrole-nisa-binding created",
				"deployment.apps/nginx-ingress-controller created",
				"limitrange/ingress-nginx created",
				"service/ingress-nginx created",
			}, lines)

			cr, err := c.Get("clusterrole", "", "nginx-ingress-clusterrole")
			require.NoError(t, err)
			require.Equal(t, "rbac.authorization.k8s.io/v1", cr.(*rbacv1.ClusterRole).APIVersion)
			require.Equal(t, []string{"list", "watch"}, cr.(*rbacv1.ClusterRole).Rules[0].Verbs)
			rb, err := c.Get("rolebinding", "ingress-nginx", "nginx-ingress-role-nisa-binding")
			require.NoError(t, err)
			require.Equal(t, "nginx-ingress-role", rb.(*rbacv1.RoleBinding).RoleRef.Name)
			lr, err := c.Get("limits", "ingress-nginx", "ingress-nginx")
			require.NoError(t, err)
			require.Equal(t, "90Mi", lr.(*corev1.LimitRange).Spec.Limits[0].Min.Memory().String())
			cms, ok := c.Stored("cm")
			require.True(t, ok)
			require.Len(t, cms, 3)

			pods := podsOf(c, "deployment/nginx-ingress-controller")
			require.Len(t, pods, 1, "kubernetes.io/os: linux matches every node")
			require.Equal(t, "quay.io/kubernetes-ingress-controller/nginx-ingress-controller:"+tag, pods[0].Containers[0].Image)
			require.False(t, pods[0].HostNetwork)
			s := svcOf(t, c, "ingress-nginx", "ingress-nginx")
			require.Equal(t, corev1.ServiceTypeNodePort, s.Spec.Type)
			require.Len(t, s.Spec.Ports, 2)

			gen := c.Generation()
			lines, err = c.Apply(append(objs, svc...))
			require.NoError(t, err)
			for _, l := range lines {
				require.True(t, strings.HasSuffix(l, " unchanged") || strings.HasPrefix(l, "Warning: "), l)
			}
			require.Equal(t, gen, c.Generation())

			// Deleting the namespace takes its stored objects along; the
			// cluster-scoped ones stay.
			require.NoError(t, c.Delete("ns", "", "ingress-nginx"))
			cms, _ = c.Stored("configmaps")
			require.Empty(t, cms)
			crs, _ := c.Stored("clusterroles")
			require.Len(t, crs, 1)
		})
	}
}

// The seed's mode 3 edit of mandatory.yaml: a DaemonSet on hostNetwork
// whose pod waits for a node labelled isIngress=true, then runs on node1's
// own address only.
func TestIngressNginxDaemonSetMode(t *testing.T) {
	c, _ := newCluster(t, 2)
	objs, err := Decode(seeddir.DaemonSetMode(seeddir.WithTag(seeddir.Read(t, "mandatory.yaml"), "0.28.0")), "mandatory.yaml")
	require.NoError(t, err)
	_, err = c.Apply(objs)
	require.NoError(t, err)
	require.Empty(t, podsOf(c, "daemonset/nginx-ingress-controller"), "no node is labelled isIngress=true yet")
	require.NoError(t, c.Label("node", "", "node1", map[string]string{"isIngress": "true"}))
	pods := podsOf(c, "daemonset/nginx-ingress-controller")
	require.Len(t, pods, 1)
	require.Equal(t, "node1", pods[0].Node)
	require.True(t, pods[0].HostNetwork)
	require.Equal(t, "198.18.0.11", pods[0].IP.String())
}

// Stored kinds are validated with the API server's rules and messages, and
// a Secret's stringData lands in data.
func TestStoredKindsValidation(t *testing.T) {
	c, _ := newCluster(t, 1)
	apply := func(doc string) error {
		objs, err := Decode([]byte(doc), "x.yaml")
		require.NoError(t, err)
		_, err = c.Apply(objs)
		return err
	}
	require.ErrorContains(t, apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {'bad key': x}\n"),
		`ConfigMap "c" is invalid: data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters, '-', '_' or '.'`)
	require.ErrorContains(t, apply("apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ntype: kubernetes.io/tls\ndata: {tls.crt: eA==}\n"),
		`Secret "t" is invalid: data[tls.key]: Required value`)
	require.NoError(t, apply("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {a: b}\n"))
	s, err := c.Get("secret", "default", "s")
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"a": []byte("b")}, s.(*corev1.Secret).Data)
	require.Equal(t, corev1.SecretTypeOpaque, s.(*corev1.Secret).Type)
	require.ErrorContains(t, apply("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/basic-auth\ndata: {username: eA==}\n"),
		`Secret "s" is invalid: type: Invalid value: "kubernetes.io/basic-auth": field is immutable`)
	require.ErrorContains(t, apply("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\nsubjects: [{kind: ServiceAccount, name: sa}]\n"),
		`roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"`)
	require.ErrorContains(t, apply("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}\nsubjects: [{kind: ServiceAccount, name: sa}]\n"),
		`subjects[0].namespace: Required value`)
	require.ErrorContains(t, apply("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: nginx}\n"),
		`IngressClass.networking.k8s.io "nginx" is invalid: spec.controller`)
}

// An Ingress without a class gets the default IngressClass when it is
// created (the DefaultIngressClass admission); one with the annotation or a
// class keeps it. Paths follow the API server's rules.
func TestIngressDefaultClassAndPaths(t *testing.T) {
	c, _ := newCluster(t, 1)
	apply := func(doc string) error {
		objs, err := Decode([]byte(doc), "x.yaml")
		require.NoError(t, err)
		_, err = c.Apply(objs)
		return err
	}
	ing := func(name, extra, path, pathType string) string {
		return "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: " + name + "\n" + extra +
			"spec:\n  rules:\n  - host: a.example\n    http:\n      paths:\n      - path: " + path + "\n        pathType: " + pathType +
			"\n        backend: {service: {name: web, port: {number: 80}}}\n"
	}
	require.NoError(t, apply(ing("before", "", "/", "Prefix")))
	require.NoError(t, apply("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: nginx\n  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}\nspec: {controller: k8s.io/ingress-nginx}\n"))
	require.NoError(t, apply(ing("after", "", "/", "Prefix")))
	require.NoError(t, apply(ing("annotated", "  annotations: {kubernetes.io/ingress.class: other}\n", "/", "Prefix")))
	class := func(name string) *string {
		o, err := c.Get("ing", "default", name)
		require.NoError(t, err)
		return o.(*networkingv1.Ingress).Spec.IngressClassName
	}
	require.Nil(t, class("before"), "admission runs on create only")
	require.Equal(t, "nginx", *class("after"))
	require.Nil(t, class("annotated"))

	require.ErrorContains(t, apply(ing("p1", "", "foo", "Prefix")), `spec.rules[0].http.paths[0].path: Invalid value: "foo": must be an absolute path`)
	require.ErrorContains(t, apply(ing("p2", "", "/a//b", "Exact")), `must not contain '//'`)
	require.ErrorContains(t, apply(ing("p3", "", "/a/..", "Prefix")), `cannot end with '/..'`)
	require.ErrorContains(t, apply(ing("p4", "", "/a", "Regex")), `spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex"`)
	require.NoError(t, apply(ing("p5", "", `/a(/|$)(.*)`, "ImplementationSpecific")))
}
