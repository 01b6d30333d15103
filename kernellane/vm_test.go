package kernellane

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The integration test boots real guests: one per case, one at a time, 2G of
// memory each. Under TCG a boot reaches the command in about 5 s (6.1 cloud) to
// 9 s (6.12 generic). It needs qemu, root (virtiofsd serves the host root) and
// `go`, and runs only when asked:
//
//	sudo SVCSIM_VMTEST=1 go test -count=1 -run TestVM -v ./kernellane/
//
// SVCSIM_VMTEST_KERNEL picks the kernel (default 6.1), SVCSIM_VMTEST_FS the
// transport (default auto).

// vmCase is one vmtest invocation as seen from outside.
type vmCase struct {
	t        *testing.T
	bin      string // the vmtest binary
	cache    string
	flags    []string
	cmd      *exec.Cmd
	stdout   bytes.Buffer
	stderr   bytes.Buffer
	code     int
	duration time.Duration
}

func gateVM(t *testing.T) {
	t.Helper()
	if os.Getenv("SVCSIM_VMTEST") != "1" {
		t.Skip("boots qemu guests: set SVCSIM_VMTEST=1 to run (sudo SVCSIM_VMTEST=1 go test -run TestVM ./kernellane/)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("needs qemu-system-x86_64 (apt-get install qemu-system-x86)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: virtiofsd serves the host root (run with sudo)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command to build the static vmtest binary")
	}
}

// buildVMTest builds cmd/vmtest statically: it is also the guest's /init.
func buildVMTest(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "vmtest")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/vmtest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "build vmtest: %s", out)
	return bin
}

// start runs vmtest with the common flags, then flags and argv. onExec, if set, is
// called once the guest has started the command.
func (v *vmCase) start(flags []string, argv []string, onExec func()) {
	args := append(append(append([]string{}, v.flags...), flags...), "--")
	v.cmd = exec.Command(v.bin, append(args, argv...)...)
	v.cmd.Stderr = &v.stderr
	out, err := v.cmd.StdoutPipe()
	require.NoError(v.t, err)
	begin := time.Now()
	require.NoError(v.t, v.cmd.Start())
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	fired := false
	for sc.Scan() {
		line := sc.Text()
		v.stdout.WriteString(line + "\n")
		if !fired && onExec != nil && strings.Contains(line, guestMarker+"exec ") {
			fired = true
			onExec()
		}
	}
	err = v.cmd.Wait()
	v.duration = time.Since(begin)
	if ee, ok := err.(*exec.ExitError); ok {
		v.code = ee.ExitCode()
	} else {
		require.NoError(v.t, err)
	}
	v.t.Logf("vmtest exited %d after %s\nstderr:\n%s", v.code, v.duration.Round(time.Millisecond), v.stderr.String())
}

// run runs vmtest to the end and checks that it left nothing behind.
func (v *vmCase) run(flags []string, argv ...string) {
	v.start(flags, argv, nil)
	v.checkNoLeftovers()
}

// runDirPrefix is how every path of this run starts: the run directory is
// named after the vmtest process, and qemu's and virtiofsd's arguments name it.
func (v *vmCase) runDirPrefix() string {
	return filepath.Join(v.cache, "run", strconv.Itoa(v.cmd.Process.Pid)+"-")
}

// leftovers lists the processes whose command line names this run's directory.
func (v *vmCase) leftovers() []string {
	prefix := []byte(v.runDirPrefix())
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, prefix) {
			found = append(found, filepath.Base(filepath.Dir(p))+": "+
				string(bytes.ReplaceAll(data, []byte{0}, []byte{' '})))
		}
	}
	return found
}

func (v *vmCase) checkNoLeftovers() {
	v.t.Helper()
	require.Empty(v.t, v.leftovers(), "qemu or virtiofsd left running")
	dirs, _ := filepath.Glob(v.runDirPrefix() + "*")
	require.Empty(v.t, dirs, "run directory left behind")
}

