// Package podfiles computes the files a kubelet writes for a pod's
// containers from the pod's spec alone: /etc/resolv.conf from dnsPolicy and
// dnsConfig, and the kubelet-managed /etc/hosts with the pod's own names and
// hostAliases. Both control planes use it (the embedded plane for `exec`
// and scenarios, the kubernetes plane's kubelet for its pods), so a pod sees
// the same files on either. Pure Go, no I/O.
package podfiles

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// DNS is the kubelet's DNS configuration.
type DNS struct {
	// ClusterDNS and ClusterDomain are the kubelet's --cluster-dns and
	// --cluster-domain.
	ClusterDNS    netip.Addr
	ClusterDomain string
	// HostResolvConf is the node's own resolv.conf text, which pods with
	// dnsPolicy Default (and hostNetwork pods with ClusterFirst) get.
	HostResolvConf string
}

// ResolvConf is the pod's /etc/resolv.conf from its dnsPolicy and
// dnsConfig, as the kubelet's DNS configurer builds it: ClusterFirst (and
// ClusterFirstWithHostNet for hostNetwork pods) points at the cluster DNS
// with the namespace's search path and ndots:5; Default (and ClusterFirst
// for a hostNetwork pod) is the node's resolv.conf; None is dnsConfig
// alone. dnsConfig's nameservers and searches are appended (without
// repeats), its options replace those of the same name. Empty when the
// pod gets no setting at all.
func ResolvConf(pod *corev1.Pod, d DNS) string {
	var servers, search []string
	var opts []string
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	if policy == corev1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = corev1.DNSDefault
	}
	switch policy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet:
		dom := d.ClusterDomain
		servers = []string{d.ClusterDNS.String()}
		search = []string{pod.Namespace + ".svc." + dom, "svc." + dom, dom}
		_, hostSearch, _ := parseResolvConf(d.HostResolvConf)
		search = append(search, hostSearch...)
		opts = []string{"ndots:5"}
	case corev1.DNSDefault:
		servers, search, opts = parseResolvConf(d.HostResolvConf)
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		servers = appendNew(servers, dc.Nameservers...)
		search = appendNew(search, dc.Searches...)
		for _, o := range dc.Options {
			name := o.Name
			opts = slices.DeleteFunc(opts, func(s string) bool { return strings.SplitN(s, ":", 2)[0] == name })
			if o.Value != nil {
				name += ":" + *o.Value
			}
			opts = append(opts, name)
		}
	}
	var b strings.Builder
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(opts) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(opts, " "))
	}
	return b.String()
}

func appendNew(list []string, more ...string) []string {
	for _, m := range more {
		if !slices.Contains(list, m) {
			list = append(list, m)
		}
	}
	return list
}

func parseResolvConf(text string) (servers, search, opts []string) {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "nameserver":
			servers = append(servers, f[1])
		case "search", "domain":
			search = f[1:]
		case "options":
			opts = append(opts, f[1:]...)
		}
	}
	return servers, search, opts
}

// Hosts is the kubelet-managed /etc/hosts of pod at address ip: localhost
// entries, the pod's own name (its FQDN under <subdomain>.<ns>.svc.<domain>
// first when it has a subdomain; the node's name for hostNetwork pods) and
// its hostAliases.
func Hosts(pod *corev1.Pod, ip, nodeName, domain string) string {
	var b strings.Builder
	b.WriteString("# Kubernetes-managed hosts file.\n")
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	host := Hostname(pod)
	if pod.Spec.HostNetwork {
		host = nodeName
	}
	if sd := pod.Spec.Subdomain; sd != "" && !pod.Spec.HostNetwork {
		fmt.Fprintf(&b, "%s\t%s.%s.%s.svc.%s\t%s\n", ip, host, sd, pod.Namespace, domain, host)
	} else {
		fmt.Fprintf(&b, "%s\t%s\n", ip, host)
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.String()
}

// Hostname is spec.hostname, or the pod name cut to 63 characters.
func Hostname(pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	h := pod.Name
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}
