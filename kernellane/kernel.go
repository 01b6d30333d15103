package kernellane

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Kernel is a Debian kernel package unpacked in the cache, ready to boot.
type Kernel struct {
	Package string // apt package name, e.g. linux-image-6.1.0-56-cloud-amd64
	Release string // uname -r of the kernel, the name of its modules directory
	Dir     string // unpacked package root (dpkg-deb -x output)
}

// Vmlinuz is the path of the bootable kernel image.
func (k Kernel) Vmlinuz() string { return filepath.Join(k.Dir, "boot", "vmlinuz-"+k.Release) }

// ModulesDir is the kernel's /lib/modules/<release> directory inside the unpacked package.
func (k Kernel) ModulesDir() string { return filepath.Join(k.Dir, "lib", "modules", k.Release) }

// pkgInfo is what a linux-image package name says about the kernel in it.
type pkgInfo struct {
	name    string
	series  string // "6.1"
	patch   int    // 0 in 6.1.0-56, 117 in 6.12.117+deb12
	abi     int    // 56 in 6.1.0-56; -1 when the name has none
	flavour string // "cloud-amd64", "amd64", "rt-amd64"
}

// imageName matches Debian's signed kernel image packages, in both naming schemes:
// linux-image-6.1.0-56-cloud-amd64 and linux-image-6.12.117+deb12-amd64.
var imageName = regexp.MustCompile(`^linux-image-(\d+\.\d+)\.(\d+)(?:-(\d+))?(?:\+[a-z0-9.]+)?-((?:[a-z]+-)?amd64)$`)

func parsePackage(name string) (pkgInfo, bool) {
	m := imageName.FindStringSubmatch(name)
	if m == nil {
		return pkgInfo{}, false
	}
	p := pkgInfo{name: name, series: m[1], abi: -1, flavour: m[4]}
	p.patch, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		p.abi, _ = strconv.Atoi(m[3])
	}
	return p, true
}

// Selector chooses a kernel package. It is either an exact package name
// ("linux-image-6.1.0-56-cloud-amd64") or SERIES[-FLAVOUR] where SERIES is like
// "6.1" and FLAVOUR is cloud, generic or rt. Without a flavour, 6.1 means the cloud
// kernel (small, boots fastest, virtiofs only) and every other series the generic
// one (has 9p too).
type Selector struct {
	Exact   string
	Series  string
	Flavour string // package name suffix: "cloud-amd64", "amd64", "rt-amd64"
}

var seriesSel = regexp.MustCompile(`^(\d+\.\d+)(?:-(cloud|generic|rt))?$`)

// ParseSelector parses the --kernel flag.
func ParseSelector(s string) (Selector, error) {
	if strings.HasPrefix(s, "linux-image-") {
		return Selector{Exact: s}, nil
	}
	m := seriesSel.FindStringSubmatch(s)
	if m == nil {
		return Selector{}, fmt.Errorf("kernel %q: want SERIES[-cloud|-generic|-rt] (like 6.1 or 6.12) or a linux-image-* package name", s)
	}
	sel := Selector{Series: m[1]}
	switch m[2] {
	case "cloud":
		sel.Flavour = "cloud-amd64"
	case "generic":
		sel.Flavour = "amd64"
	case "rt":
		sel.Flavour = "rt-amd64"
	default:
		if sel.Series == "6.1" {
			sel.Flavour = "cloud-amd64"
		} else {
			sel.Flavour = "amd64"
		}
	}
	return sel, nil
}

func (s Selector) String() string {
	if s.Exact != "" {
		return s.Exact
	}
	return s.Series + " (" + s.Flavour + ")"
}

// Choose returns the newest package among names that the selector accepts.
func (s Selector) Choose(names []string) (string, bool) {
	var best *pkgInfo
	for _, n := range names {
		if s.Exact != "" {
			if n == s.Exact {
				return n, true
			}
			continue
		}
		p, ok := parsePackage(n)
		if !ok || p.series != s.Series || p.flavour != s.Flavour {
			continue
		}
		if best == nil || p.patch > best.patch || (p.patch == best.patch && p.abi > best.abi) {
			best = &p
		}
	}
	if best == nil {
		return "", false
	}
	return best.name, true
}

