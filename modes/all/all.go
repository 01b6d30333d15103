// Package all links every proxy mode into a binary; import it for its side
// effect of registering them with package modes.
package all

import (
	_ "github.com/svcsim/svcsim/modes/iptables"  // iptables, iptables/legacy, iptables/nft
	_ "github.com/svcsim/svcsim/modes/ipvs"      // ipvs
	_ "github.com/svcsim/svcsim/modes/nftables"  // nftables
	_ "github.com/svcsim/svcsim/modes/userspace" // userspace
)
