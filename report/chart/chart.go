// Package chart draws the report's charts as small, self-contained inline SVG:
// line charts with linear or log axes, nice ticks, markers, min–max whiskers
// and a legend, and bar charts with an expected-value reference per bar.
//
// It is hand-rolled rather than built on gonum/plot on purpose. gonum/plot's
// SVG backend writes fixed colours and absolute font sizes into every element,
// names fonts the reader's machine may not have, and pulls in gonum, x/image
// and a font stack; its charts could neither follow the page's light/dark
// colours nor scale with the page. The charts here need only a few hundred
// lines: every element carries a CSS class (the page styles colours through
// custom properties, so dark mode and print just work) with a presentation
// attribute fallback so an extracted SVG still renders, text uses the page's
// font, and each chart has an accessible <title> and <desc>.
package chart

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
)

// Palette holds the fallback colours for series 0..7 (Okabe–Ito, readable
// for colour-blind readers); the page overrides them with --c0..--c7.
var Palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F7F7F", "#882255"}

// Style is how a series' line is drawn.
type Style int

// Line styles.
const (
	Solid Style = iota
	Dashed
	Dotted
)

// XY is one point of a series; Lo and Hi, when Lo < Hi, draw a whisker (the
// min–max spread of the repetitions).
type XY struct {
	X, Y   float64
	Lo, Hi float64
}

// Series is one line of a line chart.
type Series struct {
	Name   string
	Color  int // index into the palette
	Style  Style
	Marker bool
	Points []XY
}

// Line is a line chart.
type Line struct {
	// ID makes the SVG's element ids unique in the page.
	ID             string
	Title, Desc    string
	XLabel, YLabel string
	XLog, YLog     bool
	Series         []Series
}

// Bar is one bar of a bar chart; Expected > 0 draws a dashed reference.
type Bar struct {
	Label    string
	Value    float64
	Expected float64
}

// Bars is a vertical bar chart.
type Bars struct {
	ID            string
	Title, Desc   string
	YLabel        string
	Color         int
	ExpectedLabel string
	Bars          []Bar
}

// Geometry shared by the charts (SVG user units; the SVG scales to its box).
const (
	lineW   = 640 // line chart width
	lineH   = 260 // line chart plot height
	barW    = 320 // bar chart width: drawn smaller, so its text reads larger in a card
	barH    = 170 // bar chart plot height
	padL    = 64
	padR    = 20
	padT    = 14
	axisH   = 46 // x tick labels and axis label
	legendH = 20 // one legend row
	charW   = 6.6
	fontPx  = 12
)

type svgBuf struct{ strings.Builder }

func (b *svgBuf) f(format string, args ...any) { fmt.Fprintf(b, format, args...) }

func esc(s string) string { return html.EscapeString(s) }

func num(v float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.1f", v), "0"), ".")
}

func color(i int) string { return Palette[((i%len(Palette))+len(Palette))%len(Palette)] }

