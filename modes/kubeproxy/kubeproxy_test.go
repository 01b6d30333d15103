package kubeproxy_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/modes"
	_ "github.com/svcsim/svcsim/modes/all"
	"github.com/svcsim/svcsim/modes/kubeproxy"
	"github.com/svcsim/svcsim/plane/kube"
)

// TestRegistered: the three kube-proxy datapaths are registered as
// external programs with a Dump, metrics as their programmed signal,
// --cleanup, the flags and iptables backend the kubernetes plane starts
// kube-proxy with, and report columns after every svcsim datapath.
func TestRegistered(t *testing.T) {
	want := []string{"kube-proxy/iptables-legacy", "kube-proxy/iptables-nft", "kube-proxy/nftables"}
	var got []string
	maxSvcsim := -1
	for _, d := range modes.Table() {
		if _, err := kubeproxy.Get(d.Name); err != nil {
			if d.Report.Order > maxSvcsim {
				maxSvcsim = d.Report.Order
			}
			if len(got) > 0 {
				t.Errorf("svcsim datapath %s comes after kube-proxy's in the report", d.Name)
			}
			continue
		}
		got = append(got, d.Name)
		if d.Start.Factory != nil || d.Start.Program != "kube-proxy" || !slices.Equal(d.Start.Cleanup, []string{"kube-proxy", "--cleanup"}) {
			t.Errorf("%s: Start %+v", d.Name, d.Start)
		}
		want := map[string]struct {
			mode, backend, dump string
			kernel              modes.Kernel
		}{
			"kube-proxy/iptables-legacy": {"iptables", kube.IPTablesLegacy, "iptables-legacy-save", modes.KernelIptables},
			"kube-proxy/iptables-nft":    {"iptables", kube.IPTablesNFT, "iptables-nft-save", modes.KernelIptables},
			"kube-proxy/nftables":        {"nftables", "", "nft list table ip kube-proxy", modes.KernelNftables},
		}[d.Name]
		if !slices.Equal(d.Start.Args, []string{"--proxy-mode=" + want.mode, "--cluster-cidr=10.244.0.0/16", "--conntrack-max-per-core=0"}) {
			t.Errorf("%s: args %v", d.Name, d.Start.Args)
		}
		if d.Start.IPTablesBackend != want.backend || d.Kernel != want.kernel || strings.Join(d.Dump, " ") != want.dump {
			t.Errorf("%s: backend %q, kernel %v, dump %q; want %+v", d.Name, d.Start.IPTablesBackend, d.Kernel, d.Dump, want)
		}
		if d.Programmed != modes.ProgrammedMetrics || d.Traits.Choice != modes.Random {
			t.Errorf("%s: descriptor %+v", d.Name, d)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("kube-proxy datapaths in report order %v, want %v", got, want)
	}
	if maxSvcsim < 0 {
		t.Error("no svcsim datapath registered")
	}
}

// TestGet: a name that is not kube-proxy's is refused, naming the ones
// that are (the kubernetes plane's SetDatapath and svcsim up say it).
func TestGet(t *testing.T) {
	for _, name := range []string{"nftables", "kube-proxy/ipvs", "iptables/nft"} {
		if _, err := kubeproxy.Get(name); err == nil || !strings.Contains(err.Error(), "kube-proxy/iptables-legacy, kube-proxy/iptables-nft, kube-proxy/nftables") {
			t.Errorf("Get(%q) = %v, want an error naming the kube-proxy datapaths", name, err)
		}
	}
	if d, err := kubeproxy.Get(kubeproxy.Default); err != nil || d.Name != "kube-proxy/nftables" {
		t.Errorf("Get(Default) = %v, %v", d.Name, err)
	}
}
