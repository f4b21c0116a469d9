// Package chart draws a run's chart.
package chart

import (
	"fmt"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strings"
	"unicode"
)

// The chart: two log-log panels. Left, the control plane: p50 wall time of
// ADD and DEL against N, plugin and baseline. Right, the data plane:
// packets/s received against N, each path with the firewall (solid) and
// without (dashed).

const (
	chartW, chartH = 1280, 560
	textScale      = 2 // font pixels per glyph pixel
)

var (
	white   = color.RGBA{255, 255, 255, 255}
	black   = color.RGBA{30, 30, 30, 255}
	gray    = color.RGBA{120, 120, 120, 255}
	light   = color.RGBA{225, 225, 225, 255}
	blue    = color.RGBA{31, 119, 180, 255}
	skyblue = color.RGBA{120, 180, 230, 255}
	red     = color.RGBA{214, 39, 40, 255}
	orange  = color.RGBA{255, 127, 14, 255}
	green   = color.RGBA{44, 160, 44, 255}
	purple  = color.RGBA{148, 103, 189, 255}
	brown   = color.RGBA{140, 86, 75, 255}
)

type series struct {
	name   string
	col    color.RGBA
	dashed bool
	xs, ys []float64
}

type panel struct {
	x0, y0, w, h   int
	title          string
	xlabel, ylabel string
	xticks         []float64
	series         []series
	legendNote     string
}

type canvas struct{ img *image.RGBA }

func (c canvas) set(x, y int, col color.RGBA) {
	if image.Pt(x, y).In(c.img.Rect) {
		c.img.SetRGBA(x, y, col)
	}
}

func (c canvas) rect(x0, y0, x1, y1 int, col color.RGBA) {
	for y := y0; y <= y1; y++ {
		for x := x0; x <= x1; x++ {
			c.set(x, y, col)
		}
	}
}

// line draws a 2-pixel line; dashed lines leave gaps of 6 pixels every 12.
func (c canvas) line(x0, y0, x1, y1 int, col color.RGBA, dashed bool) {
	dx, dy := math.Abs(float64(x1-x0)), math.Abs(float64(y1-y0))
	steps := int(math.Max(dx, dy))
	if steps == 0 {
		c.rect(x0, y0, x0+1, y0+1, col)
		return
	}
	for i := 0; i <= steps; i++ {
		if dashed && (i/6)%2 == 1 {
			continue
		}
		x := x0 + int(math.Round(float64(x1-x0)*float64(i)/float64(steps)))
		y := y0 + int(math.Round(float64(y1-y0)*float64(i)/float64(steps)))
		c.rect(x, y, x+1, y+1, col)
	}
}

// text draws s with its top-left corner at (x, y); it returns the width.
func (c canvas) text(x, y int, s string, col color.RGBA) int {
	cx := x
	for _, r := range strings.ToUpper(s) {
		if r == '×' {
			r = 'X'
		}
		g, ok := glyphs[unicode.ToUpper(r)]
		if !ok {
			g = glyphs['?']
		}
		for gy, row := range g {
			for gx, px := range row {
				if px == '#' {
					c.rect(cx+gx*textScale, y+gy*textScale, cx+gx*textScale+textScale-1, y+gy*textScale+textScale-1, col)
				}
			}
		}
		cx += 6 * textScale
	}
	return cx - x
}

func textWidth(s string) int { return len([]rune(s)) * 6 * textScale }

const glyphH = 7 * textScale

// vtext draws s bottom-to-top with its baseline at x, centred on y.
func (c canvas) vtext(x, y int, s string, col color.RGBA) {
	w := textWidth(s)
	tmp := canvas{image.NewRGBA(image.Rect(0, 0, w, glyphH))}
	tmp.text(0, 0, s, col)
	for ty := 0; ty < glyphH; ty++ {
		for tx := 0; tx < w; tx++ {
			if px := tmp.img.RGBAAt(tx, ty); px.A != 0 {
				c.set(x+ty, y+w/2-tx, px)
			}
		}
	}
}

