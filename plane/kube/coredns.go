package kube

import (
	"fmt"
	"strings"
)

// ClusterDomain is the cluster's DNS domain (kubeadm's default).
const ClusterDomain = "cluster.local"

// CorefileOptions shape the kube-dns Corefile.
type CorefileOptions struct {
	// Domain is the cluster domain ("": ClusterDomain).
	Domain string
	// Port is the DNS port (0: 53).
	Port int
	// Kubeconfig, when set, is how the kubernetes plugin reaches the API
	// server; empty means the in-cluster configuration of a pod
	// (KUBERNETES_SERVICE_HOST/PORT and the service-account token and CA
	// at /var/run/secrets/kubernetes.io/serviceaccount/, fixed paths).
	Kubeconfig string
	// HealthAddr, ReadyAddr and MetricsAddr are the health, ready and
	// prometheus plugins' listen addresses ("": their defaults :8080,
	// :8181 and :9153).
	HealthAddr, ReadyAddr, MetricsAddr string
}

// Corefile renders kubeadm's kube-dns Corefile (cmd/kubeadm/app/phases/
// addons/dns) without its `forward . /etc/resolv.conf`: a name outside the
// cluster domain gets SERVFAIL instead of being sent to the host's
// resolvers, so nothing leaves svcsim's namespaces. The multi-call binary's CoreDNS has
// no forward plugin at all.
func Corefile(o CorefileOptions) string {
	if o.Domain == "" {
		o.Domain = ClusterDomain
	}
	if o.Port == 0 {
		o.Port = 53
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = ":9153"
	}
	var b strings.Builder
	fmt.Fprintf(&b, ".:%d {\n    errors\n", o.Port)
	if o.HealthAddr != "" {
		fmt.Fprintf(&b, "    health %s {\n       lameduck 5s\n    }\n", o.HealthAddr)
	} else {
		b.WriteString("    health {\n       lameduck 5s\n    }\n")
	}
	fmt.Fprintf(&b, "    ready%s\n", prefixed(" ", o.ReadyAddr))
	fmt.Fprintf(&b, "    kubernetes %s in-addr.arpa ip6.arpa {\n", o.Domain)
	if o.Kubeconfig != "" {
		fmt.Fprintf(&b, "       kubeconfig %s\n", o.Kubeconfig)
	}
	b.WriteString("       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n")
	fmt.Fprintf(&b, "    prometheus %s\n", o.MetricsAddr)
	fmt.Fprintf(&b, "    cache 30 {\n       disable success %s\n       disable denial %s\n    }\n", o.Domain, o.Domain)
	b.WriteString("    loop\n    reload\n    loadbalance\n}\n")
	return b.String()
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}
