package kubeproxy_test

import (
	"slices"
	"testing"

	"github.com/svcsim/svcsim/modes"
	_ "github.com/svcsim/svcsim/modes/all"
	"github.com/svcsim/svcsim/modes/kubeproxy"
	"github.com/svcsim/svcsim/plane/kube/cluster"
)

// TestRegistered: the three kube-proxy datapaths are registered as
// external programs with a Dump, metrics as their programmed signal,
// --cleanup, and report columns after every svcsim datapath, in the
// kubernetes plane's order.
func TestRegistered(t *testing.T) {
	want := []string{"kube-proxy/iptables-legacy", "kube-proxy/iptables-nft", "kube-proxy/nftables"}
	var got []string
	maxSvcsim := -1
	for _, d := range modes.Table() {
		c, ok := kubeproxy.Lookup(d)
		if !ok {
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
		if !slices.Contains(d.Start.Args, "--proxy-mode="+c.Mode) || !slices.Contains(d.Start.Args, "--conntrack-max-per-core=0") {
			t.Errorf("%s: args %v", d.Name, d.Start.Args)
		}
		if d.Programmed != modes.ProgrammedMetrics || len(d.Dump) == 0 || d.Traits.Choice != modes.Random {
			t.Errorf("%s: descriptor %+v", d.Name, d)
		}
		if (c.IPTables == "") != (d.Kernel == modes.KernelNftables) {
			t.Errorf("%s: kernel %v for backend %q", d.Name, d.Kernel, c.IPTables)
		}
		if _, err := cluster.LookupDatapath(c.Name); err != nil {
			t.Error(err)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("kube-proxy datapaths in report order %v, want %v", got, want)
	}
	if maxSvcsim < 0 {
		t.Error("no svcsim datapath registered")
	}
}
