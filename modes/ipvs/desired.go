package ipvs

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/svcsim/svcsim/modes/ipvs/ipset"
	"github.com/svcsim/svcsim/modes/ipvs/ipvsutil"
	"github.com/svcsim/svcsim/sim/state"
)

// The ipsets of IPVS mode (kube-proxy's names and types).
const (
	setClusterIP   = "KUBE-CLUSTER-IP"    // hash:ip,port  ClusterIP,proto:port
	setExternalIP  = "KUBE-EXTERNAL-IP"   // hash:ip,port  externalIP,proto:port
	setLoopBack    = "KUBE-LOOP-BACK"     // hash:ip,port,ip  local endpoint,proto:port,endpoint
	setNodePortTCP = "KUBE-NODE-PORT-TCP" // bitmap:port  TCP NodePorts
	setNodePortUDP = "KUBE-NODE-PORT-UDP" // bitmap:port  UDP NodePorts
	setIPVSIPs     = "KUBE-IPVS-IPS"      // hash:ip  every address on kube-ipvs0

	setExternalIPLocal   = "KUBE-EXTERNAL-IP-LOCAL"         // hash:ip,port  external IPs with externalTrafficPolicy Local
	setNodePortLocalTCP  = "KUBE-NODE-PORT-LOCAL-TCP"       // bitmap:port  TCP NodePorts with externalTrafficPolicy Local
	setNodePortLocalUDP  = "KUBE-NODE-PORT-LOCAL-UDP"       // bitmap:port  UDP NodePorts with externalTrafficPolicy Local
	setLoadBalancer      = "KUBE-LOAD-BALANCER"             // hash:ip,port  load-balancer IP,proto:port
	setLoadBalancerLocal = "KUBE-LOAD-BALANCER-LOCAL"       // hash:ip,port  ... with externalTrafficPolicy Local
	setLoadBalancerFW    = "KUBE-LOAD-BALANCER-FW"          // hash:ip,port  ... with loadBalancerSourceRanges
	setLoadBalancerCIDR  = "KUBE-LOAD-BALANCER-SOURCE-CIDR" // hash:ip,port,net  ... and each allowed range
)

// ourSets in creation order.
var ourSets = []ipset.Set{
	{Name: setClusterIP, Type: ipset.HashIPPort},
	{Name: setExternalIP, Type: ipset.HashIPPort},
	{Name: setLoopBack, Type: ipset.HashIPPortIP},
	{Name: setNodePortTCP, Type: ipset.BitmapPort},
	{Name: setNodePortUDP, Type: ipset.BitmapPort},
	{Name: setIPVSIPs, Type: ipset.HashIP},
	{Name: setExternalIPLocal, Type: ipset.HashIPPort},
	{Name: setNodePortLocalTCP, Type: ipset.BitmapPort},
	{Name: setNodePortLocalUDP, Type: ipset.BitmapPort},
	{Name: setLoadBalancer, Type: ipset.HashIPPort},
	{Name: setLoadBalancerLocal, Type: ipset.HashIPPort},
	{Name: setLoadBalancerFW, Type: ipset.HashIPPort},
	{Name: setLoadBalancerCIDR, Type: ipset.HashIPPortNet},
}

// desiredVS is one virtual server the state asks for, with its endpoints.
type desiredVS struct {
	vs  ipvsutil.VirtualServer
	eps []netip.AddrPort // sorted
	// fp fingerprints eps: a sync re-reads the kernel's real servers of a
	// virtual server only when it differs from the last applied one.
	fp string
}

// desired is everything one NodeState asks of the kernel.
type desired struct {
	vss   map[ipvsutil.Key]*desiredVS
	order []ipvsutil.Key      // sorted keys of vss
	vips  map[netip.Addr]bool // addresses for kube-ipvs0
	sets  map[string]map[string]bool
}

