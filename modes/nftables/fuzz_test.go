package nftables

import (
	"strings"
	"testing"

	"sigs.k8s.io/knftables"
)

// FuzzParseDump feeds arbitrary text to the nft dump parser the golden tests
// rely on (knftables.Fake.ParseDump, which reads `nft list table`-style
// "add ..." lines). What parses must dump as text that parses again to the
// same dump. Seeds: testdata/fuzz/FuzzParseDump (this package's golden
// dumps, and the regression below).
//
// The round trip is checked only for dumps of printable ASCII whose dump
// needs no escape: the Fake prints a comment Go-quoted (%q) but reads it
// back verbatim, so "\xd0" or a '"' in a comment grows a backslash per trip (found by
// this target; a knftables Fake limit, not svcsim's: svcsim's comments are
// built from DNS labels, so they never need escaping).
func FuzzParseDump(f *testing.F) {
	f.Add("add table ip kube-proxy { comment \"rules for kube-proxy\" ; }\nadd chain ip kube-proxy services\n")
	f.Fuzz(func(t *testing.T, dump string) {
		fake := knftables.NewFake(knftables.IPv4Family, tableName)
		if err := fake.ParseDump(dump); err != nil {
			return
		}
		out := fake.Dump()
		if !plainASCII(dump) || strings.Contains(out, `\`) {
			return
		}
		again := knftables.NewFake(knftables.IPv4Family, tableName)
		if err := again.ParseDump(out); err != nil {
			t.Fatalf("dump does not parse back: %v\n%s", err, out)
		}
		if out2 := again.Dump(); out2 != out {
			t.Fatalf("dump changes on a second round trip:\n%s\nthen\n%s", out, out2)
		}
	})
}

func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\n' && c != '\t') || c > '~' || c == '\\' {
			return false
		}
	}
	return true
}
