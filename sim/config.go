package sim

import (
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"github.com/svcsim/svcsim/sim/desired"
)

// HostnameLabel is the well-known node label every node carries.
const HostnameLabel = "kubernetes.io/hostname"

// OSLabel and ArchLabel are the other labels the kubelet gives every node
// (manifests select them: ingress-nginx's nodeSelector kubernetes.io/os:
// linux). Every node is linux on the host's architecture.
const (
	OSLabel   = "kubernetes.io/os"
	ArchLabel = "kubernetes.io/arch"
)

// SchedulerAnnotation on a Service selects a load-balancing algorithm for
// modes that have one (IPVS: rr, wrr, lc, sh, ...). It is copied to
// state.ServicePort.Scheduler.
const SchedulerAnnotation = desired.SchedulerAnnotation

// NodeConfig is one node of the simulated cluster.
type NodeConfig struct {
	Name string
	// IP is the node's address on the underlay (its InternalIP).
	IP netip.Addr
	// PodCIDR is the range the node's pods get addresses from.
	PodCIDR netip.Prefix
	// Labels are the node's labels; kubernetes.io/hostname, os and arch
	// are always set.
	Labels map[string]string
}

// Config describes the cluster: nodes, address ranges and the seed that
// makes every random choice (names, ClusterIPs, NodePorts) reproducible.
type Config struct {
	Nodes       []NodeConfig
	ServiceCIDR netip.Prefix
	ClusterCIDR netip.Prefix
	// NodePortMin and NodePortMax bound the NodePort range (inclusive).
	NodePortMin, NodePortMax int32
	// DNSDomain is the cluster domain ("cluster.local").
	DNSDomain string
	Seed      int64
	// Clock returns the current time for creation timestamps; nil means
	// time.Now. Tests set it for reproducible output.
	Clock func() time.Time `json:"-"`
}

// DefaultConfig returns the default address plan with n nodes named
// node1..nodeN: node i at 198.18.0.(10+i) with pods in 10.244.i.0/24,
// Services in 10.96.0.0/12, NodePorts 30000-32767, domain cluster.local.
func DefaultConfig(nodes int) Config {
	cfg := Config{
		ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"),
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
		NodePortMin: 30000,
		NodePortMax: 32767,
		DNSDomain:   "cluster.local",
		Seed:        1,
	}
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("node%d", i)
		cfg.Nodes = append(cfg.Nodes, NodeConfig{
			Name:    name,
			IP:      netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}),
			PodCIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24),
			Labels:  map[string]string{HostnameLabel: name},
		})
	}
	return cfg
}

// validate checks the configuration is usable and fills defaults.
func (cfg *Config) validate() error {
	if len(cfg.Nodes) == 0 {
		return fmt.Errorf("config: no nodes")
	}
	if !cfg.ServiceCIDR.IsValid() || !cfg.ServiceCIDR.Addr().Is4() || cfg.ServiceCIDR.Bits() > 30 {
		return fmt.Errorf("config: service CIDR %v must be an IPv4 prefix of /30 or larger", cfg.ServiceCIDR)
	}
	cfg.ServiceCIDR = cfg.ServiceCIDR.Masked()
	if cfg.ClusterCIDR.IsValid() {
		cfg.ClusterCIDR = cfg.ClusterCIDR.Masked()
	}
	if cfg.NodePortMin == 0 && cfg.NodePortMax == 0 {
		cfg.NodePortMin, cfg.NodePortMax = 30000, 32767
	}
	if cfg.NodePortMin < 1 || cfg.NodePortMax > 65535 || cfg.NodePortMin > cfg.NodePortMax {
		return fmt.Errorf("config: bad NodePort range %d-%d", cfg.NodePortMin, cfg.NodePortMax)
	}
	if cfg.DNSDomain == "" {
		cfg.DNSDomain = "cluster.local"
	}
	seen := map[string]bool{}
	for i := range cfg.Nodes {
		n := &cfg.Nodes[i]
		if n.Name == "" {
			return fmt.Errorf("config: node %d has no name", i)
		}
		if seen[n.Name] {
			return fmt.Errorf("config: node %s listed twice", n.Name)
		}
		seen[n.Name] = true
		if !n.IP.Is4() {
			return fmt.Errorf("config: node %s: IP %v is not IPv4", n.Name, n.IP)
		}
		if !n.PodCIDR.IsValid() || !n.PodCIDR.Addr().Is4() || n.PodCIDR.Bits() > 29 {
			return fmt.Errorf("config: node %s: pod CIDR %v must be an IPv4 prefix of /29 or larger", n.Name, n.PodCIDR)
		}
		n.PodCIDR = n.PodCIDR.Masked()
		labels := make(map[string]string, len(n.Labels)+1)
		for k, v := range n.Labels {
			labels[k] = v
		}
		if labels[HostnameLabel] == "" {
			labels[HostnameLabel] = n.Name
		}
		if labels[OSLabel] == "" {
			labels[OSLabel] = "linux"
		}
		if labels[ArchLabel] == "" {
			labels[ArchLabel] = runtime.GOARCH
		}
		n.Labels = labels
	}
	return nil
}

func (cfg *Config) now() time.Time {
	if cfg.Clock != nil {
		return cfg.Clock()
	}
	return time.Now()
}
