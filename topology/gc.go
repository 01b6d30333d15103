package topology

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/rundir"
)

// nsRunRE extracts the run ID from a namespace name.
var nsRunRE = regexp.MustCompile(`^(` + rundir.Prefix + `[0-9a-f]{6})-`)

// RunOfNamespace returns the run ID a namespace name belongs to, or "".
func RunOfNamespace(name string) string {
	if m := nsRunRE.FindStringSubmatch(name); m != nil {
		return m[1]
	}
	return ""
}

// GC removes the leftovers of runs whose owner process is dead (killed with
// SIGKILL included): it kills the run's recorded processes and every process
// with a thread in one of the run's namespaces, deletes the links inside and
// the namespaces "<id>-*", and removes the run directory. Namespaces with a
// run ID prefix but no run directory are removed too, unless a live process
// holds them open (a run under another SVCSIM_RUN_ROOT). With all, live runs
// are removed as well and their owner is terminated (svcsim down); the
// calling process is never killed. Nothing whose name lacks the run prefix
// is touched. It returns what it removed.
func GC(ctx context.Context, all bool) ([]string, error) {
	runs, err := GCRuns(ctx, all)
	var removed []string
	for _, r := range runs {
		removed = append(removed, r.Removed...)
	}
	return removed, err
}

// RunRemoval is what GC removed of one run.
type RunRemoval struct {
	ID      string
	Removed []string // "namespace <name>", "process <pid>", "run dir <dir>", ...
}

// GCRuns is GC with what it removed grouped by run, in the order removed.
func GCRuns(ctx context.Context, all bool) ([]RunRemoval, error) {
	runs, err := rundir.List()
	if err != nil {
		return nil, err
	}
	names, err := netns.List()
	if err != nil {
		return nil, err
	}
	byRun := map[string][]string{}
	for _, n := range names {
		if id := RunOfNamespace(n); id != "" {
			byRun[id] = append(byRun[id], n)
		}
	}
	var removed []RunRemoval
	var errs []error
	for _, r := range runs {
		if err := ctx.Err(); err != nil {
			return removed, errors.Join(append(errs, err)...)
		}
		nss := byRun[r.ID]
		delete(byRun, r.ID)
		if !all && r.Alive() {
			continue
		}
		got, err := gcRun(r, nss)
		if len(got) > 0 {
			removed = append(removed, RunRemoval{ID: r.ID, Removed: got})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("gc run %s: %w", r.ID, err))
		}
	}
	// Namespaces whose run directory is gone.
	ids := make([]string, 0, len(byRun))
	for id := range byRun {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var held map[uint64]bool
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return removed, errors.Join(append(errs, err)...)
		}
		nss := byRun[id]
		if !all {
			if held == nil {
				held = heldNamespaces()
			}
			if anyHeld(nss, held) {
				continue
			}
		}
		got, err := gcNamespaces(nss)
		if len(got) > 0 {
			removed = append(removed, RunRemoval{ID: id, Removed: got})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("gc namespaces of %s: %w", id, err))
		}
	}
	return removed, errors.Join(errs...)
}

// RemoveRun removes one run whether its owner lives or not (the owner, if
// alive and not the calling process, is terminated first): its processes,
// namespaces and directory. Other runs are not touched.
func RemoveRun(ctx context.Context, id string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := rundir.Open(id)
	if err != nil {
		return nil, err
	}
	names, err := netns.List()
	if err != nil {
		return nil, err
	}
	var nss []string
	for _, n := range names {
		if RunOfNamespace(n) == id {
			nss = append(nss, n)
		}
	}
	removed, err := gcRun(r, nss)
	if err != nil {
		return removed, fmt.Errorf("remove run %s: %w", id, err)
	}
	return removed, nil
}

