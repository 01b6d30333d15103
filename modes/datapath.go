package modes

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Datapath describes one registered datapath: how to start it, what the
// machine must offer, how it behaves where Kubernetes leaves a choice, and
// where the report shows it. Facts about a datapath live here, in its own
// package's Register call; the harness, the benchmark, the CLI and (through
// the results files) the report ask the descriptor instead of comparing mode
// names.
type Datapath struct {
	// Name is the registry name and the name in results ("iptables/nft").
	Name string
	// AliasOf, when set, says this name picks one of the named datapaths at
	// start ("iptables" is iptables/legacy or iptables/nft, whichever the
	// host's iptables command uses). Tables of datapaths leave aliases out.
	AliasOf []string
	// Start says how the datapath runs on a node.
	Start Start
	// Needs are what the machine must offer; Where probes them.
	Needs []Feature
	// Programmed says how svcsim learns that a node's datapath holds a state.
	Programmed Programmed
	// Kernel is where the Service translation happens.
	Kernel Kernel
	// Dump is the real tool, run in the node's namespace, that prints the
	// kernel state the datapath programs ("ipvsadm -Ln"). In-process
	// datapaths also implement Dumper, which narrows it to their own rules.
	Dump []string
	// Flush are the commands, run in a node's namespace one after the other,
	// that wipe the kernel state the datapath programs as a firewall reload
	// or an administrator would (IPTablesFlush, `nft flush ruleset`,
	// `ipvsadm -C`); the table holding the canary (modes.Canary) goes last,
	// so that a repair cannot start half-way. The repair scenario runs them.
	// Empty: the datapath has no such state.
	Flush [][]string
	// Traits are its choices where Kubernetes leaves the behaviour open.
	Traits Traits
	// Report places it in the report.
	Report Report
}

// Start says how a datapath is started in a node's network namespace:
// in-process through Factory (the node proxy, modes/agent, calls it), or as
// an external program.
type Start struct {
	// Factory builds the in-process Proxier. Its Cleanup undoes everything.
	Factory Factory
	// Program and Args start an external proxy (the genuine kube-proxy is
	// one). Cleanup, when set, is the command that removes what it left
	// behind ("kube-proxy --cleanup"). External datapaths run on the
	// kubernetes plane (plane/kube/cluster), which starts them itself; it
	// replaces NodeIPArg in Args with the node's address.
	Program string
	Args    []string
	Cleanup []string
	// Binary names the executable file an external Program runs from, in
	// bin/ beside the plane's multi-call binary ("": that binary, bin/k8s):
	// another release's build (kube-proxy-1.25).
	Binary string
	// UserNamespace: the program runs in a user namespace that owns the
	// node's network namespace (nodes are then made with
	// topology.NodeSpec.UserNS): for a program that must believe it is
	// inside a user namespace, kube-proxy-1.25's userspace proxier where
	// RLIMIT_NOFILE cannot be raised to the 64000 it asks for.
	UserNamespace bool
	// ReadsEndpoints: the program reads v1 Endpoints rather than
	// EndpointSlices (kube-proxy's userspace proxier), so the plane's
	// barrier waits for the Endpoints controller too.
	ReadsEndpoints bool
	// IPTablesBackend is the iptables backend an external program must find
	// as `iptables` (and `iptables-save`, `iptables-restore`) on its PATH:
	// "legacy" or "nft", as modes.Options.IPTablesBackend; "" when it writes
	// no iptables rules. kube-proxy runs whatever those names resolve to.
	IPTablesBackend string
}

// NodeIPArg, inside an external program's Start.Args, stands for the
// node's address ("--bind-address=$(NODE_IP)").
const NodeIPArg = "$(NODE_IP)"

// Programmed is how svcsim learns that a datapath has programmed a state.
type Programmed int

const (
	// ProgrammedOnSync: Sync returns once the kernel holds the state, and
	// the node proxy replies to the control plane after it. External
	// proxies, which report through their own signals, add values here.
	ProgrammedOnSync Programmed = iota
	// ProgrammedMetrics: the program's own metrics say when it last synced
	// (kube-proxy's kubeproxy_sync_proxy_rules_last_timestamp_seconds not
	// older than ..._last_queued_timestamp_seconds), once the changes have
	// reached it (the kubernetes plane's barrier checks that).
	ProgrammedMetrics
)