// SVG renders the line chart. Points with non-positive coordinates are left
// out on a log axis. It returns an error when no series has a point to draw,
// so the report never shows an empty frame.
func (c Line) SVG() (template.HTML, error) {
	var xs, ys []float64
	for _, s := range c.Series {
		for _, p := range s.Points {
			if (c.XLog && p.X <= 0) || (c.YLog && p.Y <= 0) {
				continue
			}
			xs = append(xs, p.X)
			ys = append(ys, p.Y)
			if p.Lo < p.Hi && (!c.YLog || p.Lo > 0) {
				ys = append(ys, p.Lo, p.Hi)
			}
		}
	}
	if len(xs) == 0 {
		return "", fmt.Errorf("chart %q: no points to draw", c.Title)
	}
	xt, xlo, xhi := ticks(xs, c.XLog, 8)
	yt, ylo, yhi := ticks(ys, c.YLog, 6)
	if !c.YLog && ylo > 0 && ylo <= (yhi-ylo)*0.8 {
		// Anchor linear value axes at zero unless the data sit far above it.
		yt, ylo, yhi = LinearTicks(0, yhi, 6)
	}
	g := geom{lineW, lineH}
	width, plotH := g.w, g.h
	xs2 := Scale{xlo, xhi, c.XLog}
	ys2 := Scale{ylo, yhi, c.YLog}
	pw := float64(width - padL - padR)
	px := func(x float64) float64 { return padL + xs2.Norm(x)*pw }
	py := func(y float64) float64 { return padT + (1-ys2.Norm(y))*float64(plotH) }

	rows := legendRows(g, c.Series)
	height := padT + plotH + axisH + rows*legendH + 4

	var b svgBuf
	open(&b, g, c.ID, c.Title, c.Desc, height)
	// Grid and ticks.
	for _, t := range yt {
		y := py(t)
		b.f(`<line class="grid" x1="%d" x2="%d" y1="%s" y2="%s" stroke="#ccc" stroke-width="1"/>`, padL, width-padR, num(y), num(y))
		b.f(`<text class="tick" x="%d" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`, padL-6, num(y), esc(FormatTick(t)))
	}
	for _, t := range xt {
		x := px(t)
		b.f(`<line class="grid" x1="%s" x2="%s" y1="%d" y2="%d" stroke="#ccc" stroke-width="1"/>`, num(x), num(x), padT, padT+plotH)
		b.f(`<text class="tick" x="%s" y="%d" text-anchor="middle">%s</text>`, num(x), padT+plotH+16, esc(FormatTick(t)))
	}
	b.f(`<rect class="frame" x="%d" y="%d" width="%s" height="%d" fill="none" stroke="#888"/>`, padL, padT, num(pw), plotH)
	axisLabels(&b, g, c.XLabel, c.XLog, c.YLabel, c.YLog)
	// Series: whiskers, line, markers.
	for _, s := range c.Series {
		col := color(s.Color)
		var pts []string
		for _, p := range s.Points {
			if (c.XLog && p.X <= 0) || (c.YLog && p.Y <= 0) {
				continue
			}
			x, y := px(p.X), py(p.Y)
			pts = append(pts, num(x)+","+num(y))
			if p.Lo < p.Hi && (!c.YLog || p.Lo > 0) {
				b.f(`<line class="whisker c%d" x1="%s" x2="%s" y1="%s" y2="%s" stroke="%s"/>`, s.Color%8, num(x), num(x), num(py(p.Lo)), num(py(p.Hi)), col)
			}
		}
		if len(pts) == 0 {
			continue
		}
		b.f(`<polyline class="%s c%d" points="%s" fill="none" stroke="%s" stroke-width="2"%s><title>%s</title></polyline>`,
			lineClass(s.Style), s.Color%8, strings.Join(pts, " "), col, dash(s.Style), esc(s.Name))
		if s.Marker {
			for _, p := range s.Points {
				if (c.XLog && p.X <= 0) || (c.YLog && p.Y <= 0) {
					continue
				}
				marker(&b, s.Color, px(p.X), py(p.Y), fmt.Sprintf("%s: %s at %s", s.Name, FormatTick(round3(p.Y)), FormatTick(p.X)))
			}
		}
	}
	legend(&b, g, c.Series, padT+plotH+axisH)
	b.f(`</svg>`)
	return template.HTML(b.String()), nil
}

