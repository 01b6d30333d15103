package netns_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/privtest"
)

// childEnv names the test a re-executed test binary runs in its private
// mount namespace.
const childEnv = "SVCSIM_NETNS_MOUNT_CHILD"

// inPrivateMounts runs the calling test again in a child process with a
// mount namespace of its own (Go's Unshareflags also marks / private there)
// and a tmpfs on /run: /run/netns starts as a plain directory, and every
// mount the test makes, or leaves, vanishes with the child. The host's
// mount table is never touched. It returns true in the child, where the
// test goes on; the parent returns false after checking that the child ran
// and passed.
func inPrivateMounts(t *testing.T) bool {
	if os.Getenv(childEnv) == t.Name() {
		self, err1 := os.Readlink("/proc/self/ns/mnt")
		parent, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
		if err1 != nil || err2 != nil || self == parent {
			t.Fatalf("not in a mount namespace of its own (%s, parent %s: %v %v): touching nothing", self, parent, err1, err2)
		}
		// The host's /run/netns may be a mount point (svcsim's or
		// iproute2's): its private copy here would still be listed at that
		// path under the tmpfs. Detach the copies (the host keeps its own).
		for i := 0; i < 16 && unix.Unmount(netns.Dir, unix.MNT_DETACH) == nil; i++ {
		}
		if err := unix.Mount("tmpfs", "/run", "tmpfs", 0, "size=16m,mode=755"); err != nil {
			t.Fatalf("tmpfs on /run in the private mount namespace: %v", err)
		}
		return true
	}
	privtest.RequireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	t.Logf("child in a private mount namespace:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("child did not run %s", t.Name())
	}
	return false
}

