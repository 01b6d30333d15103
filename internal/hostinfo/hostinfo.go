// Package hostinfo describes the machine results were measured on.
package hostinfo

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/svcsim/svcsim/report/results"
	"golang.org/x/sys/unix"
)

// Collect returns the Env of this machine for the given lane ("host", or
// "vm:<kernel>" inside the kernel lane).
func Collect(lane string) results.Env {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return results.Env{
		Lane:     lane,
		Kernel:   unix.ByteSliceToString(u.Release[:]),
		CPU:      cpuModel(),
		CPUs:     runtime.NumCPU(),
		Iptables: version("iptables", "--version"),
		Nft:      version("nft", "--version"),
		Ipvsadm:  version("ipvsadm", "--version"),
		Time:     time.Now().UTC(),
	}
}

// Lane is "host", or what SVCSIM_LANE says (the kernel lane sets it).
func Lane() string {
	if l := os.Getenv("SVCSIM_LANE"); l != "" {
		return l
	}
	return "host"
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func version(tool string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
