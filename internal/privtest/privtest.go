// Package privtest is the one helper of svcsim's privileged tests: the root
// check, and a run (internal/rundir) per test whose namespaces are named
// "<run id>-<role>" like every namespace svcsim makes, so that `svcsim down`
// (topology.GC) finds and removes what a killed test left behind. Everything
// is removed by tb.Cleanup: namespaces first, the run directory last.
package privtest

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"testing"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/internal/rundir"
)

// RequireRoot skips tb unless it runs as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root (network namespaces, the real kernel): run with sudo go test ...")
	}
}

var (
	mu   sync.Mutex
	runs = map[testing.TB]*rundir.Run{}
)

// NewRun creates a fresh run owned by the test process (a topology's, say)
// and removes its directory when tb ends. It skips tb without root.
func NewRun(tb testing.TB) *rundir.Run {
	tb.Helper()
	RequireRoot(tb)
	r, err := rundir.New()
	if err != nil {
		tb.Fatalf("new run: %v", err)
	}
	tb.Cleanup(func() {
		if err := r.Remove(); err != nil {
			tb.Errorf("remove run %s: %v", r.ID, err)
		}
	})
	return r
}

// Run returns tb's own run, made by NewRun on first use; the namespaces NS
// makes belong to it and go before it does.
func Run(tb testing.TB) *rundir.Run {
	tb.Helper()
	RequireRoot(tb)
	mu.Lock()
	defer mu.Unlock()
	if r := runs[tb]; r != nil {
		return r
	}
	tb.Cleanup(func() {
		mu.Lock()
		delete(runs, tb)
		mu.Unlock()
	})
	r := NewRun(tb)
	runs[tb] = r
	return r
}

var unsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// NS creates the namespace "<run id>-<role>" in tb's run and deletes it
// (with every link inside) when tb ends. Roles must differ within a test.
func NS(tb testing.TB, role string) *netns.NS {
	tb.Helper()
	name := Run(tb).ID + "-" + unsafe.ReplaceAllString(role, "_")
	ns, err := netns.New(name)
	if err != nil {
		tb.Fatalf("create namespace %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			tb.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return ns
}

var saveNoise = regexp.MustCompile(`(?m)^#.*\n|\[\d+:\d+\]`)

// hostIptables prints the host's iptables (both backends, where installed)
// without comments and counters. It lists only tables that already exist:
// `-t` would make the legacy backend create one in the host.
func hostIptables(tb testing.TB) string {
	tb.Helper()
	var all bytes.Buffer
	for _, bin := range []string{"iptables-legacy-save", "iptables-nft-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		out, err := exec.Command(bin).Output()
		if err != nil {
			tb.Fatalf("%s in the host namespace: %v", bin, err)
		}
		all.WriteString("== " + bin + "\n")
		all.Write(saveNoise.ReplaceAll(out, nil))
	}
	return all.String()
}

// HostUntouched fails tb if the host's iptables (both backends) differ at
// its end from what they were at its start: privileged tests work only in
// the namespaces they made.
// It skips tb without root.
func HostUntouched(tb testing.TB) {
	tb.Helper()
	RequireRoot(tb)
	before := hostIptables(tb)
	tb.Cleanup(func() {
		if after := hostIptables(tb); after != before {
			tb.Errorf("host iptables changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}