// parseAptSearch reads `apt-cache search --names-only` output ("name - description").
func parseAptSearch(out []byte) []string {
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, _, _ := strings.Cut(sc.Text(), " - ")
		if name = strings.TrimSpace(name); name != "" {
			names = append(names, name)
		}
	}
	return names
}

// Runner runs a host command; tests replace it.
type Runner func(ctx context.Context, dir string, name string, args ...string) ([]byte, error)

// execRunner runs the command and returns its stdout; stderr goes into the error.
func execRunner(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Cache fetches Debian kernel packages and keeps them unpacked under Dir.
// The packages come from the host's apt sources as they are: Debian 12's default
// sources (bookworm and bookworm-security) carry both the 6.1 images and the
// linux-image-6.12.*+deb12 ones (6.12 is in bookworm-security), so Cache adds no
// source of its own.
// Layout: Dir/<package>/{boot,lib/modules/...,kernel.json}; kernel.json is written
// last, so a directory without it is incomplete and ignored. Dir/.lock serialises
// fetches of concurrent runs.
type Cache struct {
	Dir string
	Log io.Writer
	Run Runner // nil: exec the real commands
}

// DefaultCacheDir is $XDG_CACHE_HOME/svcsim/kernels, or /var/cache/svcsim/kernels.
func DefaultCacheDir() string {
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(x, "svcsim", "kernels")
	}
	return "/var/cache/svcsim/kernels"
}

func (c *Cache) run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	if c.Run != nil {
		return c.Run(ctx, dir, name, args...)
	}
	return execRunner(ctx, dir, name, args...)
}

func (c *Cache) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "vmtest: "+format+"\n", args...)
	}
}

