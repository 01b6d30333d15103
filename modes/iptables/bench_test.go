package iptables_test

import (
	"context"
	"flag"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/svcsim/svcsim/internal/privtest"
	"github.com/svcsim/svcsim/modes/iptables"
	"github.com/svcsim/svcsim/modes/iptrestore"
	"github.com/svcsim/svcsim/sim/state"
)

// benchServices is the service count of the benchmarks (2 endpoints each):
// go test -bench . -services 10000 ./modes/iptables/
var benchServices = flag.Int("services", 1000, "number of services in the benchmarks")

// flipEndpoint changes one endpoint of service i: the change a scaled
// deployment makes, and what a partial sync is for.
func flipEndpoint(svcs []state.ServicePort, i int) *state.NodeState {
	s := &svcs[i%len(svcs)]
	eps := append([]state.Endpoint(nil), s.Endpoints...)
	if eps[1].Port == 8080 {
		eps[1].Port = 8081
	} else {
		eps[1].Port = 8080
	}
	s.Endpoints = eps
	return makeState(svcs...)
}

// BenchmarkKernelSync measures one Sync after a one-endpoint change with
// -services (1,000) services present, in a fresh namespace, full versus partial, on
// both backends. Besides ns/op it reports the restore input's size and the
// time spent in iptables-restore and (full syncs) iptables-save.
func BenchmarkKernelSync(b *testing.B) {
	privtest.RequireRoot(b)
	ctx := context.Background()
	for _, backend := range []iptrestore.Backend{iptrestore.Legacy, iptrestore.NFT} {
		_, restore, _ := backend.Binaries()
		for _, full := range []bool{true, false} {
			kind := "partial"
			if full {
				kind = "full"
			}
			b.Run(fmt.Sprintf("%s/services=%d/%s", backend, *benchServices, kind), func(b *testing.B) {
				if _, err := exec.LookPath(restore); err != nil {
					b.Skipf("backend %s: %s not installed", backend, restore)
				}
				ns := privtest.NS(b, "bench")
				p, err := iptables.New(iptables.Config{Backend: backend, AlwaysFullSync: full})
				if err != nil {
					b.Fatal(err)
				}
				svcs := manyServices(*benchServices, 2)
				if err := ns.Do(func() error { return p.Sync(ctx, makeState(svcs...)) }); err != nil {
					b.Fatal(err)
				}
				var lines, bytes int
				var restore, save time.Duration
				i := 0
				for b.Loop() {
					st := flipEndpoint(svcs, i)
					i++
					if err := ns.Do(func() error { return p.Sync(ctx, st) }); err != nil {
						b.Fatal(err)
					}
					ls := p.LastSync()
					if ls.Full != full {
						b.Fatalf("sync kind: %+v", ls)
					}
					lines += ls.Lines
					bytes += ls.Bytes
					restore += ls.RestoreDuration
					save += ls.SaveDuration
				}
				n := float64(i)
				b.ReportMetric(float64(lines)/n, "lines/op")
				b.ReportMetric(float64(bytes)/n, "bytes/op")
				b.ReportMetric(restore.Seconds()*1000/n, "restore-ms/op")
				b.ReportMetric(save.Seconds()*1000/n, "save-ms/op")
			})
		}
	}
}

// BenchmarkBuildRules measures building the restore input alone (the fake
// kernel's own parsing included), without root.
func BenchmarkBuildRules(b *testing.B) {
	for _, full := range []bool{true, false} {
		b.Run(fmt.Sprintf("services=%d/full=%v", *benchServices, full), func(b *testing.B) {
			p, _ := newFakeProxier(b, func(c *iptables.Config) { c.AlwaysFullSync = full })
			svcs := manyServices(*benchServices, 2)
			mustSync(b, p, makeState(svcs...))
			i := 0
			for b.Loop() {
				mustSync(b, p, flipEndpoint(svcs, i))
				i++
			}
			b.ReportMetric(float64(p.LastSync().Lines), "lines/op")
		})
	}
}
