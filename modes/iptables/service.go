package iptables

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/svcsim/svcsim/sim/state"
)

// writeService writes one service port's rules in the top-level chains and,
// when writeChains is set, its own SVC/SVL/EXT/FW/SEP chains. It marks the
// chains the port uses as active either way.
//
// Endpoints follow the traffic policies (state.ServicePort's
// InternalEndpoints and ExternalEndpoints): KUBE-SVC-* picks among the
// cluster's endpoints, KUBE-SVL-* among this node's. A Service with
// endpoints somewhere but none for a Local policy here has its traffic
// dropped (filter DROP, "has no local endpoints"); one with none at all
// is rejected. Under externalTrafficPolicy Local, KUBE-EXT-* sends pods'
// and the node's own traffic to the cluster chain (kube-proxy's
// short-circuit) and everything else to the local chain unmasqueraded, so
// backends see the outside client's address. Load-balancer IPs with
// loadBalancerSourceRanges go through KUBE-FW-*, which passes the allowed
// sources to KUBE-EXT-* and marks the rest for KUBE-MARK-DROP.
func (p *Proxier) writeService(s *state.ServicePort, node, clusterCIDR string, writeChains, large bool, active map[string]bool) {
	proto := strings.ToLower(string(s.Protocol))
	id := s.ID()
	port := strconv.Itoa(int(s.Port))
	cip := s.ClusterIP.String()
	svcChain := ServiceChain(s)
	svlChain := LocalChain(s)
	extChain := ExternalChain(s)
	fwChain := FirewallChain(s)

	clusterEps := uniqueEndpoints(s.ClusterEndpoints())
	internalLocal, externalLocal := s.InternalLocal(), s.ExternalLocal()
	var localEps []state.Endpoint
	if internalLocal || externalLocal {
		localEps = uniqueEndpoints(s.LocalEndpoints(node))
	}
	hasEndpoints := len(clusterEps) > 0
	external := s.External()
	hasInternal := hasEndpoints && (!internalLocal || len(localEps) > 0)
	hasExternal := hasEndpoints && (!externalLocal || len(localEps) > 0)
	useSVC := hasEndpoints && (!internalLocal || external)
	useSVL := len(localEps) > 0
	useEXT := hasEndpoints && external
	useFW := useEXT && len(s.LoadBalancerIPs) > 0 && len(s.LoadBalancerSourceRanges) > 0
	internalChain := svcChain
	if internalLocal {
		internalChain = svlChain
	}
	noEndpoints := `"` + id + ` has no endpoints"`
	noLocal := `"` + id + ` has no local endpoints"`

	var sepEps []state.Endpoint
	if useSVC {
		sepEps = append(sepEps, clusterEps...)
	}
	if useSVL {
		sepEps = uniqueEndpoints(append(sepEps, localEps...))
	}
	for _, c := range [...]struct {
		name string
		used bool
	}{{svcChain, useSVC}, {svlChain, useSVL}, {extChain, useEXT}, {fwChain, useFW}} {
		if c.used {
			active[c.name] = true
		}
	}
	for _, ep := range sepEps {
		active[EndpointChain(s, ep)] = true
	}

	// Cluster IP.
	switch {
	case hasInternal:
		p.natRules.Write("-A", kubeServices, "-m", "comment", "--comment", `"`+id+` cluster IP"`,
			"-m", proto, "-p", proto, "-d", cip, "--dport", port, "-j", internalChain)
	case hasEndpoints:
		p.filterRules.Write("-A", kubeServices, "-m", "comment", "--comment", noLocal,
			"-m", proto, "-p", proto, "-d", cip, "--dport", port, "-j", "DROP")
	default:
		p.filterRules.Write("-A", kubeServices, "-m", "comment", "--comment", noEndpoints,
			"-m", proto, "-p", proto, "-d", cip, "--dport", port, "-j", "REJECT")
	}
	// What external traffic that cannot be served gets.
	extFilter, extFilterComment := "REJECT", noEndpoints
	if hasEndpoints {
		extFilter, extFilterComment = "DROP", noLocal
	}
	for _, eip := range s.ExternalIPs {
		if hasEndpoints {
			p.natRules.Write("-A", kubeServices, "-m", "comment", "--comment", `"`+id+` external IP"`,
				"-m", proto, "-p", proto, "-d", eip.String(), "--dport", port, "-j", extChain)
		}
		if !hasExternal {
			p.filterRules.Write("-A", kubeExternalServices, "-m", "comment", "--comment", extFilterComment,
				"-m", proto, "-p", proto, "-d", eip.String(), "--dport", port, "-j", extFilter)
		}
	}
	for _, lb := range s.LoadBalancerIPs {
		if hasEndpoints {
			to := extChain
			if useFW {
				to = fwChain
			}
			p.natRules.Write("-A", kubeServices, "-m", "comment", "--comment", `"`+id+` loadbalancer IP"`,
				"-m", proto, "-p", proto, "-d", lb.String(), "--dport", port, "-j", to)
		}
		if !hasExternal {
			p.filterRules.Write("-A", kubeExternalServices, "-m", "comment", "--comment", extFilterComment,
				"-m", proto, "-p", proto, "-d", lb.String(), "--dport", port, "-j", extFilter)
		}
	}
	if s.NodePort != 0 {
		np := strconv.Itoa(int(s.NodePort))
		if hasEndpoints {
			p.natRules.Write("-A", kubeNodePorts, "-m", "comment", "--comment", id,
				"-m", proto, "-p", proto, "--dport", np, "-j", extChain)
		}
		if !hasExternal {
			p.filterRules.Write("-A", kubeExternalServices, "-m", "comment", "--comment", extFilterComment,
				"-m", "addrtype", "--dst-type", "LOCAL", "-m", proto, "-p", proto, "--dport", np, "-j", extFilter)
		}
	}
	if !writeChains || !hasEndpoints {
		return
	}

	// Cluster IP traffic from outside the pod network is masqueraded, so
	// replies come back through this node (in the chain internal traffic
	// takes).
	masqClusterIP := func(chain string) {
		if clusterCIDR != "" {
			p.natRules.Write("-A", chain, "-m", "comment", "--comment", `"`+id+` cluster IP"`,
				"-m", proto, "-p", proto, "-d", cip, "--dport", port, "!", "-s", clusterCIDR, "-j", kubeMarkMasq)
		}
	}
	// (Order as kube-proxy writes them: the cluster chain's masquerade rule
	// first, then the external chain, then the endpoint choice.)
	if useSVC {
		p.natChains.WriteChain(svcChain)
		if !internalLocal {
			masqClusterIP(svcChain)
		}
	}
	if useEXT {
		p.natChains.WriteChain(extChain)
		if !externalLocal {
			// externalTrafficPolicy Cluster: everything is masqueraded, as it
			// may leave the node towards a remote endpoint.
			p.natRules.Write("-A", extChain, "-m", "comment", "--comment", `"masquerade traffic for `+id+` external destinations"`,
				"-j", kubeMarkMasq)
			p.natRules.Write("-A", extChain, "-j", svcChain)
		} else {
			if clusterCIDR != "" {
				p.natRules.Write("-A", extChain, "-m", "comment", "--comment", `"pod traffic for `+id+` external destinations"`,
					"-s", clusterCIDR, "-j", svcChain)
			}
			p.natRules.Write("-A", extChain, "-m", "comment", "--comment", `"masquerade LOCAL traffic for `+id+` external destinations"`,
				"-m", "addrtype", "--src-type", "LOCAL", "-j", kubeMarkMasq)
			p.natRules.Write("-A", extChain, "-m", "comment", "--comment", `"route LOCAL traffic for `+id+` external destinations"`,
				"-m", "addrtype", "--src-type", "LOCAL", "-j", svcChain)
			if useSVL {
				p.natRules.Write("-A", extChain, "-j", svlChain)
			}
		}
	}
	if useFW {
		p.natChains.WriteChain(fwChain)
		for _, r := range s.LoadBalancerSourceRanges {
			p.natRules.Write("-A", fwChain, "-m", "comment", "--comment", `"`+id+` loadbalancer IP"`,
				"-s", r.String(), "-j", extChain)
		}
		p.natRules.Write("-A", fwChain, "-m", "comment", "--comment", `"`+id+` loadbalancer IP"`, "-j", kubeMarkDrop)
	}
	if useSVC {
		p.writeChooser(s, svcChain, clusterEps, large)
	}
	if useSVL {
		p.natChains.WriteChain(svlChain)
		if internalLocal {
			masqClusterIP(svlChain)
		}
		p.writeChooser(s, svlChain, localEps, large)
	}
	for _, ep := range sepEps {
		sep := EndpointChain(s, ep)
		p.natChains.WriteChain(sep)
		// Hairpin: a pod reaching itself through the service.
		p.natRules.Write("-A", sep, p.comment(large, id), "-s", ep.IP.String(), "-j", kubeMarkMasq)
		var affinity []string
		if s.SessionAffinity {
			affinity = []string{"-m", "recent", "--name", sep, "--set"}
		}
		p.natRules.Write("-A", sep, p.comment(large, id), affinity,
			"-m", proto, "-p", proto, "-j", "DNAT", "--to-destination", ep.String())
	}
}

