// Package chart draws a run's chart with gonum.org/v1/plot: two log-log
// panels. Left, the control plane: p50 wall time of ADD and DEL against N,
// each backend's and the baseline. Right, the data plane: packets/s
// received against N, each path with each backend (solid) and without a
// firewall (dashed, from the first backend's run).
package chart

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
)

// The PNG's size in pixels, at dpi.
const (
	widthPx, heightPx = 1280, 560
	dpi               = 96
	footerPt          = 18 // the footer's strip at the bottom
)

var (
	background = color.RGBA{245, 245, 245, 255}
	gray       = color.RGBA{120, 120, 120, 255}
	blue       = color.RGBA{31, 119, 180, 255}
	skyblue    = color.RGBA{120, 180, 230, 255}
	red        = color.RGBA{214, 39, 40, 255}
	orange     = color.RGBA{255, 127, 14, 255}
	green      = color.RGBA{44, 160, 44, 255}
	purple     = color.RGBA{148, 103, 189, 255}
	brown      = color.RGBA{140, 86, 75, 255}
	darkgreen  = color.RGBA{0, 100, 60, 255}
	lime       = color.RGBA{120, 200, 80, 255}
	teal       = color.RGBA{23, 190, 207, 255}
	magenta    = color.RGBA{227, 119, 194, 255}
	olive      = color.RGBA{188, 189, 34, 255}
)

// series is one line of a panel; one without a name is not in the legend.
type series struct {
	name   string
	col    color.Color
	dashed bool
	xs, ys []float64
}

func (s *series) add(x, y float64) { s.xs, s.ys = append(s.xs, x), append(s.ys, y) }

// panel is one plot of the chart.
type panel struct {
	title, xlabel, ylabel string
	xticks                []float64 // the Ns measured
	series                []series
	note                  *series // a legend entry for the dashed lines
}

// Write draws rep's chart as a PNG file at path.
func Write(path string, rep *report.Report) error {
	w, h := px(widthPx), px(heightPx)
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(dpi), vgimg.UseBackgroundColor(background))
	dc := draw.New(img)
	plots := [][]*plot.Plot{{controlPanel(rep).plot(), dataPanel(rep).plot()}}
	top := draw.Crop(dc, 0, 0, vg.Points(footerPt), 0)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(24), PadTop: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(12), PadBottom: vg.Points(4)}
	canvases := plot.Align(plots, tiles, top)
	for i, p := range plots[0] {
		p.Draw(canvases[0][i])
	}
	footer(dc, rep)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// px is a length of n pixels at dpi.
func px(n int) vg.Length { return vg.Length(n) * vg.Inch / dpi }

// palette is a backend's colours: ADD, DEL, then the three paths.
var palette = map[int][]color.Color{
	0: {blue, skyblue, green, purple, brown},
	1: {darkgreen, lime, teal, magenta, olive},
}

func colours(i int) []color.Color { return palette[i%len(palette)] }

// prefix names a backend's series when the run measured more than one.
func prefix(rep *report.Report, b report.BackendRun) string {
	if len(rep.Backends) > 1 {
		return b.Backend + " "
	}
	return ""
}

func controlPanel(rep *report.Report) panel {
	p := panel{title: "Control plane: p50 per call", xlabel: "taps installed (N)", ylabel: "ms per call (log)"}
	ba := series{name: "baseline ADD", col: red}
	bd := series{name: "baseline DEL", col: orange, dashed: true}
	seen := map[int]bool{}
	for i, b := range rep.Backends {
		col, name := colours(i), prefix(rep, b)+"tapfw "
		pa := series{name: name + "ADD", col: col[0]}
		pd := series{name: name + "DEL", col: col[1], dashed: true}
		for _, r := range b.Control {
			n := float64(r.N)
			if !seen[r.N] {
				p.xticks = append(p.xticks, n)
			}
			pa.add(n, r.PluginAdd.P50)
			pd.add(n, r.PluginDel.P50)
			if r.BaselineAdd != nil && !seen[r.N] {
				ba.add(n, r.BaselineAdd.P50)
				bd.add(n, r.BaselineDel.P50)
			}
			seen[r.N] = true
		}
		if len(pa.xs) > 0 {
			p.series = append(p.series, pa, pd)
		}
	}
	if len(ba.xs) > 0 {
		p.series = append(p.series, ba, bd)
	}
	return p
}

func dataPanel(rep *report.Report) panel {
	p := panel{title: "Data plane: new flows received per second", xlabel: "taps on the bridge (N)", ylabel: "packets/s (log)",
		note: &series{name: "dashed: no firewall", col: gray, dashed: true}}
	names := map[string]string{"forward": "VM to VM", "input": "VM to host", "output": "host to VM"}
	seen := map[int]bool{}
	for i, b := range rep.Backends {
		col := colours(i)
		for k, name := range []string{"forward", "input", "output"} {
			fw := series{name: prefix(rep, b) + names[name], col: col[2+k]}
			nf := series{col: col[2+k], dashed: true}
			for _, r := range b.Data {
				for _, x := range r.Paths {
					if x.Path == name {
						n := float64(max(r.N, 1))
						fw.add(n, x.FwPPS)
						nf.add(n, x.NoFwPPS)
					}
				}
			}
			if len(fw.xs) > 0 {
				p.series = append(p.series, fw)
				if i == 0 {
					p.series = append(p.series, nf)
				}
			}
		}
		for _, r := range b.Data {
			if !seen[r.N] {
				p.xticks = append(p.xticks, float64(max(r.N, 1)))
				seen[r.N] = true
			}
		}
	}
	return p
}

// footer writes the run's date, command and machine under the panels,
// cut to the chart's width.
func footer(dc draw.Canvas, rep *report.Report) {
	sty := text.Style{Color: gray, Font: sans(9), Handler: plot.DefaultTextHandler}
	s := fmt.Sprintf("%s  |  %s  |  %d CPUs, Linux %s, %s", rep.Date, rep.Command, rep.Machine.Nproc, rep.Machine.Kernel, rep.Machine.Iptables)
	room := dc.Max.X - dc.Min.X - vg.Points(16)
	for r := []rune(s); sty.Width(s) > room && len(r) > 3; {
		r = r[:len(r)-4]
		s = string(r) + "..."
	}
	dc.FillText(sty, vg.Point{X: dc.Min.X + vg.Points(8), Y: dc.Min.Y + vg.Points(5)}, s)
}
