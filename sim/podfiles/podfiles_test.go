package podfiles

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

var dns = DNS{ClusterDNS: netip.MustParseAddr("10.96.0.10"), ClusterDomain: "cluster.local", HostResolvConf: "nameserver 198.18.0.1\nsearch corp.example\n"}

func pod(mut func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-0"}}
	if mut != nil {
		mut(p)
	}
	return p
}

func TestResolvConf(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*corev1.Pod)
		want string
	}{
		{"ClusterFirst by default", nil,
			"search ns.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"},
		{"hostNetwork ClusterFirst is the node's", func(p *corev1.Pod) { p.Spec.HostNetwork = true },
			"search corp.example\nnameserver 198.18.0.1\n"},
		{"ClusterFirstWithHostNet", func(p *corev1.Pod) { p.Spec.HostNetwork, p.Spec.DNSPolicy = true, corev1.DNSClusterFirstWithHostNet },
			"search ns.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"},
		{"None with dnsConfig", func(p *corev1.Pod) {
			p.Spec.DNSPolicy = corev1.DNSNone
			p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"10.244.1.5"}, Searches: []string{"a.example", "_b.example", "."},
				Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("2")}, {Name: "edns0"}}}
		}, "search a.example _b.example .\nnameserver 10.244.1.5\noptions ndots:2 edns0\n"},
		{"ClusterFirst merged with dnsConfig", func(p *corev1.Pod) {
			p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"10.96.0.10", "10.244.1.5"}, Searches: []string{"svc.cluster.local", "x"},
				Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("3")}}}
		}, "search ns.svc.cluster.local svc.cluster.local cluster.local corp.example x\nnameserver 10.96.0.10\nnameserver 10.244.1.5\noptions ndots:3\n"},
		{"None without dnsConfig is empty", func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSNone }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) { require.Equal(t, tc.want, ResolvConf(pod(tc.mut), dns)) })
	}
}

func TestHosts(t *testing.T) {
	got := Hosts(pod(func(p *corev1.Pod) {
		p.Spec.Hostname, p.Spec.Subdomain = "q", "sub"
		p.Spec.HostAliases = []corev1.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"foo.local", "bar.local"}}}
	}), "10.244.1.4", "node1", "cluster.local")
	require.True(t, strings.HasPrefix(got, "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"), got)
	require.Contains(t, got, "10.244.1.4\tq.sub.ns.svc.cluster.local\tq\n")
	require.Contains(t, got, "\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n")
	require.Contains(t, Hosts(pod(nil), "10.244.1.4", "node1", "cluster.local"), "10.244.1.4\tweb-0\n")
	require.Contains(t, Hosts(pod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }), "198.18.0.11", "node1", "cluster.local"), "198.18.0.11\tnode1\n")
	long := pod(func(p *corev1.Pod) { p.Name = strings.Repeat("a", 62) + "-bcd" })
	require.Equal(t, strings.Repeat("a", 62), Hostname(long))
}
