package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/svcsim/svcsim/report"
	"github.com/svcsim/svcsim/report/results"
)

func newReport() *cobra.Command {
	var in, out string
	cmd := &cobra.Command{
		Use:     "report -i RESULTS_DIR -o report.html",
		Short:   "Render the results directory into one self-contained HTML report",
		Example: `  svcsim report -i results/ -o results/report.html`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := report.RenderFile(in, out); err != nil {
				return err
			}
			set, err := results.ReadDir(in)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), report.Summary(set))
			fmt.Fprintf(cmd.OutOrStdout(), "\nreport: %s\n", out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&in, "input", "i", "results", "results directory")
	cmd.Flags().StringVarP(&out, "output", "o", "report.html", "HTML file to write")
	return cmd
}
