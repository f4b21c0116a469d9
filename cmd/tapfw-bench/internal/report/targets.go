package report

import (
	"fmt"
	"io"
	"math"
	"sort"
)

// bound is how a figure is held against its target.
type bound int

const (
	noTarget bound = iota // shown for comparison: no target is set
	atMost
	atLeast
)

// target is one row of the targets table.
type target struct {
	backend, what string
	ratio         bool // a ratio of two figures of the run: listed first
	bound         bound
	limit, value  float64
	unit          string // "ms", "%" (value and limit are fractions) or ""
}

func (t target) num(v float64) string {
	switch t.unit {
	case "%":
		return fmt.Sprintf("%.0f%%", 100*v)
	case "ms":
		return ms(v) + " ms"
	case "x":
		return fmt.Sprintf("%.1f", v)
	case "count":
		if v == math.Round(v) {
			return fmt.Sprintf("%.0f", v)
		}
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// lim is the target's limit as the project states it.
func (t target) lim() string {
	switch t.unit {
	case "%":
		return fmt.Sprintf("%g%%", 100*t.limit)
	case "ms":
		return fmt.Sprintf("%g ms", t.limit)
	}
	return fmt.Sprintf("%g", t.limit)
}

func (t target) cells() (want, got, ok, by string) {
	got = t.num(t.value)
	switch t.bound {
	case atMost:
		want = "at most " + t.lim()
		if t.value <= t.limit {
			return want, got, "met", ""
		}
		return want, got, "**missed**", fmt.Sprintf("%.1f× the target", t.value/t.limit)
	case atLeast:
		want = "at least " + t.lim()
		if t.value >= t.limit {
			return want, got, "met", ""
		}
		return want, got, "**missed**", fmt.Sprintf("%.0f%% short", 100*(t.limit-t.value)/t.limit)
	}
	return "-", got, "no target", ""
}

// writeTargets compares the run with the project's performance targets,
// between the smallest (100 when measured) and the largest N: every
// backend's rows, the ratios of two figures first, then the absolute
// figures.
func writeTargets(w io.Writer, rep *Report) {
	rows := targets(rep)
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n#### Targets (ratios first)\n\n| backend | figure | target | measured | | by how much |\n|---|---|---:|---:|---|---|\n")
	for _, r := range rows {
		want, got, ok, by := r.cells()
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.backend, r.what, want, got, ok, by)
	}
}

// limits are a backend's performance targets; a zero one is not set.
type limits struct {
	latencyMs   float64 // ADD and DEL p50 at the largest N
	growth      float64 // p50 at the largest N over N=100
	baseline    float64 // the per-rule baseline's p50 over tapfw's
	ppsOverOne  float64 // new flows' packets/s at the largest N over the smallest
	ppsOverNoFw float64 // the same over the network without a firewall
	rules       float64 // rules checked per new packet, worst tap
	floor       float64 // established TCP over the conntrack floor
}

// backendLimits are the project's targets: the iptables backend's, and the
// nftables backend's, which is to do what iptables cannot.
var backendLimits = map[string]limits{
	"iptables": {latencyMs: 15, growth: 2, baseline: 10, ppsOverOne: 0.8, rules: 40},
	"nftables": {latencyMs: 5, growth: 1.5, baseline: 10, ppsOverOne: 0.95, ppsOverNoFw: 0.7, rules: 20, floor: 0.9},
}

// nftablesSpeedUp is how many times faster than the iptables backend the
// nftables backend's ADD and DEL are to be at the largest N.
const nftablesSpeedUp = 40

// limitsOf is the backend's targets; a run without a backend's name is an
// iptables one (it predates the nftables backend).
func limitsOf(backend string) limits {
	if l, ok := backendLimits[backend]; ok {
		return l
	}
	return backendLimits["iptables"]
}

// bounded is a target row with the bound when the limit is set, and
// shown for comparison when it is not.
func bounded(t target, b bound, limit float64) target {
	if limit > 0 {
		t.bound, t.limit = b, limit
	}
	return t
}

func targets(rep *Report) []target {
	var rows []target
	for i := range rep.Backends {
		b := &rep.Backends[i]
		rows = append(rows, controlTargets(rep, b)...)
		rows = append(rows, dataTargets(b)...)
		rows = append(rows, establishedTargets(b)...)
	}
	rows = append(rows, backendTargets(rep)...)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].ratio && !rows[j].ratio })
	return rows
}

