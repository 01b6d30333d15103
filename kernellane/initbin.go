package kernellane

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A dynamically linked /init (a plain `go build` of a binary that uses cgo's
// resolver, as svcsim does) runs before any root file system is there, so
// the initramfs carries what the dynamic loader needs: the loader itself at
// the path the binary names (PT_INTERP), and every shared library it needs,
// transitively, in initLibDir, which the kernel command line puts on
// LD_LIBRARY_PATH (the kernel passes unknown name=value parameters to init's
// environment; GuestMain unsets it at once). A static binary needs neither.

// initLibDir is where the initramfs keeps the init binary's libraries.
const initLibDir = "/vmtest/lib"

// initDeps is what a dynamically linked init binary needs in the initramfs.
type initDeps struct {
	Interp string // the dynamic loader's path (PT_INTERP); "" for a static binary
	// Libs maps each needed library's name (DT_NEEDED) to the host file
	// that provides it.
	Libs map[string]string
}

// static reports whether the binary needs nothing besides itself.
func (d initDeps) static() bool { return d.Interp == "" }

// env is the init process's environment the kernel command line must set.
func (d initDeps) env() []string {
	if d.static() {
		return nil
	}
	return []string{"LD_LIBRARY_PATH=" + initLibDir}
}

// defaultLibDirs are the dynamic loader's built-in directories, searched
// after those of /etc/ld.so.conf.
var defaultLibDirs = []string{"/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// findInitDeps reads the init binary's loader and its libraries' closure,
// each found the way the loader would: the binary's RUNPATH (or RPATH), then
// dirs; a candidate must be an ELF object of the binary's class and machine
// (so a 32-bit copy in a multilib directory is passed over).
func findInitDeps(bin string, dirs []string) (initDeps, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return initDeps{}, fmt.Errorf("init binary: %w", err)
	}
	defer f.Close()
	d := initDeps{Libs: map[string]string{}}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return initDeps{}, fmt.Errorf("init binary %s: read its loader's path: %w", bin, err)
		}
		d.Interp = strings.TrimRight(string(b), "\x00")
	}
	if d.static() {
		return d, nil
	}
	if _, err := os.Stat(d.Interp); err != nil {
		return initDeps{}, fmt.Errorf("init binary %s is dynamically linked and its loader is missing (%w): build it statically, e.g. CGO_ENABLED=0 go build", bin, err)
	}
	class, machine := f.Class, f.Machine
	type pending struct{ name, from string }
	var queue []pending
	add := func(obj *elf.File, path string) error {
		needed, err := obj.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("read the libraries %s needs: %w", path, err)
		}
		for _, n := range needed {
			queue = append(queue, pending{n, path})
		}
		return nil
	}
	if err := add(f, bin); err != nil {
		return initDeps{}, err
	}
	runpath := searchPath(f, bin)
	loader := filepath.Base(d.Interp)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if _, done := d.Libs[p.name]; done || p.name == loader {
			continue // the loader is loaded already and satisfies its own name
		}
		path, obj, err := findLib(p.name, append(runpath, dirs...), class, machine)
		if err != nil {
			return initDeps{}, fmt.Errorf("init binary %s: %s (needed by %s): %w; install it, or build the binary statically (CGO_ENABLED=0 go build)", bin, p.name, p.from, err)
		}
		d.Libs[p.name] = path
		err = add(obj, path)
		obj.Close()
		if err != nil {
			return initDeps{}, err
		}
	}
	return d, nil
}

// searchPath is an object's DT_RUNPATH, or DT_RPATH without one, with
// $ORIGIN expanded.
func searchPath(f *elf.File, path string) []string {
	vals, _ := f.DynString(elf.DT_RUNPATH)
	if len(vals) == 0 {
		vals, _ = f.DynString(elf.DT_RPATH)
	}
	origin := filepath.Dir(path)
	var out []string
	for _, v := range vals {
		for _, d := range strings.Split(v, ":") {
			d = strings.NewReplacer("${ORIGIN}", origin, "$ORIGIN", origin).Replace(d)
			if d != "" {
				out = append(out, d)
			}
		}
	}
	return out
}

// findLib returns the first file named name in dirs that is an ELF object
// of the wanted class and machine, opened.
func findLib(name string, dirs []string, class elf.Class, machine elf.Machine) (string, *elf.File, error) {
	if strings.Contains(name, "/") {
		dirs, name = []string{filepath.Dir(name)}, filepath.Base(name)
	}
	for _, dir := range dirs {
		path := filepath.Join(dir, name)
		obj, err := elf.Open(path)
		if err != nil {
			continue
		}
		if obj.Class == class && obj.Machine == machine {
			return path, obj, nil
		}
		obj.Close()
	}
	return "", nil, fmt.Errorf("not found for %s %s in %s", class, machine, strings.Join(dirs, ":"))
}

// ldSoConfDirs lists the directories of an ld.so.conf file and the files it
// includes (glob patterns, relative to its directory), in order. A missing
// file lists none.
func ldSoConfDirs(path string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var read func(string, int) error
	read = func(p string, depth int) error {
		if depth > 8 || seen[p] {
			return nil
		}
		seen[p] = true
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line, _, _ := strings.Cut(sc.Text(), "#")
			line = strings.TrimSpace(line)
			if pat, ok := strings.CutPrefix(line, "include"); ok && (pat == "" || pat[0] == ' ' || pat[0] == '\t') {
				for _, pat := range strings.Fields(pat) {
					if !filepath.IsAbs(pat) {
						pat = filepath.Join(filepath.Dir(p), pat)
					}
					ms, _ := filepath.Glob(pat)
					for _, m := range ms {
						if err := read(m, depth+1); err != nil {
							return err
						}
					}
				}
				continue
			}
			if line != "" && !strings.HasPrefix(line, "hwcap ") {
				out = append(out, line)
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		return nil
	}
	if err := read(path, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// hostLibDirs are the directories this host's loader searches.
func hostLibDirs() ([]string, error) {
	dirs, err := ldSoConfDirs("/etc/ld.so.conf")
	if err != nil {
		return nil, err
	}
	return append(dirs, defaultLibDirs...), nil
}
