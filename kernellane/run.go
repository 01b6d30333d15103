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
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
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

// initBinary resolves the init binary ("" is this executable) and what it
// needs in the initramfs.
func initBinary(initBin string) (string, initDeps, error) {
	if initBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", initDeps{}, fmt.Errorf("find own executable: %w", err)
		}
		initBin = exe
	}
	dirs, err := hostLibDirs()
	if err != nil {
		return "", initDeps{}, err
	}
	deps, err := findInitDeps(initBin, dirs)
	if err != nil {
		return "", initDeps{}, err
	}
	return initBin, deps, nil
}

// writeInitramfs writes the guest's initramfs: the init binary (and, when it
// is dynamically linked, its loader and libraries, see initDeps), the spec,
// and the modules needed to mount the root (in load order).
func writeInitramfs(path, initBin string, deps initDeps, idx *ModIndex, modDir string, mods []string, spec GuestSpec) error {
	bin, err := os.ReadFile(initBin)
	if err != nil {
		return fmt.Errorf("read init binary: %w", err)
	}
	files, err := idx.LoadOrder(mods...)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	cw := &cpioWriter{w: f}
	for _, d := range []string{"dev", "proc", "sys", "mnt", "modules"} {
		cw.Dir(d, 0o755)
	}
	cw.CharDev("dev/console", 0o600, 5, 1)
	cw.File("init", 0o755, bin)
	if err := addInitDeps(cw, deps); err != nil {
		f.Close()
		return err
	}
	for i, file := range files {
		data, err := readModule(filepath.Join(modDir, file))
		if err != nil {
			f.Close()
			return err
		}
		name := fmt.Sprintf("/modules/%02d-%s.ko", i, ModName(file))
		cw.File(name, 0o644, data)
		spec.InitModules = append(spec.InitModules, name)
	}
	js, err := json.Marshal(spec)
	if err != nil {
		f.Close()
		return fmt.Errorf("encode guest spec: %w", err)
	}
	cw.File(specPath, 0o644, js)
	if err := cw.Close(); err != nil {
		f.Close()
		return fmt.Errorf("write initramfs: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	return nil
}

// addInitDeps adds a dynamic init binary's loader at its own path and its
// libraries in initLibDir (their host files' contents, symlinks followed).
func addInitDeps(cw *cpioWriter, deps initDeps) error {
	if deps.static() {
		return nil
	}
	made := map[string]bool{"dev": true, "proc": true, "sys": true, "mnt": true, "modules": true}
	mkdirs := func(dir string) {
		var parts []string
		for d := strings.Trim(dir, "/"); d != "." && d != ""; d = filepath.Dir(d) {
			parts = append([]string{d}, parts...)
		}
		for _, d := range parts {
			if !made[d] {
				made[d] = true
				cw.Dir(d, 0o755)
			}
		}
	}
	put := func(dst, src string) error {
		data, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("init binary's %s: %w", filepath.Base(dst), err)
		}
		mkdirs(filepath.Dir(dst))
		cw.File(dst, 0o755, data)
		return nil
	}
	if err := put(deps.Interp, deps.Interp); err != nil {
		return err
	}
	for _, name := range sortedLibs(deps.Libs) {
		if err := put(filepath.Join(initLibDir, name), deps.Libs[name]); err != nil {
			return err
		}
	}
	return nil
}

func sortedLibs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// readModule returns a module file's content, decompressed.
func readModule(path string) ([]byte, error) {
	var tool string
	switch filepath.Ext(path) {
	case ".ko":
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read module: %w", err)
		}
		return data, nil
	case ".xz":
		tool = "xz"
	case ".zst":
		tool = "zstd"
	case ".gz":
		tool = "gzip"
	default:
		return nil, fmt.Errorf("module %s: unknown compression", path)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(tool, "-dc", path)
	cmd.Stderr = &stderr
	data, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	return data, nil
}

// daemon is a helper process (virtiofsd) that lives as long as the run.
type daemon struct {
	name   string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	stderr *tailBuffer
}

// startVirtiofsd serves one share and waits for its socket.
func startVirtiofsd(ctx context.Context, bin string, s share, cache string) (*daemon, error) {
	d := &daemon{name: "virtiofsd " + s.Tag, done: make(chan struct{}), stderr: &tailBuffer{}}
	// sandbox=chroot: the namespace sandbox cannot pivot_root into "/" in a container.
	d.cmd = exec.Command(bin, "--socket-path="+s.Socket, "-o", "source="+s.Path,
		"-o", "cache="+cache, "-o", "sandbox=chroot")
	d.cmd.Stdout, d.cmd.Stderr = d.stderr, d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", d.name, err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if _, err := os.Stat(s.Socket); err == nil {
			return d, nil
		}
		select {
		case <-d.done:
			return d, fmt.Errorf("%s exited: %v: %s", d.name, d.err, d.stderr.String())
		case <-deadline:
			return d, fmt.Errorf("%s: no socket after 10s: %s", d.name, d.stderr.String())
		case <-ctx.Done():
			return d, ctx.Err()
		case <-tick.C:
		}
	}
}

// exited describes the daemon's end if it has ended, or returns "".
func (d *daemon) exited() string {
	select {
	case <-d.done:
		return fmt.Sprintf("%s exited (%v): %s", d.name, d.err, d.stderr.String())
	default:
		return ""
	}
}

// stop ends the daemon: SIGTERM, then SIGKILL after 3s. virtiofsd usually has
// exited already, when qemu closed the socket.
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(3 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// qemuStderr passes qemu's messages on line by line, prefixed, except the expected
// warning about the fw_cfg name.
type qemuStderr struct {
	w    io.Writer
	mu   sync.Mutex
	line []byte
}

func (q *qemuStderr) Write(b []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.line = append(q.line, b...)
	for {
		i := bytes.IndexByte(q.line, '\n')
		if i < 0 {
			return len(b), nil
		}
		l := q.line[:i+1]
		if !bytes.Contains(l, []byte("etc/sercon-port")) {
			if _, err := q.w.Write(append([]byte("qemu: "), l...)); err != nil {
				return 0, err
			}
		}
		q.line = q.line[i+1:]
	}
}