func gcRun(r *rundir.Run, nss []string) ([]string, error) {
	var removed []string
	var errs []error
	if owner, err := r.Owner(); err == nil && owner.PID != os.Getpid() && owner.Alive() {
		// Only reached with all: ask the owner to stop, then insist.
		if err := terminate(owner, 3*time.Second); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, "owner process "+strconv.Itoa(owner.PID))
		}
	}
	ps, err := r.PIDs()
	if err != nil {
		errs = append(errs, err)
	}
	killed, err := killProcs(ps, 5*time.Second)
	removed = append(removed, killed...)
	if err != nil {
		errs = append(errs, err)
	}
	got, err := gcNamespaces(nss)
	removed = append(removed, got...)
	if err != nil {
		errs = append(errs, err)
	}
	if err := r.Remove(); err != nil {
		errs = append(errs, err)
	} else {
		removed = append(removed, "run dir "+r.Dir)
	}
	return removed, errors.Join(errs...)
}

// gcNamespaces kills the processes inside nss, deletes their links and
// unmounts them.
func gcNamespaces(nss []string) ([]string, error) {
	var removed []string
	var errs []error
	inodes := map[uint64]bool{}
	for _, n := range nss {
		if ino, err := netns.InodeOf(n); err == nil {
			inodes[ino] = true
		}
	}
	ps, err := procsInNamespaces(inodes)
	if err != nil {
		errs = append(errs, err)
	}
	killed, err := killProcs(ps, 5*time.Second)
	removed = append(removed, killed...)
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range nss {
		if err := deleteAllLinks(n); err != nil {
			errs = append(errs, err)
		}
		if err := netns.DeleteNamed(n); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "namespace "+n)
	}
	return removed, errors.Join(errs...)
}

// deleteAllLinks removes every link but lo from the named namespace, so the
// links go now even if something still holds the namespace.
func deleteAllLinks(name string) error {
	ns, err := netns.Get(name)
	if err != nil {
		return nil // already gone
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns.Handle())
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	defer h.Close()
	var links []netlink.Link
	for range 5 {
		links, err = h.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("list links in %s: %w", name, err)
	}
	var errs []error
	for _, l := range links {
		if l.Attrs().Name == "lo" {
			continue
		}
		if err := h.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
			errs = append(errs, fmt.Errorf("delete %s in %s: %w", l.Attrs().Name, name, err))
		}
	}
	return errors.Join(errs...)
}

// terminate sends SIGTERM, waits up to grace, then SIGKILL.
func terminate(p rundir.Proc, grace time.Duration) error {
	if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("terminate owner %d: %w", p.PID, err)
	}
	deadline := time.Now().Add(grace)
	for p.Alive() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !p.Alive() {
		return nil
	}
	_, err := killProcs([]rundir.Proc{p}, 5*time.Second)
	return err
}

// heldNamespaces returns the inodes of network namespaces that some live
// process (this one included) has open as a file descriptor: a live
// topology keeps one open per namespace.
func heldNamespaces() map[uint64]bool {
	held := map[uint64]bool{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		dir := filepath.Join("/proc", p.Name(), "fd")
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "net:[") {
				continue
			}
			if ino, ok := nsInode(filepath.Join(dir, fd.Name())); ok {
				held[ino] = true
			}
		}
	}
	return held
}

func anyHeld(nss []string, held map[uint64]bool) bool {
	for _, n := range nss {
		if ino, err := netns.InodeOf(n); err == nil && held[ino] {
			return true
		}
	}
	return false
}

// Leftovers lists what of run still exists: namespaces named after it, its
// directory, and live recorded processes. Empty after a clean Close and
// run.Remove (the lead's isolation check).
func Leftovers(runID string) ([]string, error) {
	var out []string
	names, err := netns.List()
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if RunOfNamespace(n) == runID {
			out = append(out, "namespace "+n)
		}
	}
	if r, err := rundir.Open(runID); err == nil {
		ps, _ := r.PIDs()
		for _, p := range ps {
			if p.Alive() {
				out = append(out, "process "+strconv.Itoa(p.PID))
			}
		}
		out = append(out, "run dir "+r.Dir)
	}
	return out, nil
}