// buildDesired translates st: one virtual server per ClusterIP:port, per
// external IP:port and per node IP:NodePort, all with the same scheduler,
// persistence and real servers.
func buildDesired(st *state.NodeState, defaultScheduler string) *desired {
	d := &desired{
		vss:  map[ipvsutil.Key]*desiredVS{},
		vips: map[netip.Addr]bool{},
		sets: map[string]map[string]bool{},
	}
	for _, s := range ourSets {
		d.sets[s.Name] = map[string]bool{}
	}
	for i := range st.Services {
		sp := &st.Services[i]
		proto := ipvsutil.Protocol(sp.Protocol)
		sched := sp.Scheduler
		if sched == "" {
			sched = defaultScheduler
		}
		var flags ipvsutil.Flags
		var timeout uint32
		if sp.SessionAffinity {
			flags, timeout = ipvsutil.FlagPersistent, uint32(sp.Timeout())
		}
		// Each virtual server gets the endpoints of its traffic's policy:
		// the ClusterIP internal ones, every external address (external
		// IPs, node IP:NodePort, load-balancer IPs) external ones.
		internal := realServers(sp.InternalEndpoints(st.Node))
		externalEps := realServers(sp.ExternalEndpoints(st.Node))
		for _, e := range append(append([]state.Endpoint(nil), sp.ClusterEndpoints()...), sp.LocalEndpoints(st.Node)...) {
			if e.Node == st.Node && st.Node != "" {
				d.sets[setLoopBack][ipset.IPPortIP(e.IP, string(sp.Protocol), int(e.Port), e.IP)] = true
			}
		}
		add := func(addr netip.Addr, port int32, eps rsList) {
			vs := ipvsutil.VirtualServer{Address: addr, Protocol: proto, Port: uint16(port),
				Scheduler: sched, Flags: flags, Timeout: timeout}
			if _, dup := d.vss[vs.Key()]; dup {
				return // two Services claim one address:port; the first (by key) wins
			}
			d.vss[vs.Key()] = &desiredVS{vs: vs, eps: eps.eps, fp: eps.fp}
		}
		local := sp.ExternalLocal()
		add(sp.ClusterIP, sp.Port, internal)
		d.vips[sp.ClusterIP] = true
		d.sets[setClusterIP][ipset.IPPort(sp.ClusterIP, string(sp.Protocol), int(sp.Port))] = true
		for _, ip := range sp.ExternalIPs {
			if !ip.Is4() {
				continue
			}
			add(ip, sp.Port, externalEps)
			d.vips[ip] = true
			d.sets[setExternalIP][ipset.IPPort(ip, string(sp.Protocol), int(sp.Port))] = true
			if local {
				d.sets[setExternalIPLocal][ipset.IPPort(ip, string(sp.Protocol), int(sp.Port))] = true
			}
		}
		for _, ip := range sp.LoadBalancerIPs {
			if !ip.Is4() {
				continue
			}
			add(ip, sp.Port, externalEps)
			d.vips[ip] = true
			entry := ipset.IPPort(ip, string(sp.Protocol), int(sp.Port))
			d.sets[setLoadBalancer][entry] = true
			if local {
				d.sets[setLoadBalancerLocal][entry] = true
			}
			if len(sp.LoadBalancerSourceRanges) > 0 {
				d.sets[setLoadBalancerFW][entry] = true
				for _, r := range sp.LoadBalancerSourceRanges {
					d.sets[setLoadBalancerCIDR][ipset.IPPortNet(ip, string(sp.Protocol), int(sp.Port), r)] = true
				}
			}
		}
		if sp.NodePort > 0 {
			for _, ip := range st.NodeIPs {
				if ip.Is4() {
					add(ip, sp.NodePort, externalEps)
				}
			}
			set, localSet := setNodePortTCP, setNodePortLocalTCP
			if sp.Protocol == state.UDP {
				set, localSet = setNodePortUDP, setNodePortLocalUDP
			}
			d.sets[set][strconv.Itoa(int(sp.NodePort))] = true
			if local {
				d.sets[localSet][strconv.Itoa(int(sp.NodePort))] = true
			}
		}
	}
	for ip := range d.vips {
		d.sets[setIPVSIPs][ip.String()] = true
	}
	d.order = make([]ipvsutil.Key, 0, len(d.vss))
	for k := range d.vss {
		d.order = append(d.order, k)
	}
	sort.Slice(d.order, func(i, j int) bool { return keyLess(d.order[i], d.order[j]) })
	return d
}

// rsList is the real servers of a virtual server, sorted, with their
// fingerprint.
type rsList struct {
	eps []netip.AddrPort
	fp  string
}

func realServers(in []state.Endpoint) rsList {
	eps := make([]netip.AddrPort, 0, len(in))
	seen := map[netip.AddrPort]bool{}
	for _, e := range in {
		ap := netip.AddrPortFrom(e.IP, uint16(e.Port))
		if !seen[ap] {
			seen[ap] = true
			eps = append(eps, ap)
		}
	}
	sort.Slice(eps, func(a, b int) bool { return eps[a].Compare(eps[b]) < 0 })
	var fp strings.Builder
	for _, ap := range eps {
		fp.WriteString(ap.String())
		fp.WriteByte(' ')
	}
	return rsList{eps: eps, fp: fp.String()}
}

func keyLess(a, b ipvsutil.Key) bool {
	if c := a.Address.Compare(b.Address); c != 0 {
		return c < 0
	}
	if a.Protocol != b.Protocol {
		return a.Protocol < b.Protocol
	}
	return a.Port < b.Port
}
