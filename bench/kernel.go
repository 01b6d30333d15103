package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	libipvs "github.com/moby/ipvs"
	"sigs.k8s.io/knftables"

	"github.com/svcsim/svcsim/internal/netns"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/conntrack"
	"github.com/svcsim/svcsim/modes/iptables"
	"github.com/svcsim/svcsim/modes/iptrestore"
	ipvsmode "github.com/svcsim/svcsim/modes/ipvs"
	"github.com/svcsim/svcsim/modes/nftables"
	"github.com/svcsim/svcsim/report/results"
)

// Datapaths are the datapaths the benchmark knows (every registered one
// but aliases and external programs, which run on the kubernetes plane:
// the benchmark drives proxiers in-process), in the report's order.
func Datapaths() []string {
	var out []string
	for _, d := range modes.Table() {
		if d.Start.Factory != nil {
			out = append(out, d.Name)
		}
	}
	return out
}

// describe returns dp's descriptor (the zero Datapath for an unknown name,
// which Unsupported rejects before anything is measured).
func describe(dp string) modes.Datapath {
	d, _ := modes.Lookup(dp)
	return d
}

// Unsupported says why this machine cannot run datapath dp here, or "": the
// descriptor's probes of what it needs (Where says whether the kernel lane
// can run it instead).
func Unsupported(dp string) string {
	d, ok := modes.Lookup(dp)
	if !ok || len(d.AliasOf) > 0 {
		return fmt.Sprintf("unknown datapath %q (known: %s)", dp, strings.Join(Datapaths(), ", "))
	}
	if d.Start.Factory == nil && !isKubeProxy(dp) {
		return fmt.Sprintf("datapath %s is the program %s on the kubernetes plane; the benchmark drives in-process datapaths (%s) and kube-proxy's (%s)",
			dp, d.Start.Program, strings.Join(Datapaths(), ", "), strings.Join(KubeProxyDatapaths(), ", "))
	}
	return d.Unsupported()
}

// FloorMetric is the floor metric of a datapath ("" when it has none) and
// the metrics its chart pairs it with: the raw tool behind its kernel
// (iptables-restore of an iptables backend, nft -f, one IPVS netlink call).
func FloorMetric(dp string) (string, []string) {
	switch describe(dp).Kernel {
	case modes.KernelIptables:
		return MetricFloorRestore, []string{MetricFullSync}
	case modes.KernelNftables:
		return MetricFloorNft, []string{MetricFullSync}
	case modes.KernelIPVS:
		return MetricFloorIPVS, []string{MetricEndpointChange}
	}
	return "", nil
}

// info is what the report needs of dp's descriptor, recorded in its results.
func info(dp string) *results.DatapathInfo {
	d, ok := modes.Lookup(dp)
	if !ok {
		return nil
	}
	return &results.DatapathInfo{Order: d.Report.Order, Claim: string(d.Report.Claim)}
}

// recorder is an iptrestore.Interface that keeps the input of the last restore
// (the floor replays the exact text the mode generated).
type recorder struct {
	iptrestore.Interface
	mu   sync.Mutex
	last []byte
}

func (r *recorder) Restore(ctx context.Context, data []byte, noFlush, counters bool) error {
	r.mu.Lock()
	r.last = append(r.last[:0], data...)
	r.mu.Unlock()
	return r.Interface.Restore(ctx, data, noFlush, counters)
}

func (r *recorder) lastInput() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.last)
}

// nftRecorder is a knftables.Interface that keeps the text of the
// transactions it runs (the one-change floor replays them with nft -f).
type nftRecorder struct {
	knftables.Interface
	mu  sync.Mutex
	txs []string
}

func (r *nftRecorder) Run(ctx context.Context, tx *knftables.Transaction) error {
	r.mu.Lock()
	r.txs = append(r.txs, tx.String())
	r.mu.Unlock()
	return r.Interface.Run(ctx, tx)
}

// take returns the transactions run since the last take.
func (r *nftRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.txs
	r.txs = nil
	return out
}

// instance is one mode bound to the namespace it was created in.
type instance struct {
	dp  string
	p   modes.Proxier
	rec *recorder    // iptables modes only
	nft *nftRecorder // nftables only
}

// newInstance builds dp's proxier; call it inside the namespace's Do.
func newInstance(dp string) (*instance, error) {
	if b, ok := iptables.BackendOfDatapath(dp); ok {
		run, err := iptrestore.NewExec(b)
		if err != nil {
			return nil, err
		}
		rec := &recorder{Interface: run}
		p, err := iptables.New(iptables.Config{Backend: b, Runner: rec, Node: "node1"})
		if err != nil {
			return nil, err
		}
		return &instance{dp: dp, p: p, rec: rec}, nil
	}
	if dp == nftables.ModeName {
		real, err := knftables.New(knftables.IPv4Family, nftables.TableName)
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		rec := &nftRecorder{Interface: real}
		return &instance{dp: dp, nft: rec,
			p: nftables.New(rec, nftables.Config{Node: "node1", Conntrack: conntrack.Netlink{}})}, nil
	}
	p, err := modes.New(dp, modes.Options{Node: "node1"})
	if err != nil {
		return nil, err
	}
	return &instance{dp: dp, p: p}, nil
}

