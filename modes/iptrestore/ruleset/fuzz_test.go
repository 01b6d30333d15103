package ruleset

import (
	"bytes"
	"sort"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the iptables-save parser. What parses
// must print (Save) as text that parses again to the same text: a rule
// whose words Save cannot quote faithfully would fail the round trip.
// Seeds: testdata/fuzz/FuzzParse (the iptables mode's golden rules and an
// iptables-save capture with counters).
func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data)
		if err != nil {
			return
		}
		var tables []string
		for name := range rs.Tables {
			tables = append(tables, name)
		}
		sort.Strings(tables)
		for _, name := range tables {
			saved := rs.Save(name)
			again, err := Parse(saved)
			if err != nil {
				t.Fatalf("table %s as saved does not parse: %v\n%s", name, err, saved)
			}
			if resaved := again.Save(name); !bytes.Equal(saved, resaved) {
				t.Fatalf("table %s changes on a second round trip:\n%s\nthen\n%s", name, saved, resaved)
			}
		}
	})
}

// FuzzSplit checks the restore-line splitter on arbitrary lines: it never
// panics, and the words it returns, quoted again, split back to themselves.
func FuzzSplit(f *testing.F) {
	f.Add(`-A KUBE-SERVICES -m comment --comment "default/a:http cluster IP" -j KUBE-SVC-X`)
	f.Add(`"unterminated`)
	f.Fuzz(func(t *testing.T, line string) {
		words, err := Split(line)
		if err != nil {
			return
		}
		var b bytes.Buffer
		for i, w := range words {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(Quote(w))
		}
		again, err := Split(b.String())
		if err != nil {
			t.Fatalf("words %q quoted as %q do not split: %v", words, b.String(), err)
		}
		if len(again) != len(words) {
			t.Fatalf("words %q quoted as %q split into %q", words, b.String(), again)
		}
		for i := range words {
			if again[i] != words[i] {
				t.Fatalf("words %q quoted as %q split into %q", words, b.String(), again)
			}
		}
	})
}
