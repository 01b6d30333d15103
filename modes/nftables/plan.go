package nftables

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/svcsim/svcsim/sim/state"
)

// Object names inside the table. Everything lives in one table, so the names
// need no "kube-" prefix; they are the ones kube-proxy uses, so that a dump
// reads like a real node's.
const (
	tableName = "kube-proxy"
	// TableName is the table the mode programs, in family ip.
	TableName = tableName

	filterInputChain          = "filter-input"
	filterForwardChain        = "filter-forward"
	filterOutputChain         = "filter-output"
	filterOutputPostDNATChain = "filter-output-post-dnat"
	filterPreroutingChain     = "filter-prerouting"
	natPreroutingChain        = "nat-prerouting"
	natOutputChain            = "nat-output"
	natPostroutingChain       = "nat-postrouting"

	servicesChain               = "services"
	serviceEndpointsCheckChain  = "service-endpoints-check"
	nodePortEndpointsCheckChain = "nodeport-endpoints-check"
	clusterIPsCheckChain        = "cluster-ips-check"
	firewallCheckChain          = "firewall-check"
	rejectChain                 = "reject-chain"
	markMasqChain               = "mark-for-masquerade"
	masqueradingChain           = "masquerading"

	serviceIPsMap       = "service-ips"
	serviceNodePortsMap = "service-nodeports"
	// nodePortIPsSet holds the addresses NodePorts answer on: the node's
	// own (state.NodeIPs), as kube-proxy's nftables mode with its default
	// --nodeport-addresses=primary.
	nodePortIPsSet         = "nodeport-ips"
	noEndpointServicesMap  = "no-endpoint-services"
	noEndpointNodePortsMap = "no-endpoint-nodeports"
	clusterIPsSet          = "cluster-ips"
	firewallIPsMap         = "firewall-ips"

	// masqMark is the packet mark bit (kube-proxy's default --masquerade-bit
	// 14) that tells the masquerading chain to SNAT a packet.
	masqMark = "0x4000"

	servicePrefix  = "service-"
	localPrefix    = "local-"
	externalPrefix = "external-"
	firewallPrefix = "firewall-"
	endpointPrefix = "endpoint-"
	affinityPrefix = "affinity-"
)

// maxPrefixLen bounds the prefixes above ("service-", "endpoint-", ...), so
// that a hashed base name plus any prefix fits in an nftables name.
const maxPrefixLen = 16

// hashedBase returns name prefixed by 8 base32 characters of its SHA-256, cut
// to fit an nftables object name. The hash keeps a cut name unique and makes
// chains of one service with nearly equal names easy to tell apart.
func hashedBase(name string) string {
	sum := sha256.Sum256([]byte(name))
	out := base32.StdEncoding.EncodeToString(sum[:])[:8] + "-" + name
	if limit := knftables.NameLengthMax - maxPrefixLen; len(out) > limit {
		out = out[:limit-3] + "..."
	}
	return out
}

// proto is the lower-case protocol as nft writes it ("tcp", "udp").
func proto(p state.Protocol) string { return strings.ToLower(string(p)) }

// serviceBase is "HASH-ns/name/proto/portName", the common part of the
// service and external chain names of a service port. Namespace, name and
// port name are DNS labels, so "/" cannot occur inside them.
func serviceBase(sp *state.ServicePort) string {
	return hashedBase(fmt.Sprintf("%s/%s/%s/%s", sp.Namespace, sp.Name, proto(sp.Protocol), sp.PortName))
}

// endpointBase is "HASH-ns/name/proto/portName__ip/port", the common part of
// an endpoint's chain and affinity set names.
func endpointBase(sp *state.ServicePort, ep state.Endpoint) string {
	return hashedBase(fmt.Sprintf("%s/%s/%s/%s__%s/%d", sp.Namespace, sp.Name, proto(sp.Protocol), sp.PortName, ep.IP, ep.Port))
}

// isServiceChain tells chains built per service port (all contain "/") from
// the fixed ones.
func isServiceChain(name string) bool { return strings.Contains(name, "/") }

// isAffinitySet tells per-endpoint affinity sets from the fixed sets.
func isAffinitySet(name string) bool { return strings.HasPrefix(name, affinityPrefix) }

// globals are the node-wide inputs of the rules. When they change every
// service chain may change, so the next sync is a full one.
type globals struct {
	clusterCIDR netip.Prefix
	serviceCIDR netip.Prefix
	// node is the node's name: Local traffic policies pick its endpoints.
	node string
	// nodeIPs are the node's addresses that accept NodePorts, comma-joined
	// (a string keeps globals comparable).
	nodeIPs string
}

