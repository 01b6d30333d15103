package kube

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// Component names: the names the multi-call binary dispatches on, and the
// names of their log files.
const (
	Etcd              = "etcd"
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
	Kubectl           = "kubectl"
	KubeProxy         = "kube-proxy"
	CoreDNS           = "coredns"
)

// Ports inside the control-plane namespace (the upstream defaults).
const (
	APIServerPort         = 6443
	etcdClientPort        = 2379
	etcdPeerPort          = 2380
	controllerManagerPort = 10257
	schedulerPort         = 10259
)

// Controllers are the kube-controller-manager controllers a svcsim cluster
// runs: those a Service, its endpoints and its workloads depend on, plus
// what keeps service accounts, namespaces, nodes and RBAC working. Node IPAM
// is not among them: svcsim gives every node its spec.podCIDR itself.
var Controllers = []string{
	"clusterrole-aggregation-controller",
	"daemonset-controller",
	"deployment-controller",
	"endpoints-controller",
	"endpointslice-controller",
	"endpointslice-mirroring-controller",
	"garbage-collector-controller",
	"namespace-controller",
	"node-lifecycle-controller",
	"pod-garbage-collector-controller",
	"replicaset-controller",
	"root-ca-certificate-publisher-controller",
	"service-cidr-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"taint-eviction-controller",
}

// layout is where a control plane's files live below its directory.
type layout string

func (l layout) path(parts ...string) string {
	return filepath.Join(append([]string{string(l)}, parts...)...)
}

func (l layout) caCert() string     { return l.path("pki", "ca.crt") }
func (l layout) caKey() string      { return l.path("pki", "ca.key") }
func (l layout) serverCert() string { return l.path("pki", "apiserver.crt") }
func (l layout) serverKey() string  { return l.path("pki", "apiserver.key") }
func (l layout) saKey() string      { return l.path("pki", "sa.key") }
func (l layout) saPub() string      { return l.path("pki", "sa.pub") }
func (l layout) etcdData() string   { return l.path("etcd") }
func (l layout) log(component string) string {
	return l.path("logs", component+".log")
}
func (l layout) kubeconfig(user string) string { return l.path("kubeconfig", user+".conf") }
func (l layout) certDir(component string) string {
	return l.path("certs", component)
}

// home is HOME and the cache directory of every kubectl run (nothing is
// written under the user's home).
func (l layout) home() string      { return l.path("home") }
func (l layout) kubeCache() string { return l.path("home", ".kube", "cache") }

// settings are the cluster-wide values the flags are made from.
type settings struct {
	AdvertiseIP   netip.Addr
	ServiceCIDR   netip.Prefix
	ClusterCIDR   netip.Prefix
	NodePortRange string
}

func (s settings) validate() error {
	switch {
	case !s.AdvertiseIP.IsValid() || !s.AdvertiseIP.Is4():
		return fmt.Errorf("advertise address %v: want an IPv4 address", s.AdvertiseIP)
	case s.AdvertiseIP.IsLoopback() || s.AdvertiseIP.IsUnspecified():
		// kube-apiserver exits: "cannot use public IP 127.0.0.1 with
		// endpoint reconciler".
		return fmt.Errorf("advertise address %v: the API server refuses loopback and unspecified addresses", s.AdvertiseIP)
	case !s.ServiceCIDR.IsValid() || !s.ClusterCIDR.IsValid():
		return fmt.Errorf("service CIDR %v, cluster CIDR %v: both are needed", s.ServiceCIDR, s.ClusterCIDR)
	case s.ServiceCIDR.Overlaps(s.ClusterCIDR):
		return fmt.Errorf("service CIDR %v overlaps cluster CIDR %v", s.ServiceCIDR, s.ClusterCIDR)
	case !validPortRange(s.NodePortRange):
		return fmt.Errorf("NodePort range %q: want LOW-HIGH", s.NodePortRange)
	}
	return nil
}

