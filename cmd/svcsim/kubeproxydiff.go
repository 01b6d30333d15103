package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/svcsim/svcsim/modes/kubeproxy"
	"github.com/svcsim/svcsim/modes/rulediff"
	"github.com/svcsim/svcsim/plane"
	"github.com/svcsim/svcsim/plane/kube/cluster"
)

// proxyDiffOptions describe one comparison of two kube-proxy builds.
type proxyDiffOptions struct {
	// Base runs the control plane and the first kube-proxy (the pinned
	// bin/k8s); With is the kube-proxy compared with it (bin/k8s-local).
	Base, With string
	// Datapaths are the kube-proxy datapaths compared, in order.
	Datapaths []string
	Nodes     int
	Manifests []plane.Manifest
	Log       io.Writer
}

// proxyDiff is what one datapath's kube-proxy programs on one node, Base's
// build against With's, for the same cluster state.
type proxyDiff struct {
	Datapath, Node string
	// BaseVersion and WithVersion are what the two builds report.
	BaseVersion, WithVersion string
	// Lines is how many lines Base's dump has; OnlyBase and OnlyWith are
	// the lines only one build programs.
	Lines              int
	OnlyBase, OnlyWith []string
}

// kubeProxyDiff starts one kubernetes plane whose control plane runs from
// o.Base, applies o.Manifests in namespace default and, per datapath, dumps
// every node's rules (the plane's Dump: without counters and the barrier,
// nftables set elements sorted) once with o.Base's kube-proxy and once with
// o.With's, restarting kube-proxy in between (after `kube-proxy --cleanup`
// of the build that ran). The dumps are compared as sets of lines: a rule
// that only moved within its chain is not a difference (kube-proxy writes
// Services in map order, so the order differs from run to run anyway).
func kubeProxyDiff(ctx context.Context, o proxyDiffOptions) ([]proxyDiff, error) {
	if len(o.Datapaths) == 0 {
		return nil, fmt.Errorf("kube-proxy-diff: no datapath")
	}
	c, err := cluster.Start(ctx, cluster.Options{Nodes: o.Nodes, Datapath: o.Datapaths[0], Binary: o.Base, Log: o.Log})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if len(o.Manifests) > 0 {
		if _, err := c.Apply(ctx, "default", o.Manifests...); err != nil {
			return nil, err
		}
	}
	if err := c.WaitProgrammed(ctx); err != nil {
		return nil, err
	}
	once := func() (map[string][]string, error) {
		out := map[string][]string{}
		for _, n := range c.Nodes() {
			d, err := c.Dump(ctx, n.Name)
			if err != nil {
				return nil, err
			}
			lines := strings.Split(strings.TrimSpace(d), "\n")
			sort.Strings(lines)
			out[n.Name] = lines
		}
		return out, nil
	}
	dumps := func() (map[string][]string, string, error) {
		out, err := settledDumps(ctx, once, stableReads, stableEvery, stableWithin)
		return out, c.KubeProxyVersion(), err
	}
	var res []proxyDiff
	current := o.Base
	for _, dp := range o.Datapaths {
		if err := c.SetDatapath(ctx, dp); err != nil {
			return nil, err
		}
		got := map[string]map[string][]string{}
		versions := map[string]string{}
		// Start with the build already running: one restart per datapath.
		order := []string{o.Base, o.With}
		if current == o.With {
			order = []string{o.With, o.Base}
		}
		for i, bin := range order {
			if i > 0 {
				if err := c.SetKubeProxyBinary(ctx, bin); err != nil {
					return nil, err
				}
				current = bin
			}
			if got[bin], versions[bin], err = dumps(); err != nil {
				return nil, err
			}
		}
		for _, n := range c.Nodes() {
			onlyBase, onlyWith := rulediff.Diff(got[o.Base][n.Name], got[o.With][n.Name])
			res = append(res, proxyDiff{Datapath: dp, Node: n.Name, BaseVersion: versions[o.Base], WithVersion: versions[o.With],
				Lines: len(got[o.Base][n.Name]), OnlyBase: onlyBase, OnlyWith: onlyWith})
		}
	}
	return res, nil
}

// The barrier covers kube-proxy's Services and EndpointSlices watches, not
// every input of its rules (kube-proxy/nftables' "Drop traffic to
// unallocated ClusterIPs" rule follows its ServiceCIDR watch and was seen
// missing right after the barrier): a dump counts once stableReads reads
// stableEvery apart agree, for at most stableWithin (then the last one).
const (
	stableReads  = 3
	stableEvery  = time.Second
	stableWithin = 20 * time.Second
)

