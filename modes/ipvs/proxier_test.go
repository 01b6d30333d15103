package ipvs

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/modes/iptrestore/ruleset"
	"github.com/svcsim/svcsim/modes/ipvs/ipvsutil"
	"github.com/svcsim/svcsim/sim/state"
)

// twoServices: web (NodePort, external IP, endpoints on both nodes) and dns
// (UDP, one local endpoint).
func twoServices() *state.NodeState {
	return makeState(
		makeSvc("web", "10.96.0.20", 80, withEps(ep("10.244.1.5", 8080, "node1"), ep("10.244.2.7", 8080, "node2")),
			func(s *state.ServicePort) {
				s.NodePort = 30080
				s.ExternalIPs = []netip.Addr{addr("198.51.100.1")}
			}),
		makeSvc("dns", "10.96.0.10", 53, withEps(ep("10.244.1.9", 5353, "node1")),
			func(s *state.ServicePort) { s.Protocol = state.UDP }),
	)
}

func TestSyncFromEmpty(t *testing.T) {
	p, f := newTestProxier(t)
	mustSync(t, p, twoServices())
	assert.Equal(t, f.ipvs.TotalOps(), p.LastSync().IPVSOps(), "LastSync counts what the kernel interface saw")

	assert.Equal(t, `UDP  10.96.0.10:53 rr
  -> 10.244.1.9:5353              Masq    1      0          0         
TCP  10.96.0.20:80 rr
  -> 10.244.1.5:8080              Masq    1      0          0         
  -> 10.244.2.7:8080              Masq    1      0          0         
TCP  198.18.0.11:30080 rr
  -> 10.244.1.5:8080              Masq    1      0          0         
  -> 10.244.2.7:8080              Masq    1      0          0         
TCP  198.51.100.1:80 rr
  -> 10.244.1.5:8080              Masq    1      0          0         
  -> 10.244.2.7:8080              Masq    1      0          0         
`, table(t, f))

	bound, err := f.links.Addrs(DummyDevice)
	require.NoError(t, err)
	assert.Equal(t, []netip.Addr{addr("10.96.0.10"), addr("10.96.0.20"), addr("198.51.100.1")}, bound,
		"ClusterIPs and external IPs, not node IPs, are bound to kube-ipvs0")

	s := p.LastSync()
	assert.Equal(t, 4, s.Ops[ipvsutil.OpAddService])
	assert.Equal(t, 7, s.Ops[ipvsutil.OpAddDest])
	assert.Equal(t, 3, s.Ops[OpAddrAdd])
	assert.Equal(t, 1, s.Ops[OpIPSetRestore])
	assert.Equal(t, 2, s.Ops[OpIPTablesRestor], "the canary chains, then the rules")
}

func TestSecondSyncWritesNothing(t *testing.T) {
	p, f := newTestProxier(t)
	mustSync(t, p, twoServices())
	f.ipvs.ResetOps()
	restores, iptRestores, adds, lists := f.sets.Restores, len(f.ipt.Restores()), f.links.Adds, f.links.Lists

	mustSync(t, p, twoServices())
	assert.Empty(t, f.ipvs.Ops(), "an unchanged state costs no IPVS request (nothing dumped, nothing written)")
	assert.Equal(t, lists, f.links.Lists, "nor an address dump")
	assert.Equal(t, restores, f.sets.Restores, "no ipset restore")
	assert.Equal(t, iptRestores, len(f.ipt.Restores()), "no iptables restore")
	assert.Equal(t, adds, f.links.Adds)
	assert.Equal(t, 0, f.links.Dels)
}

