// Package rundir gives each svcsim run an identity and a state directory.
//
// A run is named by a short ID ("svs" + 6 hex digits) that prefixes every
// namespace the run creates, so two runs never collide and a garbage collector
// can find a dead run's leftovers by name alone. Its directory, Root/<id>/,
// holds owner.pid (the owning process's pid and start time: together they
// survive pid reuse), pids/<pid> for child processes the run started, and
// whatever state files the rest of svcsim keeps there. It is owner-only
// (0700): its sockets, keys and kubeconfigs are root's alone.
package rundir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultRoot is where run directories live unless SVCSIM_RUN_ROOT says
// otherwise.
const DefaultRoot = "/run/svcsim"

// RootEnv overrides DefaultRoot.
const RootEnv = "SVCSIM_RUN_ROOT"

// Prefix starts every run ID.
const Prefix = "svs"

// idRE matches a run ID: Prefix and 6 lower-case hex digits.
var idRE = regexp.MustCompile(`^` + Prefix + `[0-9a-f]{6}$`)

// ValidID reports whether id has the form of a run ID.
func ValidID(id string) bool { return idRE.MatchString(id) }

// Root returns the directory holding all run directories.
func Root() string {
	if r := os.Getenv(RootEnv); r != "" {
		return r
	}
	return DefaultRoot
}

const (
	ownerFile = "owner.pid"
	pidsDir   = "pids"
)

// Run is one run's identity and state directory.
type Run struct {
	// ID is the run's name, e.g. "svs1a2b3c".
	ID string
	// Dir is Root()/ID.
	Dir string
}

// New creates a fresh run owned by the calling process.
func New() (*Run, error) {
	root := Root()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("create run root %s: %w", root, err)
	}
	start, err := StartTime(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("read own start time: %w", err)
	}
	for range 16 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("random run id: %w", err)
		}
		id := Prefix + hex.EncodeToString(b[:])
		dir := filepath.Join(root, id)
		// Mkdir (not MkdirAll) fails if another run took the ID meanwhile.
		if err := os.Mkdir(dir, 0o700); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return nil, fmt.Errorf("create run dir %s: %w", dir, err)
		}
		r := &Run{ID: id, Dir: dir}
		// Exactly 0700 whatever the umask.
		if err := os.Chmod(dir, 0o700); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("make run dir %s owner-only: %w", dir, err)
		}
		if err := writeProc(filepath.Join(dir, ownerFile), os.Getpid(), start); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		if err := os.Mkdir(filepath.Join(dir, pidsDir), 0o700); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("create %s: %w", filepath.Join(dir, pidsDir), err)
		}
		return r, nil
	}
	return nil, fmt.Errorf("no free run id under %s after 16 tries", root)
}

// Open returns the existing run id.
func Open(id string) (*Run, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("invalid run id %q (want %s + 6 hex digits)", id, Prefix)
	}
	dir := filepath.Join(Root(), id)
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open run %s: %w", id, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("open run %s: %s is not a directory", id, dir)
	}
	return &Run{ID: id, Dir: dir}, nil
}

// List returns every run under Root, sorted by ID. A missing root is an empty
// list.
func List() ([]*Run, error) {
	root := Root()
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list runs in %s: %w", root, err)
	}
	var runs []*Run
	for _, e := range ents {
		if e.IsDir() && ValidID(e.Name()) {
			runs = append(runs, &Run{ID: e.Name(), Dir: filepath.Join(root, e.Name())})
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].ID < runs[j].ID })
	return runs, nil
}

// Path returns the path of name inside the run directory.
func (r *Run) Path(name string) string { return filepath.Join(r.Dir, name) }

// Owner returns the owning process recorded in owner.pid.
func (r *Run) Owner() (Proc, error) {
	return readProc(r.Path(ownerFile))
}

// Alive reports whether the run's owner process still exists (same pid and
// same start time). A run whose owner.pid is missing or unreadable counts as
// dead once the directory is older than a few seconds; a just-created one is
// alive (New writes owner.pid right after creating the directory).
func (r *Run) Alive() bool {
	p, err := r.Owner()
	if err != nil {
		st, serr := os.Stat(r.Dir)
		return serr == nil && time.Since(st.ModTime()) < newGrace
	}
	return p.Alive()
}

// newGrace is how long a run directory without owner.pid counts as being
// created rather than abandoned.
const newGrace = 10 * time.Second

// RecordPID notes a child process of the run (a node proxy, a command run
// inside a namespace) so that GC can kill it if the owner dies.
func (r *Run) RecordPID(pid int) error {
	start, err := StartTime(pid)
	if err != nil {
		return fmt.Errorf("record pid %d in run %s: %w", pid, r.ID, err)
	}
	return writeProc(filepath.Join(r.Dir, pidsDir, strconv.Itoa(pid)), pid, start)
}

// ForgetPID removes a record written by RecordPID (the process ended). A
// missing record is not an error.
func (r *Run) ForgetPID(pid int) error {
	err := os.Remove(filepath.Join(r.Dir, pidsDir, strconv.Itoa(pid)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget pid %d in run %s: %w", pid, r.ID, err)
	}
	return nil
}

// PIDs returns the recorded child processes, alive or not.
func (r *Run) PIDs() ([]Proc, error) {
	dir := filepath.Join(r.Dir, pidsDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list recorded pids of run %s: %w", r.ID, err)
	}
	var ps []Proc
	for _, e := range ents {
		p, err := readProc(filepath.Join(dir, e.Name()))
		if err != nil {
			// A half-written record cannot name a process reliably; skip it.
			continue
		}
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].PID < ps[j].PID })
	return ps, nil
}

// Remove deletes the run directory and everything in it.
func (r *Run) Remove() error {
	if err := os.RemoveAll(r.Dir); err != nil {
		return fmt.Errorf("remove run dir %s: %w", r.Dir, err)
	}
	return nil
}

// Proc names a process robustly: pid plus its start time in clock ticks since
// boot (field 22 of /proc/<pid>/stat), so a recycled pid is not mistaken for
// the original process.
type Proc struct {
	PID   int
	Start uint64
}

// Alive reports whether the process still exists with the same start time.
// Zombies count as dead.
func (p Proc) Alive() bool {
	st, state, err := statFields(p.PID)
	if err != nil {
		return false
	}
	return st == p.Start && state != "Z" && state != "X"
}

// StartTime returns the start time of pid in clock ticks since boot.
func StartTime(pid int) (uint64, error) {
	st, _, err := statFields(pid)
	return st, err
}

// statFields parses /proc/<pid>/stat: the state (field 3) and the start time
// (field 22). The command name (field 2) may contain spaces and parentheses,
// so fields are counted after its last ')'.
func statFields(pid int) (start uint64, state string, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, "", err
	}
	return parseStat(string(b))
}

func parseStat(s string) (uint64, string, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", fmt.Errorf("malformed stat %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, "", fmt.Errorf("malformed stat: %d fields after comm", len(f))
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("malformed stat start time %q: %w", f[19], err)
	}
	return start, f[0], nil
}

func writeProc(path string, pid int, start uint64) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", pid, start), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func readProc(path string) (Proc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Proc{}, fmt.Errorf("read %s: %w", path, err)
	}
	var p Proc
	if _, err := fmt.Sscanf(string(b), "%d %d", &p.PID, &p.Start); err != nil {
		return Proc{}, fmt.Errorf("parse %s: %w", path, err)
	}
	return p, nil
}
