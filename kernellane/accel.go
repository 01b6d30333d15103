package kernellane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// kvmAPIVersion is the stable KVM API version (KVM_GET_API_VERSION).
const kvmAPIVersion = 12

// kvmOpens reports whether /dev/kvm opens and speaks the KVM API. That is necessary,
// not sufficient: on some hosts (nested virtualisation in a microVM) it does, and a
// real guest then hangs or qemu aborts. probeKVM checks the rest.
func kvmOpens() bool {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	v, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), 0xAE00 /* KVM_GET_API_VERSION */, 0)
	return errno == 0 && v == kvmAPIVersion
}

// probeTimeout bounds the KVM probe boot; a working KVM reaches the panic in about
// a second, TCG in two.
const probeTimeout = 15 * time.Second

// probeKVM boots the kernel under KVM without a root file system and waits for it
// to panic ("VFS: Unable to mount root fs") and reboot, which ends qemu. Reaching
// that point in time means KVM runs a stock guest.
func probeKVM(ctx context.Context, qemu, vmlinuz string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "kvm", "-cpu", "host", "-m", "256M",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio", "-monitor", "none",
		"-kernel", vmlinuz, "-append", "console=ttyS0 panic=-1 root=/dev/vmtest-none")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("kvm guest did not boot within %s", probeTimeout)
	}
	if err != nil {
		return fmt.Errorf("kvm guest: %w: %s", err, lastLine(out.String()))
	}
	if !strings.Contains(out.String(), "Kernel panic") {
		return fmt.Errorf("kvm guest ended without booting: %s", lastLine(out.String()))
	}
	return nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// chooseAccel resolves --accel. "auto" means KVM when /dev/kvm works and the probe
// boot succeeds, TCG otherwise. The probe verdict is kept in the cache directory per
// host boot (keyed by /proc/sys/kernel/random/boot_id), so it costs once.
func chooseAccel(ctx context.Context, want, cacheDir, qemu, vmlinuz string, logf func(string, ...any)) (string, error) {
	switch want {
	case "kvm", "tcg":
		return want, nil
	case "auto":
	default:
		return "", fmt.Errorf("accel %q: want auto, kvm or tcg", want)
	}
	if !kvmOpens() {
		return "tcg", nil
	}
	bootID, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	verdictFile := filepath.Join(cacheDir, "kvm-probe")
	key := strings.TrimSpace(string(bootID))
	if data, err := os.ReadFile(verdictFile); err == nil {
		if id, verdict, ok := strings.Cut(strings.TrimSpace(string(data)), " "); ok && id == key {
			return verdict, nil
		}
	}
	verdict := "kvm"
	if err := probeKVM(ctx, qemu, vmlinuz); err != nil {
		if ctx.Err() != nil {
			return "", errors.Join(ctx.Err(), err)
		}
		logf("KVM unusable, using TCG: %v", err)
		verdict = "tcg"
	}
	tmp := verdictFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(key+" "+verdict+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("save kvm probe: %w", err)
	}
	if err := os.Rename(tmp, verdictFile); err != nil {
		return "", fmt.Errorf("save kvm probe: %w", err)
	}
	return verdict, nil
}