// mountsAt lists the mounts findmnt sees at path ("ID PROPAGATION" each),
// read by util-linux rather than by the code under test.
func mountsAt(t *testing.T, path string) []string {
	t.Helper()
	out, _ := exec.Command("findmnt", "-n", "-o", "ID,PROPAGATION", "--mountpoint", path).Output()
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func run(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// enter checks that the namespace can be entered (setns) and used.
func enter(t *testing.T, name string) {
	t.Helper()
	ns, err := netns.Get(name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer ns.Close()
	if _, err := ns.Sysctl("net.ipv4.ip_forward"); err != nil {
		t.Fatalf("use %s: %v", name, err)
	}
}

// svcsim makes /run/netns a shared mount point before its first namespace,
// so `ip netns add` stacks no cover over it; the mount point goes with the
// last namespace, and only when svcsim made it.
func TestMountPointBeforeNamespaces(t *testing.T) {
	if !inPrivateMounts(t) {
		return
	}
	if got := mountsAt(t, netns.Dir); len(got) != 0 {
		t.Fatalf("%s is a mount point before the test: %v", netns.Dir, got)
	}
	a := privtest.NS(t, "a")
	got := mountsAt(t, netns.Dir)
	if len(got) != 1 || !strings.HasSuffix(got[0], "shared") {
		t.Fatalf("after the first namespace, mounts at %s = %v, want one shared", netns.Dir, got)
	}
	run(t, "ip", "netns", "add", "svsiptest-b")
	if after := mountsAt(t, netns.Dir); len(after) != 1 || after[0] != got[0] {
		t.Fatalf("ip netns add stacked a mount: %v, was %v", after, got)
	}
	enter(t, a.Name())
	run(t, "ip", "netns", "exec", a.Name(), "true")
	if err := a.Delete(); err != nil {
		t.Fatalf("delete %s: %v", a.Name(), err)
	}
	if after := mountsAt(t, netns.Dir); len(after) != 1 {
		t.Fatalf("mount point went while ip's namespace is in it: %v", after)
	}
	run(t, "ip", "netns", "del", "svsiptest-b")
	if err := netns.ReleaseMountPoint(); err != nil {
		t.Fatal(err)
	}
	if after := mountsAt(t, netns.Dir); len(after) != 0 {
		t.Fatalf("svcsim's mount point stayed after the last namespace: %v", after)
	}
	if _, err := os.Stat(netns.MountMarker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s stayed: %v", netns.MountMarker, err)
	}

	// Made and removed with a namespace of svcsim's own.
	c := privtest.NS(t, "c")
	if len(mountsAt(t, netns.Dir)) != 1 {
		t.Fatal("no mount point for the second namespace")
	}
	if err := c.Delete(); err != nil {
		t.Fatal(err)
	}
	if after := mountsAt(t, netns.Dir); len(after) != 0 {
		t.Fatalf("mount point stayed after the last namespace was deleted: %v", after)
	}

	// A mount point iproute2 made stays.
	run(t, "ip", "netns", "add", "svsiptest-d")
	ipMade := mountsAt(t, netns.Dir)
	e := privtest.NS(t, "e")
	if err := e.Delete(); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "del", "svsiptest-d")
	if err := netns.ReleaseMountPoint(); err != nil {
		t.Fatal(err)
	}
	if after := mountsAt(t, netns.Dir); len(after) != 1 || after[0] != ipMade[0] {
		t.Fatalf("iproute2's mount point %v: now %v", ipMade, after)
	}
}

// On a fresh machine /run/netns does not exist yet: the leak check made at
// the start of make test (stop 27's CI) must find nothing, not fail.
func TestNoNamespaceDir(t *testing.T) {
	if !inPrivateMounts(t) {
		return
	}
	if _, err := os.Stat(netns.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists on the fresh /run: %v", netns.Dir, err)
	}
	if names, err := netns.List(); err != nil || len(names) != 0 {
		t.Fatalf("List = %v, %v; want none, no error", names, err)
	}
	if c, err := netns.Covered(); err != nil || c != nil {
		t.Fatalf("Covered = %+v, %v; want none, no error", c, err)
	}
	if m, err := netns.StrayMountPoint(); err != nil || m != "" {
		t.Fatalf("StrayMountPoint = %q, %v; want none, no error", m, err)
	}
}

// The incident: namespace mounts made on a plain /run/netns, then `ip netns
// add` binds the directory over them. Covered names them and the cover, a
// removal fails with ErrCovered rather than a bare EBUSY, and the remedy
// the message gives works.
func TestCoveredNamespacesNamed(t *testing.T) {
	if !inPrivateMounts(t) {
		return
	}
	// The way svcsim made namespaces before: no mount point first.
	old := privtest.Run(t).ID + "-old"
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread retires in the new namespace
		h, err := vnetns.NewNamed(old)
		if err == nil {
			h.Close()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(old) })
	// With a namespace mounted on the plain directory, svcsim binds
	// nothing over it (that would be the cover itself).
	f := privtest.NS(t, "f")
	if got := mountsAt(t, netns.Dir); len(got) != 0 {
		t.Fatalf("svcsim covered existing namespace mounts: %v", got)
	}
	if c, err := netns.Covered(); err != nil || c != nil {
		t.Fatalf("Covered before any cover = %v, %v", c, err)
	}
	run(t, "ip", "netns", "add", "svsiptest-g")
	c, err := netns.Covered()
	if err != nil || c == nil {
		t.Fatalf("Covered after ip netns add = %v, %v", c, err)
	}
	if want := []string{f.Name(), old}; strings.Join(c.Hidden, " ") != strings.Join(want, " ") {
		t.Errorf("hidden = %v, want %v", c.Hidden, want)
	}
	if msg := c.Error(); !strings.Contains(msg, "ip netns add") || !strings.Contains(msg, "umount -l "+netns.Dir) {
		t.Errorf("cover message names no cause or remedy: %s", msg)
	}
	err = netns.DeleteNamed(old)
	if !errors.Is(err, netns.ErrCovered) || !errors.Is(err, unix.EBUSY) {
		t.Fatalf("removing a covered namespace: %v, want EBUSY and ErrCovered", err)
	}
	// The remedy: ip's own namespace first, then the cover.
	run(t, "ip", "netns", "del", "svsiptest-g")
	run(t, "umount", "-l", netns.Dir)
	if c, err := netns.Covered(); err != nil || c != nil {
		t.Fatalf("Covered after the remedy = %v, %v", c, err)
	}
	enter(t, f.Name())
	if err := netns.DeleteNamed(old); err != nil {
		t.Fatalf("remove after the remedy: %v", err)
	}
}