// growthBase is the row the growth is measured from: N=100 if measured
// below the largest N, else the smallest N.
func growthBase(rows []CPResult) CPResult {
	for _, r := range rows[:len(rows)-1] {
		if r.N == 100 {
			return r
		}
	}
	return rows[0]
}

func controlTargets(rep *Report, b *BackendRun) []target {
	n := len(b.Control)
	if n == 0 {
		return nil
	}
	var rows []target
	lim := limitsOf(b.Backend)
	first, last := growthBase(b.Control), b.Control[n-1]
	at := latencyRow(b.Control)
	bl := baselineOf(rep, b, at)
	for _, c := range []struct {
		name             string
		plugin, pl0, atN *CallStats
		base             func(*CPResult) *CallStats
	}{
		{"ADD", last.PluginAdd, first.PluginAdd, at.PluginAdd, func(r *CPResult) *CallStats { return r.BaselineAdd }},
		{"DEL", last.PluginDel, first.PluginDel, at.PluginDel, func(r *CPResult) *CallStats { return r.BaselineDel }},
	} {
		if first.N < last.N {
			rows = append(rows, bounded(target{backend: b.Backend, what: fmt.Sprintf("%s p50 at N=%d over N=%d", c.name, last.N, first.N),
				ratio: true, value: c.plugin.P50 / c.pl0.P50}, atMost, lim.growth))
		}
		if bl != nil {
			rows = append(rows, bounded(target{backend: b.Backend, what: fmt.Sprintf("%s baseline p50 over tapfw p50 at N=%d", c.name, at.N),
				ratio: true, value: c.base(bl).P50 / c.atN.P50, unit: "x"}, atLeast, lim.baseline))
		}
		rows = append(rows, bounded(target{backend: b.Backend, what: fmt.Sprintf("%s p50 at N=%d", c.name, at.N),
			value: c.atN.P50, unit: "ms"}, atMost, lim.latencyMs))
	}
	return rows
}

// latencyN is where the latency targets hold: ADD and DEL p50 at 4000
// taps (at the largest N when the run stops below it).
const latencyN = 4000

// latencyRow is the row at latencyN, else the largest below it, else the
// first.
func latencyRow(rows []CPResult) CPResult {
	at := rows[0]
	for _, r := range rows {
		if r.N <= latencyN {
			at = r
		}
	}
	return at
}

// rowAt is the row measured at n.
func rowAt(rows []CPResult, n int) (CPResult, bool) {
	for _, r := range rows {
		if r.N == n {
			return r, true
		}
	}
	return CPResult{}, false
}

// backendTargets hold the backends against each other: iptables p50 over
// nftables p50 at the largest N both measured.
func backendTargets(rep *Report) []target {
	ipt, nft := rep.Backend("iptables"), rep.Backend("nftables")
	if ipt == nil || nft == nil {
		return nil
	}
	var a, b CPResult
	found := false
	for _, r := range ipt.Control {
		if o, ok := rowAt(nft.Control, r.N); ok {
			a, b, found = r, o, true
		}
	}
	if !found {
		return nil
	}
	return []target{
		bounded(target{backend: "both", what: fmt.Sprintf("ADD: iptables p50 over nftables p50 at N=%d (speed-up)", a.N), ratio: true,
			value: a.PluginAdd.P50 / b.PluginAdd.P50, unit: "x"}, atLeast, nftablesSpeedUp),
		bounded(target{backend: "both", what: fmt.Sprintf("DEL: iptables p50 over nftables p50 at N=%d (speed-up)", a.N), ratio: true,
			value: a.PluginDel.P50 / b.PluginDel.P50, unit: "x"}, atLeast, nftablesSpeedUp),
	}
}

