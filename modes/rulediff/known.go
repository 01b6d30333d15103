package rulediff

import "regexp"

// Side is which proxy programmed a line.
type Side string

// The sides.
const (
	Svcsim    Side = "svcsim"
	KubeProxy Side = "kube-proxy"
)

// Mark says how a difference is settled.
type Mark string

// The marks.
const (
	// FixedByTest: svcsim's side was changed to match and a test fails on
	// the old behaviour (Known.Test names it). Lines so marked no longer
	// appear; they are listed so the report shows what was settled.
	FixedByTest Mark = "fixed-by-test"
	// Intentional: svcsim differs on purpose, for Known.Reason.
	Intentional Mark = "intentional"
	// Open: a difference not settled yet, with what is known of it.
	Open Mark = "open"
)

// Known is one known difference between svcsim's rules and kube-proxy's.
type Known struct {
	// Dump is the dump it concerns ("iptables-save", "nft"), as Key
	// names it; empty: every dump.
	Dump string
	// Side is the proxy whose rules hold the lines.
	Side Side
	// Match picks the normalised lines it explains.
	Match *regexp.Regexp
	// Mark and Reason settle it; Test names the test that pins a fix.
	Mark   Mark
	Reason string
	Test   string
}

// Line is one line only one side has, with the difference that explains
// it (none: Known is zero).
type Line struct {
	Side  Side
	Text  string
	Known Known
}

// Classify pairs every line only svcsim has (onlySvcsim) or only
// kube-proxy has (onlyKube) with the first entry of known for dump that
// matches it.
func Classify(dump string, onlySvcsim, onlyKube []string, known []Known) []Line {
	var out []Line
	for _, side := range []struct {
		s     Side
		lines []string
	}{{Svcsim, onlySvcsim}, {KubeProxy, onlyKube}} {
		for _, l := range side.lines {
			ln := Line{Side: side.s, Text: l}
			for _, k := range known {
				if (k.Dump == "" || k.Dump == dump) && k.Side == side.s && k.Match.MatchString(l) {
					ln.Known = k
					break
				}
			}
			out = append(out, ln)
		}
	}
	return out
}

func re(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// The dumps Differences speak of (Key of the Dump commands).
const (
	iptablesNFT    = "iptables-nft-save"
	iptablesLegacy = "iptables-legacy-save"
	nftTable       = "nft-list-table-ip-kube-proxy"
)

// Reasons shared by several entries.
const (
	localhostNodePorts = "NodePorts on 127.0.0.1, kube-proxy's iptables default (--iptables-localhost-nodeports): " +
		"route_localnet=1, the KUBE-FIREWALL localnet DROP, INPUT and OUTPUT jumping to it, and the nodeports rule " +
		"of KUBE-SERVICES without ! -d 127.0.0.0/8; svcsim's iptables datapath now does the same."
	nftLayout = "nftables layout of v1.36 and later: kube-proxy DNATs straight from the service chain " +
		"(numgen random mod N map), masquerades hairpin connections through the hairpin-connections set and " +
		"hooks its filter chains at -110 before DNAT and at 0 after it; svcsim writes the earlier layout " +
		"(a vmap to one chain per endpoint, mark-for-masquerade, filter chains at -110/-90). Same packets' fate " +
		"(the flow and traffic tests), different rules. Not settled yet (#13)."
	nftPrimary = "--nodeport-addresses=primary, nftables mode's default: NodePorts only on the node's own " +
		"address (set nodeport-ips); svcsim's nftables datapath fills the same set from the node's addresses " +
		"(it answered on every local address but loopback before)."
)

// Differences are the known differences between svcsim's rules and
// kube-proxy's v1.37 for the rule-diff scenario's objects (a NodePort
// Service over two pods), first match wins.
var Differences = []Known{
	// iptables, either backend.
	{Side: KubeProxy, Match: re(`KUBE-FIREWALL|^nat: -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports;`), Mark: FixedByTest,
		Reason: localhostNodePorts, Test: "modes/iptables TestKernelTraffic (a NodePort on 127.0.0.1), TestFlows; scenario nodeport on both planes"},
	{Side: KubeProxy, Match: re(`^nat: -A KUBE-NODEPORTS -d 127\.0\.0\.0/8 `), Mark: Intentional,
		Reason: "kube-proxy's rule for NodePorts on 127.0.0.1 alone exists to count them with nfacct " +
			"(localhost_nps_accepted_pkts, a kube-proxy metric); the rule after it serves them all the same, " +
			"and svcsim has no such metric, so it writes only that one"},
	{Side: KubeProxy, Match: re(`KUBE-PROXY-FIREWALL`), Mark: Intentional,
		Reason: "kube-proxy keeps an always-present load-balancer firewall chain; svcsim writes its " +
			"loadBalancerSourceRanges drop into KUBE-EXTERNAL-SERVICES only while a Service has source ranges " +
			"(the loadbalancer scenarios check the traffic), so a node without them keeps the fewest rules"},
	{Side: KubeProxy, Match: re(`^filter: (:KUBE-NODEPORTS|-A INPUT .*"kubernetes health check service ports")`), Mark: Intentional,
		Reason: "kube-proxy ACCEPTs health check node ports in filter for nodes whose INPUT policy drops; " +
			"svcsim's nodes accept input and serve them (external-traffic-policy checks the answers)"},
	{Side: KubeProxy, Match: re(`KUBE-PROXY-CANARY`), Mark: FixedByTest,
		Reason: "the canary chain in mangle, nat and filter, so that a flushed ruleset repairs itself",
		Test:   "modes/iptables TestCanaryRepairsFlush, modes/all TestFlushTakesCanary, scenario flush-repair"},

	// nftables.
	{Dump: nftTable, Side: KubeProxy, Match: re(`nodeport-ips`), Mark: FixedByTest, Reason: nftPrimary,
		Test: "modes/nftables TestKernelTraffic (NodePort on another local address is refused), TestPacketFlow (cni0 address)"},
	{Dump: nftTable, Side: KubeProxy, Match: re(`hairpin-connections|dnat ip to numgen|chain filter-|chain masquerading: meta mark & 0x00004000 != |chain external-.*comment "masquerade"`), Mark: Open, Reason: nftLayout},
	{Dump: nftTable, Side: Svcsim, Match: re(`^chain endpoint-|mark-for-masquerade|numgen random mod \d+ vmap|^chain filter-|^chain masquerading: `), Mark: Open, Reason: nftLayout},
	{Dump: nftTable, Side: KubeProxy, Match: re(`^chain reject-chain: comment `), Mark: FixedByTest,
		Reason: "kube-proxy's comment on the reject helper chain; svcsim's table carries it too",
		Test:   "modes/nftables TestGolden (every golden table), scenario rule-diff"},
}
