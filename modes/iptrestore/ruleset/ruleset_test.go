package ruleset

import (
	"errors"
	"strings"
	"testing"
)

const base = `*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:OTHER - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.1/32 -j RETURN
-A OTHER -j ACCEPT
COMMIT
`

func TestParseAndSaveRoundTrip(t *testing.T) {
	rs, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	saved := string(rs.Save("nat"))
	for _, want := range []string{
		":PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:OTHER - [0:0]\n",
		`-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES` + "\n",
	} {
		if !strings.Contains(saved, want) {
			t.Errorf("save lacks %q:\n%s", want, saved)
		}
	}
	again, err := Parse([]byte(saved))
	if err != nil || string(again.Save("nat")) != saved {
		t.Errorf("round trip changed the table (%v):\n%s", err, again.Save("nat"))
	}
}

func TestNoFlushKeepsUndeclaredChains(t *testing.T) {
	rs, _ := Parse([]byte(base))
	err := rs.Restore([]byte("*nat\n:KUBE-SERVICES - [0:0]\n:NEW - [0:0]\n-A NEW -j KUBE-SERVICES\nCOMMIT\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	nat := rs.Table("nat")
	if n := len(nat.Chain("KUBE-SERVICES").Rules); n != 0 {
		t.Errorf("declared chain not flushed: %d rules", n)
	}
	if len(nat.Chain("OTHER").Rules) != 1 || len(nat.Chain("PREROUTING").Rules) != 1 {
		t.Errorf("undeclared chains changed:\n%s", rs.Save("nat"))
	}
	// Without --noflush the whole table is replaced.
	if err := rs.Restore([]byte("*nat\n:X - [0:0]\nCOMMIT\n"), false); err != nil {
		t.Fatal(err)
	}
	if rs.Table("nat").Chain("OTHER") != nil || len(rs.Table("nat").Chain("PREROUTING").Rules) != 0 {
		t.Errorf("restore without noflush kept old chains:\n%s", rs.Save("nat"))
	}
}

func TestRestoreChecksLikeIptablesRestore(t *testing.T) {
	for name, in := range map[string]string{
		"jump to missing chain":   "*nat\n-A OTHER -j KUBE-NOPE\nCOMMIT\n",
		"append to missing chain": "*nat\n-A NOPE -j ACCEPT\nCOMMIT\n",
		"delete referenced chain": "*nat\n:KUBE-SERVICES - [0:0]\n-X KUBE-SERVICES\nCOMMIT\n",
		"delete non-empty chain":  "*nat\n-X OTHER\nCOMMIT\n",
		"delete built-in chain":   "*nat\n-X PREROUTING\nCOMMIT\n",
		"delete missing rule":     "*nat\n-D OTHER -j DROP\nCOMMIT\n",
		"no COMMIT":               "*nat\n-A OTHER -j DROP\n",
		"unknown table":           "*bogus\nCOMMIT\n",
		"long chain name":         "*nat\n:KUBE-SVC-0123456789ABCDEFGHIJKL - [0:0]\nCOMMIT\n",
	} {
		rs, _ := Parse([]byte(base))
		before := string(rs.Save("nat"))
		err := rs.Restore([]byte(in), true)
		var le *LineError
		if !errors.As(err, &le) {
			t.Errorf("%s: err = %v, want a LineError", name, err)
		}
		if after := string(rs.Save("nat")); after != before {
			t.Errorf("%s: failed restore changed the table:\n%s", name, after)
		}
	}
}

func TestInsertDeleteAndFlushSemantics(t *testing.T) {
	rs, _ := Parse([]byte(base))
	in := "*nat\n-I OTHER 1 -j DROP\n-I OTHER -j RETURN\n-D OTHER -j ACCEPT\n-A OTHER -m comment --comment \"a b\" -j ACCEPT\n-D OTHER 1\nCOMMIT\n"
	if err := rs.Restore([]byte(in), true); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs.Table("nat").Chain("OTHER").Rules {
		got = append(got, r.String())
	}
	want := []string{"-A OTHER -j DROP", `-A OTHER -m comment --comment "a b" -j ACCEPT`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("rules %q, want %q", got, want)
	}
	// Flush, then delete: the kube-proxy way of removing a chain.
	if err := rs.Restore([]byte("*nat\n:OTHER - [0:0]\n-X OTHER\nCOMMIT\n"), true); err != nil {
		t.Fatal(err)
	}
	if rs.Table("nat").Chain("OTHER") != nil {
		t.Errorf("OTHER still exists")
	}
}

func TestSplit(t *testing.T) {
	got, err := Split(`[0:0] -A X -m comment --comment "a b c" -j Y`)
	if err != nil || strings.Join(got, "|") != "[0:0]|-A|X|-m|comment|--comment|a b c|-j|Y" {
		t.Errorf("Split = %q, %v", got, err)
	}
	if _, err := Split(`-A X --comment "open`); err == nil {
		t.Errorf("unterminated quote accepted")
	}
}
