package netns

import (
	"os"
	"testing"
)

func TestSysctlPath(t *testing.T) {
	for key, want := range map[string]string{
		"net.ipv4.ip_forward":            "/proc/sys/net/ipv4/ip_forward",
		"net.ipv4.conf.eth0/1.rp_filter": "/proc/sys/net/ipv4/conf/eth0.1/rp_filter",
	} {
		if got := sysctlPath(key); got != want {
			t.Errorf("sysctlPath(%q) = %q, want %q", key, got, want)
		}
	}
}

// A sysctl written inside a namespace changes that namespace only.
func TestSysctlPerNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run with sudo go test ./internal/netns/")
	}
	ns, err := New("svsnstest-sysctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Delete() })
	host, err := ReadSysctl("net.ipv4.conf.default.send_redirects")
	if err != nil {
		t.Fatal(err)
	}
	want := "0"
	if host == "0" {
		want = "1"
	}
	if err := ns.SetSysctl("net.ipv4.conf.default.send_redirects", want); err != nil {
		t.Fatal(err)
	}
	got, err := ns.Sysctl("net.ipv4.conf.default.send_redirects")
	if err != nil || got != want {
		t.Fatalf("in namespace: %q, %v; want %q", got, err, want)
	}
	if after, _ := ReadSysctl("net.ipv4.conf.default.send_redirects"); after != host {
		t.Fatalf("host value changed from %q to %q", host, after)
	}
	ino, err := ns.Inode()
	if err != nil {
		t.Fatal(err)
	}
	if ino2, err := InodeOf(ns.Name()); err != nil || ino2 != ino {
		t.Fatalf("InodeOf = %d, %v; Inode = %d", ino2, err, ino)
	}
}