// Kernel is where a datapath translates Service addresses to endpoints.
type Kernel int

const (
	// KernelIptables: DNAT rules in iptables chains (Dump names the backend's
	// iptables-save).
	KernelIptables Kernel = iota + 1
	// KernelNftables: one nftables table.
	KernelNftables
	// KernelIPVS: IPVS virtual servers, with ipsets and iptables glue.
	KernelIPVS
	// KernelUserspace: a proxy process relays connections; iptables only
	// redirects Service addresses to its listeners.
	KernelUserspace
)

// Choice is how a datapath picks a backend for a new connection.
type Choice int

const (
	// Random: each new connection picks an endpoint with equal probability.
	Random Choice = iota
	// RoundRobin: successive connections rotate over the endpoints exactly.
	RoundRobin
)

// Affinity is how ClientIP session affinity expires.
type Affinity int

const (
	// AffinityIdle: the pin ends after timeoutSeconds without a new
	// connection from the client.
	AffinityIdle Affinity = iota
	// AffinityTemplate: an IPVS persistence template holds the pin; it lives
	// while any connection it placed is in the kernel's table (closed TCP
	// connections stay there in TIME_WAIT for 120 s), so the pin outlives
	// timeoutSeconds of idle.
	AffinityTemplate
)

// Traits are a datapath's choices where Kubernetes leaves the behaviour to
// the implementation; scenarios assert them instead of naming datapaths.
type Traits struct {
	// Choice is the default scheduler's choice of backend.
	Choice Choice
	// Affinity is how ClientIP affinity expires.
	Affinity Affinity
	// Relay: connections end in a proxy process that dials the backend
	// itself. Backends then see the node's address, not the client's, and a
	// backend that refuses is retried on another one.
	Relay bool
	// LocalhostNodePorts: a NodePort answers on the node's 127.0.0.1 too
	// (kube-proxy's iptables mode: route_localnet); otherwise it is
	// refused there.
	LocalhostNodePorts bool
	// FullResync, when set, makes the proxier's next Sync rewrite the whole
	// state (the datapath otherwise writes only what changed); it reports
	// false for a Proxier it does not know. ForceFullSync is the one for
	// proxiers that implement FullSyncer.
	FullResync func(Proxier) bool
}

// FullSyncer is a Proxier whose next Sync can be told to rewrite its whole
// state instead of only what changed.
type FullSyncer interface {
	ForceFullSync()
}

// ForceFullSync tells p's next Sync to rewrite everything, when p is a
// FullSyncer (Traits.FullResync of the datapaths that write only changes).
func ForceFullSync(p Proxier) bool {
	fs, ok := p.(FullSyncer)
	if ok {
		fs.ForceFullSync()
	}
	return ok
}

// Claim is one of the seed document's claims about rule-update cost; the
// report checks the benchmark's figures against it. The values are the
// strings of results.Claim*.
type Claim string

const (
	// ClaimNotIncremental: "iptables updates are not incremental".
	ClaimNotIncremental Claim = "not-incremental"
	// ClaimIncremental: "IPVS updates are incremental".
	ClaimIncremental Claim = "incremental"
)

// Report is a datapath's place in the report. The report reads results
// files and does not link the datapaths: the harness and the benchmark copy
// this into every result they write (results.DatapathInfo).
type Report struct {
	// Order is the column position, lowest first: the seed's order
	// (userspace, iptables, IPVS), then nftables.
	Order int
	// Claim is the seed's claim about this datapath, if it makes one.
	Claim Claim
}

// Feature is one thing a datapath needs from the machine.
type Feature struct {
	// Name is what is needed ("IP_VS", "nft").
	Name string
	// Probe returns nil when the machine has it, else an error saying what
	// is missing ("kernel lacks IP_VS (/proc/net/ip_vs missing)").
	Probe func() error
	// Remedy says how to get it or where it runs instead ("`sudo make deps`
	// installs it").
	Remedy string
	// KernelLane: the qemu kernel lane (cmd/vmtest, a Debian kernel) offers
	// it when the host does not.
	KernelLane bool
}