func TestVM(t *testing.T) {
	gateVM(t)
	kernel := os.Getenv("SVCSIM_VMTEST_KERNEL")
	if kernel == "" {
		kernel = "6.1"
	}
	fs := os.Getenv("SVCSIM_VMTEST_FS")
	if fs == "" {
		fs = "auto"
	}
	tmp := t.TempDir()
	bin := buildVMTest(t, tmp)
	cache := DefaultCacheDir()
	newCase := func(t *testing.T) *vmCase {
		return &vmCase{t: t, bin: bin, cache: cache,
			flags: []string{"--kernel", kernel, "--fs", fs, "--cache", cache, "--mem", "2G", "--timeout", "3m"}}
	}

	// Everything the suite needs inside, in one boot: root, IPVS (and the
	// ipvsadm tool working with it), netns, the link types the host lacks, the
	// environment and the read-write share.
	t.Run("inside", func(t *testing.T) {
		share := filepath.Join(tmp, "share")
		require.NoError(t, os.Mkdir(share, 0o755))
		script := `set -ex
test "$(id -u)" = 0
test "$VMTEST_KERNEL" = "$(uname -r)"
test "$SVCSIM_PROBE" = hello
test -e /proc/net/ip_vs
grep -q '^ip_vs_rr ' /proc/modules
ipvsadm -A -t 10.96.0.1:80 -s rr
ipvsadm -Ln | grep -q '10.96.0.1:80 rr'
ip netns add vmtest-x
ip -n vmtest-x link set lo up
ip link add vmtest-d0 type dummy
ip link add vmtest-v0 type veth peer name vmtest-v1 netns vmtest-x
ip link add vmtest-br0 type bridge
iptables -t nat -A POSTROUTING -m statistic --mode random --probability 0.5 -j MASQUERADE
nft add table inet vmtest
ipset create vmtest-set hash:ip,port
uname -r | tee ` + share + `/kernel
echo inside-ok`
		v := newCase(t)
		v.run([]string{"--share", share, "--env", "SVCSIM_PROBE=hello"}, "sh", "-c", script)
		require.Equal(t, 0, v.code, "stdout:\n%s", v.stdout.String())
		require.Contains(t, v.stdout.String(), "\ninside-ok\n", "the guest's output streams out")
		data, err := os.ReadFile(filepath.Join(share, "kernel"))
		require.NoError(t, err, "the guest writes into the share")
		require.Contains(t, v.stdout.String(), "exec sh -c")
		require.NotEqual(t, hostRelease(t), strings.TrimSpace(string(data)), "the command ran in the guest kernel")
		require.Contains(t, v.stdout.String(), "\n"+strings.TrimSpace(string(data))+"\n")
	})

	// A dynamically linked init (a plain `go build` of a cgo-using binary,
	// such as svcsim) boots with its loader and libraries in the initramfs,
	// and the command does not inherit their LD_LIBRARY_PATH.
	t.Run("dynamic init", func(t *testing.T) {
		if _, err := exec.LookPath("gcc"); err != nil {
			t.Skip("needs gcc to link vmtest dynamically")
		}
		dyn := filepath.Join(tmp, "vmtest-dynamic")
		cmd := exec.Command("go", "build", "-ldflags=-linkmode=external", "-o", dyn, "../cmd/vmtest")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "build vmtest: %s", out)
		_, d, err := initBinary(dyn)
		require.NoError(t, err)
		require.False(t, d.static(), "the external link should be dynamic")
		v := newCase(t)
		v.bin = dyn
		v.run(nil, "sh", "-c", `test -z "$LD_LIBRARY_PATH" && echo dynamic-ok`)
		require.Equal(t, 0, v.code, "stdout:\n%s", v.stdout.String())
		require.Contains(t, v.stdout.String(), "\ndynamic-ok\n")
	})

	t.Run("true", func(t *testing.T) {
		v := newCase(t)
		v.run(nil, "true")
		require.Equal(t, 0, v.code)
	})

	t.Run("false", func(t *testing.T) {
		v := newCase(t)
		v.run(nil, "false")
		require.Equal(t, 1, v.code)
	})

	t.Run("exit7", func(t *testing.T) {
		v := newCase(t)
		v.run(nil, "sh", "-c", "exit 7")
		require.Equal(t, 7, v.code)
	})

	t.Run("failing go test", func(t *testing.T) {
		testBin := filepath.Join(tmp, "failing.test")
		out, err := exec.Command("go", "test", "-c", "-o", testBin, "./testdata/failing").CombinedOutput()
		require.NoError(t, err, "build the failing test: %s", out)
		v := newCase(t)
		v.run(nil, testBin, "-test.v")
		require.Equal(t, 1, v.code)
		require.Contains(t, v.stdout.String(), "--- FAIL: TestDeliberateFailure")
	})

	t.Run("killed by signal", func(t *testing.T) {
		v := newCase(t)
		v.run(nil, "sh", "-c", "kill -KILL $$")
		require.Equal(t, 128+9, v.code)
	})

	t.Run("unknown command", func(t *testing.T) {
		v := newCase(t)
		v.run(nil, "/nonexistent/vmtest-command")
		require.Equal(t, 127, v.code)
	})

	// A guest that dies never writes a status: "no result", never a pass.
	t.Run("kernel crash", func(t *testing.T) {
		v := newCase(t)
		v.run(nil, "sh", "-c", "echo c > /proc/sysrq-trigger; sleep 600")
		require.Equal(t, ExitNoResult, v.code)
		require.Contains(t, v.stderr.String(), "no result")
	})

	t.Run("timeout", func(t *testing.T) {
		v := newCase(t)
		v.run([]string{"--timeout", "30s"}, "sleep", "600")
		require.Equal(t, ExitNoResult, v.code)
		require.Contains(t, v.stderr.String(), "timeout after 30s")
		require.Less(t, v.duration, 30*time.Second+15*time.Second, "qemu stopped soon after the timeout")
	})

	t.Run("SIGINT", func(t *testing.T) {
		v := newCase(t)
		v.start(nil, []string{"sleep", "600"}, func() { v.cmd.Process.Signal(os.Interrupt) }) //nolint:errcheck // the exit code tells
		v.checkNoLeftovers()
		require.Equal(t, ExitNoResult, v.code)
		require.Contains(t, v.stderr.String(), "interrupted")
	})

	// SIGKILL gives vmtest no chance to clean up: qemu and virtiofsd die with it
	// (parent-death signal), and the next run removes the run directory.
	var killedRunDir string
	t.Run("SIGKILL", func(t *testing.T) {
		v := newCase(t)
		v.start(nil, []string{"sleep", "600"}, func() { v.cmd.Process.Kill() }) //nolint:errcheck // the exit code tells
		require.Equal(t, -1, v.code, "killed")
		require.Eventually(t, func() bool { return len(v.leftovers()) == 0 }, 10*time.Second, 100*time.Millisecond,
			"qemu or virtiofsd outlived a killed vmtest: %v", v.leftovers())
		killedRunDir = v.runDirPrefix()
	})
	t.Run("next run removes a killed run's directory", func(t *testing.T) {
		if killedRunDir == "" {
			t.Skip("SIGKILL case failed")
		}
		v := newCase(t)
		v.run([]string{"--no-suite-modules"}, "true")
		require.Equal(t, 0, v.code)
		dirs, _ := filepath.Glob(killedRunDir + "*")
		require.Empty(t, dirs)
	})
}

func hostRelease(t *testing.T) string {
	t.Helper()
	var u syscall.Utsname
	require.NoError(t, syscall.Uname(&u))
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}
