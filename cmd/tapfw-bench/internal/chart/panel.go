package chart

import (
	"image/color"
	"math"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

var (
	white     = color.RGBA{255, 255, 255, 255}
	gridMajor = color.RGBA{200, 200, 200, 255}
	gridMinor = color.RGBA{225, 225, 225, 255}
	dashes    = []vg.Length{vg.Points(4), vg.Points(4)}
)

// grid draws vertical lines at the Ns and horizontal ones at the y
// ticks, darker at the decades.
type grid struct {
	x []float64
	y []plot.Tick
}

// Plot implements plot.Plotter.
func (g *grid) Plot(c draw.Canvas, pl *plot.Plot) {
	trX, trY := pl.Transforms(&c)
	minor := draw.LineStyle{Color: gridMinor, Width: vg.Points(0.75)}
	major := draw.LineStyle{Color: gridMajor, Width: vg.Points(0.75)}
	for _, x := range g.x {
		if x > pl.X.Min && x < pl.X.Max {
			c.StrokeLine2(minor, trX(x), c.Min.Y, trX(x), c.Max.Y)
		}
	}
	for _, t := range g.y {
		sty := minor
		if l := math.Log10(t.Value); math.Abs(l-math.Round(l)) < 1e-9 {
			sty = major
		}
		c.StrokeLine2(sty, c.Min.X, trY(t.Value), c.Max.X, trY(t.Value))
	}
}

// sans is the chart's font: Liberation Sans, which gonum/plot embeds.
func sans(pt float64) font.Font {
	return font.From(font.Font{Typeface: "Liberation", Variant: "Sans"}, vg.Points(pt))
}

// plot makes the panel's gonum plot: log axes, the Ns as x ticks, y ticks
// and grid at 1, 2 and 5 times the decades, a point at every measurement
// and the legend in the corner where it hides the fewest points.
func (p panel) plot() *plot.Plot {
	pl := plot.New()
	pl.BackgroundColor = white
	pl.Title.Text = p.title
	pl.Title.TextStyle.Font = sans(13)
	pl.X.Label.Text, pl.Y.Label.Text = p.xlabel, p.ylabel
	pl.X.Label.TextStyle.Font, pl.Y.Label.TextStyle.Font = sans(11), sans(11)
	pl.X.Tick.Label.Font, pl.Y.Tick.Label.Font = sans(10), sans(10)
	xs, ys := p.points()
	if len(ys) == 0 {
		pl.Title.Text += " (no data)"
		return pl
	}
	pl.X.Scale, pl.Y.Scale = plot.LogScale{}, plot.LogScale{}
	pl.X.Min, pl.X.Max = logPadded(xs, 0.06)
	pl.Y.Min, pl.Y.Max = decades(ys)
	pl.X.Tick.Marker = plot.ConstantTicks(labelled(p.xticks))
	yt := yTicks(pl.Y.Min, pl.Y.Max)
	pl.Y.Tick.Marker = plot.ConstantTicks(yt)
	pl.Add(&grid{x: p.xticks, y: yt})
	rows := 0
	for _, s := range p.series {
		line, dots := s.plotters()
		if line == nil {
			continue
		}
		pl.Add(line, dots)
		if s.name != "" {
			pl.Legend.Add(s.name, line)
			rows++
		}
	}
	if p.note != nil {
		line, _ := (&series{col: p.note.col, dashed: true, xs: []float64{1}, ys: []float64{1}}).plotters()
		pl.Legend.Add(p.note.name, line)
		rows++
	}
	pl.Legend.Top, pl.Legend.Left = legendCorner(pl, p.series, rows)
	pl.Legend.Padding = vg.Points(1)
	pl.Legend.TextStyle.Font = sans(10)
	pl.Legend.XOffs, pl.Legend.YOffs = legendOffsets(pl.Legend.Top, pl.Legend.Left)
	return pl
}

// points are every measured point of the panel (positive values only:
// the axes are logarithmic).
func (p panel) points() (xs, ys []float64) {
	for _, s := range p.series {
		for i := range s.xs {
			if s.xs[i] > 0 && s.ys[i] > 0 && !math.IsNaN(s.ys[i]) {
				xs, ys = append(xs, s.xs[i]), append(ys, s.ys[i])
			}
		}
	}
	return xs, ys
}

// plotters are the series' line and its points.
func (s *series) plotters() (*plotter.Line, *plotter.Scatter) {
	var xys plotter.XYs
	for i := range s.xs {
		if s.xs[i] > 0 && s.ys[i] > 0 && !math.IsNaN(s.ys[i]) {
			xys = append(xys, plotter.XY{X: s.xs[i], Y: s.ys[i]})
		}
	}
	if len(xys) == 0 {
		return nil, nil
	}
	line, dots, err := plotter.NewLinePoints(xys)
	if err != nil {
		return nil, nil // only NaN or infinite values fail, and there are none
	}
	line.Color, line.Width = s.col, vg.Points(1.5)
	if s.dashed {
		line.Dashes = dashes
	}
	dots.Shape, dots.Color, dots.Radius = draw.BoxGlyph{}, s.col, vg.Points(2.5)
	return line, dots
}

// logPadded is the range of v on a log axis, widened by pad of its width
// on each side (a decade around a single value).
func logPadded(v []float64, pad float64) (float64, float64) {
	lo, hi := math.Log10(minOf(v)), math.Log10(maxOf(v))
	if hi-lo < 1e-9 {
		lo, hi = lo-0.5, hi+0.5
	}
	d := (hi - lo) * pad
	return math.Pow(10, lo-d), math.Pow(10, hi+d)
}

// decades is the range of v rounded out to whole decades, at least one.
func decades(v []float64) (float64, float64) {
	lo, hi := math.Floor(math.Log10(minOf(v))), math.Ceil(math.Log10(maxOf(v)))
	if hi-lo < 1 {
		hi = lo + 1
	}
	return math.Pow(10, lo), math.Pow(10, hi)
}

// yTicks are 1, 2 and 5 times each decade from lo to hi; all labelled
// over two decades or less, else the decades only.
func yTicks(lo, hi float64) []plot.Tick {
	span := math.Log10(hi) - math.Log10(lo)
	var out []plot.Tick
	for d := math.Log10(lo); d <= math.Log10(hi)+1e-9; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || span <= 2 {
				t.Label = humanNum(v)
			}
			out = append(out, t)
		}
	}
	return out
}

