package iptables

import (
	"context"
	"time"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/iptrestore"
)

// The registered names: "iptables" uses the node's backend
// (modes.Options.IPTablesBackend, by default the one the host's `iptables`
// command uses); the other two pick one.
func init() {
	modes.Register(modes.Datapath{
		Name:    "iptables",
		AliasOf: []string{datapathName(iptrestore.Legacy), datapathName(iptrestore.NFT)},
		Start: modes.Start{Factory: func(o modes.Options) (modes.Proxier, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			b, err := iptrestore.NodeBackend(ctx, o.IPTablesBackend)
			if err != nil {
				return nil, err
			}
			return newForMode(b, o)
		}},
		Needs:  []modes.Feature{modes.Tool("iptables")},
		Traits: traits,
		Report: modes.Report{Order: 20, Claim: modes.ClaimNotIncremental},
	})
	for i, b := range []iptrestore.Backend{iptrestore.Legacy, iptrestore.NFT} {
		_, restore, save := b.Binaries()
		needs := []modes.Feature{modes.Tool(restore)}
		if b == iptrestore.NFT {
			needs = append(needs, modes.NfTables)
		}
		modes.Register(modes.Datapath{
			Name:   datapathName(b),
			Start:  modes.Start{Factory: func(o modes.Options) (modes.Proxier, error) { return newForMode(b, o) }},
			Needs:  needs,
			Kernel: modes.KernelIptables,
			Dump:   []string{save},
			Flush:  modes.IPTablesFlush("iptables-" + string(b)),
			Traits: traits,
			Report: modes.Report{Order: 21 + i, Claim: modes.ClaimNotIncremental},
		})
	}
}

// traits: a random choice per connection (statistic --mode random), affinity
// by the recent match (idle timeout), NodePorts on 127.0.0.1 too, partial
// restores with a full resync on request.
var traits = modes.Traits{
	Choice: modes.Random, Affinity: modes.AffinityIdle, LocalhostNodePorts: true,
	FullResync: modes.ForceFullSync,
}

func datapathName(b iptrestore.Backend) string { return "iptables/" + string(b) }

// BackendOfDatapath returns the backend of a registered datapath name
// ("iptables/nft"), and false for names that are not one backend.
func BackendOfDatapath(name string) (iptrestore.Backend, bool) {
	for _, b := range []iptrestore.Backend{iptrestore.Legacy, iptrestore.NFT} {
		if name == datapathName(b) {
			return b, true
		}
	}
	return "", false
}

func newForMode(b iptrestore.Backend, o modes.Options) (modes.Proxier, error) {
	p, err := New(Config{Backend: b, Node: o.Node})
	if err != nil {
		return nil, err
	}
	return p, nil
}