// comment is a rule's comment match, left out in large cluster mode.
func (p *Proxier) comment(large bool, text string) []string {
	if large {
		return nil
	}
	return []string{"-m", "comment", "--comment", text}
}

// writeChooser fills a KUBE-SVC or KUBE-SVL chain: affinity checks, then
// one statistic rule per endpoint.
func (p *Proxier) writeChooser(s *state.ServicePort, chain string, eps []state.Endpoint, large bool) {
	id := s.ID()
	if s.SessionAffinity {
		timeout := strconv.Itoa(int(s.Timeout()))
		for _, ep := range eps {
			sep := EndpointChain(s, ep)
			p.natRules.Write("-A", chain, p.comment(large, `"`+id+` -> `+ep.String()+`"`),
				"-m", "recent", "--name", sep, "--rcheck", "--seconds", timeout, "--reap", "-j", sep)
		}
	}
	n := len(eps)
	for i, ep := range eps {
		sep := EndpointChain(s, ep)
		if i < n-1 {
			p.natRules.Write("-A", chain, p.comment(large, `"`+id+` -> `+ep.String()+`"`),
				"-m", "statistic", "--mode", "random", "--probability", p.probability(n-i), "-j", sep)
		} else {
			p.natRules.Write("-A", chain, p.comment(large, `"`+id+` -> `+ep.String()+`"`), "-j", sep)
		}
	}
}

// probability is kube-proxy's --probability for the i-th of n remaining
// endpoints: 1/n printed with ten decimals.
func (p *Proxier) probability(n int) string {
	for len(p.probs) <= n {
		k := len(p.probs)
		if k == 0 {
			p.probs = append(p.probs, "")
			continue
		}
		p.probs = append(p.probs, fmt.Sprintf("%0.10f", 1.0/float64(k)))
	}
	return p.probs[n]
}

// uniqueEndpoints drops repeated ip:port pairs (each gets one SEP chain).
func uniqueEndpoints(eps []state.Endpoint) []state.Endpoint {
	for i := 1; i < len(eps); i++ {
		for j := 0; j < i; j++ {
			if eps[i].IP == eps[j].IP && eps[i].Port == eps[j].Port {
				seen := map[netip.AddrPort]bool{}
				var out []state.Endpoint
				for _, e := range eps {
					ap := netip.AddrPortFrom(e.IP, uint16(e.Port))
					if !seen[ap] {
						seen[ap] = true
						out = append(out, e)
					}
				}
				return out
			}
		}
	}
	return eps
}
