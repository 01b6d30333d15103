// Package kernellane runs a command inside a Debian kernel booted under qemu, with the
// host's root file system as the guest's (read-only, under a tmpfs overlay), and
// returns the command's exit status. It is svcsim's kernel lane: the host kernel may
// lack what a scenario needs (IPVS), a packaged kernel has it.
//
// The host side fetches the kernel (Cache), builds an initramfs holding this very
// binary as /init, the modules the root file system needs and a GuestSpec, starts
// virtiofsd when the transport is virtiofs, and runs qemu with the serial console on
// stdout. The guest side (GuestMain) mounts the host root over virtiofs or 9p,
// switches into an overlay of it, modprobes the suite's modules, runs the command and
// writes "exit N" into a per-run control share. qemu exits 0 on power-off whatever
// happened, so only that file carries the result; without it the run is a failure
// (ExitNoResult).
package kernellane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/svcsim/svcsim/internal/progress"
)

// Config says what to boot and what to run.
type Config struct {
	Kernel   string        // --kernel selector: "6.1", "6.12", or a package name
	CacheDir string        // kernel cache; "" is DefaultCacheDir()
	Share    string        // host directory mounted read-write at the same path; "" none
	Dir      string        // working directory in the guest; "" is the current one
	Env      []string      // extra environment: K=V, or K to copy the host's value
	Argv     []string      // the command
	Mem      string        // guest memory, qemu syntax; "" is 4G
	CPUs     int           // 0 is 2
	Timeout  time.Duration // whole boot and run; 0 is 20m
	Accel    string        // auto, kvm or tcg; "" is auto
	FS       string        // root transport: auto, virtiofs or 9p; "" is auto
	Modules  []string      // modules to load besides SuiteModules
	NoSuite  bool          // do not load SuiteModules
	Verbose  bool          // show the kernel's whole boot log
	Prefix   string        // put before every console line

	Stdout io.Writer // guest console; nil is os.Stdout
	Log    io.Writer // vmtest's own messages; nil is os.Stderr
	Stats  *Stats    // filled in when not nil

	QEMU      string // qemu-system-x86_64 binary
	Virtiofsd string // virtiofsd binary
	InitBin   string // binary that runs GuestMain as /init (static, or dynamic with its libraries found on this host); "" is this executable
}

// Stats are the timings of one run, from qemu's start as seen on the host.
type Stats struct {
	Kernel    string
	Accel     string
	Transport string
	ToInit    time.Duration // until the guest init printed its first line
	ToCommand time.Duration // until the command was started
	Total     time.Duration // until qemu exited
}

func (c Config) withDefaults() Config {
	if c.CacheDir == "" {
		c.CacheDir = DefaultCacheDir()
	}
	if c.Mem == "" {
		c.Mem = "4G"
	}
	if c.CPUs == 0 {
		c.CPUs = 2
	}
	if c.Timeout == 0 {
		c.Timeout = 20 * time.Minute
	}
	if c.Accel == "" {
		c.Accel = "auto"
	}
	if c.FS == "" {
		c.FS = "auto"
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Log == nil {
		c.Log = os.Stderr
	}
	if c.QEMU == "" {
		c.QEMU = "qemu-system-x86_64"
	}
	if c.Virtiofsd == "" {
		c.Virtiofsd = "/usr/lib/qemu/virtiofsd"
	}
	return c
}

func (c Config) modules() []string {
	var mods []string
	if !c.NoSuite {
		mods = append(mods, SuiteModules...)
	}
	return append(mods, c.Modules...)
}

func (c Config) validate() error {
	if len(c.Argv) == 0 {
		return errors.New("no command to run")
	}
	if err := checkMem(c.Mem); err != nil {
		return err
	}
	if c.CPUs < 1 {
		return fmt.Errorf("cpus %d: want at least 1", c.CPUs)
	}
	if c.Share != "" && !filepath.IsAbs(c.Share) {
		return fmt.Errorf("share %q: want an absolute path", c.Share)
	}
	if c.Dir != "" && !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("dir %q: want an absolute path", c.Dir)
	}
	return nil
}