// Cached lists the package names unpacked completely in the cache.
func (c *Cache) Cached() []string {
	ents, err := os.ReadDir(c.Dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "linux-image-") {
			if _, err := os.Stat(filepath.Join(c.Dir, e.Name(), "kernel.json")); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	return names
}

// Available lists the linux-image packages apt knows (`apt-cache search`).
func (c *Cache) Available(ctx context.Context) ([]string, error) {
	out, err := c.run(ctx, "", "apt-cache", "search", "--names-only", `^linux-image-[0-9]`)
	if err != nil {
		return nil, fmt.Errorf("list kernel packages: %w", err)
	}
	return parseAptSearch(out), nil
}

// Get returns the newest kernel the selector accepts among those apt offers and
// those already cached, fetching and unpacking it when it is not cached yet. When
// apt knows no match it runs `apt-get update` once and asks again; when apt fails
// altogether (offline) a cached kernel still serves.
func (c *Cache) Get(ctx context.Context, sel Selector) (Kernel, error) {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return Kernel{}, fmt.Errorf("create kernel cache: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(c.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return Kernel{}, fmt.Errorf("open cache lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return Kernel{}, fmt.Errorf("lock kernel cache %s: %w", c.Dir, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN) //nolint:errcheck // closing releases it anyway

	cached := c.Cached()
	avail, aptErr := c.Available(ctx)
	name, ok := sel.Choose(append(append([]string{}, avail...), cached...))
	if !ok && aptErr == nil {
		c.logf("no kernel package matches %s; running apt-get update", sel)
		if _, err := c.run(ctx, "", "apt-get", "update"); err != nil {
			return Kernel{}, fmt.Errorf("apt-get update: %w", err)
		}
		avail, aptErr = c.Available(ctx)
		name, ok = sel.Choose(append(avail, cached...))
	}
	if !ok {
		if aptErr != nil {
			return Kernel{}, fmt.Errorf("no cached kernel matches %s and apt failed: %w", sel, aptErr)
		}
		return Kernel{}, fmt.Errorf("no kernel package matches %s (apt-cache search '^linux-image-' lists the choices)", sel)
	}
	if k, err := c.load(name); err == nil {
		return k, nil
	}
	return c.fetch(ctx, name)
}

func (c *Cache) load(name string) (Kernel, error) {
	data, err := os.ReadFile(filepath.Join(c.Dir, name, "kernel.json"))
	if err != nil {
		return Kernel{}, err
	}
	var k Kernel
	if err := json.Unmarshal(data, &k); err != nil {
		return Kernel{}, fmt.Errorf("parse %s/kernel.json: %w", name, err)
	}
	k.Dir = filepath.Join(c.Dir, name) // the cache may have moved
	if _, err := os.Stat(k.Vmlinuz()); err != nil {
		return Kernel{}, err
	}
	return k, nil
}

// fetch downloads the package into a scratch directory in the cache, unpacks it,
// runs depmod, and renames the result into place.
func (c *Cache) fetch(ctx context.Context, name string) (Kernel, error) {
	tmp, err := os.MkdirTemp(c.Dir, ".fetch-")
	if err != nil {
		return Kernel{}, fmt.Errorf("fetch %s: %w", name, err)
	}
	defer os.RemoveAll(tmp)
	c.logf("downloading %s", name)
	// APT::Sandbox::User=root: the _apt user cannot write into a root-owned cache.
	if _, err := c.run(ctx, tmp, "apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", name); err != nil {
		return Kernel{}, fmt.Errorf("download %s: %w", name, err)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return Kernel{}, fmt.Errorf("download %s: want one .deb, got %d", name, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if _, err := c.run(ctx, tmp, "dpkg-deb", "-x", debs[0], root); err != nil {
		return Kernel{}, fmt.Errorf("unpack %s: %w", name, err)
	}
	if err := os.Remove(debs[0]); err != nil {
		return Kernel{}, fmt.Errorf("remove %s: %w", debs[0], err)
	}
	release, err := findRelease(root)
	if err != nil {
		return Kernel{}, fmt.Errorf("unpack %s: %w", name, err)
	}
	if _, err := c.run(ctx, tmp, "depmod", "-b", root, release); err != nil {
		return Kernel{}, fmt.Errorf("depmod %s: %w", name, err)
	}
	k := Kernel{Package: name, Release: release, Dir: root}
	if _, err := os.Stat(k.Vmlinuz()); err != nil {
		return Kernel{}, fmt.Errorf("package %s has no kernel image: %w", name, err)
	}
	data, _ := json.MarshalIndent(Kernel{Package: name, Release: release}, "", "  ")
	if err := os.WriteFile(filepath.Join(root, "kernel.json"), append(data, '\n'), 0o644); err != nil {
		return Kernel{}, fmt.Errorf("write kernel.json: %w", err)
	}
	final := filepath.Join(c.Dir, name)
	if err := os.RemoveAll(final); err != nil { // a stale incomplete copy
		return Kernel{}, fmt.Errorf("replace %s: %w", final, err)
	}
	if err := os.Rename(root, final); err != nil {
		return Kernel{}, fmt.Errorf("move %s into the cache: %w", name, err)
	}
	k.Dir = final
	c.logf("cached %s (kernel %s) in %s", name, release, final)
	return k, nil
}

// findRelease returns the single directory name under root/lib/modules.
func findRelease(root string) (string, error) {
	ents, err := os.ReadDir(filepath.Join(root, "lib", "modules"))
	if err != nil {
		return "", fmt.Errorf("find modules directory: %w", err)
	}
	var rels []string
	for _, e := range ents {
		if e.IsDir() {
			rels = append(rels, e.Name())
		}
	}
	if len(rels) != 1 {
		return "", errors.New("want exactly one lib/modules/<release> directory, got " + strconv.Itoa(len(rels)))
	}
	return rels[0], nil
}