// settledDumps calls dump until n consecutive results, every apart, are
// equal, or within has passed (then the last result), and returns it.
func settledDumps(ctx context.Context, dump func() (map[string][]string, error), n int, every, within time.Duration) (map[string][]string, error) {
	deadline := time.Now().Add(within)
	last, err := dump()
	if err != nil {
		return nil, err
	}
	for same := 1; same < n && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(every):
		}
		next, err := dump()
		if err != nil {
			return nil, err
		}
		if reflect.DeepEqual(next, last) {
			same++
		} else {
			same, last = 1, next
		}
	}
	return last, nil
}

// printProxyDiffs writes each comparison: a header, then "-" for the lines
// only the base build programs and "+" for those only the other one does.
func printProxyDiffs(w io.Writer, base, with string, res []proxyDiff) {
	for _, d := range res {
		fmt.Fprintf(w, "== %s on %s: %s (%s) -> %s (%s): ", d.Datapath, d.Node, d.BaseVersion, base, d.WithVersion, with)
		if len(d.OnlyBase)+len(d.OnlyWith) == 0 {
			fmt.Fprintf(w, "the same %d lines\n", d.Lines)
			continue
		}
		fmt.Fprintf(w, "%d lines removed, %d added (of %d)\n", len(d.OnlyBase), len(d.OnlyWith), d.Lines)
		for _, l := range d.OnlyBase {
			fmt.Fprintln(w, "- "+l)
		}
		for _, l := range d.OnlyWith {
			fmt.Fprintln(w, "+ "+l)
		}
	}
}

func newKubeProxyDiff() *cobra.Command {
	var base, with, modesFlag string
	var files []string
	var nodes int
	cmd := &cobra.Command{
		Use:   "kube-proxy-diff --with BINARY [-f MANIFESTS]",
		Short: "Show how another kube-proxy build programs the same objects",
		Long: `kube-proxy-diff shows what a kube-proxy build (a local kubernetes tree's, built by
` + "`KUBERNETES_SRC=/path/to/kubernetes make kube`" + ` into bin/k8s-local) programs
differently from the pinned release (bin/k8s). It starts one kubernetes plane, its
control plane from --base, applies the manifests in namespace default, and for each
datapath dumps every node's rules once with each build's kube-proxy (restarted after
` + "`kube-proxy --cleanup`" + ` in between). Lines only the base build programs print
with "-", lines only the other one programs with "+"; rule order within a chain is not
compared.`,
		Example: `  sudo KUBERNETES_SRC=~/src/kubernetes make kube-proxy-diff
  sudo bin/svcsim kube-proxy-diff --with bin/k8s-local -f sim/testdata/seed --mode kube-proxy/nftables`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot("kube-proxy-diff"); err != nil {
				return err
			}
			if with == "" {
				return fmt.Errorf("kube-proxy-diff: --with BINARY is needed")
			}
			var dps []string
			if modesFlag == "" {
				for _, d := range kubeproxy.Datapaths() {
					if d.Unsupported() == "" && d.Start.Binary == "" {
						dps = append(dps, d.Name)
					}
				}
			} else {
				for _, m := range strings.Split(modesFlag, ",") {
					d, err := kubeproxy.Get(m)
					if err != nil {
						return err
					}
					dps = append(dps, d.Name)
				}
			}
			ms, err := plane.ReadManifests(cmd.InOrStdin(), files...)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
			defer cancel()
			res, err := kubeProxyDiff(ctx, proxyDiffOptions{Base: base, With: with, Datapaths: dps, Nodes: nodes, Manifests: ms, Log: os.Stderr})
			if err != nil {
				return err
			}
			printProxyDiffs(cmd.OutOrStdout(), base, with, res)
			return nil
		},
	}
	cmd.Flags().StringVar(&base, "base", "bin/k8s", "the multi-call binary of the control plane and of the kube-proxy compared against")
	cmd.Flags().StringVar(&with, "with", "", "the build whose kube-proxy is compared (bin/k8s-local)")
	cmd.Flags().StringVar(&modesFlag, "mode", "", "kube-proxy datapaths, comma-separated (default: every one bin/k8s runs here)")
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifests to apply first (files, directories, - for stdin)")
	cmd.Flags().IntVar(&nodes, "nodes", 2, "number of nodes")
	return cmd
}