// BuildEnv is the command's environment: PATH (the host's, with the sbin
// directories), HOME, then the --env entries. "K=V" sets K; "K" copies the host's K.
func BuildEnv(getenv func(string) (string, bool), extra []string) ([]string, error) {
	path, _ := getenv("PATH")
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if !strings.Contains(":"+path+":", ":"+d+":") {
			path = strings.TrimPrefix(path+":"+d, ":")
		}
	}
	home, ok := getenv("HOME")
	if !ok || home == "" {
		home = "/root"
	}
	vars := map[string]string{"PATH": path, "HOME": home}
	order := []string{"PATH", "HOME"}
	for _, e := range extra {
		k, v, hasValue := strings.Cut(e, "=")
		if k == "" {
			return nil, fmt.Errorf("env %q: want K=V or K", e)
		}
		if !hasValue {
			if v, ok = getenv(k); !ok {
				return nil, fmt.Errorf("env %s: not set on the host", k)
			}
		}
		if _, seen := vars[k]; !seen {
			order = append(order, k)
		}
		vars[k] = v
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env, nil
}

// rootModules are the modules the guest needs before the root file system is up.
var rootModules = map[string][]string{
	"virtiofs": {"virtio_pci", "virtiofs", "overlay"},
	"9p":       {"virtio_pci", "9pnet_virtio", "9p", "overlay"},
}

// chooseTransport resolves --fs against what the kernel has. auto prefers virtiofs
// (faster, and the only one the Debian cloud kernel has).
func chooseTransport(idx *ModIndex, want string) (string, error) {
	has := func(t string) bool {
		for _, m := range rootModules[t] {
			if !idx.Has(m) {
				return false
			}
		}
		return true
	}
	switch want {
	case "virtiofs", "9p":
		if !has(want) {
			return "", fmt.Errorf("kernel lacks %s (needs %s)", want, strings.Join(rootModules[want], ", "))
		}
		return want, nil
	case "auto":
		for _, t := range []string{"virtiofs", "9p"} {
			if has(t) {
				return t, nil
			}
		}
		return "", errors.New("kernel has neither virtiofs nor 9p over virtio")
	default:
		return "", fmt.Errorf("fs %q: want auto, virtiofs or 9p", want)
	}
}

// Run boots the kernel, runs the command in it and returns the command's exit code.
// When the guest leaves no exit status (crash, timeout, interrupt, setup failure)
// it returns ExitNoResult and an error that says why.
func Run(ctx context.Context, cfg Config) (int, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return ExitNoResult, err
	}
	r := &runner{cfg: cfg}
	code, err := r.run(ctx)
	r.cleanup()
	if err != nil {
		return ExitNoResult, err
	}
	return code, nil
}

type runner struct {
	cfg     Config
	runDir  string
	daemons []*daemon
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Log, "vmtest: "+format+"\n", args...)
}

func (r *runner) cleanup() {
	for _, d := range r.daemons {
		d.stop()
	}
	if r.runDir != "" {
		if err := os.RemoveAll(r.runDir); err != nil {
			r.logf("warning: remove %s: %v", r.runDir, err)
		}
	}
}

