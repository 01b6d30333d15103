// Package netns creates, enters and removes named network namespaces without
// ever moving the calling goroutine's thread (cilium / containernetworking
// style). A namespace created here is bind-mounted at /run/netns/<name>, so the
// real tools see it: `ip netns exec <name> ...` works on it.
//
// Go schedules goroutines over OS threads, and a network namespace belongs to a
// thread. Do therefore runs its function on a fresh goroutine locked to its
// thread; if switching that thread back fails, the thread stays locked and the
// runtime retires it when the goroutine exits, so no other goroutine ever runs
// in the wrong namespace.
package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named namespaces are mounted, as iproute2 does.
const Dir = "/run/netns"

// NS is a handle to a named network namespace.
type NS struct {
	name string
	fd   vnetns.NsHandle
}

// Name is the namespace's name under /run/netns.
func (n *NS) Name() string { return n.name }

// Path is the namespace's bind mount, usable with `nsenter --net=`.
func (n *NS) Path() string { return filepath.Join(Dir, n.name) }

// Handle is an open file descriptor of the namespace, valid until Close or
// Delete; netlink.NewHandleAt and ipvs.NewInNamespace take it.
func (n *NS) Handle() vnetns.NsHandle { return n.fd }

// New creates the named namespace (`ip netns add name`). The caller's thread
// is left in its own namespace.
//
// Dir is made a shared mount point first, as iproute2 does (see
// MountMarker), so that a later `ip netns add` on the host covers nothing.
func New(name string) (*NS, error) {
	return create(name, func() (vnetns.NsHandle, error) {
		var fd vnetns.NsHandle
		errc := make(chan error, 1)
		go func() {
			// This goroutine's thread enters the new namespace and is never
			// returned to the pool: it is retired when the goroutine exits.
			runtime.LockOSThread()
			h, err := vnetns.NewNamed(name)
			if err != nil {
				if !errors.Is(err, os.ErrExist) {
					// NewNamed creates the mount point before mounting; do
					// not leave it behind when the mount failed.
					_ = os.Remove(filepath.Join(Dir, name))
				}
				errc <- fmt.Errorf("create netns %s: %w", name, err)
				return
			}
			fd = h
			errc <- nil
		}()
		return fd, <-errc
	})
}

