package harness

import (
	"testing"

	"github.com/stretchr/testify/assert"

	_ "github.com/svcsim/svcsim/modes/all" // every datapath registered
)

func TestCheckModes(t *testing.T) {
	t.Setenv("SVCSIM_MODES", "nftables, iptables/nft,kube-proxy/nftables")
	assert.NoError(t, CheckModes())
	t.Setenv("SVCSIM_MODES", "")
	assert.NoError(t, CheckModes(), "unset: the whole table")
	t.Setenv("SVCSIM_MODES", "iptables-nft,nftables,ipvs2")
	err := CheckModes()
	assert.ErrorContains(t, err, `SVCSIM_MODES names no datapath "iptables-nft", "ipvs2": the datapaths are `)
	assert.ErrorContains(t, err, "iptables/nft", "the known names are listed")
}

// TestOwnDatapathOnKube: svcsim's datapath on the kubernetes plane is named
// with @kubernetes in SVCSIM_MODES; it runs there (OnKube) with svcsim's
// own traits, is not the genuine kube-proxy, and its namespace is a DNS
// label.
func TestOwnDatapathOnKube(t *testing.T) {
	t.Setenv("SVCSIM_MODES", "nftables@kubernetes,kube-proxy/nftables,nftables")
	assert.NoError(t, CheckModes())
	dps := Datapaths()
	if assert.Len(t, dps, 3) {
		own, kp, emb := dps[0], dps[1], dps[2]
		assert.Equal(t, "nftables@kubernetes", own.Desc.Name)
		assert.True(t, OnKube(own.Desc) && !genuineKubeProxy(own.Desc), "svcsim's node proxy on the kubernetes plane")
		assert.Equal(t, emb.Desc.Traits.Choice, own.Desc.Traits.Choice, "svcsim's traits")
		assert.True(t, OnKube(kp.Desc) && genuineKubeProxy(kp.Desc))
		assert.False(t, OnKube(emb.Desc))
		assert.Equal(t, "nodeport-nftables-kubernetes", Namespace(Scenario{Name: "nodeport"}, own))
	}
	t.Setenv("SVCSIM_MODES", "nftables@embedded")
	assert.ErrorContains(t, CheckModes(), "nftables@kubernetes", "the kubernetes plane's names are listed")
}