// Tool is a Feature met when the program is on PATH.
func Tool(program string) Feature {
	return Feature{
		Name: program,
		Probe: func() error {
			if _, err := exec.LookPath(program); err != nil {
				return fmt.Errorf("%s is not installed", program)
			}
			return nil
		},
		Remedy: "`sudo make deps` installs it",
	}
}

// KernelModule is a Feature met when path exists, after trying to load the
// module (modprobe; as root only). The kernel lane offers it.
func KernelModule(name, module, path string) Feature {
	return Feature{
		Name: name,
		Probe: func() error {
			if _, err := os.Stat(path); err == nil {
				return nil
			}
			if os.Geteuid() == 0 {
				_ = exec.Command("modprobe", module).Run()
			}
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("kernel lacks %s (%s missing)", name, path)
			}
			return nil
		},
		Remedy:     "`make vm-test` runs this datapath in the qemu kernel lane",
		KernelLane: true,
	}
}

// Missing is a Feature the machine lacks.
type Missing struct {
	Feature Feature
	Err     error
}

// Error says what is missing and the remedy.
func (m Missing) Error() string { return m.Err.Error() + ": " + m.Feature.Remedy }

// Lane is where a datapath can run from this machine.
type Lane int

const (
	// LaneHost: the host offers everything; it runs here.
	LaneHost Lane = iota
	// LaneKernel: only the qemu kernel lane offers what it needs.
	LaneKernel
	// LaneNone: something it needs is missing in both.
	LaneNone
)

func (l Lane) String() string {
	switch l {
	case LaneHost:
		return "host"
	case LaneKernel:
		return "kernel lane"
	}
	return "none"
}

// Where probes d's needs: it runs on the host when nothing is missing, in
// the kernel lane when the lane offers every missing feature. The error
// joins the Missing ones (nil on LaneHost).
func (d Datapath) Where() (Lane, error) {
	var missing []error
	lane := LaneHost
	for _, f := range d.Needs {
		err := f.Probe()
		if err == nil {
			continue
		}
		missing = append(missing, Missing{Feature: f, Err: err})
		if f.KernelLane && lane == LaneHost {
			lane = LaneKernel
		} else if !f.KernelLane {
			lane = LaneNone
		}
	}
	return lane, errors.Join(missing...)
}

// Unsupported says why this machine cannot run d here, or "" when it can.
func (d Datapath) Unsupported() string {
	if _, err := d.Where(); err != nil {
		return strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	return ""
}

// validate checks a descriptor at Register.
func (d Datapath) validate() error {
	switch {
	case d.Name == "":
		return errors.New("datapath without a name")
	case (d.Start.Factory == nil) == (d.Start.Program == ""):
		return fmt.Errorf("datapath %s: set exactly one of Start.Factory and Start.Program", d.Name)
	case len(d.AliasOf) == 0 && d.Kernel == 0:
		return fmt.Errorf("datapath %s: no Kernel", d.Name)
	case len(d.AliasOf) == 0 && len(d.Dump) == 0:
		return fmt.Errorf("datapath %s: no Dump command", d.Name)
	}
	for _, f := range d.Needs {
		if f.Name == "" || f.Probe == nil || f.Remedy == "" {
			return fmt.Errorf("datapath %s: feature %q needs a name, a probe and a remedy", d.Name, f.Name)
		}
	}
	return nil
}

// IPTablesFlush is the flush of every table a datapath writes iptables rules
// in, through the iptables command named (iptables, iptables-legacy,
// iptables-nft): one iptables-restore without --noflush of the empty nat,
// filter and mangle tables, as a firewall reload restoring its own rules
// does: each table's rules and user chains are gone, mangle (the canary's)
// last.
func IPTablesFlush(iptables string) [][]string {
	return [][]string{{"sh", "-c", `printf '*nat\nCOMMIT\n*filter\nCOMMIT\n*mangle\nCOMMIT\n' | ` + iptables + "-restore"}}
}
