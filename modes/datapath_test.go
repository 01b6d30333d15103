package modes

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/svcsim/svcsim/sim/state"
)

type nopProxier struct{}

func (nopProxier) Name() string                                 { return "nop" }
func (nopProxier) Sync(context.Context, *state.NodeState) error { return nil }
func (nopProxier) Cleanup(context.Context) error                { return nil }

func feature(name string, err error, lane bool) Feature {
	return Feature{Name: name, Probe: func() error { return err }, Remedy: "remedy for " + name, KernelLane: lane}
}

func TestWhere(t *testing.T) {
	missing := errors.New("missing")
	for name, tc := range map[string]struct {
		needs []Feature
		want  Lane
		msg   string
	}{
		"nothing needed":        {nil, LaneHost, ""},
		"all present":           {[]Feature{feature("a", nil, false), feature("b", nil, true)}, LaneHost, ""},
		"lane offers it":        {[]Feature{feature("mod", missing, true)}, LaneKernel, "missing: remedy for mod"},
		"tool missing":          {[]Feature{feature("tool", missing, false)}, LaneNone, "missing: remedy for tool"},
		"lane cannot help both": {[]Feature{feature("mod", missing, true), feature("tool", missing, false)}, LaneNone, "remedy for mod; missing: remedy for tool"},
		"tool first, then lane": {[]Feature{feature("tool", missing, false), feature("mod", missing, true)}, LaneNone, "remedy for tool"},
	} {
		t.Run(name, func(t *testing.T) {
			d := Datapath{Name: "x", Needs: tc.needs}
			lane, err := d.Where()
			if lane != tc.want {
				t.Errorf("lane %v, want %v", lane, tc.want)
			}
			if got := d.Unsupported(); (got == "") != (tc.msg == "") || !strings.Contains(got, tc.msg) {
				t.Errorf("Unsupported() = %q, want it to contain %q (err %v)", got, tc.msg, err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	f := func(Options) (Proxier, error) { return nopProxier{}, nil }
	ok := Datapath{Name: "x", Start: Start{Factory: f}, Kernel: KernelNftables, Dump: []string{"nft", "list", "ruleset"}}
	if err := ok.validate(); err != nil {
		t.Fatalf("valid descriptor rejected: %v", err)
	}
	alias := Datapath{Name: "y", AliasOf: []string{"x"}, Start: Start{Factory: f}}
	if err := alias.validate(); err != nil {
		t.Fatalf("alias rejected: %v", err)
	}
	for name, mutate := range map[string]func(*Datapath){
		"no name":          func(d *Datapath) { d.Name = "" },
		"no start":         func(d *Datapath) { d.Start = Start{} },
		"factory and prog": func(d *Datapath) { d.Start.Program = "kube-proxy" },
		"no kernel":        func(d *Datapath) { d.Kernel = 0 },
		"no dump":          func(d *Datapath) { d.Dump = nil },
		"feature no probe": func(d *Datapath) { d.Needs = []Feature{{Name: "a", Remedy: "r"}} },
		"feature no remedy": func(d *Datapath) {
			d.Needs = []Feature{{Name: "a", Probe: func() error { return nil }}}
		},
	} {
		d := ok
		mutate(&d)
		if err := d.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestExternalIsNotBuiltInProcess(t *testing.T) {
	name := "test-external-" + t.Name()
	Register(Datapath{Name: name, Start: Start{Program: "kube-proxy", Args: []string{"--proxy-mode=nftables"}},
		Kernel: KernelNftables, Dump: []string{"nft", "list", "ruleset"}})
	if _, err := New(name, Options{}); err == nil || !strings.Contains(err.Error(), "runs as the program kube-proxy") {
		t.Fatalf("New of an external datapath: %v", err)
	}
}

// Disjoint mirrors kube-proxy's platformCleanup: nftables after the
// iptables-based datapaths and back, never within the iptables family,
// never external programs.
func TestDisjoint(t *testing.T) {
	factory := func(Options) (Proxier, error) { return nil, nil }
	reg := func(name string, k Kernel) Datapath {
		d := Datapath{Name: "test-disjoint-" + name, Start: Start{Factory: factory}, Kernel: k, Dump: []string{"true"}}
		Register(d)
		return d
	}
	ipt, nft, ipvs, us := reg("ipt", KernelIptables), reg("nft", KernelNftables), reg("ipvs", KernelIPVS), reg("us", KernelUserspace)
	Register(Datapath{Name: "test-disjoint-external", Start: Start{Program: "kube-proxy"}, Kernel: KernelIptables, Dump: []string{"true"}})
	names := func(ds []Datapath) []string {
		var out []string
		for _, d := range ds {
			if strings.HasPrefix(d.Name, "test-disjoint-") {
				out = append(out, d.Name)
			}
		}
		sort.Strings(out)
		return out
	}
	if got, want := names(Disjoint(nft)), []string{ipt.Name, ipvs.Name, us.Name}; !slices.Equal(got, want) {
		t.Errorf("nftables cleans %v, want %v", got, want)
	}
	for _, d := range []Datapath{ipt, ipvs, us} {
		if got, want := names(Disjoint(d)), []string{nft.Name}; !slices.Equal(got, want) {
			t.Errorf("%s cleans %v, want %v", d.Name, got, want)
		}
	}
}

type fullSyncProxier struct {
	nopProxier
	forced int
}

func (f *fullSyncProxier) ForceFullSync() { f.forced++ }

func TestForceFullSync(t *testing.T) {
	f := &fullSyncProxier{}
	if !ForceFullSync(f) || f.forced != 1 {
		t.Errorf("a FullSyncer: forced %d times", f.forced)
	}
	if ForceFullSync(nopProxier{}) {
		t.Error("a Proxier without ForceFullSync reported true")
	}
}

// TestMissingSaysWhatAndHow holds the real probes' messages: a missing
// tool or kernel feature is named, with how to get it or where it runs.
func TestMissingSaysWhatAndHow(t *testing.T) {
	for _, tc := range []struct {
		f    Feature
		want string
	}{
		{Tool("svcsim-no-such-tool"), "svcsim-no-such-tool is not installed: `sudo make deps` installs it"},
		{KernelModule("NO_SUCH", "svcsim_no_such_module", "/proc/net/svcsim_no_such"),
			"kernel lacks NO_SUCH (/proc/net/svcsim_no_such missing): `make vm-test` runs this datapath in the qemu kernel lane"},
	} {
		err := tc.f.Probe()
		if err == nil {
			t.Fatalf("%s: probe found what does not exist", tc.f.Name)
		}
		if got := (Missing{Feature: tc.f, Err: err}).Error(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.f.Name, got, tc.want)
		}
	}
	d := Datapath{Name: "x", Needs: []Feature{Tool("svcsim-no-such-tool")}}
	if lane, _ := d.Where(); lane != LaneNone {
		t.Errorf("a missing tool: lane %v, want none (the kernel lane has no more tools)", lane)
	}
}
