package clusterdns

import "strings"

// KubeDNS describes kubeadm's CoreDNS objects for one plane: the coredns
// Deployment and the kube-dns Service at ServiceIP, reduced to what Service
// networking needs. Both planes take their kube-dns from here.
type KubeDNS struct {
	// Image is the Deployment's container image.
	Image string
	// ServiceIP is the kube-dns Service's ClusterIP.
	ServiceIP string
	// Genuine adds what the genuine CoreDNS needs from a real API server:
	// its ServiceAccount with a ClusterRole (and binding) to list and watch
	// Services, EndpointSlices, Pods and Namespaces, dnsPolicy Default, the
	// metrics port and a readiness probe on the ready plugin's :8181.
	Genuine bool
}

// Manifests are the objects as one multi-document YAML stream.
func (k KubeDNS) Manifests() string {
	var b strings.Builder
	if k.Genuine {
		b.WriteString(`apiVersion: v1
kind: ServiceAccount
metadata:
  name: coredns
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:coredns
subjects:
  - kind: ServiceAccount
    name: coredns
    namespace: kube-system
`)
	} else {
		b.WriteString(`apiVersion: v1
kind: Namespace
metadata:
  name: kube-system
`)
	}
	b.WriteString(`---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  replicas: 1
  selector:
    matchLabels:
      k8s-app: kube-dns
  template:
    metadata:
      labels:
        k8s-app: kube-dns
    spec:
`)
	if k.Genuine {
		b.WriteString("      serviceAccountName: coredns\n      dnsPolicy: Default\n")
	}
	b.WriteString(`      containers:
        - name: coredns
          image: ` + k.Image + `
          ports:
            - {name: dns, containerPort: 53, protocol: UDP}
            - {name: dns-tcp, containerPort: 53, protocol: TCP}
`)
	if k.Genuine {
		b.WriteString(`            - {name: metrics, containerPort: 9153, protocol: TCP}
          readinessProbe:
            httpGet: {path: /ready, port: 8181}
            periodSeconds: 1
`)
	}
	b.WriteString(`---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
`)
	if k.Genuine {
		b.WriteString("    kubernetes.io/name: CoreDNS\n")
	}
	b.WriteString(`spec:
  selector:
    k8s-app: kube-dns
  clusterIP: ` + k.ServiceIP + `
  ports:
    - name: dns
      protocol: UDP
      port: 53
      targetPort: 53
    - name: dns-tcp
      protocol: TCP
      port: 53
      targetPort: 53
`)
	if k.Genuine {
		b.WriteString(`    - name: metrics
      protocol: TCP
      port: 9153
      targetPort: 9153
`)
	}
	return b.String()
}
