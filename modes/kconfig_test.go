package modes

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

type fakeKernel struct {
	loadedMods map[string]bool
	loads      map[string]bool // modules modprobe loads
	cfg        string
	hasCfg     bool
}

func (k *fakeKernel) loaded(m string) bool { return k.loadedMods[m] }
func (k *fakeKernel) modprobe(m string) error {
	if !k.loads[m] {
		return errors.New("modprobe: FATAL: Module not found")
	}
	k.loadedMods[m] = true
	return nil
}
func (k *fakeKernel) config() (string, bool) { return k.cfg, k.hasCfg }

func TestProbeKernelFeature(t *testing.T) {
	const cfg = "# comment\nCONFIG_NF_TABLES=y\nCONFIG_BRIDGE_NETFILTER=m\n# CONFIG_IP_VS is not set\n"
	for name, tc := range map[string]struct {
		k       fakeKernel
		feature string
		module  string
		config  string
		want    string
	}{
		"loaded":                 {fakeKernel{loadedMods: map[string]bool{"nf_tables": true}}, "nf_tables", "nf_tables", "CONFIG_NF_TABLES", ""},
		"loads":                  {fakeKernel{loadedMods: map[string]bool{}, loads: map[string]bool{"br_netfilter": true}}, "br_netfilter", "br_netfilter", "CONFIG_BRIDGE_NETFILTER", ""},
		"built in":               {fakeKernel{loadedMods: map[string]bool{}, cfg: cfg, hasCfg: true}, "nf_tables", "nf_tables", "CONFIG_NF_TABLES", ""},
		"module that won't load": {fakeKernel{loadedMods: map[string]bool{}, cfg: cfg, hasCfg: true}, "br_netfilter", "br_netfilter", "CONFIG_BRIDGE_NETFILTER", "kernel lacks br_netfilter (module br_netfilter, CONFIG_BRIDGE_NETFILTER=m, is not loaded and did not load)"},
		"not configured":         {fakeKernel{loadedMods: map[string]bool{}, cfg: cfg, hasCfg: true}, "IP_VS", "ip_vs", "CONFIG_IP_VS", "kernel lacks IP_VS (CONFIG_IP_VS is not set in its configuration)"},
		"no configuration":       {fakeKernel{loadedMods: map[string]bool{}}, "nf_tables", "nf_tables", "CONFIG_NF_TABLES", ""},
	} {
		t.Run(name, func(t *testing.T) {
			err := probeKernelFeature(&tc.k, tc.feature, tc.module, tc.config)
			if tc.want == "" {
				assert.NoError(t, err)
			} else {
				assert.EqualError(t, err, tc.want)
			}
		})
	}
}