func labelled(vs []float64) []plot.Tick {
	out := make([]plot.Tick, len(vs))
	for i, v := range vs {
		out[i] = plot.Tick{Value: v, Label: humanNum(v)}
	}
	return out
}

// humanNum is 1.5K for 1500, 2M for 2e6.
func humanNum(v float64) string {
	trim := func(s string) string { return strings.Replace(s, ".0", "", 1) }
	switch {
	case v >= 1e6:
		return trim(strconv.FormatFloat(v/1e6, 'f', 1, 64)) + "M"
	case v >= 1e3:
		return trim(strconv.FormatFloat(v/1e3, 'f', 1, 64)) + "K"
	case v >= 1:
		return trim(strconv.FormatFloat(v, 'f', 1, 64))
	default:
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
}

// legendCorner is the corner of the plot where a legend of rows entries
// covers the fewest points of the lines (ties: top left, bottom left, top
// right, bottom right), in the plot's normalized coordinates.
func legendCorner(pl *plot.Plot, series []series, rows int) (top, left bool) {
	var pts [][2]float64
	for _, s := range series {
		for i := range s.xs {
			if s.xs[i] <= 0 || s.ys[i] <= 0 {
				continue
			}
			x, y := pl.X.Norm(s.xs[i]), pl.Y.Norm(s.ys[i])
			pts = append(pts, [2]float64{x, y})
			if i == 0 || s.xs[i-1] <= 0 || s.ys[i-1] <= 0 {
				continue
			}
			x0, y0 := pl.X.Norm(s.xs[i-1]), pl.Y.Norm(s.ys[i-1])
			for k := 1; k < 40; k++ {
				f := float64(k) / 40
				pts = append(pts, [2]float64{x0 + (x-x0)*f, y0 + (y-y0)*f})
			}
		}
	}
	w, h := 0.32, 0.05*float64(rows)+0.04
	best := -1
	for _, c := range [][2]bool{{true, true}, {false, true}, {true, false}, {false, false}} {
		n := 0
		for _, p := range pts {
			inX := (c[1] && p[0] < w) || (!c[1] && p[0] > 1-w)
			inY := (c[0] && p[1] > 1-h) || (!c[0] && p[1] < h)
			if inX && inY {
				n++
			}
		}
		if best < 0 || n < best {
			best, top, left = n, c[0], c[1]
		}
	}
	return top, left
}

// legendOffsets keep the legend off the plot's frame.
func legendOffsets(top, left bool) (x, y vg.Length) {
	x, y = vg.Points(-6), vg.Points(-6)
	if left {
		x = vg.Points(6)
	}
	if !top {
		y = vg.Points(6)
	}
	return x, y
}

func minOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = math.Min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}