// requestFull makes the next Sync a full resync, if the mode has partial
// syncs; it reports whether it did.
func (in *instance) requestFull() bool {
	full := describe(in.dp).Traits.FullResync
	return full != nil && full(in.p)
}

// close removes what the mode programmed and releases its handles (the
// IPVS mode's reaper goroutine and netlink sockets); call it inside the
// namespace's Do.
func (in *instance) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := in.p.Cleanup(ctx)
	if c, ok := in.p.(io.Closer); ok {
		err = errors.Join(err, c.Close())
	}
	return err
}

// syncExtra returns the mode's own figures of its last sync, for Point.Extra.
func (in *instance) syncExtra() map[string]float64 {
	switch p := in.p.(type) {
	case *iptables.Proxier:
		s := p.LastSync()
		return map[string]float64{"restore_ms": ms(s.RestoreDuration), "restore_lines": float64(s.Lines),
			"rewritten_services": float64(s.Rewritten)}
	case *nftables.Proxier:
		s := p.LastSync()
		return map[string]float64{"nft_ops": float64(s.Ops), "changed_services": float64(s.Changed)}
	case *ipvsmode.Proxier:
		s := p.LastSync()
		return map[string]float64{"ipvs_netlink_ops": float64(s.IPVSOps()), "netlink_ops": float64(s.NetlinkOps()),
			"ipset_ops": float64(s.Ops[ipvsmode.OpIPSetAdd] + s.Ops[ipvsmode.OpIPSetDel] + s.Ops[ipvsmode.OpIPSetRestore])}
	}
	return nil
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ruleCounts measures the kernel objects dp holds in the calling thread's
// namespace: iptables-save lines and rules, nft objects and set elements,
// IPVS virtual and real servers.
func ruleCounts(ctx context.Context, dp string) (map[string]float64, error) {
	d := describe(dp)
	switch d.Kernel {
	case modes.KernelIptables, modes.KernelUserspace:
		// Every table, not only the rules Dump shows.
		bin := d.Dump[0]
		out, err := exec.CommandContext(ctx, bin).Output()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", bin, err)
		}
		return iptablesCounts(out), nil
	case modes.KernelNftables:
		out, err := exec.CommandContext(ctx, "nft", "-j", "list", "table", "ip", "kube-proxy").Output()
		if err != nil {
			return nil, fmt.Errorf("nft -j list table: %w", err)
		}
		return nftCounts(out)
	case modes.KernelIPVS:
		// /proc/net is /proc/self/net: the namespace of the process's main
		// thread. The calling thread's is under thread-self.
		b, err := os.ReadFile("/proc/thread-self/net/ip_vs")
		if err != nil {
			return nil, err
		}
		return ipvsCounts(b), nil
	}
	return nil, nil
}

// iptablesCounts counts iptables-save output: every line that is not a
// comment, the rules (-A) and the chains (:NAME).
func iptablesCounts(save []byte) map[string]float64 {
	var lines, rules, chains float64
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		lines++
		switch {
		case strings.HasPrefix(l, "-A "):
			rules++
		case strings.HasPrefix(l, ":"):
			chains++
		}
	}
	return map[string]float64{"iptables_save_lines": lines, "rules": rules, "chains": chains}
}

// nftCounts counts the objects of `nft -j list ...` (table, chains, rules,
// sets and maps) and the elements of its sets and maps.
func nftCounts(js []byte) (map[string]float64, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("parse nft -j output: %w", err)
	}
	c := map[string]float64{"nft_objects": 0, "nft_chains": 0, "nft_rules": 0, "nft_elements": 0}
	for _, o := range doc.Nftables {
		for kind, raw := range o {
			if kind == "metainfo" {
				continue
			}
			c["nft_objects"]++
			switch kind {
			case "chain":
				c["nft_chains"]++
			case "rule":
				c["nft_rules"]++
			case "set", "map":
				var s struct {
					Elem []json.RawMessage `json:"elem"`
				}
				if err := json.Unmarshal(raw, &s); err != nil {
					return nil, fmt.Errorf("parse nft %s: %w", kind, err)
				}
				c["nft_elements"] += float64(len(s.Elem))
			}
		}
	}
	return c, nil
}

// ipvsCounts counts /proc/net/ip_vs: virtual servers (protocol lines) and
// real servers ("  -> " lines after the header).
func ipvsCounts(b []byte) map[string]float64 {
	var vs, rs float64
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "TCP ") || strings.HasPrefix(l, "UDP ") || strings.HasPrefix(l, "SCTP ") || strings.HasPrefix(l, "FWM "):
			vs++
		case strings.HasPrefix(l, "  -> ") && !strings.Contains(l, "RemoteAddress"):
			rs++
		}
	}
	return map[string]float64{"ipvs_services": vs, "ipvs_dests": rs}
}