// SVG renders the bar chart, or an error when it has no bars.
func (c Bars) SVG() (template.HTML, error) {
	if len(c.Bars) == 0 {
		return "", fmt.Errorf("chart %q: no bars to draw", c.Title)
	}
	top := 0.0
	for _, br := range c.Bars {
		top = math.Max(top, math.Max(br.Value, br.Expected))
	}
	g := geom{barW, barH}
	width, plotH := g.w, g.h
	yt, _, yhi := LinearTicks(0, top*1.05, 5)
	ys := Scale{0, yhi, false}
	py := func(y float64) float64 { return padT + (1-ys.Norm(y))*float64(plotH) }
	pw := float64(width - padL - padR)
	slot := pw / float64(len(c.Bars))
	bw := math.Min(slot*0.7, 80)
	rotate := false
	for _, br := range c.Bars {
		if float64(len(br.Label))*charW > slot-4 {
			rotate = true
		}
	}
	extra := 0
	if rotate {
		extra = 40
	}
	height := padT + plotH + axisH - 14 + extra + legendH + 4

	var b svgBuf
	open(&b, g, c.ID, c.Title, c.Desc, height)
	for _, t := range yt {
		y := py(t)
		b.f(`<line class="grid" x1="%d" x2="%d" y1="%s" y2="%s" stroke="#ccc" stroke-width="1"/>`, padL, width-padR, num(y), num(y))
		b.f(`<text class="tick" x="%d" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`, padL-6, num(y), esc(FormatTick(t)))
	}
	col := color(c.Color)
	for i, br := range c.Bars {
		cx := padL + slot*(float64(i)+0.5)
		y := py(br.Value)
		b.f(`<rect class="bar c%d" x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s: %s</title></rect>`,
			c.Color%8, num(cx-bw/2), num(y), num(bw), num(float64(padT+plotH)-y), col, esc(br.Label), esc(FormatTick(round3(br.Value))))
		if br.Expected > 0 {
			ey := py(br.Expected)
			b.f(`<line class="expected" x1="%s" x2="%s" y1="%s" y2="%s" stroke="#000" stroke-width="2" stroke-dasharray="5 3"><title>expected %s</title></line>`,
				num(cx-bw/2-6), num(cx+bw/2+6), num(ey), num(ey), esc(FormatTick(round3(br.Expected))))
		}
		ly := padT + plotH + 16
		if rotate {
			b.f(`<text class="tick" x="%s" y="%d" text-anchor="end" transform="rotate(-35 %s %d)">%s</text>`, num(cx), ly, num(cx), ly, esc(br.Label))
		} else {
			b.f(`<text class="tick" x="%s" y="%d" text-anchor="middle">%s</text>`, num(cx), ly, esc(br.Label))
		}
	}
	b.f(`<rect class="frame" x="%d" y="%d" width="%s" height="%d" fill="none" stroke="#888"/>`, padL, padT, num(pw), plotH)
	axisLabels(&b, g, "", false, c.YLabel, false)
	// Legend: bar swatch and the expected line.
	ly := padT + plotH + axisH - 14 + extra
	b.f(`<g class="legend" transform="translate(%d,%d)">`, padL, ly)
	b.f(`<rect class="bar c%d" x="0" y="2" width="14" height="10" fill="%s"/><text class="label" x="20" y="11">%s</text>`, c.Color%8, col, esc(orDefault(c.YLabel, "observed")))
	ex := 20 + float64(len(orDefault(c.YLabel, "observed")))*charW + 24
	b.f(`<line class="expected" x1="%s" x2="%s" y1="7" y2="7" stroke="#000" stroke-width="2" stroke-dasharray="5 3"/><text class="label" x="%s" y="11">%s</text>`,
		num(ex), num(ex+22), num(ex+28), esc(orDefault(c.ExpectedLabel, "expected")))
	b.f(`</g></svg>`)
	return template.HTML(b.String()), nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func round3(v float64) float64 {
	if v == 0 {
		return 0
	}
	p := math.Pow10(2 - int(math.Floor(math.Log10(math.Abs(v)))))
	return math.Round(v*p) / p
}

func ticks(vs []float64, log bool, n int) ([]float64, float64, float64) {
	lo, hi := vs[0], vs[0]
	for _, v := range vs {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if log {
		return LogTicks(lo, hi)
	}
	return LinearTicks(lo, hi, n)
}

// geom is a chart's width and plot height in SVG user units.
type geom struct{ w, h int }

func open(b *svgBuf, g geom, id, title, desc string, height int) {
	b.f(`<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-t %s-d" font-size="%d">`,
		g.w, height, esc(id), esc(id), fontPx)
	b.f(`<title id="%s-t">%s</title><desc id="%s-d">%s</desc>`, esc(id), esc(title), esc(id), esc(desc))
}

func axisLabels(b *svgBuf, g geom, x string, xlog bool, y string, ylog bool) {
	width, plotH := g.w, g.h
	if x != "" {
		if xlog {
			x += " (log scale)"
		}
		b.f(`<text class="label" x="%d" y="%d" text-anchor="middle">%s</text>`, padL+(width-padL-padR)/2, padT+plotH+36, esc(x))
	}
	if y != "" {
		if ylog {
			y += " (log scale)"
		}
		cy := padT + plotH/2
		b.f(`<text class="label" x="14" y="%d" text-anchor="middle" transform="rotate(-90 14 %d)">%s</text>`, cy, cy, esc(y))
	}
}

func lineClass(s Style) string {
	switch s {
	case Dashed:
		return "ln dashed"
	case Dotted:
		return "ln dotted"
	}
	return "ln"
}

func dash(s Style) string {
	switch s {
	case Dashed:
		return ` stroke-dasharray="7 4"`
	case Dotted:
		return ` stroke-dasharray="2 3"`
	}
	return ""
}

// marker draws a shape per colour index (circle, square, triangle, diamond,
// ...), so series stay distinguishable in grey-scale print.
func marker(b *svgBuf, ci int, x, y float64, title string) {
	col := color(ci)
	t := "<title>" + esc(title) + "</title>"
	cls := fmt.Sprintf("mk c%d", ci%8)
	switch ci % 4 {
	case 0:
		b.f(`<circle class="%s" cx="%s" cy="%s" r="4" fill="%s">%s</circle>`, cls, num(x), num(y), col, t)
	case 1:
		b.f(`<rect class="%s" x="%s" y="%s" width="7" height="7" fill="%s">%s</rect>`, cls, num(x-3.5), num(y-3.5), col, t)
	case 2:
		b.f(`<path class="%s" d="M%s %sl4.5 8h-9z" fill="%s">%s</path>`, cls, num(x), num(y-5), col, t)
	default:
		b.f(`<path class="%s" d="M%s %sl4.5 4.5l-4.5 4.5l-4.5-4.5z" fill="%s">%s</path>`, cls, num(x), num(y-4.5), col, t)
	}
}

func legendItemW(s Series) float64 { return 34 + float64(len(s.Name))*charW + 18 }

func legendRows(g geom, ss []Series) int {
	width := g.w
	rows, x := 1, 0.0
	for _, s := range ss {
		w := legendItemW(s)
		if x > 0 && x+w > float64(width-padL-padR) {
			rows++
			x = 0
		}
		x += w
	}
	return rows
}

func legend(b *svgBuf, g geom, ss []Series, top int) {
	width := g.w
	b.f(`<g class="legend" transform="translate(%d,%d)">`, padL, top)
	x, y := 0.0, 0
	for _, s := range ss {
		w := legendItemW(s)
		if x > 0 && x+w > float64(width-padL-padR) {
			x, y = 0, y+legendH
		}
		b.f(`<line class="%s c%d" x1="%s" x2="%s" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`,
			lineClass(s.Style), s.Color%8, num(x), num(x+26), y+7, y+7, color(s.Color), dash(s.Style))
		if s.Marker {
			marker(b, s.Color, x+13, float64(y+7), s.Name)
		}
		b.f(`<text class="label" x="%s" y="%d">%s</text>`, num(x+32), y+11, esc(s.Name))
		x += w
	}
	b.f(`</g>`)
}
