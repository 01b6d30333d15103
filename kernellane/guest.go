package kernellane

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Virtual device tags shared between the qemu command line and the guest init.
const (
	tagRoot  = "vmroot"  // host /, read-only
	tagShare = "vmshare" // Config.Share, read-write, at the same path
	tagCtl   = "vmctl"   // per-run control directory: the status file
)

// specPath is where the guest spec lies in the initramfs.
const specPath = "/vmtest.json"

// guestMarker starts every line the guest init prints; the host times boot phases by it.
const guestMarker = "vmtest-guest: "

// GuestSpec is what the host tells the guest init. It travels as /vmtest.json in the
// initramfs.
type GuestSpec struct {
	Transport   string   // "virtiofs" or "9p"
	InitModules []string // module files in the initramfs (/modules/...), in load order
	Release     string   // kernel release, the name of the modules directory
	ModulesDir  string   // host path of the kernel's lib/modules, bind-mounted at /lib/modules
	Modules     []string // modules to modprobe before the command; missing ones are reported
	Share       string   // host directory mounted read-write at the same path; "" for none
	Dir         string   // working directory of the command
	Env         []string // the command's whole environment
	Argv        []string // the command
}

// IsGuest reports whether this process is the init of a vmtest guest.
func IsGuest() bool {
	if os.Getpid() != 1 {
		return false
	}
	_, err := os.Stat(specPath)
	return err == nil
}

// GuestMain is the guest's init: it prepares the root, runs the command, writes its
// exit status to the control share and powers the machine off. It never returns.
func GuestMain() {
	// Set by the kernel command line for a dynamically linked init (see
	// initDeps); nothing started later should inherit it.
	os.Unsetenv("LD_LIBRARY_PATH")
	g := &guest{ctl: -1}
	defer func() {
		if r := recover(); r != nil {
			g.fail(fmt.Errorf("init panicked: %v", r))
		}
		g.powerOff()
	}()
	code, err := g.run()
	if err != nil {
		g.fail(err)
		return
	}
	g.writeStatus(fmt.Sprintf("exit %d\n", code))
}

type guest struct {
	ctl  int // directory fd of the control share, -1 until mounted
	spec GuestSpec
}

func (g *guest) logf(format string, args ...any) {
	fmt.Fprintf(os.Stdout, guestMarker+format+" (uptime %s)\n", append(args, uptime())...)
}

func uptime() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return "?"
	}
	return (time.Duration(ts.Nano()) / time.Millisecond * time.Millisecond).String()
}

func (g *guest) fail(err error) {
	g.logf("error: %v", err)
	g.writeStatus("error " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n")
}

// writeStatus writes the status file atomically and durably: the host reads it after
// qemu has exited, and a missing file means "no result".
func (g *guest) writeStatus(s string) {
	if g.ctl < 0 {
		return
	}
	err := func() error {
		fd, err := unix.Openat(g.ctl, statusFile+".tmp", unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), statusFile)
		if _, err := f.WriteString(s); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := unix.Renameat(g.ctl, statusFile+".tmp", g.ctl, statusFile); err != nil {
			return err
		}
		return unix.Fsync(g.ctl)
	}()
	if err != nil {
		fmt.Fprintf(os.Stdout, guestMarker+"cannot write status: %v\n", err)
	}
}

func (g *guest) powerOff() {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(os.Stdout, guestMarker+"power off: %v\n", err)
	}
	// qemu runs with -no-reboot: a restart ends it too.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

func mount(source, target, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", target, err)
	}
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", source, fstype, target, err)
	}
	return nil
}

// mountShare mounts a host directory shared under tag, retrying briefly while the
// virtio device is still being probed.
func (g *guest) mountShare(tag, target string, ro bool, cache string) error {
	var flags uintptr
	if ro {
		flags |= unix.MS_RDONLY
	}
	fstype, data := "virtiofs", ""
	if g.spec.Transport == "9p" {
		fstype = "9p"
		data = "trans=virtio,version=9p2000.L,msize=262144,cache=" + cache
	}
	var err error
	for i := 0; i < 50; i++ {
		if err = mount(tag, target, fstype, flags, data); err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func (g *guest) run() (int, error) {
	for _, m := range []struct{ src, dst, fs string }{
		{"devtmpfs", "/dev", "devtmpfs"}, {"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"},
	} {
		if err := mount(m.src, m.dst, m.fs, 0, ""); err != nil {
			return 0, err
		}
	}
	g.logf("init started")
	data, err := os.ReadFile(specPath)
	if err != nil {
		return 0, fmt.Errorf("read spec: %w", err)
	}
	if err := json.Unmarshal(data, &g.spec); err != nil {
		return 0, fmt.Errorf("parse spec: %w", err)
	}
	for _, e := range g.spec.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			os.Setenv("PATH", v) // for modprobe and the command lookup
		}
	}
	for _, f := range g.spec.InitModules {
		if err := insmod(f); err != nil {
			return 0, err
		}
	}
	if err := g.mountShare(tagCtl, "/ctl", false, "none"); err != nil {
		return 0, fmt.Errorf("control share: %w", err)
	}
	if g.ctl, err = unix.Open("/ctl", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		return 0, fmt.Errorf("open control share: %w", err)
	}
	if err := g.setupRoot(); err != nil {
		return 0, err
	}
	if err := g.setupSystem(); err != nil {
		return 0, err
	}
	g.loadModules()
	return g.runCommand()
}