func dataTargets(b *BackendRun) []target {
	n := len(b.Data)
	if n == 0 {
		return nil
	}
	var rows []target
	lim := limitsOf(b.Backend)
	first, last := b.Data[0], b.Data[n-1]
	for i, x := range last.Paths {
		if n > 1 && i < len(first.Paths) && first.Paths[i].FwPPS > 0 {
			rows = append(rows, bounded(target{backend: b.Backend, what: fmt.Sprintf("%s packets/s at N=%d over N=%d", x.Desc, last.N, first.N),
				ratio: true, value: x.FwPPS / first.Paths[i].FwPPS, unit: "%"}, atLeast, lim.ppsOverOne))
		}
		if x.NoFwPPS > 0 {
			rows = append(rows, bounded(target{backend: b.Backend, what: fmt.Sprintf("%s packets/s at N=%d over no firewall", x.Desc, last.N),
				ratio: true, value: x.FwPPS / x.NoFwPPS, unit: "%"}, atLeast, lim.ppsOverNoFw))
		}
		if x.FloorPPS > 0 && x.NoFwPPS > 0 {
			rows = append(rows, target{backend: b.Backend, what: fmt.Sprintf("%s packets/s at N=%d: the conntrack floor over no firewall (what any stateful firewall keeps)", x.Desc, last.N),
				ratio: true, value: x.FloorPPS / x.NoFwPPS, unit: "%"},
				target{backend: b.Backend, what: fmt.Sprintf("%s packets/s at N=%d over the conntrack floor", x.Desc, last.N),
					ratio: true, value: x.FwPPS / x.FloorPPS, unit: "%"})
		}
		worst := -1.0
		if x.Static != nil && x.Static.Error == "" {
			worst = float64(x.Static.Worst)
		} else if x.Checks != nil {
			worst = x.Checks.Dispatch
		}
		if worst >= 0 {
			rows = append(rows, bounded(target{backend: b.Backend, what: fmt.Sprintf("%s rules checked per new packet at N=%d, worst tap", x.Desc, last.N),
				value: worst, unit: "count"}, atMost, lim.rules))
		}
	}
	return rows
}

// establishedTargets are the established connection's figures at the
// largest N over the floor and over the smallest N.
func establishedTargets(b *BackendRun) []target {
	var with []DPResult
	for _, r := range b.Data {
		if r.Established != nil {
			with = append(with, r)
		}
	}
	if len(with) == 0 {
		return nil
	}
	var rows []target
	lim := limitsOf(b.Backend)
	first, last := with[0], with[len(with)-1]
	fl, ff := last.Established, first.Established
	for _, f := range []struct {
		name string
		get  func(TCPFigures) float64
	}{{"bulk throughput", func(t TCPFigures) float64 { return t.BulkBps }}, {"small-write segments/s", func(t TCPFigures) float64 { return t.SmallPps }}} {
		if v := f.get(fl.Floor); v > 0 {
			rows = append(rows, bounded(target{backend: b.Backend, what: fmt.Sprintf("established TCP %s at N=%d over the conntrack floor", f.name, last.N),
				ratio: true, value: f.get(fl.Fw) / v, unit: "%"}, atLeast, lim.floor))
		}
		if v := f.get(ff.Fw); first.N < last.N && v > 0 {
			rows = append(rows, target{backend: b.Backend, what: fmt.Sprintf("established TCP %s at N=%d over N=%d", f.name, last.N, first.N),
				ratio: true, value: f.get(fl.Fw) / v, unit: "%"})
		}
	}
	return rows
}
