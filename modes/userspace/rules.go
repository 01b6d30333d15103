package userspace

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/iptrestore/ruleset"
)

// The nat chains this mode owns (kube-proxy's userspace names). Portal chains
// catch ClusterIPs and external IPs; NodePort chains catch node ports on any
// local address and are jumped to after the portal chains, as in kube-proxy.
const (
	ChainPortalsContainer  = "KUBE-PORTALS-CONTAINER"
	ChainPortalsHost       = "KUBE-PORTALS-HOST"
	ChainNodePortContainer = "KUBE-NODEPORT-CONTAINER"
	ChainNodePortHost      = "KUBE-NODEPORT-HOST"
)

// ownedChains in the order they are declared.
var ownedChains = []string{ChainNodePortContainer, ChainNodePortHost, ChainPortalsContainer, ChainPortalsHost}

// jumpRules send traffic from the built-in chains to the owned ones: portal
// chains first, NodePort chains last.
var jumpRules = []iptrestore.Jump{
	{Table: "nat", From: "PREROUTING", To: ChainPortalsContainer, Comment: "svcsim userspace: service portals"},
	{Table: "nat", From: "OUTPUT", To: ChainPortalsHost, Comment: "svcsim userspace: service portals"},
	{Table: "nat", From: "PREROUTING", To: ChainNodePortContainer, Comment: "svcsim userspace: service nodeports", Match: localDst, Append: true},
	{Table: "nat", From: "OUTPUT", To: ChainNodePortHost, Comment: "svcsim userspace: service nodeports", Match: localDst, Append: true},
}

var localDst = []string{"-m", "addrtype", "--dst-type", "LOCAL"}

func owned(chain string) bool { return slices.Contains(ownedChains, chain) }

// saveNAT reads and parses the nat table.
func saveNAT(ctx context.Context, ipt iptrestore.Interface) (*ruleset.Table, error) {
	saved, err := iptrestore.SaveTables(ctx, ipt, "nat")
	if err != nil {
		return nil, err
	}
	return saved["nat"], nil
}

// ownedLines are the lines of the nat table that touch owned chains, as
// iptables-save prints them.
func ownedLines(t *ruleset.Table) []string {
	var out []string
	for _, c := range t.ChainNames() {
		if owned(c) {
			out = append(out, ":"+c+" - [0:0]")
		}
	}
	for _, c := range t.ChainNames() {
		for _, r := range t.Chains[c].Rules {
			if owned(c) || owned(r.Target()) {
				out = append(out, r.String())
			}
		}
	}
	return out
}

// portalRule describes one Service port's proxy target.
type portalRule struct {
	comment   string // Service port ID
	proto     string // "tcp" or "udp"
	vips      []netip.Addr
	lbIPs     []netip.Addr
	ranges    []netip.Prefix
	port      int32
	nodePort  int32
	proxyPort int
}

// buildRestore returns the iptables-restore input of one sync: owned chains
// are redeclared (which flushes them) and refilled, and missing jump rules are
// added. Traffic arriving from outside (pods, other hosts) is REDIRECTed to
// the proxy port, which rewrites the destination to the primary address of
// the interface it came in on, where the proxy listens (it listens on all
// addresses). Traffic from the node itself is DNATed to hostIP:proxyPort
// rather than REDIRECTed to 127.0.0.1, so that UDP replies, which the kernel
// sends from the node's address, match the connection's NAT (kube-proxy
// found the same). Without a host IP it falls back to REDIRECT.
func buildRestore(rules []portalRule, hostIP netip.Addr, have *ruleset.Table) []byte {
	var b bytes.Buffer
	b.WriteString("*nat\n")
	for _, c := range ownedChains {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	var jumps iptrestore.LineBuffer
	iptrestore.WriteJumps(&jumps, "nat", have, jumpRules)
	b.Write(jumps.Bytes())
	hostTarget := func(proxyPort int) string {
		if !hostIP.IsValid() {
			return "-j REDIRECT --to-ports " + strconv.Itoa(proxyPort)
		}
		return "-j DNAT --to-destination " + netip.AddrPortFrom(hostIP, uint16(proxyPort)).String()
	}
	for _, r := range rules {
		redirect := "-j REDIRECT --to-ports " + strconv.Itoa(r.proxyPort)
		for _, vip := range r.vips {
			match := fmt.Sprintf("-d %s/32 -p %s -m comment --comment %q -m %s --dport %d", vip, r.proto, r.comment, r.proto, r.port)
			fmt.Fprintf(&b, "-A %s %s %s\n", ChainPortalsContainer, match, redirect)
			fmt.Fprintf(&b, "-A %s %s %s\n", ChainPortalsHost, match, hostTarget(r.proxyPort))
		}
		for _, lb := range r.lbIPs {
			sources := []string{""}
			if len(r.ranges) > 0 {
				sources = sources[:0]
				for _, src := range r.ranges {
					sources = append(sources, "-s "+src.String()+" ")
				}
			}
			for _, src := range sources {
				match := fmt.Sprintf("%s-d %s/32 -p %s -m comment --comment %q -m %s --dport %d", src, lb, r.proto, r.comment, r.proto, r.port)
				fmt.Fprintf(&b, "-A %s %s %s\n", ChainPortalsContainer, match, redirect)
				fmt.Fprintf(&b, "-A %s %s %s\n", ChainPortalsHost, match, hostTarget(r.proxyPort))
			}
		}
		if r.nodePort != 0 {
			match := fmt.Sprintf("-p %s -m comment --comment %q -m %s --dport %d", r.proto, r.comment, r.proto, r.nodePort)
			fmt.Fprintf(&b, "-A %s %s %s\n", ChainNodePortContainer, match, redirect)
			fmt.Fprintf(&b, "-A %s %s %s\n", ChainNodePortHost, match, hostTarget(r.proxyPort))
		}
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}
