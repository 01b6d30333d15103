// Package modes defines what every proxy mode implements, and the registry the
// node proxy process and the scenarios use to pick one by name.
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

// Options configure a mode at construction.
type Options struct {
	// Node is the node's name, for messages.
	Node string
	// Scheduler is the IPVS scheduler ("rr" when empty).
	Scheduler string
	// MinSyncPeriod etc. could follow; keep this small.
}

// Factory builds a Proxier for the real kernel of the calling namespace.
type Factory func(opts Options) (Proxier, error)

var (
	mu       sync.Mutex
	registry = map[string]Factory{}
)

// Register makes a mode available under name. It panics on duplicates, like
// database/sql.Register; call it from an init function.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic("modes: Register called twice for " + name)
	}
	registry[name] = f
}

// New builds the mode registered under name.
func New(name string, opts Options) (Proxier, error) {
	mu.Lock()
	f, ok := registry[name]
	mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown proxy mode %q (known: %v)", name, Names())
	}
	p, err := f(opts)
	if err != nil {
		return nil, fmt.Errorf("create %s proxier: %w", name, err)
	}
	return p, nil
}

// Names lists the registered modes, sorted.
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
