package console

import (
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tapfw/tapfw/pkg/inspect"
)

// The counter chart: packets accepted and dropped per tap (both
// directions) a second, over the last minutes, from the counters
// sampled every Options.Sample. A tap's counters that go down (its
// firewall was replaced) start its rate again from there.

// sample is every tap's packet counts at one time.
type sample struct {
	at       time.Time
	accepted map[string]uint64
	dropped  map[string]uint64
}

// history keeps the latest samples.
type history struct {
	mu      sync.Mutex
	max     int
	samples []sample
}

func newHistory(max int) *history { return &history{max: max + 1} }

func (h *history) add(taps []inspect.Tap, at time.Time) {
	s := sample{at: at, accepted: map[string]uint64{}, dropped: map[string]uint64{}}
	for _, t := range taps {
		for _, v := range t.Traffic {
			if v == nil {
				continue
			}
			s.accepted[t.Name] += v.Accepted.Packets
			s.dropped[t.Name] += v.Dropped.Packets
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples = append(h.samples, s)
	if len(h.samples) > h.max {
		h.samples = slices.Clone(h.samples[len(h.samples)-h.max:])
	}
}

func (s *Server) sampleLoop() {
	defer s.done.Done()
	tick := time.NewTicker(s.opt.Sample)
	defer tick.Stop()
	for {
		if taps, err := s.readTaps(); err == nil {
			s.chart.add(taps, time.Now())
		}
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
	}
}

// series is one line of the chart: a tap's accepted or dropped packets a
// second at each sample after the first.
type series struct {
	Tap, What string
	Rates     []float64
	Total     float64
}

// maxSeries is how many taps the chart draws: the busiest.
const maxSeries = 8

// rates are the chart's lines, the busiest taps' first, and the
// samples' times.
func (h *history) rates() ([]series, []time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.samples) < 2 {
		return nil, nil
	}
	byTap := map[string][2]*series{}
	var times []time.Time
	for i := 1; i < len(h.samples); i++ {
		prev, cur := h.samples[i-1], h.samples[i]
		dt := cur.at.Sub(prev.at).Seconds()
		times = append(times, cur.at)
		for tap := range cur.accepted {
			ss, ok := byTap[tap]
			if !ok {
				ss = [2]*series{{Tap: tap, What: "accepted", Rates: make([]float64, i-1)}, {Tap: tap, What: "dropped", Rates: make([]float64, i-1)}}
				byTap[tap] = ss
			}
			for k, m := range []map[string]uint64{cur.accepted, cur.dropped} {
				pm := []map[string]uint64{prev.accepted, prev.dropped}[k]
				d := 0.0
				// A tap new since the last sample, or whose counters
				// started again, counts from here.
				if old, ok := pm[tap]; ok && m[tap] >= old {
					d = float64(m[tap]-old) / dt
				}
				ss[k].Rates = append(ss[k].Rates, d)
				ss[k].Total += d
			}
		}
		for _, ss := range byTap { // a tap gone keeps its place at zero
			for _, s := range ss {
				for len(s.Rates) < i {
					s.Rates = append(s.Rates, 0)
				}
			}
		}
	}
	taps := make([]string, 0, len(byTap))
	for t := range byTap {
		taps = append(taps, t)
	}
	busy := func(t string) float64 { return byTap[t][0].Total + byTap[t][1].Total }
	slices.SortFunc(taps, func(a, b string) int {
		if d := busy(b) - busy(a); d != 0 {
			return map[bool]int{true: 1, false: -1}[d > 0]
		}
		return strings.Compare(a, b)
	})
	var out []series
	for _, t := range taps[:min(len(taps), maxSeries)] {
		out = append(out, *byTap[t][0], *byTap[t][1])
	}
	return out, times
}

type chartData struct{ Sample time.Duration }

func (chartData) title() (string, string) { return "chart", "chart" }

func (s *Server) chartPage(req *request) {
	s.render(req, http.StatusOK, "chart", chartData{Sample: s.opt.Sample})
}

// palette colours the taps' lines; accepted is solid, dropped dashed.
var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// chartSVG draws the chart.
func (s *Server) chartSVG(req *request) {
	lines, times := s.chart.rates()
	const w, h, left, bottom, top = 800.0, 300.0, 60.0, 30.0, 10.0
	peak := 1.0
	for _, l := range lines {
		for _, r := range l.Rates {
			peak = max(peak, r)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" width="%g" height="%g" font-family="sans-serif" font-size="11">`, w, h+90, w, h+90)
	fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#999"/>`, left, top, w-left-10, h-top-bottom)
	fmt.Fprintf(&b, `<text x="4" y="%g">%s/s</text><text x="4" y="%g">0</text>`, top+10, esc(human(uint64(peak))), h-bottom)
	if len(times) == 0 {
		fmt.Fprintf(&b, `<text x="%g" y="%g">collecting: the first rates come after two samples</text>`, left+10, h/2)
	} else {
		fmt.Fprintf(&b, `<text x="%g" y="%g">%s</text><text x="%g" y="%g" text-anchor="end">%s</text>`, left, h-bottom+15, times[0].Format("15:04:05"), w-10, h-bottom+15, times[len(times)-1].Format("15:04:05"))
	}
	x := func(i, n int) float64 {
		if n <= 1 {
			return left
		}
		return left + float64(i)*(w-left-10)/float64(n-1)
	}
	y := func(r float64) float64 { return h - bottom - r/peak*(h-top-bottom) }
	for i, l := range lines {
		col := palette[(i/2)%len(palette)]
		var pts []string
		for j, r := range l.Rates {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(j, len(l.Rates)), y(r)))
		}
		dash := ""
		if l.What == "dropped" {
			dash = ` stroke-dasharray="5,3"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`, col, dash, strings.Join(pts, " "))
		lx, ly := left+float64(i/2%4)*180, h+10+float64(i/8)*40+float64(i%2)*16
		fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="%s" stroke-width="2"%s/><text x="%g" y="%g">%s %s</text>`, lx, ly, lx+20, ly, col, dash, lx+24, ly+4, esc(l.Tap), l.What)
	}
	b.WriteString(`</svg>`)
	req.w.Header().Set("Content-Type", "image/svg+xml")
	_, _ = req.w.Write([]byte(b.String()))
}

func esc(s string) string { return template.HTMLEscapeString(s) }
