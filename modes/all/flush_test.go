package all_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/modes/modetest"
	"github.com/svcsim/svcsim/sim/state"
)

// TestFlushTakesCanary (root): on the real kernel, each datapath's Flush
// commands (the repair scenario's flush) take its canary with its rules:
// Intact turns false, and a full Sync of the same state brings back the
// canary and the same dump. No node proxy runs here, so nothing repairs
// behind the test's back. Datapaths this machine cannot run (IPVS without
// IP_VS) skip; the kernel lane runs them.
func TestFlushTakesCanary(t *testing.T) {
	privtest.RequireRoot(t)
	st := modetest.NodeState(state.ServicePort{
		Namespace: "default", Name: "web", Protocol: state.TCP,
		ClusterIP: netip.MustParseAddr("10.96.0.20"), Port: 80, NodePort: 30080,
		Endpoints: []state.Endpoint{{IP: netip.MustParseAddr("10.244.1.5"), Port: 8080, Node: modetest.Node}},
	})
	for _, d := range modes.Table() {
		if d.Start.Factory == nil {
			continue
		}
		t.Run(strings.ReplaceAll(d.Name, "/", "-"), func(t *testing.T) {
			if why := d.Unsupported(); why != "" {
				t.Skipf("%s cannot run here: %s", d.Name, why)
			}
			if len(d.Flush) == 0 {
				t.Fatalf("%s names no Flush commands", d.Name)
			}
			ns := privtest.NS(t, "flush")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			in := func(f func() error) {
				t.Helper()
				if err := ns.Do(f); err != nil {
					t.Fatal(err)
				}
			}
			var p modes.Proxier
			in(func() error {
				var err error
				p, err = modes.New(d.Name, modes.Options{Node: modetest.Node})
				return err
			})
			t.Cleanup(func() { _ = ns.Do(func() error { return p.Cleanup(context.Background()) }) })
			c, ok := p.(modes.Canary)
			if !ok {
				t.Fatalf("%s is no modes.Canary", d.Name)
			}
			intact := func() bool {
				t.Helper()
				var ok bool
				in(func() error {
					var err error
					ok, err = c.Intact(ctx)
					return err
				})
				return ok
			}
			dump := func() string {
				t.Helper()
				dp, ok := p.(modes.Dumper)
				if !ok {
					return ""
				}
				var out string
				in(func() error {
					var err error
					out, err = dp.Dump(ctx)
					return err
				})
				return out
			}

			in(func() error { return p.Sync(ctx, st) })
			if !intact() {
				t.Fatal("no canary after the first sync")
			}
			before := dump()
			for _, argv := range d.Flush {
				if out, err := ns.Output(argv...); err != nil {
					t.Fatalf("%v: %v: %s", argv, err, out)
				}
			}
			if intact() {
				t.Fatalf("canary intact after %v", d.Flush)
			}
			if got := dump(); got == before {
				t.Errorf("dump unchanged by the flush:\n%s", got)
			}
			if !modes.ForceFullSync(p) {
				t.Fatalf("%s is no modes.FullSyncer", d.Name)
			}
			in(func() error { return p.Sync(ctx, st) })
			if !intact() {
				t.Error("no canary after the repair sync")
			}
			if got := dump(); got != before {
				t.Errorf("dump after the repair:\n%s\nwant, as before the flush:\n%s", got, before)
			}
		})
	}
}
