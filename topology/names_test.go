package topology

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/internal/rundir"
)

func TestNames(t *testing.T) {
	id := "svs1a2b3c"
	for _, c := range []struct{ got, want string }{
		{NodeNSName(id, "node1"), "svs1a2b3c-node1"},
		{NSName(id, RoleUnderlay), "svs1a2b3c-underlay"},
		{PodNSName(id, "default/getip-7d9f-abcde"), "svs1a2b3c-pod-default_getip-7d9f-abcde"},
		{HostNSName(id, "db"), "svs1a2b3c-host-db"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	long := "kube-system/" + strings.Repeat("very-long-deployment-name-", 4) + "x"
	n := PodNSName(id, long)
	if len(n) > maxNSName || !strings.HasPrefix(n, id+"-pod-kube-system_very") {
		t.Errorf("long name %q (%d chars)", n, len(n))
	}
	if n2 := PodNSName(id, long+"y"); n2 == n {
		t.Errorf("truncated names collide: %q", n)
	}
	// '_' cannot appear in Kubernetes names but must not collide with '/'.
	if PodNSName(id, "a/b") == PodNSName(id, "a_b") {
		t.Error("a/b and a_b collide")
	}
	if got := RunOfNamespace(PodNSName(id, long)); got != id {
		t.Errorf("RunOfNamespace = %q", got)
	}
	for _, other := range []string{"svsnft-bench-1", "svs1a2b3-node1", "xsvs1a2b3c-node1", "svs1a2b3cd-node1"} {
		if got := RunOfNamespace(other); got != "" {
			t.Errorf("RunOfNamespace(%q) = %q, want none", other, got)
		}
	}
	if v := hostVethName("default/a"); len(v) > 15 || v != hostVethName("default/a") {
		t.Errorf("host veth %q", v)
	}
	if v := underlayVethName("n", "a-very-long-node-name"); len(v) > 15 {
		t.Errorf("underlay veth %q", v)
	}
}

func TestStableMAC(t *testing.T) {
	m := StableMAC("default/a")
	if len(m) != 6 || m[0]&1 != 0 || m[0]&2 == 0 {
		t.Fatalf("MAC %v: want locally administered unicast", m)
	}
	if m.String() != StableMAC("default/a").String() || m.String() == StableMAC("default/b").String() {
		t.Fatal("MAC not stable per name")
	}
}

func TestSpec(t *testing.T) {
	run := &rundir.Run{ID: "svs000001", Dir: "/nonexistent"}
	s := DefaultSpec(run, 3)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.Nodes[2].IP != netip.MustParseAddr("198.18.0.13") || s.Nodes[2].PodCIDR != netip.MustParsePrefix("10.244.3.0/24") {
		t.Fatalf("node3 = %+v", s.Nodes[2])
	}
	routes := nodeRoutes(s, "node1")
	want := []route{
		{Dst: netip.MustParsePrefix("10.244.2.0/24"), Via: netip.MustParseAddr("198.18.0.12")},
		{Dst: netip.MustParsePrefix("10.244.3.0/24"), Via: netip.MustParseAddr("198.18.0.13")},
		{Dst: netip.MustParsePrefix("10.96.0.0/12")},
	}
	if len(routes) != len(want) {
		t.Fatalf("routes %v", routes)
	}
	for i := range want {
		if routes[i] != want[i] {
			t.Errorf("route %d = %v, want %v", i, routes[i], want[i])
		}
	}
	withCP := s
	withCP.ControlPlaneIP = DefaultControlPlaneIP
	if err := withCP.Validate(); err != nil {
		t.Fatalf("control plane at %v: %v", DefaultControlPlaneIP, err)
	}
	// The seed's plan: nodes on 172.188.2.0/24.
	seed := Spec{Run: run, Underlay: netip.MustParsePrefix("172.188.2.0/24"), ExternalIP: netip.MustParseAddr("172.188.2.100"),
		Nodes: []NodeSpec{{Name: "node1", IP: netip.MustParseAddr("172.188.2.71"), PodCIDR: netip.MustParsePrefix("10.244.1.0/24")}}}
	if err := seed.Validate(); err != nil {
		t.Fatalf("seed plan: %v", err)
	}
	if d := seed.WithDefaults(); d.ServiceCIDR != DefaultServiceCIDR || d.Underlay != seed.Underlay {
		t.Fatalf("WithDefaults = %+v", d)
	}

	mutate := func(f func(*Spec)) Spec {
		s := DefaultSpec(run, 2)
		s.Nodes = append([]NodeSpec(nil), s.Nodes...)
		f(&s)
		return s
	}
	for name, c := range map[string]struct {
		s    Spec
		want string
	}{
		"no run":           {mutate(func(s *Spec) { s.Run = nil }), "no run"},
		"no nodes":         {mutate(func(s *Spec) { s.Nodes = nil }), "no nodes"},
		"dup node":         {mutate(func(s *Spec) { s.Nodes[1].Name = "node1" }), "duplicate"},
		"reserved name":    {mutate(func(s *Spec) { s.Nodes[1].Name = "external" }), "duplicate or reserved"},
		"pod- prefix":      {mutate(func(s *Spec) { s.Nodes[1].Name = "pod-x" }), "reserved"},
		"slash in name":    {mutate(func(s *Spec) { s.Nodes[1].Name = "a/b" }), "characters"},
		"node off net":     {mutate(func(s *Spec) { s.Nodes[1].IP = netip.MustParseAddr("10.0.0.1") }), "not a host address"},
		"broadcast":        {mutate(func(s *Spec) { s.Nodes[1].IP = netip.MustParseAddr("198.18.0.255") }), "not a host address"},
		"dup ip":           {mutate(func(s *Spec) { s.Nodes[1].IP = s.ExternalIP }), "already used"},
		"overlapping cidr": {mutate(func(s *Spec) { s.Nodes[1].PodCIDR = netip.MustParsePrefix("10.244.0.0/16") }), "overlaps"},
		"host bits":        {mutate(func(s *Spec) { s.Nodes[1].PodCIDR = netip.MustParsePrefix("10.244.2.1/24") }), "host bits"},
		"cidr in services": {mutate(func(s *Spec) { s.Nodes[1].PodCIDR = netip.MustParsePrefix("10.96.1.0/24") }), "service CIDR"},
		"ipv6 underlay":    {mutate(func(s *Spec) { s.Underlay = netip.MustParsePrefix("fd00::/64") }), "IPv4"},
		"cp on node ip":    {mutate(func(s *Spec) { s.ControlPlaneIP = s.Nodes[0].IP }), "already used"},
		"cp off net":       {mutate(func(s *Spec) { s.ControlPlaneIP = netip.MustParseAddr("10.0.0.2") }), "control plane: address 10.0.0.2 is not a host address"},
		"cp name reserved": {mutate(func(s *Spec) { s.Nodes[1].Name = RoleControlPlane }), "duplicate or reserved"},
	} {
		err := c.s.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want error containing %q", name, err, c.want)
		}
	}
}

func TestPodAddrOK(t *testing.T) {
	cidr := netip.MustParsePrefix("10.244.1.0/24")
	for ip, want := range map[string]bool{
		"10.244.1.0": false, "10.244.1.1": false, "10.244.1.2": true, "10.244.1.254": true,
		"10.244.1.255": false, "10.244.2.2": false,
	} {
		if got := podAddrOK(cidr, netip.MustParseAddr(ip)); got != want {
			t.Errorf("podAddrOK(%s) = %v", ip, got)
		}
	}
}
