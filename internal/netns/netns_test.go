package netns

import (
	"os"
	"strings"
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

// Output runs a command inside the namespace: a fresh one has only lo, and
// a failing command's status and output both come back.
func TestOutput(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run with sudo go test ./internal/netns/")
	}
	ns, err := New("svsnstest-output")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Delete() })
	out, err := ns.Output("ip", "-o", "link", "show")
	if err != nil {
		t.Fatalf("ip link: %v: %s", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], " lo:") {
		t.Errorf("links in a fresh namespace: %q, want lo alone", out)
	}
	out, err = ns.Output("ip", "link", "show", "svsnstest-none")
	if err == nil || !strings.Contains(out, "svsnstest-none") {
		t.Errorf("a missing link: %v, %q; want a failure naming it", err, out)
	}
	if _, err := ns.Output(); err == nil {
		t.Error("no command: no error")
	}
}

// The incident's mount table: svs1 mounted on a plain /run/netns (parent 27,
// the root file system), then `ip netns add` bound /run/netns onto itself
// (mount 60, copying svs1 as 61) and mounted its own namespace (62). A tmpfs
// elsewhere holds a same-named path that is not Dir's.
func TestCoverOfIncident(t *testing.T) {
	const table = `27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
50 27 0:4 net:[4026532300] /run/netns/svs1 rw shared:1 - nsfs nsfs rw
60 27 254:0 /run/netns /run/netns rw,relatime shared:40 - ext4 /dev/vda rw
61 60 0:4 net:[4026532300] /run/netns/svs1 rw shared:40 - nsfs nsfs rw
62 60 0:4 net:[4026532400] /run/netns/blue rw shared:40 - nsfs nsfs rw
70 1 0:30 / /other rw - tmpfs tmpfs rw
71 70 0:4 net:[4026532500] /run/netns/elsewhere rw - nsfs nsfs rw
80 27 0:31 / /mnt/with\040space rw - tmpfs tmpfs rw
`
	ms, err := parseMountinfo(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	if ms[7].point != "/mnt/with space" || !ms[0].shared || ms[5].shared {
		t.Fatalf("parsed %+v", ms)
	}
	d := mountsOf(ms, "/run/netns", 60)
	if len(d.stack) != 1 || d.stack[0].id != 60 || d.under != 27 || len(d.children) != 3 {
		t.Fatalf("placed %+v", d)
	}
	c := d.cover()
	if c == nil || c.MountID != 60 || len(c.Hidden) != 1 || c.Hidden[0] != "svs1" {
		t.Fatalf("cover = %+v, want mount 60 hiding svs1", c)
	}
	// Before the cover: no stack, nothing hidden, one child on the plain dir.
	d = mountsOf(ms[:2], "/run/netns", 27)
	if len(d.stack) != 0 || d.under != 27 || len(d.children) != 1 || d.cover() != nil {
		t.Fatalf("before the cover: %+v", d)
	}
	// svcsim's own mount point first: namespaces on it are not hidden.
	d = mountsOf(append(ms[:1:1], ms[2], ms[4]), "/run/netns", 60)
	if d.cover() != nil {
		t.Fatalf("mount point first: cover %+v", d.cover())
	}
}
