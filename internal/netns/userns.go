package netns

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NewInUserNS creates the named namespace (as New) owned by a user
// namespace of its own, a child of the caller's in which uid and gid 0 are
// the caller's 0 (uid_map "0 0 1"). A process that enters both holds
// CAP_NET_ADMIN over this network namespace (a network namespace owned by
// the initial user namespace is out of its reach), yet sees itself inside
// a user namespace, as rootless Kubernetes does. The caller, root in the
// initial user namespace, configures the namespace from outside as any
// other (links, addresses, routes, sysctls): its capabilities cover every
// descendant user namespace. The user namespace lives as long as the
// network namespace; UserNS opens it.
//
// A short-lived helper (`sh`, started with CLONE_NEWUSER|CLONE_NEWNET)
// makes both; its network namespace is bind-mounted as New mounts one, then
// the helper exits.
func NewInUserNS(name string) (*NS, error) {
	return create(name, func() (vnetns.NsHandle, error) {
		if err := mountInUserNS(name); err != nil {
			return 0, fmt.Errorf("create netns %s in a user namespace: %w", name, err)
		}
		fd, err := vnetns.GetFromPath(filepath.Join(Dir, name))
		if err != nil {
			_ = DeleteNamed(name)
			return 0, fmt.Errorf("open netns %s: %w", name, err)
		}
		return fd, nil
	})
}

// mountInUserNS starts the helper in a new user and network namespace and
// binds its /proc/<pid>/ns/net on Dir/name.
func mountInUserNS(name string) error {
	sh, err := exec.LookPath("sh")
	if err != nil {
		return err
	}
	cmd := exec.Command(sh, "-c", "read -r _")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start helper: %w", err)
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	p := filepath.Join(Dir, name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	src := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	if err := unix.Mount(src, p, "none", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(p)
		return fmt.Errorf("bind %s on %s: %w", src, p, err)
	}
	_, _ = io.WriteString(stdin, "\n")
	return nil
}

// nsGetUserNS is NS_GET_USERNS of <linux/nsfs.h>: _IO(0xb7, 0x1).
const nsGetUserNS = 0xb701

// UserNS opens the user namespace that owns n (for a namespace made by
// NewInUserNS, its own; else the initial one). The caller closes the file;
// `nsenter --user=/proc/self/fd/N` enters it.
func (n *NS) UserNS() (*os.File, error) {
	fd, err := unix.IoctlRetInt(int(n.fd), nsGetUserNS)
	if err != nil {
		return nil, fmt.Errorf("owner of netns %s: %w", n.name, err)
	}
	return os.NewFile(uintptr(fd), "userns-of-"+n.name), nil
}

// procUserInitIno is the inode number of the initial user namespace's nsfs
// file (PROC_USER_INIT_INO of <linux/proc_ns.h>).
const procUserInitIno = 0xEFFFFFFD

// OwnedByInitialUserNS reports whether the initial user namespace owns n.
func (n *NS) OwnedByInitialUserNS() (bool, error) {
	f, err := n.UserNS()
	if err != nil {
		return false, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false, fmt.Errorf("owner of netns %s: %w", n.name, err)
	}
	return st.Ino == procUserInitIno, nil
}
