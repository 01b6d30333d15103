// Command vmtest runs a command inside a Debian kernel booted under qemu, with the
// host's root file system visible read-only (writable through a tmpfs overlay), and
// exits with the command's exit status (125 when the guest gave none).
//
//	vmtest [flags] -- COMMAND [ARGS...]
//
// Example: run the IPVS scenarios on the Debian 6.1 cloud kernel, results written
// into the repository:
//
//	go test -c -o /tmp/scen.test ./scenarios
//	sudo go run ./cmd/vmtest --kernel 6.1 --share $PWD -- /tmp/scen.test -test.run IPVS -test.v
//
// The same binary is the guest's /init; when it is linked dynamically, its loader
// and libraries (found on this host) go into the initramfs beside it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/svcsim/svcsim/kernellane"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if kernellane.IsGuest() {
		kernellane.GuestMain() // never returns
	}
	var cfg kernellane.Config
	var env, mods listFlag
	fs := flag.NewFlagSet("vmtest", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: vmtest [flags] -- COMMAND [ARGS...]\n\n"+
			"Boots a Debian kernel under qemu and runs COMMAND as root in it; exits with its status\n"+
			"(%d when the guest gave none: crash, timeout, setup failure).\n\n", kernellane.ExitNoResult)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Kernel, "kernel", "6.1", "kernel: SERIES[-cloud|-generic|-rt] (6.1 = newest 6.1 cloud, 6.12 = newest 6.12 generic) or a linux-image-* package")
	fs.StringVar(&cfg.CacheDir, "cache", kernellane.DefaultCacheDir(), "kernel cache directory")
	fs.StringVar(&cfg.Share, "share", "", "host directory mounted read-write at the same path in the guest")
	fs.StringVar(&cfg.Dir, "dir", "", "working directory of the command (default: the current one)")
	fs.Var(&env, "env", "K=V to set, or K to copy from the host (repeatable); PATH and HOME are passed")
	fs.Var(&mods, "module", "extra kernel module to load (repeatable)")
	fs.BoolVar(&cfg.NoSuite, "no-suite-modules", false, "do not load the svcsim suite's modules (ip_vs, netfilter, ...)")
	fs.StringVar(&cfg.Mem, "mem", "4G", "guest memory")
	fs.IntVar(&cfg.CPUs, "cpus", 2, "guest CPUs")
	fs.DurationVar(&cfg.Timeout, "timeout", 20*time.Minute, "kill the guest after this long")
	fs.StringVar(&cfg.Accel, "accel", "auto", "auto, kvm or tcg (auto: KVM if a probe boot works)")
	fs.StringVar(&cfg.FS, "fs", "auto", "root file system transport: auto, virtiofs or 9p")
	fs.BoolVar(&cfg.Verbose, "v", false, "show the kernel's whole boot log")
	fs.StringVar(&cfg.Prefix, "prefix", "", "prefix for every guest console line")
	fs.StringVar(&cfg.QEMU, "qemu", "qemu-system-x86_64", "qemu binary")
	fs.StringVar(&cfg.Virtiofsd, "virtiofsd", "/usr/lib/qemu/virtiofsd", "virtiofsd binary")
	listModules := fs.Bool("list-modules", false, "print the suite's kernel modules, one a line, and exit (CI loads them on its runner)")
	fs.Parse(os.Args[1:]) //nolint:errcheck // ExitOnError
	if *listModules {
		fmt.Println(strings.Join(kernellane.SuiteModules, "\n"))
		return
	}
	cfg.Argv = fs.Args()
	cfg.Env, cfg.Modules = env, mods
	if len(cfg.Argv) == 0 {
		fs.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code, err := kernellane.Run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
	}
	os.Exit(code)
}
