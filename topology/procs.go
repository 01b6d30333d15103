package topology

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/svcsim/svcsim/internal/rundir"
)

var errNotExist = os.ErrNotExist

// procsInNamespaces returns the processes (other than this one) that have
// at least one thread in a network namespace whose inode is in inodes.
func procsInNamespaces(inodes map[uint64]bool) ([]rundir.Proc, error) {
	if len(inodes) == 0 {
		return nil, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("scan /proc: %w", err)
	}
	self := os.Getpid()
	var out []rundir.Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if !procInNamespaces(pid, inodes) {
			continue
		}
		start, err := rundir.StartTime(pid)
		if err != nil {
			continue // gone meanwhile
		}
		out = append(out, rundir.Proc{PID: pid, Start: start})
	}
	return out, nil
}

func procInNamespaces(pid int, inodes map[uint64]bool) bool {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	if ino, ok := nsInode(filepath.Join(dir, "ns", "net")); ok && inodes[ino] {
		return true
	}
	tasks, err := os.ReadDir(filepath.Join(dir, "task"))
	if err != nil {
		return false
	}
	for _, t := range tasks {
		if t.Name() == strconv.Itoa(pid) {
			continue
		}
		if ino, ok := nsInode(filepath.Join(dir, "task", t.Name(), "ns", "net")); ok && inodes[ino] {
			return true
		}
	}
	return false
}

// nsInode reads a "net:[4026532000]" link.
func nsInode(link string) (uint64, bool) {
	s, err := os.Readlink(link)
	if err != nil {
		return 0, false
	}
	s, ok := strings.CutPrefix(s, "net:[")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
	return n, err == nil
}

// killProcs sends SIGKILL to each process that is still the one recorded
// (same start time) and waits until they are gone or timeout passes.
func killProcs(ps []rundir.Proc, timeout time.Duration) ([]string, error) {
	var killed []string
	var errs []error
	for _, p := range ps {
		if !p.Alive() {
			continue
		}
		if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill pid %d: %w", p.PID, err))
			continue
		}
		killed = append(killed, "process "+strconv.Itoa(p.PID))
	}
	deadline := time.Now().Add(timeout)
	for _, p := range ps {
		for p.Alive() {
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("pid %d still alive %v after SIGKILL", p.PID, timeout))
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return killed, errors.Join(errs...)
}