// create makes Dir a shared mount point, calls mount (which creates the
// named namespace and opens it) under Dir's lock, and brings up the new
// namespace's loopback: IPVS and local listeners need it.
func create(name string, mount func() (vnetns.NsHandle, error)) (*NS, error) {
	unlock, err := lockDir()
	if err != nil {
		return nil, err
	}
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	if err := ensureMountPoint(); err != nil {
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	fd, err := mount()
	if err != nil {
		return nil, errors.Join(err, releaseMountPoint())
	}
	unlock()
	unlock = nil
	ns := &NS{name: name, fd: fd}
	if err := ns.Do(func() error { return setLoUp() }); err != nil {
		_ = ns.Delete()
		return nil, err
	}
	return ns, nil
}

// Get opens an existing named namespace.
func Get(name string) (*NS, error) {
	h, err := vnetns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	return &NS{name: name, fd: h}, nil
}

// Exists reports whether /run/netns/name exists.
func Exists(name string) bool {
	_, err := os.Stat(filepath.Join(Dir, name))
	return err == nil
}

// Do runs f with the calling context's network namespace switched to n. f runs
// on a separate goroutine locked to its OS thread. Commands started with
// os/exec inside f, and sockets created inside f, belong to n.
func (n *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := vnetns.Set(n.fd); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.name, err)
			return
		}
		ferr := f()
		if err := vnetns.Set(orig); err != nil {
			// Leave the thread locked: the runtime destroys it.
			errc <- errors.Join(ferr, fmt.Errorf("return from netns %s: %w", n.name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Output runs argv inside n and returns its combined stdout and stderr:
// the command is started in n (so it and its children stay there) and
// waited for outside it.
func (n *NS) Output(argv ...string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("netns: no command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := n.Do(cmd.Start); err != nil {
		return "", fmt.Errorf("start %s in netns %s: %w", argv[0], n.name, err)
	}
	err := cmd.Wait()
	return out.String(), err
}

// Close releases the handle; the namespace itself stays.
func (n *NS) Close() error {
	if n.fd >= 0 {
		err := n.fd.Close()
		n.fd = -1
		return err
	}
	return nil
}

// Delete closes the handle and removes the namespace (`ip netns del`). The
// kernel frees it once no process or socket holds it any more.
func (n *NS) Delete() error {
	cerr := n.Close()
	return errors.Join(cerr, DeleteNamed(n.name))
}

// DeleteNamed unmounts and removes /run/netns/name. A missing namespace is not
// an error. The last namespace removed takes svcsim's mount point of Dir
// with it. A namespace hidden under a later bind mount of Dir gives an
// error that errors.Is ErrCovered (Covered names the cause and the remedy).
func DeleteNamed(name string) error {
	p := filepath.Join(Dir, name)
	if _, err := os.Lstat(Dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	unlock, err := lockDir()
	if err != nil {
		return err
	}
	defer unlock()
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		err = fmt.Errorf("remove %s: %w", p, err)
		if errors.Is(err, unix.EBUSY) {
			if c, cerr := Covered(); cerr == nil && c != nil && slices.Contains(c.Hidden, name) {
				return fmt.Errorf("%w (%w: mount %d)", err, ErrCovered, c.MountID)
			}
		}
		return err
	}
	return releaseMountPoint()
}

// List returns the names of all namespaces under /run/netns.
func List() ([]string, error) {
	ents, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", Dir, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

func setLoUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// Inode is the namespace's identity: the inode number that
// /proc/<pid>/ns/net of every process inside it links to ("net:[<inode>]").
func (n *NS) Inode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(n.fd), &st); err != nil {
		return 0, fmt.Errorf("stat netns %s: %w", n.name, err)
	}
	return st.Ino, nil
}

// InodeOf returns the inode of the named namespace without opening a handle.
func InodeOf(name string) (uint64, error) {
	var st unix.Stat_t
	p := filepath.Join(Dir, name)
	if err := unix.Stat(p, &st); err != nil {
		return 0, fmt.Errorf("stat netns %s: %w", p, err)
	}
	return st.Ino, nil
}

// SetSysctl writes a sysctl of the namespace, e.g.
// SetSysctl("net.ipv4.ip_forward", "1") (`ip netns exec n sysctl -w ...`).
// The files under /proc/sys/net belong to the namespace of the thread that
// opens them, so the write happens inside Do.
func (n *NS) SetSysctl(key, value string) error {
	return n.Do(func() error { return WriteSysctl(key, value) })
}

// Sysctl reads a sysctl of the namespace.
func (n *NS) Sysctl(key string) (string, error) {
	var v string
	err := n.Do(func() error {
		var err error
		v, err = ReadSysctl(key)
		return err
	})
	return v, err
}

// WriteSysctl writes key (dotted form) in the calling thread's namespace.
func WriteSysctl(key, value string) error {
	p := sysctlPath(key)
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// ReadSysctl reads key (dotted form) in the calling thread's namespace.
func ReadSysctl(key string) (string, error) {
	b, err := os.ReadFile(sysctlPath(key))
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// sysctlPath maps "net.ipv4.conf.eth0.rp_filter" to its /proc/sys file. As
// in sysctl(8), a '/' in the key stands for a dot inside a component (an
// interface named "eth0.1" is written "net.ipv4.conf.eth0/1.rp_filter").
func sysctlPath(key string) string {
	swap := strings.NewReplacer(".", "/", "/", ".")
	return filepath.Join("/proc/sys", swap.Replace(key))
}
