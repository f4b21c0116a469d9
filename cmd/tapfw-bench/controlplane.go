package main

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// CallStats summarizes the samples of one kind of call at one N. Wall
// times in milliseconds; p95 is the nearest-rank percentile.
type CallStats struct {
	Calls     int      `json:"calls"`
	P50       float64  `json:"p50Ms"`
	P95       float64  `json:"p95Ms"`
	Mean      float64  `json:"meanMs"`
	Min       float64  `json:"minMs"`
	Max       float64  `json:"maxMs"`
	CPUP50    float64  `json:"cpuP50Ms"`
	CPUMean   float64  `json:"cpuMeanMs"`
	RSSP50KB  int64    `json:"rssP50KB"`
	RSSMaxKB  int64    `json:"rssMaxKB"`
	Samples   []Sample `json:"samples"`
	Errors    int      `json:"errors,omitempty"`
	FirstFail string   `json:"firstError,omitempty"`
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func summarize(samples []Sample) *CallStats {
	s := &CallStats{Calls: len(samples), Samples: samples}
	if len(samples) == 0 {
		return s
	}
	var wall, cpu []float64
	var rss []int64
	for _, x := range samples {
		wall = append(wall, x.WallMs)
		cpu = append(cpu, x.CPUMs())
		rss = append(rss, x.MaxRSSKB)
		s.Mean += x.WallMs
		s.CPUMean += x.CPUMs()
	}
	slices.Sort(wall)
	slices.Sort(cpu)
	slices.Sort(rss)
	s.Mean /= float64(len(samples))
	s.CPUMean /= float64(len(samples))
	s.P50, s.P95 = percentile(wall, 0.5), percentile(wall, 0.95)
	s.Min, s.Max = wall[0], wall[len(wall)-1]
	s.CPUP50 = percentile(cpu, 0.5)
	s.RSSP50KB = rss[(len(rss)-1)/2]
	s.RSSMaxKB = rss[len(rss)-1]
	return s
}

// CPResult is the control plane at one N.
type CPResult struct {
	N              int        `json:"n"`
	PluginAdd      *CallStats `json:"pluginAdd"`
	PluginDel      *CallStats `json:"pluginDel"`
	BaselineAdd    *CallStats `json:"baselineAdd,omitempty"`
	BaselineDel    *CallStats `json:"baselineDel,omitempty"`
	PluginRules    int        `json:"pluginRules"`   // rules in the filter table at N taps
	BaselineRules  int        `json:"baselineRules"` // the same for the baseline's namespace
	PopulateS      float64    `json:"populateSeconds"`
	PopulateCalls  int        `json:"populateCalls"`
	PopulateLastMs float64    `json:"populateLastCallMs"`
	// FloorAdd and FloorDel are one iptables call appending or deleting a
	// single rule in a chain nothing jumps to, in the plugin's table at N:
	// what any rule change costs there, whoever makes it.
	FloorAdd *CallStats `json:"floorAdd,omitempty"`
	FloorDel *CallStats `json:"floorDel,omitempty"`
}

// floorChain is the benchmark's own chain for the floor measurement; its
// name is not tapfw's, so the plugin never reads or touches it.
const floorChain = "BENCH-FLOOR"

// measureFloor times calls single-rule appends and deletes with the
// iptables command in ns, in a chain no rule jumps to.
func (b *bench) measureFloor(ctx context.Context, ns *testnet.NS) (*CallStats, *CallStats, error) {
	ipt := iptablesCmd(b.o.iptables)
	if _, err := nsRun(ctx, ns, nil, ipt, "-w", "-N", floorChain); err != nil {
		return nil, nil, err
	}
	defer nsRun(context.WithoutCancel(ctx), ns, nil, ipt, "-w", "-X", floorChain)
	rule := []string{"-p", "udp", "--dport", "9", "-j", "DROP"}
	var adds, dels []Sample
	for k := 0; k < b.o.calls; k++ {
		_, a, err := runIn(ctx, ns, nil, nil, append([]string{ipt, "-w", "-A", floorChain}, rule...)...)
		if err != nil {
			return nil, nil, err
		}
		_, d, err := runIn(ctx, ns, nil, nil, append([]string{ipt, "-w", "-D", floorChain}, rule...)...)
		if err != nil {
			return nil, nil, err
		}
		adds, dels = append(adds, a), append(dels, d)
	}
	return summarize(adds), summarize(dels), nil
}

func bridgeNames(k int) []string {
	out := make([]string, k)
	for i := range out {
		out[i] = fmt.Sprintf("vmbr%d", i)
	}
	return out
}

// newHostNS is a sandbox hypervisor: a namespace with the given bridges
// (no addresses) up.
func (b *bench) newHostNS(prefix string, bridges []string) (*testnet.NS, error) {
	ns, err := b.newNS(prefix)
	if err != nil {
		return nil, err
	}
	for _, br := range bridges {
		if err := testnet.AddBridge(ns, br, ""); err != nil {
			return nil, err
		}
	}
	return ns, nil
}

func (b *bench) controlPlane(ctx context.Context, rep *Report) error {
	o := b.o
	bridges := bridgeNames(o.bridges)
	bridgeOf := func(i int) string { return bridges[i%len(bridges)] }
	cp, err := b.newHostNS("bcp", bridges)
	if err != nil {
		return err
	}
	lock := filepath.Join(b.tmp, "cp.lock")
	var bl *baselineState
	if !o.skipBase {
		ns, err := b.newHostNS("bbl", bridges)
		if err != nil {
			return err
		}
		bl = &baselineState{o: o, ns: ns, bridges: bridges}
		defer b.dropNS(ns)
	}
	defer b.dropNS(cp)

	installed := 0
	for _, n := range o.ns {
		row := CPResult{N: n}
		t0 := time.Now()
		last, err := b.populate(ctx, fmt.Sprintf("control plane N=%d", n), cp, lock, installed, n,
			func(i int) tapSpec { return fillerTap(i, bridgeOf(i)) })
		if err != nil {
			return err
		}
		row.PopulateS, row.PopulateCalls, row.PopulateLastMs = time.Since(t0).Seconds(), n-installed, last
		installed = n

		plugin := func(ctx context.Context, command string, t tapSpec) (Sample, error) {
			return callPlugin(ctx, o, cp, lock, command, t)
		}
		if row.PluginAdd, row.PluginDel, err = b.measureCalls(ctx, fmt.Sprintf("control plane N=%d: plugin", n), n, bridgeOf, plugin); err != nil {
			return err
		}
		if row.PluginRules, err = countRules(ctx, cp, o.iptables); err != nil {
			return err
		}
		b.progress("control plane N=%d: plugin ADD p50 %.1f ms p95 %.1f ms, DEL p50 %.1f ms p95 %.1f ms (%d rules installed)",
			n, row.PluginAdd.P50, row.PluginAdd.P95, row.PluginDel.P50, row.PluginDel.P95, row.PluginRules)
		if row.FloorAdd, row.FloorDel, err = b.measureFloor(ctx, cp); err != nil {
			return fmt.Errorf("control plane N=%d: floor: %w", n, err)
		}
		b.progress("control plane N=%d: one-rule %s -A p50 %.1f ms, -D p50 %.1f ms", n, iptablesCmd(o.iptables), row.FloorAdd.P50, row.FloorDel.P50)

		if bl != nil {
			b.progress("control plane N=%d: baseline: building the state of %d taps with one iptables-restore", n, n)
			if err := bl.grow(ctx, n, bridgeOf); err != nil {
				return err
			}
			if row.BaselineAdd, row.BaselineDel, err = b.measureCalls(ctx, fmt.Sprintf("control plane N=%d: baseline", n), n, bridgeOf, bl.call); err != nil {
				return err
			}
			if row.BaselineRules, err = countRules(ctx, bl.ns, o.iptables); err != nil {
				return err
			}
			b.progress("control plane N=%d: baseline ADD p50 %.1f ms p95 %.1f ms, DEL p50 %.1f ms p95 %.1f ms (%d rules installed)",
				n, row.BaselineAdd.P50, row.BaselineAdd.P95, row.BaselineDel.P50, row.BaselineDel.P95, row.BaselineRules)
		}
		rep.Control = append(rep.Control, row)
	}
	return nil
}

// populate calls the plugin with ADD for taps from..to-1, up to o.jobs at
// once, printing progress; it returns the wall time of the last call.
func (b *bench) populate(ctx context.Context, what string, ns *testnet.NS, lock string, from, to int, tap func(int) tapSpec) (float64, error) {
	if to <= from {
		return 0, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	total := to - from
	b.progress("%s: installing taps %d..%d with the plugin (%d calls, %d at a time)", what, from, to-1, total, b.o.jobs)
	var next, done atomic.Int64
	var lastMs atomic.Uint64 // float64 bits
	next.Store(int64(from))
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	start := time.Now()
	for w := 0; w < b.o.jobs; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				s, err := callPlugin(ctx, b.o, ns, lock, "ADD", tap(i))
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				lastMs.Store(math.Float64bits(s.WallMs))
				done.Add(1)
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			if firstErr != nil {
				return 0, firstErr
			}
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			el := time.Since(start)
			b.progress("%s: installed %d taps in %v (%.1f calls/s, last call %.0f ms)", what, total, el.Round(time.Second),
				float64(total)/el.Seconds(), math.Float64frombits(lastMs.Load()))
			return math.Float64frombits(lastMs.Load()), nil
		case <-tick.C:
			d := done.Load()
			el := time.Since(start)
			rate := float64(d) / el.Seconds()
			eta := "?"
			if d > 0 {
				// Calls get slower as taps accumulate when a call's cost
				// grows with N; this estimate assumes the current rate.
				eta = (time.Duration(float64(int64(total)-d)/rate) * time.Second).Round(time.Second).String()
			}
			b.progress("%s: %d/%d taps installed (%.1f calls/s, last call %.0f ms, eta %s at this rate)",
				what, d, total, rate, math.Float64frombits(lastMs.Load()), eta)
		}
	}
}

