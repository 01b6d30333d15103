package bench

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the summary: one row per datapath and N with full sync,
// one endpoint change, the floor and the ratio to it, and first-packet
// latency through the VIP and directly.
func (s *Summary) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "lane %s, kernel %s, %s x%d, load average at start %s\n",
		s.Env.Lane, s.Env.Kernel, s.Env.CPU, s.Env.CPUs, s.Load)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "datapath\tN\tfull sync ms\tchange ms\tchange floor ms\tchange/floor\tresync ms\tresync/change\tfloor ms\tvs floor\tfirst-pkt p50 ms\tp99 ms\tdirect p50 ms\tconverge ms\trps keepalive\trps new-conn\t")
	dps := map[string]bool{}
	var order []string
	for _, b := range s.Benches {
		if !dps[b.Datapath] {
			dps[b.Datapath] = true
			order = append(order, b.Datapath)
		}
	}
	for _, dp := range order {
		ns := map[int]bool{}
		for _, b := range s.Benches {
			if b.Datapath == dp {
				for _, p := range b.Points {
					ns[p.N] = true
				}
			}
		}
		var sorted []int
		for n := range ns {
			sorted = append(sorted, n)
		}
		sort.Ints(sorted)
		floor, _ := FloorMetric(dp)
		for _, n := range sorted {
			cell := func(metric string, f func(pt pointView) string) string {
				p, ok := s.Point(dp, metric, n)
				if !ok {
					return "-"
				}
				return f(pointView{p.Median, p.P99, p.Extra})
			}
			med := func(pt pointView) string { return num(pt.median) }
			ratio := "-"
			if p, ok := s.Point(dp, MetricFullSync, n); ok && p.Extra["ratio_to_floor"] > 0 {
				ratio = num(p.Extra["ratio_to_floor"]) + "x"
			} else if p, ok := s.Point(dp, MetricEndpointChange, n); ok && p.Extra["ratio_to_floor"] > 0 {
				ratio = num(p.Extra["ratio_to_floor"]) + "x (change)"
			}
			floorCell := "-"
			if floor != "" {
				floorCell = cell(floor, med)
			}
			// The one-change floor: nftables' own change replayed by nft -f,
			// IPVS's one raw netlink call.
			chFloor, chRatio := "-", "-"
			if p, ok := s.Point(dp, MetricFloorNftChange, n); ok {
				chFloor = num(p.Median)
				chRatio = cell(MetricEndpointChange, func(pt pointView) string { return ratioCell(pt.extra["ratio_to_change_floor"]) })
			} else if floor == MetricFloorIPVS {
				chFloor = cell(floor, med)
				chRatio = cell(MetricEndpointChange, func(pt pointView) string { return ratioCell(pt.extra["ratio_to_floor"]) })
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", dp, n,
				cell(MetricFullSync, med), cell(MetricEndpointChange, med), chFloor, chRatio, cell(MetricFullResync, med),
				cell(MetricEndpointChange, func(pt pointView) string { return ratioCell(pt.extra["full_resync_over_change"]) }),
				floorCell, ratio,
				cell(MetricFirstPacket, med), cell(MetricFirstPacket, func(pt pointView) string { return num(pt.p99) }),
				cell(MetricFirstPacket, func(pt pointView) string { return num(pt.extra["direct_median_ms"]) }),
				cell(MetricConvergence, med), cell(MetricRPSKeepAlive, med), cell(MetricRPSNewConn, med))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := s.writeKubeProxyRatios(w, order); err != nil {
		return err
	}
	skipped := make([]string, 0, len(s.Skipped))
	for dp := range s.Skipped {
		skipped = append(skipped, dp)
	}
	sort.Strings(skipped)
	for _, dp := range skipped {
		fmt.Fprintf(w, "skipped %s: %s\n", dp, s.Skipped[dp])
	}
	if len(s.Errors) > 0 {
		fmt.Fprintf(w, "errors:\n  %s\n", strings.Join(s.Errors, "\n  "))
	}
	return nil
}

type pointView struct {
	median, p99 float64
	extra       map[string]float64
}

func ratioCell(v float64) string {
	if v <= 0 {
		return "-"
	}
	return num(v) + "x"
}

// num prints 3 significant digits without exponent for ordinary values.
func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// writeKubeProxyRatios prints, for each kube-proxy datapath measured beside
// its svcsim twin, the same-run ratios svcsim/kube-proxy of the full sync
// and the one change, and kube-proxy's figures over its twin's floors (the
// raw tool on svcsim's rules of the same N: kube-proxy's own rules differ a
// little, see modes/rulediff).
func (s *Summary) writeKubeProxyRatios(w io.Writer, order []string) error {
	var rows [][]string
	for _, kp := range order {
		twin := Twin(kp)
		if !isKubeProxy(kp) || twin == "" {
			continue
		}
		floor, _ := FloorMetric(twin)
		for _, b := range s.Benches {
			if b.Datapath != kp || b.Metric != MetricFullSync {
				continue
			}
			for _, kfp := range b.Points {
				n := kfp.N
				kcp, _ := s.Point(kp, MetricEndpointChange, n)
				sfp, okF := s.Point(twin, MetricFullSync, n)
				scp, okC := s.Point(twin, MetricEndpointChange, n)
				ratio := func(a, b float64, ok bool) string {
					if !ok || a <= 0 || b <= 0 {
						return "-"
					}
					return num(a/b) + "x"
				}
				fl, okFl := s.Point(twin, floor, n)
				chFloor, okCh := s.Point(twin, MetricFloorNftChange, n)
				rows = append(rows, []string{twin + " / " + kp, strconv.Itoa(n),
					num(sfp.Median), num(kfp.Median), ratio(sfp.Median, kfp.Median, okF),
					num(scp.Median), num(kcp.Median), ratio(scp.Median, kcp.Median, okC),
					ratio(kfp.Median, fl.Median, okFl && floor != MetricFloorIPVS), ratio(kcp.Median, chFloor.Median, okCh)})
			}
		}
	}
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nsame run, svcsim against the genuine kube-proxy (kube-proxy's figures from its own sync histograms; both without a minimum sync period):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "svcsim / kube-proxy\tN\tfull ms\tkube-proxy full ms\tsvcsim/kube-proxy\tchange ms\tkube-proxy change ms\tsvcsim/kube-proxy\tkube-proxy full/floor\tkube-proxy change/floor\t")
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	return tw.Flush()
}
