package kubelet

import (
	"net/netip"
	"testing"
)

func TestIPAMHostLocalOrder(t *testing.T) {
	a := newIPAM(netip.MustParsePrefix("10.244.2.0/29")) // .2 .. .6 usable
	var got []string
	for _, owner := range []string{"a", "b", "c"} {
		ip, err := a.allocate(owner, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ip.String())
	}
	if want := "10.244.2.2 10.244.2.3 10.244.2.4"; join(got) != want {
		t.Fatalf("got %s, want %s", join(got), want)
	}
	if ip, _ := a.allocate("a", netip.Addr{}); ip.String() != "10.244.2.2" {
		t.Errorf("same owner got %v, want its address again", ip)
	}
	a.release(netip.MustParseAddr("10.244.2.2"))
	// The freed address comes back only after the rest of the range.
	got = nil
	for _, owner := range []string{"d", "e", "f"} {
		ip, err := a.allocate(owner, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ip.String())
	}
	if want := "10.244.2.5 10.244.2.6 10.244.2.2"; join(got) != want {
		t.Fatalf("got %s, want %s", join(got), want)
	}
	if ip, err := a.allocate("g", netip.Addr{}); err == nil {
		t.Fatalf("full range gave %v", ip)
	}
	a.release(netip.MustParseAddr("10.244.2.4"))
	if ip, _ := a.allocate("h", netip.MustParseAddr("10.244.2.4")); ip.String() != "10.244.2.4" {
		t.Errorf("wanted address not honoured: %v", ip)
	}
	if ip, err := newIPAM(netip.MustParsePrefix("10.244.2.0/24")).allocate("i", netip.MustParseAddr("10.244.2.1")); err != nil || ip.String() != "10.244.2.2" {
		t.Errorf("asking for the gateway gave %v %v, want 10.244.2.2", ip, err)
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	for in, want := range map[string]string{
		"$(A)-$(B)":    "1-two",
		"$(C)":         "$(C)",
		"$$(A)":        "$(A)",
		"cost $5":      "cost $5",
		"open $(A":     "open $(A",
		"trailing $":   "trailing $",
		"$(A)$(A)$$$$": "11$$",
	} {
		if got := expand(in, lookup); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}
