package topology_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/topology"
	"github.com/svcsim/svcsim/topology/hostcheck"
	"github.com/svcsim/svcsim/topology/topotest"
)

// Address plan of these tests (the default spec):
//
//	node1 198.18.0.11  pods 10.244.1.0/24 (gw .1): a 10.244.1.2, b 10.244.1.3
//	node2 198.18.0.12  pods 10.244.2.0/24 (gw .1): c 10.244.2.2, hn (hostNetwork, 198.18.0.12)
//	external 198.18.0.100
//	host db 172.188.2.89 (outside the underlay: /32 + routes)
//
// Pods listen on 80/TCP (HTTP + echo) and 53/UDP; hn on 8080/TCP.

var (
	ports   = []topology.Port{{Port: 80, Protocol: "TCP"}, {Port: 53, Protocol: "UDP"}}
	podA    = topology.PodSpec{Name: "default/a", Node: "node1", IP: netip.MustParseAddr("10.244.1.2"), Ports: ports}
	podB    = topology.PodSpec{Name: "default/b", Node: "node1", IP: netip.MustParseAddr("10.244.1.3"), Ports: ports}
	podC    = topology.PodSpec{Name: "other/c", Node: "node2", IP: netip.MustParseAddr("10.244.2.2"), Ports: ports}
	podHN   = topology.PodSpec{Name: "kube-system/hn", Node: "node2", HostNetwork: true, Ports: []topology.Port{{Port: 8080}}}
	timeout = 5 * time.Second
)

