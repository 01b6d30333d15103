// Package modes defines what every proxy mode implements, and the registry the
// node proxy process and the scenarios use to pick one by name. Each mode
// registers a Datapath descriptor: its factory and every fact others need
// about it (features it needs, traits, place in the report).
//
// A mode programs one node's kernel from a state.NodeState. Like kube-proxy,
// every Sync is given the whole desired state and must leave the kernel
// matching it, whatever it held before (idempotent, whole-state sync); a mode
// may internally write only what changed.
//
// Modes run in the network namespace of the calling thread/process: the node
// proxy process is started inside its node's namespace, so a mode needs no
// namespace handling of its own. In-process users (tests, benchmarks) call
// Sync from inside netns.NS.Do.
package modes

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/svcsim/svcsim/sim/state"
)

// Proxier is one proxy mode bound to one node's kernel.
type Proxier interface {
	// Name is the datapath name as it appears in results ("iptables/nft").
	Name() string
	// Sync makes the node's kernel implement st, returning once it does.
	Sync(ctx context.Context, st *state.NodeState) error
	// Cleanup removes everything this mode ever programmed on the node
	// (rules, sets, listeners, goroutines). It is safe to call twice.
	Cleanup(ctx context.Context) error
}

// Dumper is implemented by modes that can show their kernel state as the real
// tools print it (iptables-save, nft list ruleset, ipvsadm -Ln).
type Dumper interface {
	Dump(ctx context.Context) (string, error)
}

// Canary is a Proxier that marks the kernel state it programs with a canary
// (kube-proxy's KUBE-PROXY-CANARY chains, pkg/proxy/iptables): something a
// flush of the node's rules removes with everything else, and cheap to look
// for. The node proxy (modes/agent) checks it every agent.CanaryPeriod after
// the first sync and, when it is gone, makes the next Sync a full one
// (FullSyncer) and syncs the last state again: flushed rules repair
// themselves.
type Canary interface {
	// Intact reports whether the canary the last full Sync wrote is still
	// in the kernel; false before any Sync.
	Intact(ctx context.Context) (bool, error)
}

// Options configure a mode at construction.
type Options struct {
	// Node is the node's name, for messages.
	Node string
	// Scheduler is the IPVS scheduler ("rr" when empty).
	Scheduler string
	// IPTablesBackend is the node's iptables backend ("legacy" or "nft"),
	// which every datapath that writes iptables rules uses (the iptables
	// datapath under its alias name, IPVS and userspace for their glue
	// rules); empty means the one the host's `iptables` command uses.
	IPTablesBackend string
	// MinSyncPeriod etc. could follow; keep this small.
}

// Factory builds a Proxier for the real kernel of the calling namespace.
type Factory func(opts Options) (Proxier, error)

var (
	mu       sync.Mutex
	registry = map[string]Datapath{}
)

// Register makes a datapath available under d.Name. It panics on duplicates
// and on an incomplete descriptor, like database/sql.Register; call it from
// an init function.
func Register(d Datapath) {
	if err := d.validate(); err != nil {
		panic("modes: Register: " + err.Error())
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[d.Name]; dup {
		panic("modes: Register called twice for " + d.Name)
	}
	registry[d.Name] = d
}

// Lookup returns the descriptor registered under name.
func Lookup(name string) (Datapath, bool) {
	mu.Lock()
	defer mu.Unlock()
	d, ok := registry[name]
	return d, ok
}

// Get returns the descriptor registered under name, or an error naming the
// known ones.
func Get(name string) (Datapath, error) {
	d, ok := Lookup(name)
	if !ok {
		return Datapath{}, fmt.Errorf("unknown proxy mode %q (known: %v)", name, Names())
	}
	return d, nil
}

// New builds the in-process Proxier of the datapath registered under name.
func New(name string, opts Options) (Proxier, error) {
	d, err := Get(name)
	if err != nil {
		return nil, err
	}
	if d.Start.Factory == nil {
		return nil, fmt.Errorf("proxy mode %s runs as the program %s, not in-process", name, d.Start.Program)
	}
	p, err := d.Start.Factory(opts)
	if err != nil {
		return nil, fmt.Errorf("create %s proxier: %w", name, err)
	}
	return p, nil
}

// Names lists the registered names, aliases included, sorted.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Table lists the registered datapaths without aliases, in the report's
// order (Report.Order, then name): the rows of every datapath table.
func Table() []Datapath {
	mu.Lock()
	defer mu.Unlock()
	out := make([]Datapath, 0, len(registry))
	for _, d := range registry {
		if len(d.AliasOf) == 0 {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Report.Order != out[j].Report.Order {
			return out[i].Report.Order < out[j].Report.Order
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Disjoint lists the in-process datapaths whose kernel state a proxy of d
// removes when it starts, as kube-proxy's platformCleanup does
// (cmd/kube-proxy/app/server_linux.go, v1.37): the nftables datapath
// cleans up after the iptables-based ones (iptables on either backend,
// IPVS, userspace), and those after nftables. Datapaths that share state
// with d's kernel (iptables and IPVS both own KUBE-* chains) are not
// listed: their switch relies on the old proxy's own cleanup.
func Disjoint(d Datapath) []Datapath {
	var out []Datapath
	for _, e := range Table() {
		if e.Name == d.Name || e.Start.Factory == nil {
			continue
		}
		if (e.Kernel == KernelNftables) != (d.Kernel == KernelNftables) {
			out = append(out, e)
		}
	}
	return out
}