func globalsOf(st *state.NodeState) globals {
	ips := make([]string, 0, len(st.NodeIPs))
	for _, ip := range st.NodeIPs {
		if ip.Is4() && !ip.IsLoopback() {
			ips = append(ips, ip.String())
		}
	}
	return globals{clusterCIDR: st.ClusterCIDR, serviceCIDR: st.ServiceCIDR, node: st.Node, nodeIPs: strings.Join(ips, ",")}
}

// chainPlan is one regular chain with the rules it must hold, in order.
type chainPlan struct {
	name  string
	rules []string
}

// setPlan is one per-endpoint ClientIP affinity set.
type setPlan struct {
	name    string
	timeout int32
}

// elemPlan is one element of one of the fixed maps or sets.
type elemPlan struct {
	set, mapName string
	key          []string
	value        string // map verdict, "" for set elements
	comment      string
}

// id identifies the element inside its container.
func (e *elemPlan) id() elemID {
	c := "map " + e.mapName
	if e.set != "" {
		c = "set " + e.set
	}
	return elemID{container: c, key: strings.Join(e.key, " . ")}
}

type elemID struct{ container, key string }

// elemState is what distinguishes two elements with the same id.
type elemState struct{ value, comment string }

func (e *elemPlan) state() elemState { return elemState{value: e.value, comment: e.comment} }

func (e *elemPlan) object(withValue bool) *knftables.Element {
	el := &knftables.Element{Set: e.set, Map: e.mapName, Key: e.key}
	if withValue {
		if e.value != "" {
			el.Value = []string{e.value}
		}
		if e.comment != "" {
			el.Comment = knftables.PtrTo(e.comment)
		}
	}
	return el
}

// servicePlan is everything one service port puts into the table: its own
// chains and affinity sets, and its elements in the shared maps and sets.
type servicePlan struct {
	sp     state.ServicePort
	chains []chainPlan
	sets   []setPlan
	elems  []elemPlan
}

func (p *servicePlan) hasChain(name string) bool {
	for i := range p.chains {
		if p.chains[i].name == name {
			return true
		}
	}
	return false
}

func (p *servicePlan) set(name string) *setPlan {
	for i := range p.sets {
		if p.sets[i].name == name {
			return &p.sets[i]
		}
	}
	return nil
}

