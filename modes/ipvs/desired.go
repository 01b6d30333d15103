package ipvs

import (
	"net/netip"
	"slices"
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

// setEntry is one entry of one of our ipsets.
type setEntry struct{ set, entry string }

// contrib is what one service port asks of the kernel: its virtual servers
// (no key twice), the addresses it binds to kube-ipvs0 and its ipset entries
// (KUBE-IPVS-IPS follows from the addresses). The proxier keeps one per
// service port, so that a sync recomputes only the changed ones.
type contrib struct {
	key     string // sp.Key(): claimants of one virtual server are ordered by it
	sp      state.ServicePort
	seen    uint64 // the proxier's sync that last found sp in its state
	vss     []*desiredVS
	vips    []netip.Addr
	entries []setEntry
}

// contribOf translates one service port: one virtual server per
// ClusterIP:port, per external IP:port, per load-balancer IP:port and per
// node IP:NodePort, all with the same scheduler, persistence and real
// servers.
func contribOf(sp *state.ServicePort, node string, nodeIPs []netip.Addr, defaultScheduler string) *contrib {
	// A copy the caller cannot change under us: the next sync compares
	// with it.
	c := &contrib{key: sp.Key(), sp: *sp}
	c.sp.Endpoints = slices.Clone(sp.Endpoints)
	c.sp.NotReadyEndpoints = slices.Clone(sp.NotReadyEndpoints)
	c.sp.ExternalIPs = slices.Clone(sp.ExternalIPs)
	c.sp.LoadBalancerIPs = slices.Clone(sp.LoadBalancerIPs)
	c.sp.LoadBalancerSourceRanges = slices.Clone(sp.LoadBalancerSourceRanges)
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
	seenEntry := map[setEntry]bool{}
	entry := func(set, e string) {
		se := setEntry{set, e}
		if !seenEntry[se] {
			seenEntry[se] = true
			c.entries = append(c.entries, se)
		}
	}
	vip := func(ip netip.Addr) {
		if !slices.Contains(c.vips, ip) {
			c.vips = append(c.vips, ip)
		}
	}
	// Each virtual server gets the endpoints of its traffic's policy: the
	// ClusterIP internal ones, every external address (external IPs, node
	// IP:NodePort, load-balancer IPs) external ones.
	internal := realServers(sp.InternalEndpoints(node))
	externalEps := realServers(sp.ExternalEndpoints(node))
	for _, e := range append(append([]state.Endpoint(nil), sp.ClusterEndpoints()...), sp.LocalEndpoints(node)...) {
		if e.Node == node && node != "" {
			entry(setLoopBack, ipset.IPPortIP(e.IP, string(sp.Protocol), int(e.Port), e.IP))
		}
	}
	add := func(addr netip.Addr, port int32, eps rsList) {
		vs := ipvsutil.VirtualServer{Address: addr, Protocol: proto, Port: uint16(port),
			Scheduler: sched, Flags: flags, Timeout: timeout}
		for _, have := range c.vss {
			if have.vs.Key() == vs.Key() {
				return
			}
		}
		c.vss = append(c.vss, &desiredVS{vs: vs, eps: eps.eps, fp: eps.fp})
	}
	local := sp.ExternalLocal()
	add(sp.ClusterIP, sp.Port, internal)
	vip(sp.ClusterIP)
	entry(setClusterIP, ipset.IPPort(sp.ClusterIP, string(sp.Protocol), int(sp.Port)))
	for _, ip := range sp.ExternalIPs {
		if !ip.Is4() {
			continue
		}
		add(ip, sp.Port, externalEps)
		vip(ip)
		entry(setExternalIP, ipset.IPPort(ip, string(sp.Protocol), int(sp.Port)))
		if local {
			entry(setExternalIPLocal, ipset.IPPort(ip, string(sp.Protocol), int(sp.Port)))
		}
	}
	for _, ip := range sp.LoadBalancerIPs {
		if !ip.Is4() {
			continue
		}
		add(ip, sp.Port, externalEps)
		vip(ip)
		e := ipset.IPPort(ip, string(sp.Protocol), int(sp.Port))
		entry(setLoadBalancer, e)
		if local {
			entry(setLoadBalancerLocal, e)
		}
		if len(sp.LoadBalancerSourceRanges) > 0 {
			entry(setLoadBalancerFW, e)
			for _, r := range sp.LoadBalancerSourceRanges {
				entry(setLoadBalancerCIDR, ipset.IPPortNet(ip, string(sp.Protocol), int(sp.Port), r))
			}
		}
	}
	if sp.NodePort > 0 {
		for _, ip := range nodeIPs {
			if ip.Is4() {
				add(ip, sp.NodePort, externalEps)
			}
		}
		set, localSet := setNodePortTCP, setNodePortLocalTCP
		if sp.Protocol == state.UDP {
			set, localSet = setNodePortUDP, setNodePortLocalUDP
		}
		entry(set, strconv.Itoa(int(sp.NodePort)))
		if local {
			entry(localSet, strconv.Itoa(int(sp.NodePort)))
		}
	}
	return c
}

// touched collects what a change of contributions may have changed.
type touched struct {
	vss     map[ipvsutil.Key]bool
	vips    map[netip.Addr]bool
	entries map[setEntry]bool
}

func newTouched() *touched {
	return &touched{vss: map[ipvsutil.Key]bool{}, vips: map[netip.Addr]bool{}, entries: map[setEntry]bool{}}
}

// index is the contributions of every service port of the last state,
// with who claims each virtual server, address and ipset entry. Two
// service ports may claim one virtual server (an invalid cluster, or an
// external IP equal to another's ClusterIP): the first by key wins, as in a
// state's order.
type index struct {
	svcs    map[state.PortKey]*contrib
	vsOwner map[ipvsutil.Key][]*contrib // sorted by key
	vipRef  map[netip.Addr]int
	setRef  map[setEntry]int
}

func newIndex() *index {
	return &index{svcs: map[state.PortKey]*contrib{}, vsOwner: map[ipvsutil.Key][]*contrib{},
		vipRef: map[netip.Addr]int{}, setRef: map[setEntry]int{}}
}

func byKey(a *contrib, key string) int { return strings.Compare(a.key, key) }

// claim records c as its service port's contribution, marking what it
// touches (t may be nil).
func (x *index) claim(c *contrib, t *touched) {
	x.svcs[c.sp.PortKey()] = c
	for _, v := range c.vss {
		k := v.vs.Key()
		owners := x.vsOwner[k]
		i, _ := slices.BinarySearchFunc(owners, c.key, byKey)
		x.vsOwner[k] = slices.Insert(owners, i, c)
		if t != nil {
			t.vss[k] = true
		}
	}
	for _, ip := range c.vips {
		x.vipRef[ip]++
		if t != nil {
			t.vips[ip] = true
		}
	}
	for _, e := range c.entries {
		x.setRef[e]++
		if t != nil {
			t.entries[e] = true
		}
	}
}

// release forgets the contribution of the service port pk, marking what it
// touched.
func (x *index) release(pk state.PortKey, t *touched) {
	c := x.svcs[pk]
	if c == nil {
		return
	}
	delete(x.svcs, pk)
	for _, v := range c.vss {
		k := v.vs.Key()
		owners := x.vsOwner[k]
		if i, ok := slices.BinarySearchFunc(owners, c.key, byKey); ok {
			owners = slices.Delete(owners, i, i+1)
		}
		if len(owners) == 0 {
			delete(x.vsOwner, k)
		} else {
			x.vsOwner[k] = owners
		}
		t.vss[k] = true
	}
	for _, ip := range c.vips {
		if x.vipRef[ip]--; x.vipRef[ip] <= 0 {
			delete(x.vipRef, ip)
		}
		t.vips[ip] = true
	}
	for _, e := range c.entries {
		if x.setRef[e]--; x.setRef[e] <= 0 {
			delete(x.setRef, e)
		}
		t.entries[e] = true
	}
}

// want is the virtual server k as its winning claimant asks for it, or nil.
func (x *index) want(k ipvsutil.Key) *desiredVS {
	owners := x.vsOwner[k]
	if len(owners) == 0 {
		return nil
	}
	for _, v := range owners[0].vss {
		if v.vs.Key() == k {
			return v
		}
	}
	return nil
}

// desired aggregates every contribution.
func (x *index) desired() *desired {
	d := &desired{
		vss:  make(map[ipvsutil.Key]*desiredVS, len(x.vsOwner)),
		vips: make(map[netip.Addr]bool, len(x.vipRef)),
		sets: map[string]map[string]bool{},
	}
	for _, s := range ourSets {
		d.sets[s.Name] = map[string]bool{}
	}
	for k := range x.vsOwner {
		d.vss[k] = x.want(k)
	}
	for ip := range x.vipRef {
		d.vips[ip] = true
		d.sets[setIPVSIPs][ip.String()] = true
	}
	for e := range x.setRef {
		d.sets[e.set][e.entry] = true
	}
	d.order = make([]ipvsutil.Key, 0, len(d.vss))
	for k := range d.vss {
		d.order = append(d.order, k)
	}
	sort.Slice(d.order, func(i, j int) bool { return keyLess(d.order[i], d.order[j]) })
	return d
}

// indexOf indexes every service port of st.
func indexOf(st *state.NodeState, defaultScheduler string) *index {
	x := newIndex()
	for i := range st.Services {
		sp := &st.Services[i]
		x.claim(contribOf(sp, st.Node, st.NodeIPs, defaultScheduler), nil)
	}
	return x
}

// buildDesired translates st as a whole.
func buildDesired(st *state.NodeState, defaultScheduler string) *desired {
	return indexOf(st, defaultScheduler).desired()
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
