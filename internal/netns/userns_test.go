package netns

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNewInUserNS: a namespace made by NewInUserNS belongs to a user
// namespace of its own; a process entering both is root there (uid_map
// "0 0 1") and may add a link, which the same process entering only a user
// namespace of its own may not do to a namespace of the initial one. The
// caller configures it from outside, and Delete removes it.
func TestNewInUserNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run with sudo go test ./internal/netns/")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("needs nsenter (util-linux)")
	}
	ns, err := NewInUserNS("svsnstest-userns")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Delete() })
	plain, err := New("svsnstest-plain")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plain.Delete() })
	for n, want := range map[*NS]bool{ns: false, plain: true} {
		if got, err := n.OwnedByInitialUserNS(); err != nil || got != want {
			t.Errorf("%s owned by the initial user namespace: %v, %v; want %v", n.Name(), got, err, want)
		}
	}
	// From outside: a sysctl, as topology sets them.
	if err := ns.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatalf("configure from outside: %v", err)
	}
	enter := func(n *NS, script string) (string, error) {
		u, err := ns.UserNS()
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		c := exec.Command("nsenter", "--user=/proc/self/fd/3", "--net="+n.Path(), "--", "sh", "-c", script)
		c.ExtraFiles = []*os.File{u}
		out, err := c.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := enter(ns, "cat /proc/self/uid_map; ip link add svsa type veth peer name svsb && ip -o link show svsa"); err != nil ||
		!strings.Contains(out, "svsa") || strings.Fields(out)[0] != "0" || strings.Fields(out)[2] != "1" {
		t.Errorf("inside its own user namespace: %v\n%s", err, out)
	}
	if out, err := enter(plain, "ip link add svsa type veth peer name svsb"); err == nil {
		t.Errorf("a namespace of the initial user namespace took a link from a child user namespace:\n%s", out)
	}
}