func TestEndpointAddAndRemove(t *testing.T) {
	p, f := newTestProxier(t)
	st := makeState(makeSvc("web", "10.96.0.20", 80, withEps(ep("10.244.1.5", 8080, "node1"))))
	mustSync(t, p, st)

	f.ipvs.ResetOps()
	mustSync(t, p, makeState(makeSvc("web", "10.96.0.20", 80,
		withEps(ep("10.244.1.5", 8080, "node1"), ep("10.244.2.7", 8080, "node2")))))
	assert.Equal(t, map[string]int{ipvsutil.OpListDests: 1, ipvsutil.OpAddDest: 1}, f.ipvs.Ops())
	assert.Contains(t, table(t, f), "10.244.2.7:8080")

	f.ipvs.ResetOps()
	mustSync(t, p, makeState(makeSvc("web", "10.96.0.20", 80, withEps(ep("10.244.2.7", 8080, "node2")))))
	assert.Equal(t, map[string]int{ipvsutil.OpListDests: 1, ipvsutil.OpDeleteDest: 1}, f.ipvs.Ops(),
		"a real server without connections is deleted at once")
	assert.Equal(t, `TCP  10.96.0.20:80 rr
  -> 10.244.2.7:8080              Masq    1      0          0         
`, table(t, f))
	assert.Empty(t, entries(t, f, setLoopBack), "the local endpoint left KUBE-LOOP-BACK")
}

func TestGracefulTermination(t *testing.T) {
	p, f := newTestProxier(t)
	both := makeState(makeSvc("web", "10.96.0.20", 80, withEps(ep("10.244.1.5", 8080, "node1"), ep("10.244.2.7", 8080, "node2"))))
	one := makeState(makeSvc("web", "10.96.0.20", 80, withEps(ep("10.244.2.7", 8080, "node2"))))
	key := ipvsutil.Key{Address: addr("10.96.0.20"), Protocol: ipvsutil.TCP, Port: 80}
	gone := netip.MustParseAddrPort("10.244.1.5:8080")
	mustSync(t, p, both)
	require.NoError(t, f.ipvs.SetConnections(key, gone, 2, 1))

	mustSync(t, p, one)
	assert.Contains(t, table(t, f), "10.244.1.5:8080              Masq    0      2          1",
		"a removed real server with connections keeps them at weight 0")
	assert.Equal(t, []string{"TCP 10.96.0.20:80 -> 10.244.1.5:8080"}, p.Terminating())

	mustSync(t, p, one)
	require.NoError(t, p.Reap())
	assert.Contains(t, table(t, f), "10.244.1.5:8080", "still there while connections last")

	require.NoError(t, f.ipvs.SetConnections(key, gone, 0, 0))
	require.NoError(t, p.Reap())
	assert.NotContains(t, table(t, f), "10.244.1.5:8080", "deleted once its connections are gone")
	assert.Empty(t, p.Terminating())

	// Coming back while terminating restores the weight.
	mustSync(t, p, both)
	require.NoError(t, f.ipvs.SetConnections(key, gone, 1, 0))
	mustSync(t, p, one)
	assert.Contains(t, table(t, f), "10.244.1.5:8080              Masq    0")
	mustSync(t, p, both)
	assert.Contains(t, table(t, f), "10.244.1.5:8080              Masq    1")
	assert.Empty(t, p.Terminating())
}

func TestGracefulTerminationUDPIsImmediate(t *testing.T) {
	p, f := newTestProxier(t)
	udp := func(s *state.ServicePort) { s.Protocol = state.UDP }
	mustSync(t, p, makeState(makeSvc("dns", "10.96.0.10", 53, udp, withEps(ep("10.244.1.9", 53, "node1"), ep("10.244.2.9", 53, "node2")))))
	key := ipvsutil.Key{Address: addr("10.96.0.10"), Protocol: ipvsutil.UDP, Port: 53}
	require.NoError(t, f.ipvs.SetConnections(key, netip.MustParseAddrPort("10.244.1.9:53"), 0, 5))
	mustSync(t, p, makeState(makeSvc("dns", "10.96.0.10", 53, udp, withEps(ep("10.244.2.9", 53, "node2")))))
	assert.NotContains(t, table(t, f), "10.244.1.9")
	assert.Empty(t, p.Terminating())
}

