package kube

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/svcsim/svcsim/internal/netns"
)

func TestIssueChainsToCA(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("test-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(CertRequest{
		CommonName: "kube-apiserver", Server: true,
		DNSNames: []string{"kubernetes.default.svc"},
		IPs:      []netip.Addr{netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("198.18.0.2")},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, kp.CertPEM)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, name := range []string{"10.96.0.1", "198.18.0.2", "kubernetes.default.svc"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("serving cert for %s: %v", name, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err == nil {
		t.Error("serving cert valid for an address it does not name")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("serving cert usable as a client cert")
	}

	client, err := ca.Issue(CertRequest{CommonName: "system:node:node1", Organizations: []string{"system:nodes"}, Client: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	cc := parseCert(t, client.CertPEM)
	if cc.Subject.CommonName != "system:node:node1" || !slices.Equal(cc.Subject.Organization, []string{"system:nodes"}) {
		t.Fatalf("client subject %v", cc.Subject)
	}
	if _, err := cc.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client cert: %v", err)
	}
	other, _ := NewCA("other", now)
	op := x509.NewCertPool()
	op.AddCert(other.Cert)
	if _, err := cc.Verify(x509.VerifyOptions{Roots: op, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Fatal("client cert verified against another CA")
	}
}

func parseCert(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", p)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestKubeconfigParses(t *testing.T) {
	kp := KeyPair{CertPEM: []byte("CERT"), KeyPEM: []byte("KEY")}
	var cfg struct {
		Clusters []struct {
			Name    string
			Cluster struct {
				Server string
				CA     string `json:"certificate-authority-data"`
			}
		}
		Users []struct {
			Name string
			User struct {
				Cert string `json:"client-certificate-data"`
				Key  string `json:"client-key-data"`
			}
		}
		Contexts []struct {
			Name    string
			Context struct{ Cluster, User string }
		}
		Current string `json:"current-context"`
	}
	if err := yaml.Unmarshal(kubeconfig("https://198.18.0.2:6443", []byte("CA"), "system:node:node1", kp), &cfg); err != nil {
		t.Fatal(err)
	}
	dec := func(s string) string { b, _ := base64.StdEncoding.DecodeString(s); return string(b) }
	if len(cfg.Clusters) != 1 || cfg.Clusters[0].Cluster.Server != "https://198.18.0.2:6443" || dec(cfg.Clusters[0].Cluster.CA) != "CA" {
		t.Fatalf("clusters %+v", cfg.Clusters)
	}
	if len(cfg.Users) != 1 || cfg.Users[0].Name != "system:node:node1" || dec(cfg.Users[0].User.Cert) != "CERT" || dec(cfg.Users[0].User.Key) != "KEY" {
		t.Fatalf("users %+v", cfg.Users)
	}
	if len(cfg.Contexts) != 1 || cfg.Current != cfg.Contexts[0].Name || cfg.Contexts[0].Context.User != "system:node:node1" || cfg.Contexts[0].Context.Cluster != cfg.Clusters[0].Name {
		t.Fatalf("contexts %+v, current %q", cfg.Contexts, cfg.Current)
	}
}

func TestSettings(t *testing.T) {
	good := settings{
		AdvertiseIP: netip.MustParseAddr("198.18.0.2"),
		ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"), ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
		NodePortRange: "30000-32767",
	}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	if got := good.kubernetesServiceIP(); got != netip.MustParseAddr("10.96.0.1") {
		t.Fatalf("kubernetes service IP %v", got)
	}
	if got := good.server(); got != "https://198.18.0.2:6443" {
		t.Fatalf("server %q", got)
	}
	for name, mut := range map[string]func(*settings){
		"loopback":    func(s *settings) { s.AdvertiseIP = netip.MustParseAddr("127.0.0.1") },
		"unspecified": func(s *settings) { s.AdvertiseIP = netip.MustParseAddr("0.0.0.0") },
		"none":        func(s *settings) { s.AdvertiseIP = netip.Addr{} },
		"overlap":     func(s *settings) { s.ClusterCIDR = netip.MustParsePrefix("10.96.0.0/16") },
		"port range":  func(s *settings) { s.NodePortRange = "32767-30000" },
		"no range":    func(s *settings) { s.NodePortRange = "30000" },
	} {
		s := good
		mut(&s)
		if err := s.validate(); err == nil {
			t.Errorf("%s: validate accepted %+v", name, s)
		}
	}

	l := layout("/run/svcsim/svs000001/kube")
	api := strings.Join(apiServerArgs(l, good), " ")
	for _, want := range []string{
		"--advertise-address=198.18.0.2", "--service-cluster-ip-range=10.96.0.0/12", "--service-node-port-range=30000-32767",
		"--authorization-mode=Node,RBAC", "--etcd-servers=http://127.0.0.1:2379",
		"--service-account-key-file=/run/svcsim/svs000001/kube/pki/sa.pub",
		"--service-account-signing-key-file=/run/svcsim/svs000001/kube/pki/sa.key",
	} {
		if !strings.Contains(api, want) {
			t.Errorf("kube-apiserver flags lack %s: %s", want, api)
		}
	}
	kcm := strings.Join(controllerManagerArgs(l, good), " ")
	for _, want := range []string{"--cluster-cidr=10.244.0.0/16", "--allocate-node-cidrs=false", "endpointslice-controller", "--bind-address=127.0.0.1"} {
		if !strings.Contains(kcm, want) {
			t.Errorf("kube-controller-manager flags lack %s: %s", want, kcm)
		}
	}
	if strings.Contains(kcm, "node-ipam") {
		t.Errorf("node IPAM enabled: %s", kcm)
	}
	// Everything the components write stays under the layout's directory.
	for _, args := range [][]string{etcdArgs(l), apiServerArgs(l, good), controllerManagerArgs(l, good), schedulerArgs(l)} {
		for _, a := range args {
			if _, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(v, "/") && !strings.HasPrefix(v, string(l)+"/") {
				t.Errorf("flag %s points outside %s", a, l)
			}
		}
	}
}

func TestParseRollup(t *testing.T) {
	rollup := "55d0a0000000-7ffd1c3f2000 ---p 00000000 00:00 0    [rollup]\nRss:              270336 kB\nPss:              120000 kB\nPss_Dirty:         1 kB\n"
	if got := parseRollup(rollup); got.RSS != 270336*1024 || got.PSS != 120000*1024 {
		t.Fatalf("parseRollup = %+v", got)
	}
	if got := parseRollup("Name:\tx\n"); got != (Memory{}) {
		t.Fatalf("empty rollup = %+v", got)
	}
}

func TestKubeProxyConfig(t *testing.T) {
	ns := &netns.NS{}
	good := KubeProxyConfig{Node: "node1", NS: ns, Args: []string{"--proxy-mode=iptables", "--cluster-cidr=10.244.0.0/16"}, IPTables: IPTablesLegacy}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]KubeProxyConfig{
		"no node":            {NS: ns},
		"no namespace":       {Node: "node1"},
		"unknown backend":    {Node: "node1", NS: ns, IPTables: "xtables"},
		"own kubeconfig":     {Node: "node1", NS: ns, Args: []string{"--kubeconfig=/root/.kube/config"}},
		"own node name":      {Node: "node1", NS: ns, Args: []string{"--hostname-override", "node2"}},
		"own node name, too": {Node: "node1", NS: ns, Args: []string{"--hostname-override=node2"}},
	} {
		if err := k.validate(); err == nil {
			t.Errorf("%s: validate accepted %+v", name, k)
		}
	}
	args := strings.Join(kubeProxyArgs("/k/kube-proxy.conf", good), " ")
	want := "--kubeconfig=/k/kube-proxy.conf --hostname-override=node1 --proxy-mode=iptables --cluster-cidr=10.244.0.0/16"
	if args != want {
		t.Fatalf("kube-proxy args %q, want %q", args, want)
	}
}

func TestCorefile(t *testing.T) {
	def := Corefile(CorefileOptions{})
	for _, want := range []string{".:53 {", "kubernetes cluster.local in-addr.arpa ip6.arpa {", "pods insecure", "prometheus :9153", "disable denial cluster.local", "loadbalance"} {
		if !strings.Contains(def, want) {
			t.Errorf("default Corefile lacks %q:\n%s", want, def)
		}
	}
	if strings.Contains(def, "forward") || strings.Contains(def, "kubeconfig") {
		t.Errorf("default Corefile forwards or names a kubeconfig:\n%s", def)
	}
	c := Corefile(CorefileOptions{Port: 1053, Kubeconfig: "/k/admin.conf", HealthAddr: "127.0.0.1:1", ReadyAddr: "127.0.0.1:2"})
	for _, want := range []string{".:1053 {", "kubeconfig /k/admin.conf", "health 127.0.0.1:1 {", "ready 127.0.0.1:2"} {
		if !strings.Contains(c, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, c)
		}
	}
	if strings.Count(c, "{") != strings.Count(c, "}") {
		t.Errorf("unbalanced braces:\n%s", c)
	}
}

func TestParseKubeProxySync(t *testing.T) {
	m := []byte(`# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds [ALPHA] The last time proxy rules were successfully synced
# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge
kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"} 1.7646e+09
kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds{ip_family="IPv4"} 1.7645999995e+09
kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds{ip_family="IPv6"} 1.7646e+09
kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="0.001"} 0
`)
	got, err := ParseKubeProxySync(m)
	if err != nil {
		t.Fatal(err)
	}
	v4 := got["IPv4"]
	if v4.Synced.Unix() != 1764600000 || v4.Queued.UnixMilli() != 1764599999500 || !v4.Programmed() {
		t.Fatalf("IPv4 %+v (programmed %v)", v4, v4.Programmed())
	}
	if v6 := got["IPv6"]; v6.Programmed() {
		t.Fatalf("IPv6 never synced but programmed: %+v", v6)
	}
	if _, err := ParseKubeProxySync([]byte(`kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"} x`)); err == nil {
		t.Fatal("bad value accepted")
	}
}