func addPods(t *testing.T, topo *topology.Topology, specs ...topology.PodSpec) []*topology.Pod {
	t.Helper()
	var out []*topology.Pod
	for _, s := range specs {
		p, err := topo.AddPod(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// get fetches http://addr/path from inside ns and returns body and X-Pod.
func get(t *testing.T, ns *netns.NS, addr, path string) (string, string, error) {
	t.Helper()
	c := topology.HTTPClient(ns, false, timeout)
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.Header.Get("X-Pod"), err
}

func mustGet(t *testing.T, ns *netns.NS, addr, path string) (string, string) {
	t.Helper()
	body, pod, err := get(t, ns, addr, path)
	if err != nil {
		t.Fatalf("GET http://%s%s from %s: %v", addr, path, ns.Name(), err)
	}
	return body, pod
}

func echoTCP(t *testing.T, ns *netns.NS, addr, line string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := topology.DialContext(ctx, ns, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatal(err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("echo %s from %s: %v", addr, ns.Name(), err)
	}
	return strings.TrimSuffix(reply, "\n")
}

func echoUDP(t *testing.T, ns *netns.NS, addr, payload string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := topology.DialContext(ctx, ns, "udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, payload); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("udp %s from %s: %v", addr, ns.Name(), err)
	}
	return string(buf[:n])
}

func TestConnectivity(t *testing.T) {
	topo := topotest.NewTestTopology(t, 2)
	start := time.Now()
	pods := addPods(t, topo, podA, podB, podC, podHN)
	t.Logf("4 pods added in %v", time.Since(start))
	a, b, c, hn := pods[0], pods[1], pods[2], pods[3]
	node1, node2 := topo.Node("node1"), topo.Node("node2")

	t.Run("info exact, same node", func(t *testing.T) {
		body, pod := mustGet(t, a.NS, "10.244.1.3:80", "/info")
		want := fmt.Sprintf(`{"Code":0,"Msg":"success","IpInfo":[{"Ip":"10.244.1.3","Mac":"%s"}]}`, topology.StableMAC("default/b"))
		if body != want || pod != "default/b" {
			t.Fatalf("GET /info = %q (X-Pod %q), want %q", body, pod, want)
		}
		if b.MAC.String() != topology.StableMAC("default/b").String() {
			t.Fatalf("pod MAC %v, want %v", b.MAC, topology.StableMAC("default/b"))
		}
	})
	t.Run("cross node, no NAT", func(t *testing.T) {
		body, _ := mustGet(t, a.NS, "10.244.2.2:80", "/client")
		if !strings.HasPrefix(body, "10.244.1.2:") {
			t.Fatalf("c saw client %q, want a's address 10.244.1.2", body)
		}
		if got := echoTCP(t, c.NS, "10.244.1.2:80", "hello"); !strings.HasPrefix(got, "default/a 10.244.2.2:") || !strings.HasSuffix(got, " hello") {
			t.Fatalf("tcp echo c->a = %q", got)
		}
		if got := echoUDP(t, a.NS, "10.244.2.2:53", "ping"); !strings.HasPrefix(got, "other/c 10.244.1.2:") || !strings.HasSuffix(got, " ping") {
			t.Fatalf("udp echo a->c = %q", got)
		}
	})
	t.Run("node to pods", func(t *testing.T) {
		for _, p := range []*topology.Pod{a, c} {
			if _, pod := mustGet(t, node1.NS, p.IP.String()+":80", "/name"); pod != p.Name {
				t.Fatalf("node1 -> %s reached %q", p.Name, pod)
			}
		}
		body, _ := mustGet(t, node2.NS, "10.244.2.2:80", "/client")
		if !strings.HasPrefix(body, "10.244.2.1:") {
			t.Fatalf("node2 -> local pod: client %q, want the gateway address", body)
		}
	})
	t.Run("external to node IP", func(t *testing.T) {
		body, pod := mustGet(t, topo.External(), "198.18.0.12:8080", "/info")
		want := fmt.Sprintf(`{"Code":0,"Msg":"success","IpInfo":[{"Ip":"198.18.0.12","Mac":"%s"}]}`, node2.MAC)
		if body != want || pod != "kube-system/hn" {
			t.Fatalf("external -> hostNetwork pod: %q (X-Pod %q), want %q", body, pod, want)
		}
		if hn.NS != node2.NS {
			t.Fatal("hostNetwork pod does not share the node's namespace")
		}
	})
	t.Run("external cannot reach pods", func(t *testing.T) {
		for _, ip := range []string{"10.244.1.2:80", "10.244.2.2:80"} {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			conn, err := topology.DialContext(ctx, topo.External(), "tcp", ip)
			cancel()
			if err == nil {
				conn.Close()
				t.Fatalf("external reached pod %s", ip)
			}
			if !errors.Is(err, syscall.ENETUNREACH) {
				t.Fatalf("external -> %s: %v, want network unreachable", ip, err)
			}
		}
	})
	t.Run("stop and start servers", func(t *testing.T) {
		if err := b.StopServers(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := topology.DialContext(ctx, a.NS, "tcp", "10.244.1.3:80")
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial stopped pod: %v, want connection refused", err)
		}
		if err := b.StartServers(); err != nil {
			t.Fatal(err)
		}
		if _, pod := mustGet(t, a.NS, "10.244.1.3:80", "/name"); pod != "default/b" {
			t.Fatalf("after restart reached %q", pod)
		}
		if st := b.Stats(); st.HTTP < 2 {
			t.Fatalf("counters lost across restart: %+v", st)
		}
	})
}

// The kernel settings the proxies rely on are in place.
func TestNodeSettings(t *testing.T) {
	topo := topotest.NewTestTopology(t, 2)
	a := addPods(t, topo, podA)[0]
	n := topo.Node("node1")
	for key, want := range map[string]string{
		"net.ipv4.ip_forward":                             "1",
		"net.bridge.bridge-nf-call-iptables":              "1",
		"net.ipv4.conf.all.send_redirects":                "0",
		"net.ipv4.conf.eth0.send_redirects":               "0",
		"net.ipv4.conf.cni0.send_redirects":               "0",
		"net.ipv4.conf." + a.HostVeth + ".send_redirects": "0",
	} {
		got, err := n.NS.Sysctl(key)
		if err != nil || got != want {
			t.Errorf("node1 %s = %q, %v; want %q", key, got, err, want)
		}
	}
	h, err := netlink.NewHandleAt(n.NS.Handle())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	veth, err := h.LinkByName(a.HostVeth)
	if err != nil {
		t.Fatal(err)
	}
	pi, err := h.LinkGetProtinfo(veth)
	if err != nil {
		t.Fatal(err)
	}
	if !pi.Hairpin {
		t.Errorf("%s: hairpin mode off", a.HostVeth)
	}
	cni0, err := h.LinkByName("cni0")
	if err != nil {
		t.Fatal(err)
	}
	if veth.Attrs().MasterIndex != cni0.Attrs().Index {
		t.Errorf("%s not on cni0", a.HostVeth)
	}
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		t.Fatal(err)
	}
	var found bool
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == "10.244.2.0/24" && r.Gw.String() == "198.18.0.12" {
			found = true
		}
	}
	if !found {
		t.Errorf("node1 has no route 10.244.2.0/24 via 198.18.0.12: %v", routes)
	}
}

func TestHostOutsideUnderlay(t *testing.T) {
	topo := topotest.NewTestTopology(t, 2)
	a := addPods(t, topo, podA)[0]
	db, err := topo.AddHost(context.Background(), "db", netip.MustParseAddr("172.188.2.89"), []topology.Port{{Port: 3307}})
	if err != nil {
		t.Fatal(err)
	}
	if db.Name() != topology.HostNSName(topo.Run().ID, "db") {
		t.Fatalf("host namespace %q", db.Name())
	}
	body, pod := mustGet(t, a.NS, "172.188.2.89:3307", "/client")
	if pod != "db" || !strings.HasPrefix(body, "10.244.1.2:") {
		t.Fatalf("pod -> db: client %q X-Pod %q", body, pod)
	}
	if got := echoTCP(t, topo.Node("node2").NS, "172.188.2.89:3307", "q"); !strings.HasPrefix(got, "db 198.18.0.12:") {
		t.Fatalf("node2 -> db echo %q", got)
	}
	if err := topo.RemoveHost(context.Background(), "db"); err != nil {
		t.Fatal(err)
	}
	if netns.Exists(db.Name()) {
		t.Fatal("host namespace left after RemoveHost")
	}
	// The nodes' on-link routes to it went too: the same host can be
	// added again (a shared cluster's next scenario does).
	again, err := topo.AddHost(context.Background(), "db", netip.MustParseAddr("172.188.2.89"), []topology.Port{{Port: 3307}})
	if err != nil {
		t.Fatalf("add the host again after RemoveHost: %v", err)
	}
	if err := topo.RemoveHost(context.Background(), "db"); err != nil || netns.Exists(again.Name()) {
		t.Fatalf("remove it again: %v", err)
	}
}

func TestRemovePod(t *testing.T) {
	topo := topotest.NewTestTopology(t, 1)
	pods := addPods(t, topo, podA, podB)
	nsName := pods[1].NS.Name()
	if err := topo.RemovePod(context.Background(), "default/b"); err != nil {
		t.Fatal(err)
	}
	if netns.Exists(nsName) {
		t.Fatal("pod namespace left after RemovePod")
	}
	if topo.Pod("default/b") != nil || len(topo.Pods()) != 1 {
		t.Fatal("pod still listed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c, err := topology.DialContext(ctx, pods[0].NS, "tcp", "10.244.1.3:80"); err == nil {
		c.Close()
		t.Fatal("removed pod still answers")
	}
	// Name and address are free again.
	if _, err := topo.AddPod(context.Background(), podB); err != nil {
		t.Fatalf("re-add: %v", err)
	}
	if err := topo.RemovePod(context.Background(), "nope/nope"); err == nil {
		t.Fatal("removing an unknown pod succeeded")
	}
}

func TestAddPodRejects(t *testing.T) {
	topo := topotest.NewTestTopology(t, 1)
	addPods(t, topo, podA)
	ctx := context.Background()
	for name, s := range map[string]topology.PodSpec{
		"duplicate name":   podA,
		"duplicate ip":     {Name: "x/dup-ip", Node: "node1", IP: podA.IP},
		"gateway ip":       {Name: "x/gw", Node: "node1", IP: netip.MustParseAddr("10.244.1.1")},
		"other node's ip":  {Name: "x/far", Node: "node1", IP: netip.MustParseAddr("10.244.2.5")},
		"unknown node":     {Name: "x/nonode", Node: "node9", IP: netip.MustParseAddr("10.244.1.9")},
		"multicast mac":    {Name: "x/mac", Node: "node1", IP: netip.MustParseAddr("10.244.1.9"), MAC: net.HardwareAddr{1, 2, 3, 4, 5, 6}},
		"port in use (hn)": {Name: "x/hn", Node: "node1", HostNetwork: true, IP: netip.MustParseAddr("198.18.0.99")},
	} {
		if _, err := topo.AddPod(ctx, s); err == nil {
			t.Errorf("%s: AddPod(%+v) succeeded", name, s)
		}
	}
	// A failing pod leaves nothing: the only pod namespace is a's.
	names, err := netns.List()
	if err != nil {
		t.Fatal(err)
	}
	var podNS []string
	for _, n := range names {
		if strings.HasPrefix(n, topo.Run().ID+"-pod-") {
			podNS = append(podNS, n)
		}
	}
	if len(podNS) != 1 {
		t.Fatalf("pod namespaces after rejected adds: %v", podNS)
	}
}

// Building, using and closing a topology leaves the host's links, addresses,
// routes, rules and rulesets exactly as they were.
func TestHostUntouched(t *testing.T) {
	privtest.RequireRoot(t)
	before, err := hostcheck.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range before.Outputs {
		if strings.HasPrefix(v, "error:") {
			t.Logf("%s: %s", k, v)
		}
	}
	run := privtest.NewRun(t)
	start := time.Now()
	topo, err := topology.Build(context.Background(), topology.DefaultSpec(run, 2))
	if err != nil {
		t.Fatal(err)
	}
	built := time.Since(start)
	var specs []topology.PodSpec
	for i := range 6 {
		node := 1 + i%2
		specs = append(specs, topology.PodSpec{Name: fmt.Sprintf("default/p%d", i), Node: fmt.Sprintf("node%d", node),
			IP: netip.AddrFrom4([4]byte{10, 244, byte(node), byte(10 + i)}), Ports: ports})
	}
	pods := addPods(t, topo, specs...)
	t.Logf("2 nodes in %v, +6 pods in %v", built, time.Since(start)-built)
	if _, err := topo.AddHost(context.Background(), "db", netip.MustParseAddr("172.188.2.89"), []topology.Port{{Port: 3307}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		mustGet(t, pods[0].NS, p.IP.String()+":80", "/info")
	}
	mustGet(t, pods[1].NS, "172.188.2.89:3307", "/name")
	closeStart := time.Now()
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("closed in %v", time.Since(closeStart))
	after, err := hostcheck.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if d := hostcheck.Diff(before, after); d != "" {
		t.Fatalf("host network state changed:\n%s", d)
	}
}

// Pods' servers are goroutines of this process: RemovePod and Close must end
// all of them, open connections included.
func TestNoGoroutineLeak(t *testing.T) {
	privtest.RequireRoot(t)
	base := runtime.NumGoroutine()
	run := privtest.NewRun(t)
	topo, err := topology.Build(context.Background(), topology.DefaultSpec(run, 2))
	if err != nil {
		t.Fatal(err)
	}
	pods := addPods(t, topo, podA, podB, podC)
	mustGet(t, pods[0].NS, "10.244.2.2:80", "/name")
	echoUDP(t, pods[0].NS, "10.244.1.3:53", "x")
	// An echo connection left open across Close.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := topology.DialContext(ctx, pods[2].NS, "tcp", "10.244.1.2:80")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "x\n"); err != nil {
		t.Fatal(err)
	}
	if err := topo.RemovePod(context.Background(), podB.Name); err != nil {
		t.Fatal(err)
	}
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestControlPlaneNamespace: Spec.ControlPlaneIP adds a machine on the
// underlay that nodes reach directly and pods reach without NAT; Close
// removes it.
func TestControlPlaneNamespace(t *testing.T) {
	spec := topology.DefaultSpec(privtest.NewRun(t), 2)
	spec.ControlPlaneIP = topology.DefaultControlPlaneIP
	topo := topotest.Build(t, spec)
	cp := topo.ControlPlane()
	if cp == nil || cp.Name() != topology.NSName(topo.Run().ID, topology.RoleControlPlane) {
		t.Fatalf("control-plane namespace %v", cp)
	}
	if st := topo.State(); st.ControlPlane != cp.Name() || st.ControlPlaneIP != topology.DefaultControlPlaneIP {
		t.Fatalf("state: control plane %q at %v", st.ControlPlane, st.ControlPlaneIP)
	}
	var ln net.Listener
	if err := cp.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "198.18.0.2:6443")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			c.Close()
		}
	}()
	c := addPods(t, topo, podC)[0]
	for _, from := range []struct {
		ns   *netns.NS
		want string
	}{{topo.Node("node1").NS, "198.18.0.11"}, {c.NS, "10.244.2.2"}} {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		conn, err := topology.DialContext(ctx, from.ns, "tcp", "198.18.0.2:6443")
		cancel()
		if err != nil {
			t.Fatalf("%s -> control plane: %v", from.ns.Name(), err)
		}
		conn.Close()
		if got := <-peers; got != from.want {
			t.Fatalf("%s -> control plane: seen from %s, want %s (no NAT)", from.ns.Name(), got, from.want)
		}
	}
	name := cp.Name()
	ln.Close()
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	if netns.Exists(name) {
		t.Fatalf("%s left after Close", name)
	}
}