// buildPlan computes what one service port needs, following kube-proxy's
// nftables mode:
//
//   - ClusterIP . proto . port in service-ips -> goto the internal chain:
//     service-X (every endpoint) or, under internalTrafficPolicy Local,
//     local-X (this node's); it marks traffic from outside the cluster CIDR
//     for masquerade, honours ClientIP affinity, then picks an endpoint with
//     numgen random;
//   - NodePort (proto . nodePort in service-nodeports), external IPs and
//     load-balancer IPs go to external-X: under externalTrafficPolicy
//     Cluster it marks everything for masquerade and goes to service-X;
//     under Local it sends pods' and the node's own traffic to service-X
//     (masquerading the node's) and the rest, unmasqueraded, to local-X;
//   - load-balancer IPs with source ranges are also in firewall-ips, whose
//     firewall-X chain (before DNAT) drops other sources;
//   - endpoint-X marks hairpin traffic (the endpoint talking to itself through
//     the service), records affinity, and DNATs;
//   - without endpoints the same keys go to no-endpoint-services /
//     no-endpoint-nodeports, whose verdict is "goto reject-chain"; with
//     endpoints elsewhere but none for a Local policy here, "drop".
func buildPlan(src *state.ServicePort, g globals) *servicePlan {
	sp := *src
	sp.Endpoints = append([]state.Endpoint(nil), src.Endpoints...)
	sp.NotReadyEndpoints = append([]state.Endpoint(nil), src.NotReadyEndpoints...)
	sp.ExternalIPs = append([]netip.Addr(nil), src.ExternalIPs...)
	sp.LoadBalancerIPs = append([]netip.Addr(nil), src.LoadBalancerIPs...)
	sp.LoadBalancerSourceRanges = append([]netip.Prefix(nil), src.LoadBalancerSourceRanges...)
	plan := &servicePlan{sp: sp}
	// An IPv4 proxier ignores IPv6 addresses, as kube-proxy's does.
	var externalIPs, lbIPs []netip.Addr
	for _, ip := range sp.ExternalIPs {
		if ip.Is4() {
			externalIPs = append(externalIPs, ip)
		}
	}
	for _, ip := range sp.LoadBalancerIPs {
		if ip.Is4() {
			lbIPs = append(lbIPs, ip)
		}
	}

	clusterEps := uniqueEndpoints(sp.ClusterEndpoints())
	internalLocal, externalLocal := sp.InternalLocal(), sp.ExternalLocal()
	var localEps []state.Endpoint
	if internalLocal || externalLocal {
		localEps = uniqueEndpoints(sp.LocalEndpoints(g.node))
	}

	pr := proto(sp.Protocol)
	port := strconv.Itoa(int(sp.Port))
	base := serviceBase(&sp)
	svcChain := servicePrefix + base
	localChain := localPrefix + base
	extChain := externalPrefix + base
	fwChain := firewallPrefix + base
	hasEndpoints := len(clusterEps) > 0
	external := sp.NodePort != 0 || len(externalIPs) > 0 || len(lbIPs) > 0
	hasInternal := hasEndpoints && (!internalLocal || len(localEps) > 0)
	hasExternal := hasEndpoints && (!externalLocal || len(localEps) > 0)
	useSVC := hasEndpoints && (!internalLocal || external)
	useLocal := len(localEps) > 0
	useFW := hasEndpoints && len(lbIPs) > 0 && len(sp.LoadBalancerSourceRanges) > 0
	name := sp.ID()

	plan.elems = append(plan.elems, elemPlan{set: clusterIPsSet, key: []string{sp.ClusterIP.String()}})
	dest := func(ip netip.Addr) []string { return []string{ip.String(), pr, port} }
	nodePortKey := []string{pr, strconv.Itoa(int(sp.NodePort))}
	if !hasEndpoints {
		reject := "goto " + rejectChain
		plan.elems = append(plan.elems, elemPlan{mapName: noEndpointServicesMap, key: dest(sp.ClusterIP), value: reject, comment: nftComment(name)})
		for _, ip := range append(append([]netip.Addr(nil), externalIPs...), lbIPs...) {
			plan.elems = append(plan.elems, elemPlan{mapName: noEndpointServicesMap, key: dest(ip), value: reject, comment: nftComment(name)})
		}
		if sp.NodePort != 0 {
			plan.elems = append(plan.elems, elemPlan{mapName: noEndpointNodePortsMap,
				key: nodePortKey, value: reject, comment: nftComment(name)})
		}
		return plan
	}

	internalChain := svcChain
	if internalLocal {
		internalChain = localChain
	}
	if hasInternal {
		plan.elems = append(plan.elems, elemPlan{mapName: serviceIPsMap, key: dest(sp.ClusterIP), value: "goto " + internalChain})
	} else {
		plan.elems = append(plan.elems, elemPlan{mapName: noEndpointServicesMap, key: dest(sp.ClusterIP), value: "drop", comment: nftComment(name)})
	}
	for _, ip := range append(append([]netip.Addr(nil), externalIPs...), lbIPs...) {
		plan.elems = append(plan.elems, elemPlan{mapName: serviceIPsMap, key: dest(ip), value: "goto " + extChain})
		if !hasExternal {
			plan.elems = append(plan.elems, elemPlan{mapName: noEndpointServicesMap, key: dest(ip), value: "drop", comment: nftComment(name)})
		}
	}
	if useFW {
		for _, ip := range lbIPs {
			plan.elems = append(plan.elems, elemPlan{mapName: firewallIPsMap, key: dest(ip), value: "goto " + fwChain, comment: nftComment(name)})
		}
	}
	if sp.NodePort != 0 {
		plan.elems = append(plan.elems, elemPlan{mapName: serviceNodePortsMap,
			key: nodePortKey, value: "goto " + extChain})
		if !hasExternal {
			plan.elems = append(plan.elems, elemPlan{mapName: noEndpointNodePortsMap,
				key: nodePortKey, value: "drop", comment: nftComment(name)})
		}
	}

	// The endpoint chains, one per endpoint either chooser may pick.
	var sepEps []state.Endpoint
	if useSVC {
		sepEps = append(sepEps, clusterEps...)
	}
	sepEps = uniqueEndpoints(append(sepEps, localEps...))
	epChain := map[netip.AddrPort]string{}
	epSet := map[netip.AddrPort]string{}
	for _, ep := range sepEps {
		ap := netip.AddrPortFrom(ep.IP, uint16(ep.Port))
		epChain[ap] = endpointPrefix + endpointBase(&sp, ep)
		if sp.SessionAffinity {
			epSet[ap] = affinityPrefix + endpointBase(&sp, ep)
		}
	}
	masq := func() string {
		return knftables.Concat("ip daddr", sp.ClusterIP.String(), pr, "dport", port,
			"ip saddr !=", g.clusterCIDR.Masked().String(), "jump", markMasqChain)
	}
	chooser := func(chainName string, eps []state.Endpoint, masqClusterIP bool) chainPlan {
		c := chainPlan{name: chainName}
		if masqClusterIP && g.clusterCIDR.IsValid() {
			c.rules = append(c.rules, masq())
		}
		if sp.SessionAffinity {
			for _, ep := range eps {
				ap := netip.AddrPortFrom(ep.IP, uint16(ep.Port))
				c.rules = append(c.rules, knftables.Concat("ip saddr", "@", epSet[ap], "goto", epChain[ap]))
			}
		}
		var vmap []string
		for i, ep := range eps {
			if i > 0 {
				vmap = append(vmap, ",")
			}
			vmap = append(vmap, strconv.Itoa(i), ":", "goto", epChain[netip.AddrPortFrom(ep.IP, uint16(ep.Port))])
		}
		c.rules = append(c.rules, knftables.Concat("numgen random mod", len(eps), "vmap {", vmap, "}"))
		return c
	}

	if external {
		ext := chainPlan{name: extChain}
		if !externalLocal {
			// externalTrafficPolicy Cluster: the traffic may leave the node
			// towards a remote endpoint, so it is always masqueraded.
			ext.rules = []string{"jump " + markMasqChain, "goto " + svcChain}
		} else {
			if g.clusterCIDR.IsValid() {
				ext.rules = append(ext.rules, knftables.Concat("ip saddr", g.clusterCIDR.Masked().String(), "goto", svcChain))
			}
			ext.rules = append(ext.rules, "fib saddr type local jump "+markMasqChain, "fib saddr type local goto "+svcChain)
			if useLocal {
				ext.rules = append(ext.rules, "goto "+localChain)
			}
		}
		plan.chains = append(plan.chains, ext)
	}
	if useFW {
		var ranges []string
		for i, r := range sp.LoadBalancerSourceRanges {
			if i > 0 {
				ranges = append(ranges, ",")
			}
			ranges = append(ranges, r.String())
		}
		plan.chains = append(plan.chains, chainPlan{name: fwChain, rules: []string{
			knftables.Concat("ip saddr != {", ranges, "} drop"),
		}})
	}
	if useSVC {
		plan.chains = append(plan.chains, chooser(svcChain, clusterEps, !internalLocal))
	}
	if useLocal {
		plan.chains = append(plan.chains, chooser(localChain, localEps, internalLocal))
	}
	for _, ep := range sepEps {
		ap := netip.AddrPortFrom(ep.IP, uint16(ep.Port))
		c := chainPlan{name: epChain[ap]}
		c.rules = append(c.rules, knftables.Concat("ip saddr", ep.IP.String(), "jump", markMasqChain))
		if sp.SessionAffinity {
			plan.sets = append(plan.sets, setPlan{name: epSet[ap], timeout: sp.Timeout()})
			c.rules = append(c.rules, knftables.Concat("update", "@", epSet[ap], "{ ip saddr }"))
		}
		c.rules = append(c.rules, knftables.Concat("meta l4proto", pr, "dnat to", ep.String()))
		plan.chains = append(plan.chains, c)
	}
	return plan
}

// uniqueEndpoints drops repeated address:port pairs (each is programmed
// once, even if the state lists it twice).
func uniqueEndpoints(in []state.Endpoint) []state.Endpoint {
	var out []state.Endpoint
	seen := make(map[netip.AddrPort]bool, len(in))
	for _, ep := range in {
		if ap := netip.AddrPortFrom(ep.IP, uint16(ep.Port)); !seen[ap] {
			seen[ap] = true
			out = append(out, ep)
		}
	}
	return out
}

// maxComment is nft's limit on a comment ("comment too long, 128 characters
// maximum allowed"); a Service's "namespace/name:port" reaches 191.
const maxComment = 128

// nftComment returns s cut to nft's comment limit (s is a DNS-label ID,
// ASCII, so a byte cut splits no character).
func nftComment(s string) string {
	if len(s) > maxComment {
		return s[:maxComment]
	}
	return s
}