func validPortRange(r string) bool {
	lo, hi, ok := strings.Cut(r, "-")
	if !ok {
		return false
	}
	l, err1 := strconv.Atoi(lo)
	h, err2 := strconv.Atoi(hi)
	return err1 == nil && err2 == nil && l > 0 && l <= h && h < 65536
}

// server is the API server's URL as every client uses it.
func (s settings) server() string {
	return "https://" + netip.AddrPortFrom(s.AdvertiseIP, APIServerPort).String()
}

// kubernetesServiceIP is the first address of the service range: the
// default/kubernetes Service's ClusterIP, a SAN of the serving certificate.
func (s settings) kubernetesServiceIP() netip.Addr { return s.ServiceCIDR.Masked().Addr().Next() }

func etcdURL(port int) string {
	return "http://" + netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String()
}

// etcdArgs: a single member on loopback, plain HTTP (nothing outside the
// control-plane namespace can reach it), data on the run directory's tmpfs
// without fsync: a run's data dies with the run. kubeadm's snapshot count and
// watch progress interval.
func etcdArgs(l layout) []string {
	return []string{
		"--name=control-plane",
		"--data-dir=" + l.etcdData(),
		"--listen-client-urls=" + etcdURL(etcdClientPort),
		"--advertise-client-urls=" + etcdURL(etcdClientPort),
		"--listen-peer-urls=" + etcdURL(etcdPeerPort),
		"--initial-advertise-peer-urls=" + etcdURL(etcdPeerPort),
		"--initial-cluster=control-plane=" + etcdURL(etcdPeerPort),
		"--listen-metrics-urls=" + etcdURL(2381),
		"--snapshot-count=10000",
		"--watch-progress-notify-interval=5s",
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}
}

// apiServerArgs follows kubeadm's defaults (cmd/kubeadm/app/phases/
// controlplane/manifests.go) without the parts svcsim has no use for:
// bootstrap tokens, the front proxy (no aggregated APIs) and kubelet client
// certificates (svcsim's kubelet serves no kubelet API).
func apiServerArgs(l layout, s settings) []string {
	return []string{
		"--advertise-address=" + s.AdvertiseIP.String(),
		"--secure-port=" + strconv.Itoa(APIServerPort),
		"--etcd-servers=" + etcdURL(etcdClientPort),
		"--service-cluster-ip-range=" + s.ServiceCIDR.String(),
		"--service-node-port-range=" + s.NodePortRange,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--client-ca-file=" + l.caCert(),
		"--tls-cert-file=" + l.serverCert(),
		"--tls-private-key-file=" + l.serverKey(),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + l.saPub(),
		"--service-account-signing-key-file=" + l.saKey(),
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--cert-dir=" + l.certDir(APIServer),
		"--profiling=false",
	}
}

// controllerManagerArgs: kubeadm's defaults with an explicit controller list,
// no node IPAM, and no leader election (one instance; it would only delay
// the start).
func controllerManagerArgs(l layout, s settings) []string {
	kc := l.kubeconfig(ControllerManager)
	return []string{
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(controllerManagerPort),
		"--cert-dir=" + l.certDir(ControllerManager),
		"--leader-elect=false",
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--client-ca-file=" + l.caCert(),
		"--root-ca-file=" + l.caCert(),
		"--service-account-private-key-file=" + l.saKey(),
		"--cluster-signing-cert-file=" + l.caCert(),
		"--cluster-signing-key-file=" + l.caKey(),
		"--use-service-account-credentials=true",
		"--controllers=" + strings.Join(Controllers, ","),
		"--allocate-node-cidrs=false",
		"--cluster-cidr=" + s.ClusterCIDR.String(),
		"--service-cluster-ip-range=" + s.ServiceCIDR.String(),
		"--profiling=false",
	}
}

// schedulerArgs: kubeadm's defaults, without leader election.
func schedulerArgs(l layout) []string {
	kc := l.kubeconfig(Scheduler)
	return []string{
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(schedulerPort),
		"--cert-dir=" + l.certDir(Scheduler),
		"--leader-elect=false",
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--profiling=false",
	}
}