// insmod loads one module file of the initramfs.
func insmod(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("insmod: %w", err)
	}
	if err := unix.InitModule(data, ""); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("insmod %s: %w", filepath.Base(file), err)
	}
	return nil
}

// setupRoot builds the guest's root: an overlay of a tmpfs over the host root
// (read-only), then moves /dev, /proc and /sys into it and makes it /.
func (g *guest) setupRoot() error {
	if err := g.mountShare(tagRoot, "/mnt/lower", true, "loose"); err != nil {
		return fmt.Errorf("host root: %w", err)
	}
	if err := mount("tmpfs", "/mnt/rw", "tmpfs", 0, "mode=755"); err != nil {
		return err
	}
	for _, d := range []string{"/mnt/rw/upper", "/mnt/rw/work"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("overlay: %w", err)
		}
	}
	if err := mount("overlay", "/mnt/root", "overlay", 0,
		"lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work"); err != nil {
		return fmt.Errorf("overlay root: %w", err)
	}
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		if err := unix.Mount(d, "/mnt/root"+d, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s into the new root: %w", d, err)
		}
	}
	if err := unix.Chdir("/mnt/root"); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	return unix.Chdir("/")
}

// setupSystem mounts what a test expects of a booted system, and the shares.
func (g *guest) setupSystem() error {
	for _, m := range []struct{ src, dst, fs, data string }{
		{"devpts", "/dev/pts", "devpts", "newinstance,ptmxmode=0666,mode=0620"},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777"},
		// A fresh /run: ip netns keeps its mounts in /run/netns, and the host's
		// /run (seen through the overlay) holds the host's state, not ours.
		{"tmpfs", "/run", "tmpfs", "mode=755"},
	} {
		if err := mount(m.src, m.dst, m.fs, unix.MS_NOSUID, m.data); err != nil {
			return err
		}
	}
	if err := mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
		g.logf("warning: %v", err)
	}
	// /tmp stays on the overlay: the host's /tmp (where go test -c binaries often
	// are) shows through, and writes stay in the guest.
	if g.spec.ModulesDir != "" {
		if err := mount(g.spec.ModulesDir, "/lib/modules", "", unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("kernel modules: %w", err)
		}
	}
	if g.spec.Share != "" {
		if err := g.mountShare(tagShare, g.spec.Share, false, "mmap"); err != nil {
			return fmt.Errorf("read-write share: %w", err)
		}
	}
	if err := unix.Sethostname([]byte("vmtest")); err != nil {
		return fmt.Errorf("set hostname: %w", err)
	}
	return linkUp("lo")
}

// linkUp sets an interface up (ip link set NAME up).
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// loadModules modprobes the suite's modules with the host's modprobe. Missing
// modules are reported, not fatal: the tests that need them fail on their own.
func (g *guest) loadModules() {
	if len(g.spec.Modules) == 0 {
		return
	}
	idx, err := LoadModIndex(filepath.Join("/lib/modules", g.spec.Release))
	if err != nil {
		g.logf("warning: %v", err)
		return
	}
	var load, missing []string
	for _, m := range g.spec.Modules {
		switch {
		case idx.Builtin[ModName(m)]:
		case idx.Has(m):
			load = append(load, m)
		default:
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		g.logf("kernel lacks modules: %s", strings.Join(missing, " "))
	}
	if len(load) == 0 {
		return
	}
	out, err := exec.Command("modprobe", append([]string{"-a"}, load...)...).CombinedOutput()
	if err != nil {
		g.logf("warning: modprobe: %v: %s", err, strings.TrimSpace(string(out)))
		return
	}
	g.logf("loaded %d modules", len(load))
}

// runCommand starts the command and reaps every child (init inherits orphans) until
// the command itself has exited. A command killed by signal N exits 128+N, as in sh.
func (g *guest) runCommand() (int, error) {
	if len(g.spec.Argv) == 0 {
		return 0, errors.New("no command")
	}
	path, err := exec.LookPath(g.spec.Argv[0])
	if err != nil {
		g.logf("%v", err)
		return 127, nil
	}
	devnull, err := os.Open("/dev/null")
	if err != nil {
		return 0, fmt.Errorf("open /dev/null: %w", err)
	}
	g.logf("exec %s", strings.Join(g.spec.Argv, " "))
	proc, err := os.StartProcess(path, g.spec.Argv, &os.ProcAttr{
		Dir:   g.spec.Dir,
		Env:   g.spec.Env,
		Files: []*os.File{devnull, os.Stdout, os.Stderr},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	devnull.Close()
	if err != nil {
		g.logf("start: %v", err)
		return 126, nil
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("wait for the command: %w", err)
		}
		if pid != proc.Pid {
			continue
		}
		code := ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		g.logf("command exited with status %s", strconv.Itoa(code))
		return code, nil
	}
}
