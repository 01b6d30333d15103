// Package kubeproxy registers the genuine kube-proxy's datapaths with
// package modes: kube-proxy/iptables-legacy, kube-proxy/iptables-nft and
// kube-proxy/nftables. They are external programs (Start.Program): the
// kubernetes plane (plane/kube/cluster) starts kube-proxy in every node's
// namespace with the matching --proxy-mode and iptables backend, learns
// that it has programmed from its metrics and removes its rules with
// `kube-proxy --cleanup`. Report order puts them after svcsim's own.
//
// Package modes/all does not import this package: the embedded plane
// cannot run them. Import it where the kubernetes plane runs them.
package kubeproxy

import (
	"fmt"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/plane/kube"
	"github.com/svcsim/svcsim/plane/kube/cluster"
)

// Prefix starts every kube-proxy datapath name.
const Prefix = "kube-proxy/"

// Name is the modes name of a kubernetes-plane datapath ("nftables" is
// "kube-proxy/nftables").
func Name(d cluster.Datapath) string { return Prefix + d.Name }

// Lookup returns the kubernetes plane's datapath of a registered modes
// descriptor, and whether it is one.
func Lookup(d modes.Datapath) (cluster.Datapath, bool) {
	for _, c := range cluster.Datapaths {
		if Name(c) == d.Name {
			return c, true
		}
	}
	return cluster.Datapath{}, false
}

// binary is met when the multi-call binary of upstream components is there.
var binary = modes.Feature{
	Name: "kube-proxy",
	Probe: func() error {
		if _, _, err := kube.FindBinary(); err != nil {
			return fmt.Errorf("no genuine kube-proxy: %w", err)
		}
		return nil
	},
	Remedy: "`make kube` builds it (bin/k8s)",
}

// Descriptor is the modes descriptor of a kubernetes-plane datapath.
func Descriptor(d cluster.Datapath, order int) modes.Datapath {
	desc := modes.Datapath{
		Name: Name(d),
		Start: modes.Start{
			Program: kube.KubeProxy,
			Args:    []string{"--proxy-mode=" + d.Mode, "--cluster-cidr=10.244.0.0/16", "--conntrack-max-per-core=0"},
			Cleanup: []string{kube.KubeProxy, "--cleanup"},
		},
		Needs:      []modes.Feature{binary},
		Programmed: modes.ProgrammedMetrics,
		// kube-proxy's iptables and nftables proxiers pick an endpoint at
		// random (statistic mode random / numgen random) and pin ClientIP
		// affinity with a recent list / a timeout set refreshed per packet.
		Traits: modes.Traits{Choice: modes.Random, Affinity: modes.AffinityIdle},
		Report: modes.Report{Order: order},
	}
	switch d.IPTables {
	case kube.IPTablesLegacy:
		desc.Kernel, desc.Dump = modes.KernelIptables, []string{"iptables-legacy-save"}
		desc.Needs = append(desc.Needs, modes.Tool("iptables-legacy-restore"))
	case kube.IPTablesNFT:
		desc.Kernel, desc.Dump = modes.KernelIptables, []string{"iptables-nft-save"}
		desc.Needs = append(desc.Needs, modes.Tool("iptables-nft-restore"))
	default:
		desc.Kernel, desc.Dump = modes.KernelNftables, []string{"nft", "list", "table", "ip", "kube-proxy"}
		desc.Needs = append(desc.Needs, modes.Tool("nft"))
	}
	return desc
}

// ReportOrder is where the first kube-proxy column goes: after every
// svcsim datapath.
const ReportOrder = 100

func init() {
	for i, d := range cluster.Datapaths {
		modes.Register(Descriptor(d, ReportOrder+i))
	}
}
