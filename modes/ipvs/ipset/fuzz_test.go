package ipset

import (
	"bytes"
	"context"
	"slices"
	"testing"
)

// FuzzRestoreSave feeds arbitrary text to both ipset parsers: the Fake's
// restore-script parser and ParseSave (`ipset save` output). Every entry
// the Fake keeps must fit its set's type, and printing the Fake's sets as
// `ipset save` does must parse back to the same entries; ParseSave on the
// raw text must not panic and only return words of it. Seeds:
// testdata/fuzz/FuzzRestoreSave (an `ipset save` capture of the IPVS mode's
// sets and restore scripts it writes).
func FuzzRestoreSave(f *testing.F) {
	// One in-code seed beside the checked-in corpus: a set and an entry.
	seed := "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n" +
		"add KUBE-CLUSTER-IP 10.96.0.1,tcp:443\n"
	f.Add([]byte(seed))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		for _, name := range []string{"KUBE-CLUSTER-IP", "KUBE-LOOP-BACK", "KUBE-NODE-PORT-TCP"} {
			for _, e := range ParseSave(data, name) {
				if !bytes.Contains(data, []byte(e)) {
					t.Fatalf("ParseSave invented entry %q", e)
				}
			}
		}
		fk := NewFake()
		if err := fk.Restore(ctx, data); err != nil {
			return
		}
		sets, err := fk.ListSets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range sets {
			entries, err := fk.Entries(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			var save bytes.Buffer
			save.WriteString("create " + name + " " + string(fk.sets[name].typ) + " family inet hashsize 1024 maxelem 65536\n")
			for _, e := range entries {
				if err := checkEntry(fk.sets[name].typ, e); err != nil {
					t.Fatalf("set %s keeps an entry its type refuses: %v", name, err)
				}
				save.WriteString("add " + name + " " + e + "\n")
			}
			if got := ParseSave(save.Bytes(), name); !slices.Equal(got, entries) {
				t.Fatalf("set %s: saved %q, parsed back %q", name, entries, got)
			}
		}
	})
}
