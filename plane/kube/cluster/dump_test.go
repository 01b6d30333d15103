package cluster

import (
	"os"
	"strings"
	"testing"
)

// The testdata dumps are node1's, taken on the kubernetes plane with the
// seed's manifests (svcsim up --control-plane kubernetes -f
// sim/testdata/seed): iptables-legacy-save, and `nft list table ip
// kube-proxy` while the barrier was at b2 (b1's chain emptied, not yet
// deleted). The barrier's ClusterIP was 10.96.172.210 (iptables) and
// 10.107.38.186 (nftables).

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestIptablesViewLeavesOutBarrierAndVolatileLines(t *testing.T) {
	raw := readTestdata(t, "iptables-legacy-save.txt")
	view := iptablesView(raw)
	for _, gone := range []string{"barrier", "10.96.172.210", "KUBE-SVC-S7Y3BRLLOXAMTRPJ", "KUBE-SEP-N5LWTDHJTT47MYO7", "# Generated", "# Completed", "[211:93256]", ":INPUT ACCEPT"} {
		if strings.Contains(view, gone) {
			t.Errorf("view still has %q:\n%s", gone, view)
		}
	}
	// Every other KUBE line stays, in kube-proxy's order.
	var want []string
	for _, l := range strings.Split(raw, "\n") {
		if strings.HasPrefix(l, "*") || l == "COMMIT" ||
			(strings.Contains(l, "KUBE-") && !strings.Contains(l, "barrier") &&
				!strings.Contains(l, "KUBE-SVC-S7Y3BRLLOXAMTRPJ") && !strings.Contains(l, "KUBE-SEP-N5LWTDHJTT47MYO7")) {
			want = append(want, l)
		}
	}
	if got := strings.Split(strings.TrimSuffix(view, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("view has %d lines, want %d:\n%s", len(got), len(want), view)
	}

	// The barrier renamed (new port name, new chain hashes) and a later
	// dump time: the same view. A change of the cluster's own rules shows.
	renamed := strings.NewReplacer("barrier:b2", "barrier:b3", "S7Y3BRLLOXAMTRPJ", "AAAAAAAAAAAAAAAA", "N5LWTDHJTT47MYO7", "BBBBBBBBBBBBBBBB",
		"00:12:56", "00:13:01", "[211:93256]", "[215:94000]").Replace(raw)
	if iptablesView(renamed) != view {
		t.Errorf("a renamed barrier changed the view:\n%s", iptablesView(renamed))
	}
	changed := strings.Replace(raw, "--to-destination 10.244.2.2:80", "--to-destination 10.244.2.9:80", 1)
	if iptablesView(changed) == view {
		t.Error("a changed endpoint left the view unchanged")
	}
}

func TestNftablesViewLeavesOutBarrier(t *testing.T) {
	raw := readTestdata(t, "nft-list-table.txt")
	const ip = "10.107.38.186"
	view := nftablesView(raw, ip)
	for _, gone := range []string{"barrier", ip} {
		if strings.Contains(view, gone) {
			t.Errorf("view still has %q:\n%s", gone, view)
		}
	}
	for _, kept := range []string{
		"\tchain service-554EIXMV-default/external-service/tcp/ {\n\t\tmeta l4proto tcp dnat to 172.188.2.89:3307\n\t}\n\n\tchain service-FRL3A5U3",
		"\t\telements = { 10.102.71.92 . tcp . 443 comment \"default/my-service:https\" : goto reject-chain,\n" +
			"\t\t\t     10.102.71.92 . tcp . 80 comment \"default/my-service:http\" : goto reject-chain }\n",
		"\t\telements = { 10.102.71.92,\n\t\t\t     10.104.181.171,\n\t\t\t     10.109.143.45,\n\t\t\t     10.96.0.1,\n\t\t\t     10.96.0.10,\n\t\t\t     10.97.207.138,\n\t\t\t     10.97.209.115 }\n",
		"\t\telements = { tcp . 30080 : goto external-LI6FCVMI-default/myhttp-v2-service/tcp/ }\n",
		"\tmap no-endpoint-nodeports {\n\t\ttype inet_proto . inet_service : verdict\n\t\tcomment \"vmap to drop or reject packets to service nodeports with no endpoints\"\n\t}\n",
		"numgen random mod 2 map { 0 : 10.244.1.3 . 80, 1 : 10.244.2.2 . 80 }",
		"\t\t\t     10.96.0.10 . udp . 53 : goto service-FY5PMXPG-kube-system/kube-dns/udp/dns,\n",
	} {
		if !strings.Contains(view, kept) {
			t.Errorf("view lacks %q:\n%s", kept, view)
		}
	}
	if n, m := strings.Count(view, "\tchain "), strings.Count(raw, "\tchain ")-2; n != m {
		t.Errorf("view has %d chains, want %d", n, m)
	}
	if !strings.HasSuffix(view, "\n}\n") {
		t.Errorf("view does not end the table:\n%s", view)
	}

	// The barrier at b3 (b2's chain emptied, b1's gone) and the elements in
	// another hash order: the same view. The cluster's own changes show.
	renamed := strings.NewReplacer(
		"service-OOBYWKTQ-svcsim-system/barrier/tcp/b1 {\n\t}\n", "service-OVSXSBL5-svcsim-system/barrier/tcp/b2 {\n\t}\n",
		"service-OVSXSBL5-svcsim-system/barrier/tcp/b2 {\n\t\tmeta", "service-QQQQQQQQ-svcsim-system/barrier/tcp/b3 {\n\t\tmeta",
		"goto service-OVSXSBL5-svcsim-system/barrier/tcp/b2,", "goto service-QQQQQQQQ-svcsim-system/barrier/tcp/b3,",
		"{ 10.96.0.1, 10.96.0.10,", "{ 10.96.0.10, 10.96.0.1,",
	).Replace(raw)
	if nftablesView(renamed, ip) != view {
		t.Errorf("a renamed barrier changed the view:\n%s", nftablesView(renamed, ip))
	}
	// The barrier's chain the last of the table (kube-proxy orders chains
	// by when it made them): the same view, no blank line left before the
	// table's closing brace.
	b1 := "\tchain service-OOBYWKTQ-svcsim-system/barrier/tcp/b1 {\n\t}\n\n"
	last := strings.Replace(raw, b1, "", 1)
	last = strings.TrimSuffix(last, "}\n") + "\n" + strings.TrimSuffix(b1, "\n") + "}\n"
	if !strings.HasSuffix(last, "\t}\n\n\tchain service-OOBYWKTQ-svcsim-system/barrier/tcp/b1 {\n\t}\n}\n") {
		t.Fatalf("test dump not built as meant:\n%s", last[len(last)-300:])
	}
	if got := nftablesView(last, ip); got != view {
		t.Errorf("the barrier's chain last changed the view:\n%s", got[len(got)-200:])
	}
	for _, change := range [][2]string{
		{"dnat to 172.188.2.89:3307", "dnat to 172.188.2.90:3307"},
		{"10.109.143.45 }", "10.109.143.46 }"},
		{"\t\t\t     10.97.209.115 . tcp . 80 : goto service-FRL3A5U3-default/myhttp-service/tcp/,\n", ""},
	} {
		if nftablesView(strings.Replace(raw, change[0], change[1], 1), ip) == view {
			t.Errorf("%q -> %q left the view unchanged", change[0], change[1])
		}
	}
}

func TestSplitElements(t *testing.T) {
	got := splitElements(` 1.2.3.4 . tcp . 80 comment "a, b" : goto x, 0 : { 1, 2 }, z `)
	want := []string{`1.2.3.4 . tcp . 80 comment "a, b" : goto x`, `0 : { 1, 2 }`, `z`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("splitElements = %q, want %q", got, want)
	}
}

// TestWithoutBarrierLines: svcsim's userspace dump loses the barrier's
// portal rules and listener, nothing else.
func TestWithoutBarrierLines(t *testing.T) {
	in := `-A KUBE-PORTALS-CONTAINER -d 10.101.24.56/32 -p tcp -m comment --comment "svcsim-system/barrier:b5" -m tcp --dport 9 -j REDIRECT --to-ports 40001
-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp --dport 53 -j REDIRECT --to-ports 40002
svcsim-system/barrier:b5/TCP                          10.101.24.56:9    40001      198.18.0.2:9
kube-system/kube-dns:dns/UDP                          10.96.0.10:53     40002      10.244.1.2:53
`
	want := `-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp --dport 53 -j REDIRECT --to-ports 40002
kube-system/kube-dns:dns/UDP                          10.96.0.10:53     40002      10.244.1.2:53
`
	if got := withoutBarrierLines(in); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
