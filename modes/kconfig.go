package modes

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// KernelFeature is a Feature of a kernel subsystem that has no file of its
// own to look for (nf_tables, br_netfilter): met when the module is loaded
// (/sys/module/<module>), or loads (modprobe, as root only), or the
// kernel's configuration builds it in (CONFIG_...=y in /proc/config.gz or
// /boot/config-<release>). A kernel whose configuration cannot be read is
// taken to have it: the datapath's own tool then reports what fails. The
// kernel lane offers it. NfTables is the one the nftables datapaths and
// iptables' nft backend need.
func KernelFeature(name, module, config string) Feature {
	return Feature{
		Name: name,
		// Once per run: the harness asks before every scenario.
		Probe: sync.OnceValue(func() error {
			return probeKernelFeature(kernelFiles{}, name, module, config)
		}),
		Remedy:     "`make vm-test` runs this datapath in the qemu kernel lane",
		KernelLane: true,
	}
}

// NfTables is the kernel's nf_tables, which nft and iptables-nft program.
var NfTables = KernelFeature("nf_tables", "nf_tables", "CONFIG_NF_TABLES")

// kernelSource is what probeKernelFeature reads of the running kernel.
type kernelSource interface {
	loaded(module string) bool
	modprobe(module string) error
	// config is the kernel's build configuration; ok false when none can
	// be read.
	config() (text string, ok bool)
}

func probeKernelFeature(k kernelSource, name, module, config string) error {
	if k.loaded(module) {
		return nil
	}
	if k.modprobe(module) == nil && k.loaded(module) {
		return nil
	}
	text, ok := k.config()
	if !ok {
		return nil
	}
	switch v := configValue(text, config); v {
	case "y":
		return nil
	case "m":
		return fmt.Errorf("kernel lacks %s (module %s, %s=m, is not loaded and did not load)", name, module, config)
	default:
		return fmt.Errorf("kernel lacks %s (%s is not set in its configuration)", name, config)
	}
}

// configValue is key's value in a kernel configuration ("" when unset).
func configValue(text, key string) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+"="); ok {
			return v
		}
	}
	return ""
}

// kernelFiles reads the running kernel.
type kernelFiles struct{}

func (kernelFiles) loaded(module string) bool {
	_, err := os.Stat("/sys/module/" + module)
	return err == nil
}

func (kernelFiles) modprobe(module string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("modprobe %s needs root", module)
	}
	return exec.Command("modprobe", module).Run()
}

func (kernelFiles) config() (string, bool) {
	if b, err := os.ReadFile("/proc/config.gz"); err == nil {
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			if text, err := io.ReadAll(zr); err == nil {
				return string(text), true
			}
		}
	}
	if rel, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		if b, err := os.ReadFile("/boot/config-" + strings.TrimSpace(string(rel))); err == nil {
			return string(b), true
		}
	}
	return "", false
}