func humanNum(v float64) string {
	switch {
	case v >= 1e6:
		return trimZero(fmt.Sprintf("%.1fM", v/1e6))
	case v >= 1e3:
		return trimZero(fmt.Sprintf("%.1fK", v/1e3))
	case v >= 1:
		return trimZero(fmt.Sprintf("%.1f", v))
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

func trimZero(s string) string { return strings.Replace(s, ".0", "", 1) }

func (c canvas) drawPanel(p panel) {
	const ml, mr, mt, mb = 90, 20, 50, 60
	px0, py0 := p.x0+ml, p.y0+mt
	pw, ph := p.w-ml-mr, p.h-mt-mb
	c.text(p.x0+ml, p.y0+12, p.title, black)

	var xs, ys []float64
	for _, s := range p.series {
		for i := range s.xs {
			if s.xs[i] > 0 && s.ys[i] > 0 && !math.IsNaN(s.ys[i]) {
				xs, ys = append(xs, s.xs[i]), append(ys, s.ys[i])
			}
		}
	}
	c.rect(px0, py0, px0+pw, py0+ph, white)
	if len(ys) == 0 {
		c.text(px0+20, py0+ph/2, "no data", gray)
		return
	}
	xlo, xhi := minmax(xs)
	ylo, yhi := minmax(ys)
	lx0, lx1 := math.Log10(xlo), math.Log10(xhi)
	if lx1-lx0 < 1e-9 {
		lx0, lx1 = lx0-0.5, lx1+0.5
	}
	padX := (lx1 - lx0) * 0.06
	lx0, lx1 = lx0-padX, lx1+padX
	ly0, ly1 := math.Floor(math.Log10(ylo)), math.Ceil(math.Log10(yhi))
	if ly1-ly0 < 1 {
		ly1 = ly0 + 1
	}
	X := func(v float64) int { return px0 + int(math.Round((math.Log10(v)-lx0)/(lx1-lx0)*float64(pw))) }
	Y := func(v float64) int { return py0 + ph - int(math.Round((math.Log10(v)-ly0)/(ly1-ly0)*float64(ph))) }

	// Grid: decades and 2x, 5x lines; labels on decades.
	for d := ly0; d <= ly1; d++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, d)
			if math.Log10(v) > ly1+1e-9 {
				continue
			}
			y := Y(v)
			col := light
			if m == 1 {
				col = color.RGBA{200, 200, 200, 255}
			}
			c.line(px0, y, px0+pw, y, col, false)
			if m == 1 || ly1-ly0 <= 2 {
				lbl := humanNum(v)
				c.text(px0-10-textWidth(lbl), y-glyphH/2, lbl, gray)
			}
		}
	}
	for _, t := range p.xticks {
		if t <= 0 {
			continue
		}
		x := X(t)
		c.line(x, py0, x, py0+ph, light, false)
		lbl := humanNum(t)
		c.text(x-textWidth(lbl)/2, py0+ph+8, lbl, gray)
	}
	// Frame.
	c.line(px0, py0, px0+pw, py0, gray, false)
	c.line(px0, py0+ph, px0+pw, py0+ph, gray, false)
	c.line(px0, py0, px0, py0+ph, gray, false)
	c.line(px0+pw, py0, px0+pw, py0+ph, gray, false)
	c.text(px0+pw/2-textWidth(p.xlabel)/2, py0+ph+8+glyphH+10, p.xlabel, black)
	c.vtext(p.x0+8, py0+ph/2, p.ylabel, black)

	for _, s := range p.series {
		var lastX, lastY int
		have := false
		for i := range s.xs {
			if s.xs[i] <= 0 || s.ys[i] <= 0 || math.IsNaN(s.ys[i]) {
				have = false
				continue
			}
			x, y := X(s.xs[i]), Y(s.ys[i])
			if have {
				c.line(lastX, lastY, x, y, s.col, s.dashed)
			}
			c.rect(x-3, y-3, x+3, y+3, s.col)
			lastX, lastY, have = x, y, true
		}
	}
	// The legend goes in the corner of the plot where it hides the
	// fewest points of the lines.
	var legend []series
	for _, s := range p.series {
		if s.name != "" {
			legend = append(legend, s)
		}
	}
	wmax := 0
	for _, s := range legend {
		wmax = max(wmax, textWidth(s.name))
	}
	if p.legendNote != "" {
		wmax = max(wmax, textWidth(p.legendNote)-40)
	}
	rows := len(legend)
	if p.legendNote != "" {
		rows++
	}
	bw, bh := 40+wmax+14, rows*(glyphH+8)+4
	var pts []image.Point
	for _, s := range p.series {
		for i := 1; i < len(s.xs); i++ {
			if s.xs[i-1] <= 0 || s.ys[i-1] <= 0 || s.xs[i] <= 0 || s.ys[i] <= 0 {
				continue
			}
			x0, y0, x1, y1 := X(s.xs[i-1]), Y(s.ys[i-1]), X(s.xs[i]), Y(s.ys[i])
			for k := 0; k <= 40; k++ {
				pts = append(pts, image.Pt(x0+(x1-x0)*k/40, y0+(y1-y0)*k/40))
			}
		}
		for i := range s.xs {
			if s.xs[i] > 0 && s.ys[i] > 0 {
				pts = append(pts, image.Pt(X(s.xs[i]), Y(s.ys[i])))
			}
		}
	}
	best, bestN := image.Point{}, -1
	for _, corner := range []image.Point{
		{px0 + 6, py0 + 4}, {px0 + 6, py0 + ph - bh - 4}, {px0 + pw - bw - 6, py0 + 4}, {px0 + pw - bw - 6, py0 + ph - bh - 4},
	} {
		r := image.Rect(corner.X, corner.Y, corner.X+bw, corner.Y+bh)
		n := 0
		for _, pt := range pts {
			if pt.In(r) {
				n++
			}
		}
		if bestN < 0 || n < bestN {
			best, bestN = corner, n
		}
	}
	lx, ly := best.X+6, best.Y+6
	c.rect(best.X, best.Y, best.X+bw, best.Y+bh, color.RGBA{250, 250, 250, 255})
	for i, s := range legend {
		y := ly + i*(glyphH+8) + glyphH/2
		c.line(lx, y, lx+30, y, s.col, s.dashed)
		c.text(lx+40, y-glyphH/2, s.name, black)
	}
	if p.legendNote != "" {
		c.text(lx, ly+len(legend)*(glyphH+8), p.legendNote, gray)
	}
}

