package topology

import (
	"sort"
	"strconv"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/rundir"
)

// Leaks lists what runs that are no longer alive left behind, the way GC
// (svcsim down) would find it, without removing anything: the directory of
// every run whose owner is dead, with its live recorded processes and its
// namespaces; namespaces with a run ID prefix and no run directory that no
// live process holds; processes with a thread in any of those namespaces;
// namespace mounts hidden under a cover of /run/netns; svcsim's mount point
// of /run/netns with nothing under it. Live runs (other svcsim processes,
// running tests) are not leaks. Sorted, one item a line ("namespace
// svs1a2b3c-node1", "process 1234", ...).
func Leaks() ([]string, error) {
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
	var out, leaked []string
	for _, r := range runs {
		nss := byRun[r.ID]
		delete(byRun, r.ID)
		if r.Alive() {
			continue
		}
		out = append(out, "run dir "+r.Dir)
		ps, _ := r.PIDs()
		for _, p := range ps {
			if p.Alive() {
				out = append(out, "process "+strconv.Itoa(p.PID)+" (recorded by "+r.ID+")")
			}
		}
		leaked = append(leaked, nss...)
	}
	held := heldNamespaces()
	for _, nss := range byRun {
		if !anyHeld(nss, held) {
			leaked = append(leaked, nss...)
		}
	}
	inodes := map[uint64]bool{}
	for _, n := range leaked {
		out = append(out, "namespace "+n)
		if ino, err := netns.InodeOf(n); err == nil {
			inodes[ino] = true
		}
	}
	ps, err := procsInNamespaces(inodes)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		out = append(out, "process "+strconv.Itoa(p.PID)+" (in a leaked namespace)")
	}
	if c, err := netns.Covered(); err != nil {
		return nil, err
	} else if c != nil {
		for _, n := range c.Hidden {
			out = append(out, "hidden mount "+netns.Dir+"/"+n+" (under mount "+strconv.Itoa(c.MountID)+")")
		}
	}
	if m, err := netns.StrayMountPoint(); err != nil {
		return nil, err
	} else if m != "" {
		out = append(out, m)
	}
	sort.Strings(out)
	return out, nil
}