// slabKiB is /proc/meminfo's Slab: kernel object memory of the whole host
// (not just our namespace): deltas are indicative only.
func slabKiB() float64 { return meminfoKiB("Slab") }

// vmallocKiB is /proc/meminfo's VmallocUsed (host-wide): iptables-legacy
// keeps each table's rule blob in vmalloc'ed memory, not in slabs.
func vmallocKiB() float64 { return meminfoKiB("VmallocUsed") }

// meminfoKiB reads one kB field of /proc/meminfo (0 if absent).
func meminfoKiB(field string) float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseFloat(f[0], 64)
				return n
			}
		}
	}
	return 0
}

// timeCmd runs a command with stdin in the calling thread's namespace and
// returns its wall time (fork and exec included, as for the modes).
func timeCmd(ctx context.Context, stdin []byte, name string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return d, nil
}

// floorRestore times `iptables-<backend>-restore -w --noflush` of input in
// ns (a fresh namespace: the same situation as the mode's first sync).
func floorRestore(ctx context.Context, ns *netns.NS, dp string, input []byte) (time.Duration, error) {
	b, ok := iptables.BackendOfDatapath(dp)
	if !ok {
		return 0, fmt.Errorf("%s is not an iptables backend", dp)
	}
	_, restore, _ := b.Binaries()
	var d time.Duration
	err := ns.Do(func() error {
		var err error
		d, err = timeCmd(ctx, input, restore, "-w", "--noflush")
		return err
	})
	return d, err
}

// floorNft times `nft -f` of a ruleset text in ns.
func floorNft(ctx context.Context, ns *netns.NS, ruleset string, tmpDir string) (time.Duration, error) {
	f := filepath.Join(tmpDir, "ruleset.nft")
	if err := os.WriteFile(f, []byte(ruleset), 0o600); err != nil {
		return 0, fmt.Errorf("write nft ruleset: %w", err)
	}
	defer os.Remove(f)
	var d time.Duration
	err := ns.Do(func() error {
		var err error
		d, err = timeCmd(ctx, nil, "nft", "-f", f)
		return err
	})
	return d, err
}

// floorNftChange replays txs (the mode's own one-change transactions, an
// add and the remove that undoes it, in order) with `nft -f -` in the
// calling thread's namespace, rounds times, and returns each run's wall
// time: the same change through the nft binary alone, at the same size
// (nft's cache load and the kernel's validation of the whole table
// included, svcsim's planning not).
func floorNftChange(ctx context.Context, txs []string, rounds int) ([]float64, error) {
	var out []float64
	for range rounds {
		for _, tx := range txs {
			d, err := timeCmd(ctx, []byte(tx), "nft", "-f", "-")
			if err != nil {
				return out, err
			}
			out = append(out, ms(d))
		}
	}
	return out, nil
}

// floorIPVSSamples times raw moby/ipvs netlink calls in ns, with whatever
// services it holds present: for each of reps fresh virtual servers (VIPs
// 10.111.255.x, outside the benchmark's range) one AddService and one
// AddDestination; the virtual servers are deleted afterwards.
func floorIPVSSamples(ns *netns.NS, reps int) (addSvc, addDst []float64, err error) {
	h, err := libipvs.New(ns.Path())
	if err != nil {
		return nil, nil, fmt.Errorf("open IPVS handle in %s: %w", ns.Name(), err)
	}
	defer h.Close()
	for i := range reps {
		svc := &libipvs.Service{
			Address: net.IPv4(10, 111, 255, byte(1+i%250)), Protocol: syscall.IPPROTO_TCP, Port: 80,
			AddressFamily: syscall.AF_INET, SchedName: "rr", Netmask: 0xffffffff,
		}
		dst := &libipvs.Destination{
			Address: net.IPv4(10, 244, 1, 200), Port: TargetPort, Weight: 1,
			ConnectionFlags: libipvs.ConnectionFlagMasq, AddressFamily: syscall.AF_INET,
		}
		t0 := time.Now()
		if err := h.NewService(svc); err != nil {
			return nil, nil, fmt.Errorf("ipvs add service %v: %w", svc.Address, err)
		}
		t1 := time.Now()
		derr := h.NewDestination(svc, dst)
		t2 := time.Now()
		if err := h.DelService(svc); err != nil {
			return nil, nil, fmt.Errorf("ipvs delete service %v: %w", svc.Address, err)
		}
		if derr != nil {
			return nil, nil, fmt.Errorf("ipvs add destination: %w", derr)
		}
		addSvc = append(addSvc, ms(t1.Sub(t0)))
		addDst = append(addDst, ms(t2.Sub(t1)))
	}
	return addSvc, addDst, nil
}

// execCommand is exec.CommandContext (a variable so tests can see the seam).
var execCommand = exec.CommandContext