func minmax(v []float64) (float64, float64) {
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

// Write draws rep's chart as a PNG file at path.
func Write(path string, rep *report.Report) error {
	img := image.NewRGBA(image.Rect(0, 0, chartW, chartH))
	c := canvas{img}
	c.rect(0, 0, chartW-1, chartH-1, color.RGBA{245, 245, 245, 255})

	cp := panel{x0: 0, y0: 0, w: chartW / 2, h: chartH - 24,
		title: "Control plane: p50 per call", xlabel: "taps installed (N)", ylabel: "ms per call (log)"}
	var ns []float64
	pa := series{name: "tapfw ADD", col: blue}
	pd := series{name: "tapfw DEL", col: skyblue, dashed: true}
	ba := series{name: "baseline ADD", col: red}
	bd := series{name: "baseline DEL", col: orange, dashed: true}
	for _, r := range rep.Control {
		n := float64(r.N)
		ns = append(ns, n)
		pa.xs, pa.ys = append(pa.xs, n), append(pa.ys, r.PluginAdd.P50)
		pd.xs, pd.ys = append(pd.xs, n), append(pd.ys, r.PluginDel.P50)
		if r.BaselineAdd != nil {
			ba.xs, ba.ys = append(ba.xs, n), append(ba.ys, r.BaselineAdd.P50)
			bd.xs, bd.ys = append(bd.xs, n), append(bd.ys, r.BaselineDel.P50)
		}
	}
	cp.xticks = ns
	cp.series = []series{pa, pd}
	if len(ba.xs) > 0 {
		cp.series = append(cp.series, ba, bd)
	}
	c.drawPanel(cp)

	dp := panel{x0: chartW / 2, y0: 0, w: chartW / 2, h: chartH - 24,
		title: "Data plane: new flows received per second", xlabel: "taps on the bridge (N)", ylabel: "packets/s (log)",
		legendNote: "dashed: no firewall"}
	cols := map[string]color.RGBA{"forward": green, "input": purple, "output": brown}
	names := map[string]string{"forward": "VM to VM", "input": "VM to host", "output": "host to VM"}
	var dns []float64
	for _, name := range []string{"forward", "input", "output"} {
		fw := series{name: names[name], col: cols[name]}
		nf := series{col: cols[name], dashed: true} // unnamed: not in the legend
		for _, r := range rep.Data {
			for _, x := range r.Paths {
				if x.Path != name {
					continue
				}
				n := float64(max(r.N, 1))
				fw.xs, fw.ys = append(fw.xs, n), append(fw.ys, x.FwPPS)
				nf.xs, nf.ys = append(nf.xs, n), append(nf.ys, x.NoFwPPS)
			}
		}
		if len(fw.xs) > 0 {
			dp.series = append(dp.series, fw, nf)
		}
	}
	for _, r := range rep.Data {
		dns = append(dns, float64(max(r.N, 1)))
	}
	dp.xticks = dns
	c.drawPanel(dp)

	foot := fmt.Sprintf("%s  |  %s  |  %d CPUs, Linux %s, %s", rep.Date, rep.Command, rep.Machine.Nproc, rep.Machine.Kernel, rep.Machine.Iptables)
	if textWidth(foot) > chartW-20 {
		foot = string([]rune(foot)[:(chartW-20)/(6*textScale)-3]) + "..."
	}
	c.text(10, chartH-22, foot, gray)

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
