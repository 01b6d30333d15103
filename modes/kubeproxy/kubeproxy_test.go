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
		if d.Name == kubeproxy.Userspace {
			continue // TestUserspaceRegistered
		}
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
		if _, err := kubeproxy.Get(name); err == nil || !strings.Contains(err.Error(), "kube-proxy/iptables-legacy, kube-proxy/iptables-nft, kube-proxy/nftables, kube-proxy-1.25/userspace") {
			t.Errorf("Get(%q) = %v, want an error naming the kube-proxy datapaths", name, err)
		}
	}
	if d, err := kubeproxy.Get(kubeproxy.Default); err != nil || d.Name != "kube-proxy/nftables" {
		t.Errorf("Get(Default) = %v, %v", d.Name, err)
	}
}

// TestUserspaceRegistered: kube-proxy v1.25's userspace proxier runs from
// bin/kube-proxy-1.25 with --proxy-mode=userspace, reports beside svcsim's
// userspace datapath with its traits (round robin, a relay), and asks for
// a user namespace (and the KubeletInUserNamespace gate) exactly when
// RLIMIT_NOFILE cannot be raised to 64000 here.
func TestUserspaceRegistered(t *testing.T) {
	d, err := kubeproxy.Get(kubeproxy.Userspace)
	if err != nil {
		t.Fatal(err)
	}
	us, err := modes.Get("userspace")
	if err != nil {
		t.Fatal(err)
	}
	if d.Report.Order != us.Report.Order+1 {
		t.Errorf("report order %d, want %d (beside svcsim's userspace)", d.Report.Order, us.Report.Order+1)
	}
	if d.Start.Program != "kube-proxy" || d.Start.Binary != kubeproxy.UserspaceBinary || d.Kernel != modes.KernelUserspace ||
		d.Traits.Choice != us.Traits.Choice || d.Traits.Affinity != us.Traits.Affinity || d.Traits.Relay != us.Traits.Relay {
		t.Errorf("descriptor %+v", d)
	}
	raisable, why := kubeproxy.NoFileRaisable()
	gate := slices.Contains(d.Start.Args, "--feature-gates=KubeletInUserNamespace=true")
	if d.Start.UserNamespace == raisable || gate == raisable || !slices.Contains(d.Start.Args, "--proxy-mode=userspace") {
		t.Errorf("%s: user namespace %v, gate %v, args %v", why, d.Start.UserNamespace, gate, d.Start.Args)
	}
}
