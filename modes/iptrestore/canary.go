package iptrestore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
)

// CanaryChain is kube-proxy's canary chain: an empty user chain in each of
// CanaryTables that nothing jumps to, so that a flush of the node's rules
// (iptables -F and -X, or a firewall reload restoring its own tables) shows
// as its absence (pkg/proxy/iptables and pkg/util/iptables Monitor, v1.37).
const CanaryChain = "KUBE-PROXY-CANARY"

// CanaryTables are the tables holding a canary, the first being the one
// CanaryIntact looks at (mangle, as kube-proxy's monitor does: a datapath
// writes nothing else there, so saving it is cheap).
var CanaryTables = []string{"mangle", "nat", "filter"}

// CanaryInput is the iptables-restore --noflush input that creates the
// canary chain in every canary table (declaring an existing empty chain
// changes nothing).
func CanaryInput() []byte {
	var b bytes.Buffer
	for _, t := range CanaryTables {
		fmt.Fprintf(&b, "*%s\n:%s - [0:0]\nCOMMIT\n", t, CanaryChain)
	}
	return b.Bytes()
}

// EnsureCanary creates the canary chains (one iptables-restore --noflush).
func EnsureCanary(ctx context.Context, ipt Interface) error {
	if err := ipt.Restore(ctx, CanaryInput(), true, false); err != nil {
		return fmt.Errorf("create canary chain %s: %w", CanaryChain, err)
	}
	return nil
}

// CanaryIntact reports whether the canary chain is in the first canary
// table (one `iptables-save -t mangle`).
func CanaryIntact(ctx context.Context, ipt Interface) (bool, error) {
	data, err := ipt.Save(ctx, CanaryTables[0])
	if err != nil {
		return false, fmt.Errorf("look for canary chain %s: %w", CanaryChain, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	decl := []byte(":" + CanaryChain + " ")
	for sc.Scan() {
		if bytes.HasPrefix(sc.Bytes(), decl) {
			return true, nil
		}
	}
	return false, sc.Err()
}

// RemoveCanary deletes the canary chains where they exist (a datapath's
// Cleanup): one save per canary table and at most one restore.
func RemoveCanary(ctx context.Context, ipt Interface) error {
	saved, err := SaveTables(ctx, ipt, CanaryTables...)
	if err != nil {
		return fmt.Errorf("remove canary chain %s: %w", CanaryChain, err)
	}
	in := CleanupInput(saved, func(chain string) bool { return chain == CanaryChain })
	if in == nil {
		return nil
	}
	if err := ipt.Restore(ctx, in, true, false); err != nil {
		return fmt.Errorf("remove canary chain %s: %w", CanaryChain, err)
	}
	return nil
}
