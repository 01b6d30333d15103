package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/svcsim/svcsim/internal/stats"
	"github.com/svcsim/svcsim/modes"
	_ "github.com/svcsim/svcsim/modes/all" // every mode
	"github.com/svcsim/svcsim/report/results"
)

// rules measures full sync, endpoint changes, a forced full resync, counts
// and the floor at n.
func (r *runner) rules(ctx context.Context, dp string, n int, s series) error {
	st, err := Synthetic(n, r.cfg.Endpoints)
	if err != nil {
		return err
	}
	tgt := Target(st)
	withExtra := WithTargetEndpoints(st, append(slices.Clone(tgt.Endpoints), extraEndpoint(n, r.cfg.Endpoints))...)
	var full, adds, removes, resyncs, slab, vmalloc, floor, floorSvc, floorChange []float64
	var fullExtra, changeExtra, counts map[string]float64
	for rep := range r.cfg.Reps {
		ns, err := r.newNS("bench")
		if err != nil {
			return err
		}
		var input []byte
		var dump string
		err = ns.Do(func() error {
			in, err := newInstance(dp)
			if err != nil {
				return err
			}
			defer func() {
				if cerr := in.close(); cerr != nil {
					r.fail(dp, "cleanup", cerr)
				}
			}()
			s0, v0 := slabKiB(), vmallocKiB()
			t0 := time.Now()
			if err := in.p.Sync(ctx, st); err != nil {
				return fmt.Errorf("full sync: %w", err)
			}
			full = append(full, ms(time.Since(t0)))
			slab, vmalloc = append(slab, slabKiB()-s0), append(vmalloc, vmallocKiB()-v0)
			if rep == 0 {
				fullExtra = in.syncExtra()
				if counts, err = ruleCounts(ctx, dp); err != nil {
					return fmt.Errorf("count rules: %w", err)
				}
			}
			if in.rec != nil {
				input = in.rec.lastInput()
			}
			if describe(dp).Kernel == modes.KernelNftables {
				out, err := execOut(ctx, "nft", "list", "table", "ip", "kube-proxy")
				if err != nil {
					return err
				}
				dump = out
			}
			if in.nft != nil {
				in.nft.take()
			}
			for range r.cfg.Changes {
				t0 := time.Now()
				if err := in.p.Sync(ctx, withExtra); err != nil {
					return fmt.Errorf("endpoint add: %w", err)
				}
				adds = append(adds, ms(time.Since(t0)))
				changeExtra = in.syncExtra()
				t0 = time.Now()
				if err := in.p.Sync(ctx, st); err != nil {
					return fmt.Errorf("endpoint remove: %w", err)
				}
				removes = append(removes, ms(time.Since(t0)))
			}
			if in.nft != nil {
				// The last add and remove, replayed by the raw tool with
				// the N services present (the table ends as it was).
				txs := in.nft.take()
				if len(txs) < 2 {
					return fmt.Errorf("one-change floor: %d transactions recorded, want an add and a remove", len(txs))
				}
				samples, err := floorNftChange(ctx, txs[len(txs)-2:], r.cfg.Changes)
				if err != nil {
					return fmt.Errorf("one-change floor: %w", err)
				}
				floorChange = append(floorChange, samples...)
			}
			if in.requestFull() {
				t0 := time.Now()
				if err := in.p.Sync(ctx, withExtra); err != nil {
					return fmt.Errorf("endpoint add with a full resync: %w", err)
				}
				resyncs = append(resyncs, ms(time.Since(t0)))
				if err := in.p.Sync(ctx, st); err != nil {
					return fmt.Errorf("endpoint remove after a full resync: %w", err)
				}
			}
			if describe(dp).Kernel == modes.KernelIPVS && !r.cfg.NoFloor {
				// The raw call runs with the N services still present.
				svc, dst, err := floorIPVSSamples(ns, r.cfg.IPVSFloorReps)
				if err != nil {
					return err
				}
				floor, floorSvc = append(floor, dst...), append(floorSvc, svc...)
			}
			return nil
		})
		if derr := ns.Delete(); derr != nil {
			err = errors.Join(err, derr)
		}
		if err != nil {
			return err
		}
		if (input != nil || dump != "") && !r.cfg.NoFloor {
			d, err := r.floorOnce(ctx, dp, input, dump)
			if err != nil {
				return fmt.Errorf("floor: %w", err)
			}
			floor = append(floor, ms(d))
		}
	}
	fp := point(n, full, false, merge(fullExtra, counts))
	fp.Extra = merge(fp.Extra, map[string]float64{"slab_delta_kib": stats.Summarize(slab).Median,
		"vmalloc_delta_kib": stats.Summarize(vmalloc).Median})
	changes := append(slices.Clone(adds), removes...)
	cp := point(n, changes, false, merge(prefixed("last_", changeExtra), map[string]float64{
		"add_median_ms": stats.Summarize(adds).Median, "remove_median_ms": stats.Summarize(removes).Median}))
	if cp.Median > 0 {
		cp.Extra["full_over_change"] = fp.Median / cp.Median
	}
	if len(resyncs) > 0 {
		rp := point(n, resyncs, false, nil)
		if cp.Median > 0 {
			cp.Extra["full_resync_over_change"] = rp.Median / cp.Median
		}
		s.add(MetricFullResync, rp)
	}
	if fm, _ := FloorMetric(dp); fm != "" && len(floor) > 0 {
		flp := point(n, floor, false, nil)
		if len(floorSvc) > 0 {
			flp.Extra = map[string]float64{"add_service_median_ms": stats.Summarize(floorSvc).Median}
		}
		if flp.Median > 0 {
			if describe(dp).Kernel == modes.KernelIPVS {
				cp.Extra["ratio_to_floor"] = cp.Median / flp.Median
			} else {
				fp.Extra["ratio_to_floor"] = fp.Median / flp.Median
			}
		}
		s.add(fm, flp)
	}
	if len(floorChange) > 0 {
		fcp := point(n, floorChange, false, nil)
		if fcp.Median > 0 {
			cp.Extra["ratio_to_change_floor"] = cp.Median / fcp.Median
		}
		s.add(MetricFloorNftChange, fcp)
	}
	s.add(MetricFullSync, fp)
	s.add(MetricEndpointChange, cp)
	r.logf("bench: %-16s N=%-6d full %9.2f ms  change %8.3f ms  %s", dp, n, fp.Median, cp.Median, ratioText(fp, cp))
	return nil
}

