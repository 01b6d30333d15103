package netns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Why /run/netns is a mount point of its own.
//
// A named namespace is a bind mount of an nsfs file onto /run/netns/<name>.
// `ip netns add` first makes /run/netns a mount point with shared
// propagation: when it is not one yet, iproute2 bind-mounts the directory
// onto itself (recursively) and makes that mount shared. Mounts made under a
// plain /run/netns before that belong to the file system beneath: the new
// bind covers them. Their copies in the cover can be unmounted, but the
// originals under it can no longer be reached by path, so their files
// cannot be removed (EBUSY) and, once the copy is gone, opening one gives
// the plain file (setns: EINVAL). Making the mount point first, as iproute2
// does, means a later `ip netns add` finds it and stacks nothing.
//
// svcsim removes that mount point again when it made it and no namespace is
// left under it (nothing svcsim mounts outlives its runs). It keeps the
// mount ID it made in MountMarker so that it never unmounts a mount point
// somebody else made; iproute2 keeps its own for good. All of this happens
// under an exclusive flock(2) on the directory, so two svcsim processes never
// race a namespace mount against the removal of the mount point. iproute2
// takes no lock: an `ip netns add` racing that removal could land its mount
// on the plain directory (the state iproute2 itself starts from).

// MountMarker records the ID of the bind mount of Dir that svcsim made (one
// decimal number). It lies outside Dir, where `ip netns list` and svcsim's
// own listings would show it as a namespace.
var MountMarker = "/run/svcsim/netns-mount"

// ErrCovered marks an error caused by a namespace mount hidden under a later
// bind mount of Dir (see Covered).
var ErrCovered = errors.New("namespace mount hidden under a later bind mount of " + Dir)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	id, parent int
	root       string // the mounted directory inside its file system
	point      string // where it is mounted
	shared     bool   // optional field "shared:N"
}

// readMounts parses /proc/self/mountinfo (proc(5)).
func readMounts() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	ms, err := parseMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return ms, nil
}

func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var ms []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// id parent major:minor root point options [optional...] - type source superoptions
		if len(f) < 7 {
			return nil, fmt.Errorf("short mountinfo line %q", sc.Text())
		}
		id, err1 := strconv.Atoi(f[0])
		parent, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad mount ids in %q", sc.Text())
		}
		m := mountEntry{id: id, parent: parent, root: unescapeMount(f[3]), point: unescapeMount(f[4])}
		for _, opt := range f[6:] {
			if opt == "-" {
				break
			}
			if strings.HasPrefix(opt, "shared:") {
				m.shared = true
			}
		}
		ms = append(ms, m)
	}
	return ms, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (`\040` for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// dirMounts is how dir sits in the mount table.
type dirMounts struct {
	// stack are the mounts at dir, bottom first, each mounted on the one
	// before it; the last is the one a path lookup reaches. Empty when dir
	// is not a mount point.
	stack []mountEntry
	// under is the mount holding dir beneath the stack.
	under int
	// children are the mounts at dir/<name> of any of them.
	children []mountEntry
}

// mountIDOf returns the ID of the mount that path resolves into
// (statx(2) STATX_MNT_ID, the ID mountinfo lists).
func mountIDOf(path string) (int, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, fmt.Errorf("statx %s: %w", path, err)
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return 0, fmt.Errorf("statx %s: the kernel gives no mount ID", path)
	}
	return int(stx.Mnt_id), nil
}

// mountsOf places dir in ms, given the ID of the mount a lookup of dir
// reaches. Mounts at the same path in trees that something else covers (a
// tmpfs over /run, say) are not counted.
func mountsOf(ms []mountEntry, dir string, visible int) dirMounts {
	byID := make(map[int]mountEntry, len(ms))
	for _, m := range ms {
		byID[m.id] = m
	}
	var d dirMounts
	cur, ok := byID[visible]
	for ok && cur.point == dir {
		d.stack = append([]mountEntry{cur}, d.stack...)
		cur, ok = byID[cur.parent]
	}
	d.under = visible
	if len(d.stack) > 0 {
		d.under = d.stack[0].parent
	}
	in := map[int]bool{d.under: true}
	for _, m := range d.stack {
		in[m.id] = true
	}
	for _, m := range ms {
		if m.point != dir && filepath.Dir(m.point) == dir && in[m.parent] {
			d.children = append(d.children, m)
		}
	}
	return d
}

// readDirMounts reads the mount table and places Dir in it. A missing Dir
// (a fresh machine: nothing has made a named namespace yet) is in no mount
// table: nothing is mounted at it or under it.
func readDirMounts() (dirMounts, error) {
	visible, err := mountIDOf(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return dirMounts{}, nil
	}
	if err != nil {
		return dirMounts{}, err
	}
	ms, err := readMounts()
	if err != nil {
		return dirMounts{}, err
	}
	return mountsOf(ms, Dir, visible), nil
}

// lockDir takes an exclusive flock on Dir (made if missing) and returns its
// release. Dir's inode is the same above and below a bind of itself, so the
// lock holds whether or not the mount point exists.
func lockDir() (func(), error) {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", Dir, err)
	}
	fd, err := unix.Open(Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", Dir, err)
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", Dir, err)
	}
	return func() { unix.Close(fd) }, nil
}

