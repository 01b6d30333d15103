package all_test

import (
	"slices"
	"testing"

	"github.com/svcsim/svcsim/modes"
	_ "github.com/svcsim/svcsim/modes/all"
)

// The table of datapaths is in the seed's order (userspace, iptables, IPVS),
// then nftables, and leaves the "iptables" alias out.
func TestTableOrder(t *testing.T) {
	var names []string
	for _, d := range modes.Table() {
		names = append(names, d.Name)
	}
	want := []string{"userspace", "iptables/legacy", "iptables/nft", "ipvs", "nftables"}
	if !slices.Equal(names, want) {
		t.Fatalf("Table() = %v, want %v", names, want)
	}
	alias, ok := modes.Lookup("iptables")
	if !ok || !slices.Equal(alias.AliasOf, []string{"iptables/legacy", "iptables/nft"}) {
		t.Fatalf("iptables alias: %+v %v", alias, ok)
	}
	for _, a := range alias.AliasOf {
		if _, ok := modes.Lookup(a); !ok {
			t.Errorf("alias names unregistered %s", a)
		}
	}
}

// Traits the scenarios rely on, stated once per datapath.
func TestTraits(t *testing.T) {
	for name, want := range map[string]struct {
		choice   modes.Choice
		affinity modes.Affinity
		relay    bool
		resync   bool
	}{
		"userspace":       {modes.RoundRobin, modes.AffinityIdle, true, false},
		"iptables/legacy": {modes.Random, modes.AffinityIdle, false, true},
		"iptables/nft":    {modes.Random, modes.AffinityIdle, false, true},
		"ipvs":            {modes.RoundRobin, modes.AffinityTemplate, false, false},
		"nftables":        {modes.Random, modes.AffinityIdle, false, true},
	} {
		d, ok := modes.Lookup(name)
		if !ok {
			t.Fatalf("%s not registered", name)
		}
		tr := d.Traits
		if tr.Choice != want.choice || tr.Affinity != want.affinity || tr.Relay != want.relay || (tr.FullResync != nil) != want.resync {
			t.Errorf("%s traits %+v, want %+v", name, tr, want)
		}
	}
}