func TestServiceRemoval(t *testing.T) {
	p, f := newTestProxier(t)
	mustSync(t, p, twoServices())
	dnsOnly := makeState(twoServices().Services[0]) // sorted: dns first
	require.Equal(t, "dns", dnsOnly.Services[0].Name)

	f.ipvs.ResetOps()
	mustSync(t, p, dnsOnly)
	assert.Equal(t, map[string]int{ipvsutil.OpDeleteService: 3}, f.ipvs.Ops(),
		"ClusterIP, external IP and NodePort virtual servers go")
	assert.Equal(t, "UDP  10.96.0.10:53 rr\n  -> 10.244.1.9:5353              Masq    1      0          0         \n", table(t, f))
	bound, err := f.links.Addrs(DummyDevice)
	require.NoError(t, err)
	assert.Equal(t, []netip.Addr{addr("10.96.0.10")}, bound)
	assert.Equal(t, []string{"10.96.0.10,udp:53"}, entries(t, f, setClusterIP))
	assert.Empty(t, entries(t, f, setExternalIP))
	assert.Empty(t, entries(t, f, setNodePortTCP))
	assert.Equal(t, []string{"10.96.0.10"}, entries(t, f, setIPVSIPs))
}

func TestSessionAffinity(t *testing.T) {
	p, f := newTestProxier(t)
	aff := func(timeout int32) func(*state.ServicePort) {
		return func(s *state.ServicePort) { s.SessionAffinity, s.AffinityTimeout = true, timeout }
	}
	mustSync(t, p, makeState(
		makeSvc("a", "10.96.0.30", 80, aff(60), withEps(ep("10.244.1.5", 80, "node1"))),
		makeSvc("b", "10.96.0.31", 80, aff(0), withEps(ep("10.244.1.5", 80, "node1"))),
	))
	out := table(t, f)
	assert.Contains(t, out, "TCP  10.96.0.30:80 rr persistent 60\n")
	assert.Contains(t, out, "TCP  10.96.0.31:80 rr persistent 10800\n", "default timeout")

	f.ipvs.ResetOps()
	mustSync(t, p, makeState(
		makeSvc("a", "10.96.0.30", 80, withEps(ep("10.244.1.5", 80, "node1"))),
		makeSvc("b", "10.96.0.31", 80, aff(0), withEps(ep("10.244.1.5", 80, "node1"))),
	))
	assert.Equal(t, map[string]int{ipvsutil.OpUpdateService: 1}, f.ipvs.Ops())
	assert.Contains(t, table(t, f), "TCP  10.96.0.30:80 rr\n", "affinity removed in place")
}

func TestSchedulerSelection(t *testing.T) {
	sched := func(s string) func(*state.ServicePort) { return func(sp *state.ServicePort) { sp.Scheduler = s } }
	st := func(web string) *state.NodeState {
		return makeState(makeSvc("a", "10.96.0.30", 80), makeSvc("b", "10.96.0.31", 80, sched(web)))
	}
	p, f := newTestProxier(t, func(c *Config) { c.Scheduler = "sh" })
	mustSync(t, p, st("wrr"))
	assert.Contains(t, table(t, f), "TCP  10.96.0.30:80 sh\n", "the option is the default")
	assert.Contains(t, table(t, f), "TCP  10.96.0.31:80 wrr\n", "the service overrides it")

	f.ipvs.ResetOps()
	mustSync(t, p, st("lc"))
	assert.Equal(t, 1, f.ipvs.Ops()[ipvsutil.OpUpdateService])
	assert.Contains(t, table(t, f), "TCP  10.96.0.31:80 lc\n")

	p2, f2 := newTestProxier(t)
	mustSync(t, p2, st(""))
	assert.Contains(t, table(t, f2), "TCP  10.96.0.31:80 rr\n", "rr without options")

	_, err := New(Config{Scheduler: "nope", IPVS: f.ipvs, Links: f.links, IPSet: f.sets, IPTables: f.ipt})
	assert.ErrorContains(t, err, `unknown scheduler "nope"`)
	err = p2.Sync(context.Background(), st("nope"))
	assert.ErrorContains(t, err, `scheduler "nope"`, "the kernel (fake) refuses an unknown scheduler")
}

