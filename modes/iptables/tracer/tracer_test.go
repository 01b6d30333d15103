package tracer

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/svcsim/svcsim/modes/iptrestore/ruleset"
)

func TestMarkTargets(t *testing.T) {
	for _, tc := range []struct {
		args []string
		in   uint32
		want uint32
	}{
		{[]string{"-j", "MARK", "--or-mark", "0x4000"}, 0x1, 0x4001},
		{[]string{"-j", "MARK", "--xor-mark", "0x4000"}, 0x4001, 0x1},
		{[]string{"-j", "MARK", "--set-xmark", "0x4000/0x4000"}, 0x1, 0x4001}, // iptables-save's --or-mark
		{[]string{"-j", "MARK", "--set-xmark", "0x4000/0x0"}, 0x4001, 0x1},    // iptables-save's --xor-mark
		{[]string{"-j", "MARK", "--set-mark", "0x10/0xff"}, 0x1f0f, 0x1f10},
	} {
		r, err := parseRule(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if got := (tc.in &^ r.markMask) ^ r.markValue; got != tc.want {
			t.Errorf("%v on %#x = %#x, want %#x", tc.args, tc.in, got, tc.want)
		}
	}
}

func TestUnknownOptionsAreErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-i", "eth0", "-j", "ACCEPT"},
		{"-m", "set", "--match-set", "x", "dst", "-j", "ACCEPT"},
		{"-m", "addrtype", "--dst-type", "BROADCAST", "-j", "ACCEPT"},
		{"-j", "DNAT", "--to-destination", "10.0.0.1"},
	} {
		if _, err := parseRule(args); err == nil {
			t.Errorf("parseRule(%v) accepted", args)
		}
	}
}

func TestTraceBranchesAndPolicies(t *testing.T) {
	rs, err := ruleset.Parse([]byte(`*nat
:PREROUTING ACCEPT [0:0]
:SVC - [0:0]
-A PREROUTING -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j SVC
-A SVC -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.0.0.1:80
-A SVC -m recent --rcheck --seconds 10 --reap --name X --mask 255.255.255.255 --rsource -j DNAT --to-destination 10.0.0.9:80
-A SVC -j DNAT --to-destination 10.0.0.2:80
COMMIT
*filter
:FORWARD DROP [0:0]
-A FORWARD -d 10.0.0.2/32 -j ACCEPT
COMMIT
`))
	if err != nil {
		t.Fatal(err)
	}
	p := Packet{Src: netip.MustParseAddr("10.0.0.50"), Dst: netip.MustParseAddr("10.96.0.1"), Proto: "tcp", DPort: 80}
	res, err := Trace(rs, Node{}, p)
	if err != nil {
		t.Fatal(err)
	}
	// 10.0.0.1 is reached by the nat coin but dropped by FORWARD's policy;
	// 10.0.0.9 is behind an affinity check that misses.
	if got := res.Endpoints(); !slices.Equal(got, []string{"10.0.0.2:80"}) {
		t.Errorf("endpoints %v", got)
	}
	if got := res.Verdicts(); !slices.Equal(got, []string{"ACCEPT", "DROP"}) {
		t.Errorf("verdicts %v", got)
	}
}
