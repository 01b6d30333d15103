package iptables

import (
	"context"
	"time"

	"github.com/svcsim/svcsim/modes"
)

// The registered names: "iptables" uses the backend the host's `iptables`
// command uses; the other two pick one.
func init() {
	modes.Register("iptables", func(o modes.Options) (modes.Proxier, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := DetectBackend(ctx)
		if err != nil {
			return nil, err
		}
		return newForMode(b, o)
	})
	modes.Register("iptables/legacy", func(o modes.Options) (modes.Proxier, error) { return newForMode(Legacy, o) })
	modes.Register("iptables/nft", func(o modes.Options) (modes.Proxier, error) { return newForMode(NFT, o) })
}

func newForMode(b Backend, o modes.Options) (modes.Proxier, error) {
	p, err := New(Config{Backend: b, Node: o.Node})
	if err != nil {
		return nil, err
	}
	return p, nil
}