// measureCalls runs calls interleaved ADD/DEL pairs of fresh taps (named
// right after the N installed ones, so the table stays at N and N+1) after
// one unmeasured warm-up pair, and summarizes them.
func (b *bench) measureCalls(ctx context.Context, what string, n int, bridgeOf func(int) string,
	call func(context.Context, string, tapSpec) (Sample, error)) (*CallStats, *CallStats, error) {
	warm := fillerTap(n+b.o.calls, bridgeOf(n+b.o.calls))
	for _, c := range []string{"ADD", "DEL"} {
		if _, err := call(ctx, c, warm); err != nil {
			return nil, nil, fmt.Errorf("%s: warm-up %s: %w", what, c, err)
		}
	}
	var adds, dels []Sample
	last := time.Now()
	for k := 0; k < b.o.calls; k++ {
		t := fillerTap(n+k, bridgeOf(n+k))
		a, err := call(ctx, "ADD", t)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		d, err := call(ctx, "DEL", t)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		adds, dels = append(adds, a), append(dels, d)
		if time.Since(last) > 10*time.Second || b.o.verbose {
			b.progress("%s: %d/%d ADD+DEL pairs (last ADD %.0f ms, DEL %.0f ms)", what, k+1, b.o.calls, a.WallMs, d.WallMs)
			last = time.Now()
		}
	}
	return summarize(adds), summarize(dels), nil
}

// countRules counts the rules of the filter table in ns.
func countRules(ctx context.Context, ns *testnet.NS, mode string) (int, error) {
	t, err := readTable(ctx, ns, mode, false)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, specs := range t.Chains {
		n += len(specs)
	}
	return n, nil
}
