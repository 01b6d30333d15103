package chart

import (
	"math"
	"regexp"
	"strings"
	"testing"
)

func TestLinearTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi   float64
		n        int
		want     []float64
		wlo, whi float64
	}{
		{0, 10, 6, []float64{0, 2, 4, 6, 8, 10}, 0, 10},
		{0, 9.3, 6, []float64{0, 2, 4, 6, 8, 10}, 0, 10},
		{0.1, 0.7, 6, []float64{0, 0.2, 0.4, 0.6, 0.8}, 0, 0.8},
		{0.1, 0.7, 8, []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7}, 0.1, 0.7},
		{18900, 21600, 6, []float64{18000, 19000, 20000, 21000, 22000}, 18000, 22000},
		{-3, 7, 6, []float64{-4, -2, 0, 2, 4, 6, 8}, -4, 8},
		{5, 5, 6, []float64{2, 3, 4, 5, 6, 7, 8}, 2, 8},
		{0, 0, 6, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}, 0, 1},
	} {
		got, lo, hi := LinearTicks(tc.lo, tc.hi, tc.n)
		if !equal(got, tc.want) || lo != tc.wlo || hi != tc.whi {
			t.Errorf("LinearTicks(%v, %v, %d) = %v [%v, %v], want %v [%v, %v]", tc.lo, tc.hi, tc.n, got, lo, hi, tc.want, tc.wlo, tc.whi)
		}
		// Ticks must print as short decimals, i.e. be exact decimal floats.
		for _, v := range got {
			if s := FormatTick(v); len(s) > 6 {
				t.Errorf("tick %v prints as %q", v, s)
			}
		}
	}
}

func TestLogTicks(t *testing.T) {
	got, lo, hi := LogTicks(100, 10000)
	if want := []float64{100, 200, 500, 1000, 2000, 5000, 10000}; !equal(got, want) || lo != 100 || hi != 10000 {
		t.Errorf("LogTicks(100, 10000) = %v [%v, %v]", got, lo, hi)
	}
	got, lo, hi = LogTicks(0.0031, 2900)
	if want := []float64{0.001, 0.01, 0.1, 1, 10, 100, 1000, 10000}; !equal(got, want) || lo != 0.001 || hi != 10000 {
		t.Errorf("LogTicks(0.0031, 2900) = %v [%v, %v]", got, lo, hi)
	}
	// One value: widened to a whole decade.
	if got, lo, hi = LogTicks(30, 30); lo != 10 || hi != 100 || got[0] != 10 {
		t.Errorf("LogTicks(30, 30) = %v [%v, %v]", got, lo, hi)
	}
}

func TestScale(t *testing.T) {
	s := Scale{Min: 10, Max: 1000, Log: true}
	for v, want := range map[float64]float64{10: 0, 100: 0.5, 1000: 1} {
		if got := s.Norm(v); math.Abs(got-want) > 1e-12 {
			t.Errorf("log Norm(%v) = %v, want %v", v, got, want)
		}
	}
	if got := (Scale{Min: 0, Max: 200}).Norm(50); got != 0.25 {
		t.Errorf("linear Norm(50) = %v", got)
	}
	if !WantLog(100, 10000) || WantLog(19000, 22000) || WantLog(0, 100) {
		t.Error("WantLog misjudges")
	}
}

func TestFormatTick(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 1000: "1k", 20000: "20k", 1500: "1.5k", 1250: "1250", 2e6: "2M", 0.25: "0.25", 0.00001: "1e-05", 3.5: "3.5"} {
		if got := FormatTick(v); got != want {
			t.Errorf("FormatTick(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestLineSVG(t *testing.T) {
	c := Line{ID: "x", Title: "Sync <time>", XLabel: "Services", YLabel: "ms", XLog: true, YLog: true, Series: []Series{
		{Name: "a", Color: 0, Marker: true, Points: []XY{{X: 100, Y: 1, Lo: 0.8, Hi: 1.2}, {X: 10000, Y: 100}}},
		{Name: "floor", Color: 0, Style: Dashed, Points: []XY{{X: 100, Y: 0.5}, {X: 0, Y: 3}}},
	}}
	out, err := c.SVG()
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{`<title id="x-t">Sync &lt;time&gt;</title>`, `class="ln c0"`, `class="ln dashed c0"`, `class="whisker c0"`, "(log scale)", ">10k<"} {
		if !strings.Contains(s, want) {
			t.Errorf("SVG lacks %q:\n%s", want, s)
		}
	}
	// The x=0 point is dropped on the log axis: the dashed line has one point.
	if m := regexp.MustCompile(`class="ln dashed c0" points="([^"]*)"`).FindStringSubmatch(s); m == nil || strings.Contains(m[1], " ") {
		t.Errorf("dashed series points = %v", m)
	}
	// The first point sits on the left edge (x=100 is the domain minimum).
	if !strings.Contains(s, `points="64,`) {
		t.Errorf("first point not at the left edge:\n%s", s)
	}
	if _, err := (Line{Title: "empty"}).SVG(); err == nil {
		t.Error("empty chart rendered without error")
	}
}

func TestBarsSVG(t *testing.T) {
	out, err := Bars{ID: "b", Title: "t", YLabel: "requests", Bars: []Bar{{Label: "a", Value: 1000, Expected: 1000}, {Label: "b", Value: 900, Expected: 1000}}}.SVG()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), `<rect class="bar`); n != 3 { // two bars and the legend swatch
		t.Errorf("%d bar rects, want 3", n)
	}
	if n := strings.Count(string(out), `<line class="expected"`); n != 3 {
		t.Errorf("%d expected lines, want 3", n)
	}
	if _, err := (Bars{}).SVG(); err == nil {
		t.Error("empty bar chart rendered without error")
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-9*math.Max(1, math.Abs(b[i])) {
			return false
		}
	}
	return true
}