func TestNodePortOnEachNodeIP(t *testing.T) {
	p, f := newTestProxier(t)
	st := makeState(makeSvc("web", "10.96.0.20", 80, withEps(ep("10.244.1.5", 8080, "node1")),
		func(s *state.ServicePort) { s.NodePort = 30080 }),
		makeSvc("dns", "10.96.0.10", 53, func(s *state.ServicePort) { s.Protocol, s.NodePort = state.UDP, 30053 }))
	st.NodeIPs = []netip.Addr{addr("198.18.0.11"), addr("198.18.1.11")}
	mustSync(t, p, st)
	out := table(t, f)
	for _, want := range []string{"TCP  198.18.0.11:30080 rr", "TCP  198.18.1.11:30080 rr", "UDP  198.18.0.11:30053 rr", "UDP  198.18.1.11:30053 rr"} {
		assert.Contains(t, out, want+"\n")
	}
	assert.Equal(t, []string{"30080"}, entries(t, f, setNodePortTCP))
	assert.Equal(t, []string{"30053"}, entries(t, f, setNodePortUDP))

	// Losing a node IP removes its NodePort virtual servers (they are ours).
	st2 := makeState(st.Services...)
	st2.NodeIPs = []netip.Addr{addr("198.18.0.11")}
	mustSync(t, p, st2)
	assert.NotContains(t, table(t, f), "198.18.1.11")
}

// A one-shot cleanup (a fresh proxier that never synced, as after a killed
// proxy) removes the NodePort virtual servers on the node's own addresses,
// and leaves a virtual server on an address that is not the node's.
func TestFreshCleanupRemovesNodePortsOfADeadProxier(t *testing.T) {
	dead, f := newTestProxier(t)
	f.links.AddDevice("eth0", addr("198.18.0.11"))
	st := makeState(makeSvc("web", "10.96.0.20", 80, withEps(ep("10.244.1.5", 8080, "node1")),
		func(s *state.ServicePort) { s.NodePort = 30080 }))
	st.NodeIPs = []netip.Addr{addr("198.18.0.11")}
	mustSync(t, dead, st)
	foreign := &ipvsutil.VirtualServer{Address: addr("192.0.2.1"), Protocol: ipvsutil.TCP, Port: 80, Scheduler: "rr"}
	require.NoError(t, f.ipvs.AddService(foreign))
	require.Contains(t, table(t, f), "TCP  198.18.0.11:30080 rr")

	fresh, err := New(Config{Node: "node1", IPVS: f.ipvs, Links: f.links, IPSet: f.sets, IPTables: f.ipt})
	require.NoError(t, err)
	require.NoError(t, fresh.Cleanup(context.Background()))
	assert.Equal(t, "TCP  192.0.2.1:80 rr\n", table(t, f), "only the foreign virtual server stays")
}

// manyServices returns n services with two endpoints each; the first one's
// second endpoint is ep2.
func manyServices(n int, ep2 string) *state.NodeState {
	svcs := make([]state.ServicePort, 0, n)
	for i := 0; i < n; i++ {
		ip := netip.AddrFrom4([4]byte{10, 96, byte(1 + i/250), byte(1 + i%250)})
		second := fmt.Sprintf("10.244.2.%d", 1+i%250)
		if i == 0 {
			second = ep2
		}
		svcs = append(svcs, makeSvc(fmt.Sprintf("svc%04d", i), ip.String(), 80,
			withEps(ep(fmt.Sprintf("10.244.1.%d", 1+i%250), 8080, "node1"), ep(second, 8080, "node2")),
			func(s *state.ServicePort) { s.NodePort = int32(30000 + i) }))
	}
	return makeState(svcs...)
}

