package rulediff

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzNormalise feeds the normaliser hostile tool output in every format
// (the recorded dumps of both sides are the seeds): it never panics, its
// lines come out sorted, unique and single-line, a dump compared with
// itself has no difference, and classifying what one side alone has
// never panics either.
func FuzzNormalise(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		format := IPTablesSave
		switch {
		case strings.Contains(p, "nft-list"):
			format = NFT
		case strings.Contains(p, "ipvsadm"):
			format = IPVSAdm
		}
		f.Add(uint8(format), string(b))
	}
	f.Add(uint8(IPSetSave), "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\nadd KUBE-CLUSTER-IP 10.96.0.1,tcp:443\n")
	f.Add(uint8(NFT), "table ip kube-proxy {\n\tset s {\n\t\telements = { 1.2.3.4 . tcp . 80,\n")
	f.Add(uint8(IPTablesSave), "*nat\n:KUBE-SVC-ABCDEFGHIJKLMNOP - [0:0]\n-A KUBE-SERVICES -d 10.96.0.1/32 -m comment --comment \"ns/web:http cluster IP\" -j KUBE-SVC-ABCDEFGHIJKLMNOP\nCOMMIT\n")
	names := Names{
		Namespace: "ns",
		Addrs:     map[string]string{"10.96.0.1": "CLUSTER-IP(web)"},
		Foreign:   []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")},
	}
	f.Fuzz(func(t *testing.T, format uint8, dump string) {
		fm := Format(format%4 + 1)
		lines, err := Normalise(fm, dump, names)
		if err != nil {
			t.Fatalf("format %d: %v", fm, err)
		}
		if !slices.IsSorted(lines) {
			t.Errorf("lines not sorted: %q", lines)
		}
		for i, l := range lines {
			if strings.Contains(l, "\n") {
				t.Errorf("line %d spans lines: %q", i, l)
			}
			if i > 0 && lines[i-1] == l {
				t.Errorf("line %d repeated: %q", i, l)
			}
		}
		if a, b := Diff(lines, lines); len(a)+len(b) != 0 {
			t.Errorf("a dump differs from itself: %q / %q", a, b)
		}
		Classify("iptables-save", lines, nil, Differences)
	})
}
