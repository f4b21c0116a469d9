package soak

import (
	"slices"
	"time"
)

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of xs;
// 0 for none.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Call is one measured plugin call of the soak's cycles.
type Call struct {
	Command  string // ADD or DEL
	Wall     time.Duration
	MaxRSSKB int64
}

// RSSCheck compares the plugin's peak RSS per call at the start of the
// soak and at its end: the median of a window of calls after the
// warm-up (while the pool fills up, the ruleset grows and with it each
// call's memory) against the median of the last window.
type RSSCheck struct {
	Command     string
	Window      int     // calls in each window; 0: too few calls to compare
	First, Last float64 // KiB, medians
	Growth      float64 // (Last-First)/First
	OK          bool
}

// CompareRSS checks the calls of one command (ADD or DEL): it fails when
// the last window's median exceeds the first's by more than tolerance
// (a fraction) and slackKB both. window is the wanted window size; warm
// calls at the start are skipped. With fewer than 2*10 calls after the
// warm-up it compares nothing and passes.
func CompareRSS(calls []Call, command string, warm, window int, tolerance float64, slackKB int64) RSSCheck {
	var rss []float64
	for i, c := range calls {
		if c.Command == command && i >= warm {
			rss = append(rss, float64(c.MaxRSSKB))
		}
	}
	r := RSSCheck{Command: command, OK: true}
	w := min(window, len(rss)/2)
	if w < 10 {
		return r
	}
	r.Window = w
	r.First, r.Last = Percentile(rss[:w], 50), Percentile(rss[len(rss)-w:], 50)
	if r.First > 0 {
		r.Growth = (r.Last - r.First) / r.First
	}
	grew := r.Last - r.First
	r.OK = !(grew > r.First*tolerance && grew > float64(slackKB))
	return r
}
