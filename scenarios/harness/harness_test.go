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