func (r *runner) run(ctx context.Context) (int, error) {
	cfg := r.cfg
	sel, err := ParseSelector(cfg.Kernel)
	if err != nil {
		return 0, err
	}
	// What the init binary needs is known before any download: a missing
	// library fails the run at once.
	initBin, deps, err := initBinary(cfg.InitBin)
	if err != nil {
		return 0, err
	}
	cache := &Cache{Dir: cfg.CacheDir, Log: cfg.Log}
	k, err := cache.Get(ctx, sel)
	if err != nil {
		return 0, err
	}
	idx, err := LoadModIndex(k.ModulesDir())
	if err != nil {
		return 0, err
	}
	transport, err := chooseTransport(idx, cfg.FS)
	if err != nil {
		return 0, fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	if transport == "virtiofs" && os.Geteuid() != 0 {
		return 0, errors.New("virtiofs needs root (virtiofsd serves the host root): run with sudo, or use --fs 9p with a kernel that has 9p")
	}
	if r.runDir, err = makeRunDir(cfg.CacheDir); err != nil {
		return 0, err
	}
	ctlDir := filepath.Join(r.runDir, "ctl")
	if err := os.Mkdir(ctlDir, 0o755); err != nil {
		return 0, fmt.Errorf("create control dir: %w", err)
	}

	env, err := BuildEnv(os.LookupEnv, append([]string{"VMTEST_KERNEL=" + k.Release}, cfg.Env...))
	if err != nil {
		return 0, err
	}
	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.Getwd(); err != nil {
			return 0, fmt.Errorf("working directory: %w", err)
		}
	}
	spec := GuestSpec{
		Transport:  transport,
		Release:    k.Release,
		ModulesDir: filepath.Dir(k.ModulesDir()),
		Modules:    cfg.modules(),
		Share:      cfg.Share,
		Dir:        dir,
		Env:        env,
		Argv:       cfg.Argv,
	}
	initrd := filepath.Join(r.runDir, "initrd.cpio")
	if err := writeInitramfs(initrd, initBin, deps, idx, k.ModulesDir(), rootModules[transport], spec); err != nil {
		return 0, err
	}

	accel, err := chooseAccel(ctx, cfg.Accel, cfg.CacheDir, cfg.QEMU, k.Vmlinuz(), r.logf)
	if err != nil {
		return 0, err
	}
	shares := []share{{Tag: tagCtl, Path: ctlDir}, {Tag: tagRoot, Path: "/", ReadOnly: true}}
	if cfg.Share != "" {
		shares = append(shares, share{Tag: tagShare, Path: cfg.Share})
	}
	r.logf("kernel %s (%s), accel %s, root over %s, %d CPUs, %s memory",
		k.Release, k.Package, accel, transport, cfg.CPUs, cfg.Mem)

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if transport == "virtiofs" {
		for i := range shares {
			cache := "auto"
			if shares[i].ReadOnly {
				cache = "always" // the host root does not change under a test run
			} else if shares[i].Tag == tagCtl {
				cache = "none"
			}
			shares[i].Socket = filepath.Join(r.runDir, shares[i].Tag+".sock")
			d, err := startVirtiofsd(ctx, cfg.Virtiofsd, shares[i], cache)
			if d != nil {
				r.daemons = append(r.daemons, d)
			}
			if err != nil {
				return 0, err
			}
		}
	}

	sercon := filepath.Join(r.runDir, "sercon-port")
	if err := os.WriteFile(sercon, make([]byte, 2), 0o644); err != nil {
		return 0, fmt.Errorf("write firmware setting: %w", err)
	}
	m := machine{
		SerconOff: sercon,
		Accel:     accel, Mem: cfg.Mem, CPUs: cfg.CPUs,
		Kernel: k.Vmlinuz(), Initrd: initrd, Cmdline: kernelCmdline(cfg.Verbose, deps.env()...),
		Transport: transport, Shares: shares,
	}
	start := time.Now()
	con := &console{out: cfg.Stdout, prefix: cfg.Prefix, start: start}
	if progress.IsTerminal(cfg.Stdout) {
		con.bar = progress.New(cfg.Stdout)
		con.bar.Set("kernel lane: booting %s", k.Release)
		stopTick := make(chan struct{})
		defer close(stopTick)
		go func() {
			for {
				select {
				case <-stopTick:
					return
				case <-time.After(time.Second):
					con.bar.Tick()
				}
			}
		}()
	}
	qerr := r.runQEMU(ctx, cfg.QEMU, qemuArgs(m), con)
	con.flush()
	total := time.Since(start)
	initAt, execAt := con.times()
	if cfg.Stats != nil {
		*cfg.Stats = Stats{Kernel: k.Release, Accel: accel, Transport: transport,
			ToInit: initAt, ToCommand: execAt, Total: total}
	}
	code, serr := readStatus(filepath.Join(ctlDir, statusFile))
	r.logf("qemu ran %s (init at %s, command at %s)", total.Round(time.Millisecond),
		initAt.Round(time.Millisecond), execAt.Round(time.Millisecond))
	if serr == nil {
		r.logf("command exited with status %d", code)
		return code, nil
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return 0, fmt.Errorf("timeout after %s: %w", cfg.Timeout, serr)
	case ctx.Err() != nil:
		return 0, fmt.Errorf("interrupted: %w", serr)
	case qerr != nil:
		for _, d := range r.daemons {
			if msg := d.exited(); msg != "" {
				qerr = fmt.Errorf("%w; %s", qerr, msg)
			}
		}
		return 0, fmt.Errorf("%w: %w", qerr, serr)
	}
	return 0, serr
}

// runQEMU runs qemu until it exits. When ctx ends it is sent SIGTERM, then SIGKILL.
func (r *runner) runQEMU(ctx context.Context, qemu string, args []string, con *console) error {
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.Stdout = con
	var stderr tailBuffer
	cmd.Stderr = io.MultiWriter(&stderr, &qemuStderr{w: r.cfg.Log})
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("qemu: %w", err)
	}
	return nil
}

// makeRunDir creates the per-run directory under cacheDir/run, named after this
// process, and removes those of processes that are gone (killed with SIGKILL).
func makeRunDir(cacheDir string) (string, error) {
	base := filepath.Join(cacheDir, "run")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("create run dir: %w", err)
	}
	ents, _ := os.ReadDir(base)
	for _, e := range ents {
		pidStr, _, _ := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("create run dir: %w", err)
	}
	dir := filepath.Join(base, strconv.Itoa(os.Getpid())+"-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("create run dir: %w", err)
	}
	return dir, nil
}
