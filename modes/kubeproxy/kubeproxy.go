// Package kubeproxy registers the genuine kube-proxy's datapaths with
// package modes: kube-proxy/iptables-legacy, kube-proxy/iptables-nft and
// kube-proxy/nftables. They are external programs (Start.Program): the
// kubernetes plane (plane/kube/cluster) starts kube-proxy in every node's
// namespace with the descriptor's flags (Start.Args: --proxy-mode and the
// rest) and iptables backend (Start.IPTablesBackend), learns that it has
// programmed from its metrics and its rules (Kernel, Dump), and removes
// its rules with `kube-proxy --cleanup`. Report order puts them after
// svcsim's own.
//
// Package modes/all does not import this package: the embedded plane
// cannot run them. The kubernetes plane imports it.
package kubeproxy

import (
	"fmt"
	"strings"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/plane/kube"
)

// Prefix starts every kube-proxy datapath name.
const Prefix = "kube-proxy/"

// Default is the datapath the kubernetes plane runs when none is named.
const Default = Prefix + "nftables"

// ClusterCIDR is kube-proxy's --cluster-cidr, as kubeadm and kind set it:
// every pod of the plane (10.244.<i>.0/24 on node i). Traffic to a
// ClusterIP from outside it is masqueraded.
const ClusterCIDR = "10.244.0.0/16"

// flavours are kube-proxy's datapaths on this host kernel, in report order:
// the name after Prefix, --proxy-mode and the iptables backend (ipvs needs
// IP_VS: the kernel lane, not yet).
var flavours = []struct{ name, proxyMode, backend string }{
	{"iptables-legacy", "iptables", kube.IPTablesLegacy},
	{"iptables-nft", "iptables", kube.IPTablesNFT},
	{"nftables", "nftables", ""},
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

// descriptor is the modes descriptor of one flavour.
func descriptor(name, proxyMode, backend string, order int) modes.Datapath {
	desc := modes.Datapath{
		Name: Prefix + name,
		Start: modes.Start{
			Program: kube.KubeProxy,
			// --conntrack-max-per-core=0 as kind has it: the conntrack
			// sysctls kube-proxy would raise are read-only outside the
			// initial network namespace. Everything else is its default.
			Args:            []string{"--proxy-mode=" + proxyMode, "--cluster-cidr=" + ClusterCIDR, "--conntrack-max-per-core=0"},
			Cleanup:         []string{kube.KubeProxy, "--cleanup"},
			IPTablesBackend: backend,
		},
		Needs:      []modes.Feature{binary},
		Programmed: modes.ProgrammedMetrics,
		// kube-proxy's iptables and nftables proxiers pick an endpoint at
		// random (statistic mode random / numgen random) and pin ClientIP
		// affinity with a recent list / a timeout set refreshed per packet.
		Traits: modes.Traits{Choice: modes.Random, Affinity: modes.AffinityIdle},
		Report: modes.Report{Order: order},
	}
	// Its iptables proxier answers NodePorts on 127.0.0.1
	// (--iptables-localhost-nodeports, on by default); nftables does not.
	desc.Traits.LocalhostNodePorts = proxyMode == "iptables"
	switch backend {
	case kube.IPTablesLegacy:
		desc.Kernel, desc.Dump = modes.KernelIptables, []string{"iptables-legacy-save"}
		desc.Needs = append(desc.Needs, modes.Tool("iptables-legacy-restore"))
	case kube.IPTablesNFT:
		desc.Kernel, desc.Dump = modes.KernelIptables, []string{"iptables-nft-save"}
		desc.Needs = append(desc.Needs, modes.Tool("iptables-nft-restore"), modes.NfTables)
	default:
		desc.Kernel, desc.Dump = modes.KernelNftables, []string{"nft", "list", "table", "ip", "kube-proxy"}
		desc.Needs = append(desc.Needs, modes.Tool("nft"), modes.NfTables)
	}
	return desc
}

// ReportOrder is where the first kube-proxy column goes: after every
// svcsim datapath.
const ReportOrder = 100

// Datapaths are the kube-proxy datapaths' descriptors: bin/k8s's in report
// order, then kube-proxy v1.25's userspace proxier (Userspace).
func Datapaths() []modes.Datapath {
	out := make([]modes.Datapath, len(flavours), len(flavours)+1)
	for i, f := range flavours {
		out[i] = descriptor(f.name, f.proxyMode, f.backend, ReportOrder+i)
	}
	return append(out, userspaceDescriptor())
}

// Get returns the kube-proxy datapath registered under name
// ("kube-proxy/nftables"), or an error naming them.
func Get(name string) (modes.Datapath, error) {
	var names []string
	for _, d := range Datapaths() {
		if d.Name == name {
			return modes.Get(name)
		}
		names = append(names, d.Name)
	}
	return modes.Datapath{}, fmt.Errorf("%q is not a kube-proxy datapath: want one of %s", name, strings.Join(names, ", "))
}

func init() {
	for _, d := range Datapaths() {
		modes.Register(d)
	}
}