func TestOneEndpointChangeCostIsIndependentOfServiceCount(t *testing.T) {
	type cost struct{ fake, netlink int }
	costs := map[int]cost{}
	for _, n := range []int{1, 100, 1000} {
		p, f := newTestProxier(t)
		mustSync(t, p, manyServices(n, "10.244.2.200"))
		f.ipvs.ResetOps()
		mustSync(t, p, manyServices(n, "10.244.2.201"))
		costs[n] = cost{f.ipvs.TotalOps(), p.LastSync().NetlinkOps()}
		assert.Equal(t, map[string]int{ipvsutil.OpListDests: 2,
			ipvsutil.OpAddDest: 2, ipvsutil.OpDeleteDest: 2}, f.ipvs.Ops(),
			"n=%d: the ClusterIP and the NodePort virtual server of one service change", n)
	}
	assert.Equal(t, costs[1], costs[100])
	assert.Equal(t, costs[1], costs[1000])
	t.Logf("IPVS requests / netlink requests for one endpoint change: %+v", costs)
}

func TestIPSetContents(t *testing.T) {
	p, f := newTestProxier(t)
	mustSync(t, p, twoServices())
	assert.Equal(t, []string{"10.96.0.10,udp:53", "10.96.0.20,tcp:80"}, entries(t, f, setClusterIP))
	assert.Equal(t, []string{"198.51.100.1,tcp:80"}, entries(t, f, setExternalIP))
	assert.Equal(t, []string{"10.244.1.5,tcp:8080,10.244.1.5", "10.244.1.9,udp:5353,10.244.1.9"}, entries(t, f, setLoopBack),
		"only endpoints on this node can hairpin")
	assert.Equal(t, []string{"30080"}, entries(t, f, setNodePortTCP))
	assert.Empty(t, entries(t, f, setNodePortUDP))
	assert.Equal(t, []string{"10.96.0.10", "10.96.0.20", "198.51.100.1"}, entries(t, f, setIPVSIPs))

	// Incremental: one endpoint change writes one del and one add.
	before := p.LastSync()
	require.Equal(t, 1, before.Ops[OpIPSetRestore])
	st := twoServices()
	st.Services[1].Endpoints[0] = ep("10.244.1.6", 8080, "node1")
	mustSync(t, p, st)
	s := p.LastSync()
	assert.Equal(t, 1, s.Ops[OpIPSetDel])
	assert.Equal(t, 1, s.Ops[OpIPSetAdd])
	assert.Contains(t, entries(t, f, setLoopBack), "10.244.1.6,tcp:8080,10.244.1.6")
	assert.NotContains(t, entries(t, f, setLoopBack), "10.244.1.5,tcp:8080,10.244.1.5")
}

