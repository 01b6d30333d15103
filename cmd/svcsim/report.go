package main

import (
	"fmt"
	"os"
	"path/filepath"

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

func newResults() *cobra.Command {
	var in, junit string
	var noJUnit bool
	cmd := &cobra.Command{
		Use:   "results [-i RESULTS_DIR] [--junit FILE]",
		Short: "Print the scenario x datapath table of a results directory and write its JUnit XML",
		Long: `results reads the scenario results of a results directory (the files the
scenarios wrote) and prints one row per scenario, one column per datapath:
pass, FAIL or skip, with each distinct reason once below the table. Rows
under the header name the control plane and the lane when a column's results
ran elsewhere than on the embedded plane on the host. It also writes the
results as JUnit XML for CI systems (one testcase per scenario and datapath),
by default RESULTS_DIR/junit.xml.

` + "`make test`" + ` ends with it. Its exit status says whether the files could be read
and written, not whether the scenarios passed (the test run's own status does).`,
		Example: `  svcsim results -i results
  svcsim results -i results --junit /tmp/scenarios.xml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" {
				in = defaultResultsDir()
			}
			set, readErr := results.ReadDir(in)
			if set == nil {
				return readErr
			}
			if err := report.Table(cmd.OutOrStdout(), set); err != nil {
				return err
			}
			if !noJUnit {
				if junit == "" {
					junit = filepath.Join(in, "junit.xml")
				}
				if err := report.WriteJUnitFile(set, junit); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "junit: %s\n", junit)
			}
			if readErr != nil {
				return fmt.Errorf("some results files could not be read: %w", readErr)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&in, "input", "i", "", "results directory (default $SVCSIM_RESULTS_DIR, else results/ at the repository root)")
	cmd.Flags().StringVar(&junit, "junit", "", "JUnit XML file to write (default RESULTS_DIR/junit.xml)")
	cmd.Flags().BoolVar(&noJUnit, "no-junit", false, "print the table only")
	return cmd
}

// defaultResultsDir is $SVCSIM_RESULTS_DIR, else results/ at the repository
// root above the working directory (where the scenarios write when the
// variable is unset), else ./results.
func defaultResultsDir() string {
	if d := os.Getenv("SVCSIM_RESULTS_DIR"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return "results"
	}
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "results")
		}
	}
	return "results"
}
