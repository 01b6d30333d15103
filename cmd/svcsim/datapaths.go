package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/svcsim/svcsim/modes"
	"github.com/svcsim/svcsim/plane/kube/cluster"
)

// newDatapaths lists the registered datapaths and where each can run from
// this machine, as their descriptors' probes say. `make test` asks it which
// datapaths to run in the kernel lane and which on the kubernetes plane.
func newDatapaths() *cobra.Command {
	var lane, plane string
	cmd := &cobra.Command{
		Use:   "datapaths [--lane host|kernel] [--plane embedded|kubernetes]",
		Short: "List the datapaths and where each runs here (host, kernel lane, or why not)",
		Example: `  svcsim datapaths
  svcsim datapaths --lane kernel   # names only the qemu kernel lane can run, comma-separated
  svcsim datapaths --lane host --plane kubernetes   # kube-proxy's and svcsim's on the genuine control plane, runnable here`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			// The embedded plane runs svcsim's in-process datapaths; the
			// kubernetes plane kube-proxy's and svcsim's own again, fed
			// from its API server ("nftables@kubernetes").
			var embedded []modes.Datapath
			for _, d := range modes.Table() {
				if d.Start.Program == "" {
					embedded = append(embedded, d)
				}
			}
			var table []modes.Datapath
			switch plane {
			case "":
				table = append(embedded, cluster.Datapaths()...)
			case controlPlaneEmbedded:
				table = embedded
			case controlPlaneKubernetes:
				table = cluster.Datapaths()
			default:
				return fmt.Errorf("--plane %q: want %s or %s", plane, controlPlaneEmbedded, controlPlaneKubernetes)
			}
			if lane != "" {
				var want modes.Lane
				switch lane {
				case "host":
					want = modes.LaneHost
				case "kernel":
					want = modes.LaneKernel
				default:
					return fmt.Errorf("--lane %q: want host or kernel", lane)
				}
				var names []string
				for _, d := range table {
					if l, _ := d.Where(); l == want {
						names = append(names, d.Name)
					}
				}
				if len(names) > 0 {
					fmt.Fprintln(w, strings.Join(names, ","))
				}
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DATAPATH\tRUNS\tMISSING")
			for _, d := range table {
				l, err := d.Where()
				missing := ""
				if err != nil {
					missing = strings.ReplaceAll(err.Error(), "\n", "; ")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Name, l, missing)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&lane, "lane", "", "print only the names of the datapaths that run in this lane, comma-separated")
	cmd.Flags().StringVar(&plane, "plane", "", "only the datapaths of this control plane: embedded (svcsim's proxies) or kubernetes (the genuine kube-proxy's, and svcsim's proxies fed from the API server: nftables@kubernetes)")
	return cmd
}