const goldenRules = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-LOAD-BALANCER - [0:0]
-A KUBE-SERVICES -m comment --comment "cluster IP from outside the pod network" -m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
-A KUBE-SERVICES -m comment --comment "external IP with externalTrafficPolicy Local: not masqueraded" -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -j ACCEPT
-A KUBE-SERVICES -m comment --comment "external IP" -m set --match-set KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m set --match-set KUBE-EXTERNAL-IP dst,dst -j ACCEPT
-A KUBE-SERVICES -m comment --comment "load balancer IP" -m set --match-set KUBE-LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER
-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j ACCEPT
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-LOAD-BALANCER -m set --match-set KUBE-LOAD-BALANCER-LOCAL dst,dst -j RETURN
-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ
-A KUBE-NODE-PORT -p tcp -m set --match-set KUBE-NODE-PORT-LOCAL-TCP dst -j RETURN
-A KUBE-NODE-PORT -p udp -m set --match-set KUBE-NODE-PORT-LOCAL-UDP dst -j RETURN
-A KUBE-NODE-PORT -p tcp -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
-A KUBE-NODE-PORT -p udp -m set --match-set KUBE-NODE-PORT-UDP dst -j KUBE-MARK-MASQ
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "hairpin: endpoint reached by itself" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
COMMIT
*filter
:KUBE-FORWARD - [0:0]
:KUBE-IPVS-FILTER - [0:0]
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-IPVS-FILTER -m comment --comment "load balancer source ranges" -m set --match-set KUBE-LOAD-BALANCER-FW dst,dst -m set ! --match-set KUBE-LOAD-BALANCER-SOURCE-CIDR dst,dst,src -j DROP
-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT
-I FORWARD 1 -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-I INPUT 1 -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER
COMMIT
`

func TestIPTablesRulesGolden(t *testing.T) {
	assert.Equal(t, goldenRules, string(buildRules(netip.MustParsePrefix("10.244.0.0/16"), map[string]*ruleset.Table{})))

	p, f := newTestProxier(t)
	mustSync(t, p, twoServices())
	nat, err := f.ipt.Save(context.Background(), "nat")
	require.NoError(t, err)
	assert.Contains(t, string(nat), "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n")

	// A new cluster CIDR rewrites the rules, without a second copy of the jumps.
	st := twoServices()
	st.ClusterCIDR = netip.MustParsePrefix("10.240.0.0/12")
	mustSync(t, p, st)
	assert.Len(t, f.ipt.Restores(), 3, "the canary, the first rules, the new rules")
	nat, err = f.ipt.Save(context.Background(), "nat")
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(nat), "-A PREROUTING "))
	assert.Equal(t, 1, strings.Count(string(nat), "-A OUTPUT "))
	assert.Contains(t, string(nat), "! -s 10.240.0.0/12")
	assert.NotContains(t, string(nat), "10.244.0.0/16")
}

func TestForeignVirtualServersAreLeftAlone(t *testing.T) {
	p, f := newTestProxier(t)
	foreign := &ipvsutil.VirtualServer{Address: addr("192.0.2.1"), Protocol: ipvsutil.TCP, Port: 80, Scheduler: "wlc"}
	require.NoError(t, f.ipvs.AddService(foreign))
	require.NoError(t, f.ipvs.AddDestination(foreign, &ipvsutil.RealServer{Address: addr("192.0.2.2"), Port: 80, Weight: 3}))

	mustSync(t, p, twoServices())
	mustSync(t, p, makeState())
	require.NoError(t, p.Cleanup(context.Background()))
	assert.Equal(t, "TCP  192.0.2.1:80 wlc\n  -> 192.0.2.2:80                 Masq    3      0          0         \n", table(t, f))
}

func TestStaleVirtualServersOfAnEarlierRunAreRemoved(t *testing.T) {
	p, f := newTestProxier(t)
	mustSync(t, p, twoServices())

	// A new proxier (restarted agent) on the same kernel, with less to do:
	// what is bound to kube-ipvs0 is ours, and real servers are read back.
	p2, err := New(Config{Node: "node1", IPVS: f.ipvs, Links: f.links, IPSet: f.sets, IPTables: f.ipt})
	require.NoError(t, err)
	st := makeState(makeSvc("web", "10.96.0.20", 80, withEps(ep("10.244.1.5", 8080, "node1"))))
	mustSync(t, p2, st)
	assert.Equal(t, "TCP  10.96.0.20:80 rr\n  -> 10.244.1.5:8080              Masq    1      0          0         \n", table(t, f))
	assert.Equal(t, []string{"10.96.0.20,tcp:80"}, entries(t, f, setClusterIP), "a fresh proxier rewrites whole sets")
}

func TestCleanupIsCompleteAndIdempotent(t *testing.T) {
	p, f := newTestProxier(t)
	ctx := context.Background()
	require.NoError(t, p.Cleanup(ctx), "cleanup before any sync")
	mustSync(t, p, twoServices())
	require.NoError(t, p.Cleanup(ctx))

	assert.Empty(t, table(t, f))
	assert.False(t, f.links.Has(DummyDevice))
	sets, err := f.sets.ListSets(ctx)
	require.NoError(t, err)
	assert.Empty(t, sets)
	for _, tbl := range []string{"nat", "filter"} {
		s, err := f.ipt.Save(ctx, tbl)
		require.NoError(t, err)
		assert.NotContains(t, string(s), "KUBE-", tbl)
	}
	require.NoError(t, p.Cleanup(ctx), "second cleanup")

	// And the proxier works again afterwards.
	mustSync(t, p, twoServices())
	assert.Contains(t, table(t, f), "10.96.0.20:80")
}

func TestFailedSyncIsRepairedByTheNext(t *testing.T) {
	p, f := newTestProxier(t)
	mustSync(t, p, twoServices())
	// Someone deletes a real server behind our back; an unchanged state
	// does not notice (no read-back of unchanged services) ...
	web := &ipvsutil.VirtualServer{Address: addr("10.96.0.20"), Protocol: ipvsutil.TCP, Port: 80}
	require.NoError(t, f.ipvs.DeleteDestination(web, &ipvsutil.RealServer{Address: addr("10.244.1.5"), Port: 8080}))
	// ... but a failing sync (bad scheduler) makes the next one read all back.
	bad := twoServices()
	bad.Services[0].Scheduler = "nope"
	require.Error(t, p.Sync(context.Background(), bad))
	mustSync(t, p, twoServices())
	assert.Contains(t, table(t, f), "TCP  10.96.0.20:80 rr\n  -> 10.244.1.5:8080")
}

func TestDumpRendersWithoutIPVSAdm(t *testing.T) {
	p, _ := newTestProxier(t)
	mustSync(t, p, twoServices())
	out, err := p.Dump(context.Background())
	require.NoError(t, err)
	assert.Contains(t, out, "Prot LocalAddress:Port Scheduler Flags\n")
	assert.Contains(t, out, "TCP  10.96.0.20:80 rr\n  -> 10.244.1.5:8080              Masq    1")
	assert.Contains(t, out, "# ipset list -n\nKUBE-CLUSTER-IP\n")
}

func TestRegistered(t *testing.T) {
	assert.Contains(t, modes.Names(), Name)
}

// TestCanaryRepairsFlush: a first sync leaves the iptables canary; a flush of
// every iptables table and of the IPVS table (ipvsadm -C) removes it with the
// rest, Intact says so, and the full resync the node proxy then runs brings
// back the same virtual servers, ipsets and rules. Cleanup removes the
// canary too.
func TestCanaryRepairsFlush(t *testing.T) {
	ctx := context.Background()
	p, f := newTestProxier(t)
	ok, err := p.Intact(ctx)
	require.NoError(t, err)
	assert.False(t, ok, "Intact before any sync")
	mustSync(t, p, twoServices())
	ok, err = p.Intact(ctx)
	require.NoError(t, err)
	require.True(t, ok, "Intact after a sync")
	ipvsBefore, rulesBefore := table(t, f), f.ipt.Dump()

	f.ipt.Flush()
	require.NoError(t, f.ipvs.Flush())
	ok, err = p.Intact(ctx)
	require.NoError(t, err)
	require.False(t, ok, "Intact after the flush")
	require.True(t, modes.ForceFullSync(p), "ipvs is a FullSyncer")
	mustSync(t, p, twoServices())
	assert.Equal(t, ipvsBefore, table(t, f), "virtual servers after the repair")
	assert.Equal(t, rulesBefore, f.ipt.Dump(), "iptables rules after the repair")
	ok, err = p.Intact(ctx)
	require.NoError(t, err)
	assert.True(t, ok, "Intact after the repair")

	require.NoError(t, p.Cleanup(ctx))
	for _, tbl := range iptrestore.CanaryTables {
		assert.Empty(t, f.ipt.Chains(tbl), "chains left in %s after Cleanup", tbl)
	}
}