func ratioText(fp, cp results.Point) string {
	if v, ok := fp.Extra["ratio_to_floor"]; ok {
		return fmt.Sprintf("full/floor %.2fx", v)
	}
	if v, ok := cp.Extra["ratio_to_floor"]; ok {
		return fmt.Sprintf("change/floor %.2fx", v)
	}
	return ""
}

// floorOnce replays the mode's full-sync input with the raw tool into a
// fresh namespace.
func (r *runner) floorOnce(ctx context.Context, dp string, input []byte, dump string) (time.Duration, error) {
	ns, err := r.newNS("floor")
	if err != nil {
		return 0, err
	}
	var d time.Duration
	if input != nil {
		d, err = floorRestore(ctx, ns, dp, input)
	} else {
		d, err = floorNft(ctx, ns, dump, r.tmp)
	}
	if derr := ns.Delete(); derr != nil {
		err = errors.Join(err, derr)
	}
	return d, err
}

func merge(a, b map[string]float64) map[string]float64 {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := make(map[string]float64, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func prefixed(p string, m map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[p+k] = v
	}
	return out
}

// execOut runs a command in the calling thread's namespace and returns its
// standard output.
func execOut(ctx context.Context, name string, args ...string) (string, error) {
	cmd := execCommand(ctx, name, args...)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}