// ensureMountPoint makes Dir a mount point with shared propagation, as
// `ip netns add` does, so that a later `ip netns add` stacks nothing over the
// namespaces mounted in it (call it with the lock held). If Dir is not a
// mount point yet but already holds namespace mounts (made by an older
// svcsim, or by a tool that does not do this), a bind now would cover them
// exactly as described above: Dir is then left as it is.
func ensureMountPoint() error {
	err := unix.Mount("", Dir, "", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", Dir, err)
	}
	// EINVAL: not a mount point.
	d, err := readDirMounts()
	if err != nil {
		return err
	}
	if len(d.children) > 0 {
		return nil
	}
	if err := unix.Mount(Dir, Dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s onto itself: %w", Dir, err)
	}
	if err := unix.Mount("", Dir, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		err = fmt.Errorf("make %s shared: %w", Dir, err)
		return errors.Join(err, unmountDir())
	}
	id, err := mountIDOf(Dir)
	if err != nil {
		return errors.Join(err, unmountDir())
	}
	if err := os.MkdirAll(filepath.Dir(MountMarker), 0o755); err != nil {
		return errors.Join(fmt.Errorf("create %s: %w", filepath.Dir(MountMarker), err), unmountDir())
	}
	if err := os.WriteFile(MountMarker, []byte(strconv.Itoa(id)+"\n"), 0o644); err != nil {
		return errors.Join(fmt.Errorf("record the mount of %s: %w", Dir, err), unmountDir())
	}
	return nil
}

func unmountDir() error {
	if err := unix.Unmount(Dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", Dir, err)
	}
	return nil
}

// releaseMountPoint removes the bind mount of Dir that svcsim made once no
// namespace is left in it (call it with the lock held). A mount point that
// somebody else made, or that somebody stacked another mount on, stays.
func releaseMountPoint() error {
	b, err := os.ReadFile(MountMarker)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", MountMarker, err)
	}
	id, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("read %s: %q is not a mount ID", MountMarker, b)
	}
	ents, err := os.ReadDir(Dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", Dir, err)
	}
	if len(ents) > 0 {
		return nil
	}
	d, err := readDirMounts()
	if err != nil {
		return err
	}
	ours := false
	for _, m := range d.stack {
		ours = ours || m.id == id
	}
	switch {
	case !ours:
		// Unmounted by somebody else meanwhile: the record is stale.
	case d.stack[len(d.stack)-1].id != id:
		return nil // something was mounted on top of it: leave both
	default:
		if err := unmountDir(); err != nil {
			return err
		}
	}
	if err := os.Remove(MountMarker); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", MountMarker, err)
	}
	return nil
}

// ReleaseMountPoint removes the bind mount of Dir that svcsim made, if no
// namespace is left in it (`svcsim down` calls it; DeleteNamed does too).
func ReleaseMountPoint() error {
	if _, err := os.Lstat(Dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	unlock, err := lockDir()
	if err != nil {
		return err
	}
	defer unlock()
	return releaseMountPoint()
}

// Cover describes a bind mount of Dir stacked over namespace mounts that it
// hides.
type Cover struct {
	// MountID is the covering mount's ID (/proc/self/mountinfo).
	MountID int
	// Hidden are the names under Dir whose mounts lie beneath the cover.
	Hidden []string
}

// Error names the cause and the remedy.
func (c *Cover) Error() string {
	names := c.Hidden
	more := ""
	if len(names) > 5 {
		more = fmt.Sprintf(" and %d more", len(names)-5)
		names = names[:5]
	}
	return fmt.Sprintf("%s is covered by mount %d, a bind mount of %s onto itself made after %d namespace mounts (%s%s); "+
		"`ip netns add` makes one when %s is not yet a mount point. Under it those namespaces cannot be entered (setns: EINVAL) "+
		"or removed (EBUSY). Remedy: `umount -l %s` (lazy: the cover goes with the mounts inside it, so first stop "+
		"whatever uses a namespace made after it), repeated until `findmnt %s` shows at most one mount, then `svcsim down` again",
		Dir, c.MountID, Dir, len(c.Hidden), strings.Join(names, ", "), more, Dir, Dir, Dir)
}

// Is makes errors.Is(cover, ErrCovered) true.
func (c *Cover) Is(target error) bool { return target == ErrCovered }

// Covered reports the bind mount of Dir that hides namespace mounts made
// before it, or nil when nothing is hidden.
func Covered() (*Cover, error) {
	d, err := readDirMounts()
	if err != nil {
		return nil, err
	}
	return d.cover(), nil
}

func (d dirMounts) cover() *Cover {
	if len(d.stack) == 0 {
		return nil
	}
	top := d.stack[len(d.stack)-1]
	var hidden []string
	for _, m := range d.children {
		if m.parent != top.id {
			hidden = append(hidden, filepath.Base(m.point))
		}
	}
	if len(hidden) == 0 {
		return nil
	}
	sort.Strings(hidden)
	return &Cover{MountID: top.id, Hidden: hidden}
}

// StrayMountPoint describes svcsim's bind mount of Dir when it is still
// there with no namespace under it (nothing took it down with the last
// namespace), or returns "".
func StrayMountPoint() (string, error) {
	b, err := os.ReadFile(MountMarker)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", MountMarker, err)
	}
	id, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return "", fmt.Errorf("read %s: %q is not a mount ID", MountMarker, b)
	}
	ents, err := os.ReadDir(Dir)
	if err != nil || len(ents) > 0 {
		return "", nil
	}
	d, err := readDirMounts()
	if err != nil {
		return "", err
	}
	for _, m := range d.stack {
		if m.id == id {
			return fmt.Sprintf("mount %d: svcsim's bind of %s onto itself, no namespace under it", id, Dir), nil
		}
	}
	return "", nil
}
