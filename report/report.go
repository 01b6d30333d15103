// Package report renders a results directory (package report/results) into
// one self-contained HTML file that compares the proxy modes side by side:
// the machine and lanes, which modes ran, a conformance matrix, load
// distribution and session affinity per mode, rule-update latency and scale
// charts with their numbers, kernel-state excerpts, and "what this run says",
// sentences derived from the figures alone.
//
// Like `go tool cover -html`, it builds typed template data first and then
// executes one embedded html/template through an io.Writer. The output needs
// no network: CSS and SVG charts (package report/chart) are inline, there is
// no external URL, and the only script opens a <details> when a link targets
// it or the page is printed. It follows the reader's light/dark preference
// and prints cleanly.
package report

import (
	"bufio"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/svcsim/svcsim/report/results"
	e2emap "github.com/svcsim/svcsim/scenarios/conformance"
)

//go:embed templates/report.html.tmpl
var templateFS embed.FS

var tmpl = template.Must(template.New("report.html.tmpl").Funcs(template.FuncMap{
	"add":    func(a, b int) int { return a + b },
	"schema": func() int { return results.SchemaVersion },
}).ParseFS(templateFS, "templates/report.html.tmpl"))

// Options tune a rendering.
type Options struct {
	// Title heads the page; "svcsim report" when empty.
	Title string
	// Now is the generation time printed in the header; time.Now() when
	// zero (tests fix it so the output is deterministic).
	Now time.Time
	// Source names the results directory in the header, if set.
	Source string
	// Upstream is the conformance map to join with the results; nil means
	// the map of package scenarios/conformance (tests give a fixed one, so
	// the golden page does not change with every row the map gains).
	Upstream []e2emap.Test
}

// Render writes the HTML report of set to w.
func Render(w io.Writer, set *results.Set, opts Options) error {
	if set == nil {
		return errors.New("render report: no results")
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	p, err := build(set, opts)
	if err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	if err := tmpl.Execute(w, p); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return nil
}

// RenderFile reads the results directory dir and writes the report to out
// atomically (see writeAtomic). A results file that cannot be read fails the
// rendering rather than being silently left out.
func RenderFile(dir, out string) error {
	set, err := results.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read results %s: %w", dir, err)
	}
	return writeAtomic(out, "report", func(w io.Writer) error { return Render(w, set, Options{Source: dir}) })
}

// WriteJUnitFile writes the JUnit XML of set to out atomically.
func WriteJUnitFile(set *results.Set, out string) error {
	return writeAtomic(out, "junit", func(w io.Writer) error { return WriteJUnit(w, set) })
}

// writeAtomic writes out through write: a temporary file beside out is
// written, synced, closed and renamed, so readers never see a half-written
// file. what names the file in errors.
func writeAtomic(out, what string, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return fmt.Errorf("create %s %s: %w", what, out, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriter(f)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s %s: %w", what, out, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s %s: %w", what, out, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s %s: %w", what, out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s %s: %w", what, out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("write %s %s: %w", what, out, err)
	}
	return nil
}
