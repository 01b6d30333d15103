package report

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// chromiumPath is where Debian's chromium package installs the browser.
const chromiumPath = "/usr/bin/chromium"

// TestBrowser opens the rendered fixture report in headless Chromium, with
// no network, and checks what a reader would see: no console errors, every
// chart drawn with a real size and marks, the whole conformance matrix, and
// a link to a closed result opening it. It saves screenshots (light, dark)
// and a printed PDF into $SVCSIM_RESULTS_DIR (or a temporary directory).
func TestBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("needs %s: install the Debian package chromium (apt-get install -y chromium); `make test` installs it", chromiumPath)
	}
	set := readFixture(t)
	page := renderFixture(t)
	dir := t.TempDir()
	html := filepath.Join(dir, "report.html")
	if err := os.WriteFile(html, page, 0o644); err != nil {
		t.Fatal(err)
	}
	outDir := os.Getenv("SVCSIM_RESULTS_DIR")
	if outDir == "" {
		outDir = t.TempDir()
	} else if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}

	// Expected figures, counted independently of the report's own model.
	scs, modes := map[string]bool{}, map[string]bool{}
	for _, r := range set.Results {
		scs[r.Scenario], modes[r.Mode] = true, true
	}
	wantCells := len(scs) * len(modes)
	wantCharts := strings.Count(string(page), `<svg class="chart"`)
	if wantCharts == 0 {
		t.Fatal("fixture report has no charts")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer acancel()
	tctx, tcancel := chromedp.NewContext(actx)
	defer tcancel()

	// Collect console messages for the whole visit.
	var (
		mu       sync.Mutex
		problems []string
		wg       sync.WaitGroup
	)
	cctx, ccancel := context.WithCancel(tctx)
	messages := chromedp.Console(cctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()

	if err := chromedp.Do(tctx,
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate("file://"+html),
	); err != nil {
		t.Fatalf("open report: %v", err)
	}

	type chartBox struct {
		ID    string  `json:"id"`
		W     float64 `json:"w"`
		H     float64 `json:"h"`
		Marks int     `json:"marks"`
	}
	charts, err := chromedp.Run(tctx, chromedp.Evaluate[[]chartBox](`[...document.querySelectorAll("figure svg.chart")].map(s => {
		const r = s.getBoundingClientRect();
		return {id: s.getAttribute("aria-labelledby"), w: r.width, h: r.height,
			marks: s.querySelectorAll("path, rect:not(.frame), polyline").length};
	})`))
	if err != nil {
		t.Fatalf("measure charts: %v", err)
	}
	if len(charts) != wantCharts {
		t.Errorf("%d charts in figures, want %d", len(charts), wantCharts)
	}
	for _, c := range charts {
		if c.W < 100 || c.H < 100 || c.Marks == 0 {
			t.Errorf("chart %s not rendered: %.0fx%.0f px, %d marks", c.ID, c.W, c.H, c.Marks)
		}
	}

	cells, err := chromedp.Run(tctx, chromedp.Evaluate[int](`document.querySelectorAll("#matrix td.cell").length`))
	if err != nil {
		t.Fatalf("count matrix cells: %v", err)
	}
	if cells != wantCells {
		t.Errorf("matrix has %d cells, want %d (%d scenarios x %d modes)", cells, wantCells, len(scs), len(modes))
	}
	rows, err := chromedp.Run(tctx, chromedp.Evaluate[int](`document.querySelectorAll("#matrix tbody tr:not(.grp)").length`))
	if err != nil || rows != len(scs) {
		t.Errorf("matrix has %d scenario rows, want %d (%v)", rows, len(scs), err)
	}

	// Following a matrix link opens the (closed) detail it points to.
	opened, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`(() => {
		const a = document.querySelector('#matrix td.cell.pass a');
		const d = document.getElementById(a.getAttribute("href").slice(1));
		if (d.open) return false;
		a.click();
		return new Promise(ok => setTimeout(() => ok(d.open), 200));
	})()`, chromedp.EvalAwaitPromise))
	if err != nil || !opened {
		t.Errorf("clicking a pass cell did not open its detail (err %v)", err)
	}

	shot := func(name string) {
		t.Helper()
		if err := chromedp.Do(tctx, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`)); err != nil {
			t.Fatalf("scroll: %v", err)
		}
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		p := filepath.Join(outDir, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	shot("report-light.png")
	// The summary comes first and starts on the first screen.
	first, err := chromedp.Run(tctx, chromedp.Evaluate[string](`(() => {
		const s = document.querySelector("main > section");
		return s.id + " " + (s.getBoundingClientRect().top < innerHeight) + " " + !!s.querySelector("#matrix");
	})()`))
	if err != nil || first != "conformance true true" {
		t.Errorf("the report does not open with the summary (first section, on screen, with the matrix): %q (%v)", first, err)
	}
	if _, err := chromedp.Call(tctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
	}); err != nil {
		t.Fatalf("emulate dark mode: %v", err)
	}
	bg, err := chromedp.Run(tctx, chromedp.Evaluate[string](`getComputedStyle(document.documentElement).backgroundColor`))
	if err != nil || bg == "rgb(255, 255, 255)" {
		t.Errorf("dark mode not applied: background %q (%v)", bg, err)
	}
	shot("report-dark.png")
	// A phone's width: nothing wider than the screen (wide tables scroll in
	// their own box), dark and light.
	if err := chromedp.Do(tctx, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatalf("phone viewport: %v", err)
	}
	overflow, err := chromedp.Run(tctx, chromedp.Evaluate[float64](`document.documentElement.scrollWidth - innerWidth`))
	if err != nil || overflow > 0 {
		t.Errorf("at 390 px the page is %v px wider than the screen (%v)", overflow, err)
		wide, _ := chromedp.Run(tctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("body *")].filter(e => !e.closest(".scroll") && e.getBoundingClientRect().right > innerWidth + 1).slice(0, 8).map(e => e.tagName + "." + e.className + "#" + e.id + " " + Math.round(e.getBoundingClientRect().right))`))
		t.Logf("wider than the screen: %v", wide)
	}
	shot("report-phone-dark.png")
	if _, err := chromedp.Call(tctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}); err != nil {
		t.Fatalf("reset emulated media: %v", err)
	}
	shot("report-phone-light.png")
	if err := chromedp.Do(tctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("desktop viewport: %v", err)
	}
	if _, err := chromedp.Call(tctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
	}); err != nil {
		t.Fatalf("emulate dark mode: %v", err)
	}
	// Print: navigation hidden, light colours.
	if _, err := chromedp.Call(tctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"}); err != nil {
		t.Fatalf("emulate print: %v", err)
	}
	nav, err := chromedp.Run(tctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("nav")).display`))
	if err != nil || nav != "none" {
		t.Errorf("print style not applied: nav display %q (%v)", nav, err)
	}
	if _, err := chromedp.Call(tctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}); err != nil {
		t.Fatalf("reset media: %v", err)
	}
	pdf, err := chromedp.Run(tctx, chromedp.PrintToPDF())
	if err != nil || len(pdf) < 1000 {
		t.Errorf("print to PDF: %d bytes, %v", len(pdf), err)
	} else if err := os.WriteFile(filepath.Join(outDir, "report.pdf"), pdf, 0o644); err != nil {
		t.Fatal(err)
	}

	ccancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("console reported problems:\n%s", strings.Join(problems, "\n"))
	}
}
