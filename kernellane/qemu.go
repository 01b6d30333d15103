package kernellane

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/svcsim/svcsim/internal/progress"
)

// share is one host directory exported to the guest.
type share struct {
	Tag      string
	Path     string // host directory
	ReadOnly bool
	Socket   string // virtiofsd socket; virtiofs only
}

// machine is everything the qemu command line is built from.
type machine struct {
	Accel     string // "kvm" or "tcg"
	Mem       string // qemu size: "4G", "512M"
	CPUs      int
	Kernel    string // vmlinuz
	Initrd    string
	Cmdline   string
	Transport string // "virtiofs" or "9p"
	Shares    []share
	SerconOff string // file holding a zero port number, for SeaBIOS
}

var memSize = regexp.MustCompile(`^[1-9][0-9]*[MG]$`)

// checkMem validates a --mem value.
func checkMem(s string) error {
	if !memSize.MatchString(s) {
		return fmt.Errorf("memory size %q: want a number with M or G, like 4G", s)
	}
	return nil
}

// qemuArgs builds the qemu-system-x86_64 arguments: no display, no default devices,
// the serial console on stdio, -no-reboot so that a guest panic (panic=-1) ends qemu.
func qemuArgs(m machine) []string {
	args := []string{
		"-accel", m.Accel,
		"-m", m.Mem,
		"-smp", strconv.Itoa(m.CPUs),
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		// SeaBIOS writes to the serial port when there is no VGA (and resets the
		// terminal); port 0 switches that off.
		"-fw_cfg", "name=etc/sercon-port,file=" + m.SerconOff,
		"-chardev", "stdio,id=console,signal=off",
		"-serial", "chardev:console",
		"-monitor", "none",
		"-kernel", m.Kernel,
		"-initrd", m.Initrd,
		"-append", m.Cmdline,
	}
	if m.Accel == "kvm" {
		args = append(args, "-cpu", "host")
	}
	if m.Transport == "virtiofs" {
		// vhost-user devices need guest memory that virtiofsd can map.
		args = append(args,
			"-object", "memory-backend-memfd,id=mem,size="+m.Mem+",share=on",
			"-numa", "node,memdev=mem")
	}
	for i, s := range m.Shares {
		id := "fs" + strconv.Itoa(i)
		switch m.Transport {
		case "virtiofs":
			args = append(args,
				"-chardev", "socket,id="+id+",path="+s.Socket,
				"-device", "vhost-user-fs-pci,chardev="+id+",tag="+s.Tag)
		case "9p":
			fsdev := "local,id=" + id + ",path=" + s.Path + ",security_model=none,multidevs=remap"
			if s.ReadOnly {
				fsdev += ",readonly=on"
			}
			args = append(args,
				"-fsdev", fsdev,
				"-device", "virtio-9p-pci,fsdev="+id+",mount_tag="+s.Tag)
		}
	}
	return args
}

// kernelCmdline is the guest kernel's command line. panic=-1 reboots at once on a
// panic, which -no-reboot turns into qemu exiting: "no result", not a hang.
// initEnv (NAME=value, names without a dot) goes to init's environment: the
// kernel hands parameters it does not know to init.
func kernelCmdline(verbose bool, initEnv ...string) string {
	parts := []string{
		"console=ttyS0", "rdinit=/init", "panic=-1", "reboot=t",
		// skip hardware qemu does not have, and slow probes
		"i8042.noaux=1", "i8042.nomux=1", "i8042.nopnp=1", "i8042.dumbkbd=1",
		"8250.nr_uarts=1", "tsc=reliable", "no_timer_check", "random.trust_cpu=on",
		// emulated CPUs need no speculation mitigations; they cost much under TCG
		"mitigations=off",
	}
	if !verbose {
		parts = append(parts, "quiet", "loglevel=4")
	}
	parts = append(parts, initEnv...)
	return strings.Join(parts, " ")
}

// console copies the guest's serial console to out: carriage returns dropped,
// every line optionally prefixed. It records when guest marker lines arrive.
type console struct {
	out    io.Writer
	prefix string
	start  time.Time

	// bar, when set, is the terminal's status line (boot phase, the test
	// running, how many done): output then goes through it a whole line
	// at a time.
	bar     *progress.Line
	pending []byte
	tests   int

	mu        sync.Mutex
	midLine   bool
	line      []byte
	initAt    time.Duration // "init started" seen, since start
	execAt    time.Duration // "exec" seen
	lastLines []string      // the tail, for error messages
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	buf := make([]byte, 0, len(p)+len(c.prefix))
	for _, b := range p {
		if b == '\r' {
			continue
		}
		if !c.midLine {
			buf = append(buf, c.prefix...)
			c.midLine = true
		}
		buf = append(buf, b)
		if b == '\n' {
			c.endLine()
			continue
		}
		if len(c.line) < 4096 {
			c.line = append(c.line, b)
		}
	}
	if c.bar != nil {
		c.pending = append(c.pending, buf...)
		if i := bytes.LastIndexByte(c.pending, '\n'); i >= 0 {
			c.bar.Print(string(c.pending[:i+1]))
			c.pending = append(c.pending[:0], c.pending[i+1:]...)
		}
		return len(p), nil
	}
	if _, err := c.out.Write(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flush writes a last partial line and removes the status line.
func (c *console) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bar == nil {
		return
	}
	if len(c.pending) > 0 {
		c.bar.Print(string(c.pending) + "\n")
		c.pending = nil
	}
	c.bar.Done()
}

// status follows the boot phases and a Go test binary's -test.v lines.
func (c *console) status(l string) {
	switch {
	case strings.Contains(l, guestMarker+"init started"):
		c.bar.Set("kernel lane: loading modules")
	case strings.Contains(l, guestMarker+"exec "):
		c.bar.Set("kernel lane: running the command")
	case strings.HasPrefix(l, "--- PASS: ") || strings.HasPrefix(l, "--- FAIL: ") || strings.HasPrefix(l, "--- SKIP: "):
		c.tests++
		c.bar.Set("kernel lane: %d tests done", c.tests)
	case strings.HasPrefix(l, "=== RUN   ") && !strings.Contains(l, "/"):
		c.bar.Set("kernel lane: %d tests done, running %s", c.tests, strings.TrimPrefix(l, "=== RUN   "))
	}
}

func (c *console) endLine() {
	l := string(c.line)
	c.line = c.line[:0]
	c.midLine = false
	if strings.Contains(l, guestMarker+"init started") && c.initAt == 0 {
		c.initAt = time.Since(c.start)
	}
	if strings.Contains(l, guestMarker+"exec ") && c.execAt == 0 {
		c.execAt = time.Since(c.start)
	}
	if c.bar != nil {
		c.status(l)
	}
	c.lastLines = append(c.lastLines, l)
	if len(c.lastLines) > 20 {
		c.lastLines = c.lastLines[1:]
	}
}

func (c *console) times() (initAt, execAt time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.initAt, c.execAt
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
