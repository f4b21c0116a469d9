package dataplane

import (
	"context"
	"fmt"
	"time"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/harness"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/rulecheck"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/taps"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/traffic"
)

// countChecks walks the VMs' packet of p through the installed table with
// pkg/explain, and holds the walk against the kernel: it zeroes the
// counters of the firewalled sandbox, sends k packets on p slowly, and
// every rule the walk matched must have counted them all. It returns the
// checks and the packets that arrived.
func (b *bench) countChecks(ctx context.Context, p pathSpec, k int) (*report.RuleChecks, uint64, error) {
	if b.nftables() {
		return b.nftChecks(ctx, p)
	}
	s := b.fw
	f, err := p.flow(s)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	rx := p.recv(s)
	before, err := traffic.UDPCounter(rx)
	if err != nil {
		return nil, 0, err
	}
	if _, err := harness.NSRun(ctx, s.host, nil, b.h.Iptables(), "-w", "-t", "filter", "-Z"); err != nil {
		return nil, 0, err
	}
	if err := f.Trickle(k); err != nil {
		return nil, 0, err
	}
	time.Sleep(100 * time.Millisecond)
	t, err := b.h.ReadTable(ctx, s.host, true)
	if err != nil {
		return nil, 0, err
	}
	after, err := traffic.UDPCounter(rx)
	if err != nil {
		return nil, 0, err
	}
	sets, err := harness.ReadSets(s.host)
	if err != nil {
		return nil, 0, err
	}
	pkt := p.packet(s)
	if pkt.LocalTable, err = harness.LocalTable(s.host); err != nil {
		return nil, 0, err
	}
	res, err := rulecheck.Walk(t, sets, pkt)
	if err != nil {
		return nil, 0, err
	}
	compared, err := rulecheck.CrossCheck(res, t, uint64(k))
	if err != nil {
		return nil, 0, err
	}
	return ruleChecks(rulecheck.Split(pkt, res), uint64(k), compared), after - before, nil
}

func ruleChecks(c rulecheck.Checks, k uint64, compared int) *report.RuleChecks {
	r := &report.RuleChecks{Packets: k, Dispatch: float64(c.Dispatch), TapChain: float64(c.TapChains), Host: float64(c.Host),
		Total: float64(c.Total), PerChain: map[string]float64{}, Path: c.Path, CountersChecked: compared}
	for chain, n := range c.PerChain {
		r.PerChain[chain] = float64(n)
	}
	return r
}

// scan reads the installed table and sets of the firewalled sandbox for
// rulecheck.Scan.
func (b *bench) scan(ctx context.Context) (*rulecheck.Scan, error) {
	t, err := b.h.ReadTable(ctx, b.fw.host, false)
	if err != nil {
		return nil, err
	}
	sets, err := harness.ReadSets(b.fw.host)
	if err != nil {
		return nil, err
	}
	f := benchFlow
	if f.LocalTable, err = harness.LocalTable(b.fw.host); err != nil {
		return nil, err
	}
	return rulecheck.NewScan(t, sets, f), nil
}

// pickVMSlots chooses the taps whose places the VMs take: of the n taps
// installed, the pair whose bridged packets are checked against the most
// rules before reaching their chains, walked with pkg/explain
// (rulecheck.Scan). The VMs' taps are then added after all others, under
// those names: last in a flat dispatch list, and in the same place in a
// structure that follows from the names. If the walk fails, the last two
// taps added.
func (b *bench) pickVMSlots(ctx context.Context, n int) (int, int, string) {
	fallback := func(err error) (int, int, string) {
		b.h.Progress("data plane: cannot walk the rules to find the worst-placed taps (%v); the VMs take the last two", err)
		return n - 2, n - 1, "in the places of the last two taps added"
	}
	if b.nftables() {
		return n - 2, n - 1, "in the places of the last two taps added (dispatch is a verdict-map lookup, the same for every tap)"
	}
	scan, err := b.scan(ctx)
	if err != nil {
		return fallback(err)
	}
	ports := make([]rulecheck.Port, n)
	index := map[string]int{}
	for i := range ports {
		ports[i] = taps.Filler(i, bridge).Port()
		index[ports[i].Tap] = i
	}
	x, y, worst, err := scan.WorstPair(ports, ports[0])
	if err != nil {
		return fallback(err)
	}
	return index[x.Tap], index[y.Tap], fmt.Sprintf("in the places of the worst-placed pair %s -> %s (%d rules checked before the tap's chain), added last", x.Tap, y.Tap, worst)
}

// ports are the installed taps, the VMs' in their places.
func (b *bench) ports() []rulecheck.Port {
	s := b.fw
	vms := s.vmTaps()
	ports := make([]rulecheck.Port, 0, b.installed)
	for i := 0; i < b.installed; i++ {
		switch i {
		case s.vmIdx[0]:
			ports = append(ports, vms[0].Port())
		case s.vmIdx[1]:
			ports = append(ports, vms[1].Port())
		default:
			ports = append(ports, taps.Filler(i, bridge).Port())
		}
	}
	return ports
}

// worstTaps walks the packets of every tap (rulecheck.Scan) and records,
// per path, the VMs' figure and the worst one.
func (b *bench) worstTaps(ctx context.Context, n int, row *report.DPResult) error {
	if b.nftables() {
		return nil // no walk of nftables rules: the trace counted the VMs' packets
	}
	scan, err := b.scan(ctx)
	if err != nil {
		return err
	}
	ports := b.ports()
	t0 := time.Now()
	a, vb := b.fw.vmPorts()
	res, err := scan.Paths(ports, a, vb)
	if err != nil {
		// A walk explain cannot answer exactly: report it, keep the VMs' figures.
		b.h.Progress("data plane N=%d: warning: walking the rules for every tap failed: %v", n, err)
		for i := range row.Paths {
			row.Paths[i].Static = &report.StaticChecks{Error: err.Error()}
		}
		return nil
	}
	for i := range row.Paths {
		pr := &row.Paths[i]
		w := res[pr.Path]
		pr.Static = &report.StaticChecks{VM: w.VM, Worst: w.Worst, WorstTaps: w.WorstTaps, Taps: w.Taps}
		if pr.Checks != nil && float64(w.VM) != pr.Checks.Dispatch {
			b.h.Progress("data plane N=%d %s: warning: the VMs' packet is checked against %d dispatch rules with stand-in tap chains, %.1f in the installed table",
				n, pr.Path, w.VM, pr.Checks.Dispatch)
		}
		b.h.Progress("data plane N=%d %s: worst of %d taps: %d rules checked before the tap's chain (%s)",
			n, pr.Path, w.Taps, w.Worst, w.WorstTaps)
	}
	if b.h.O.Verbose {
		b.h.Progress("data plane N=%d: walked %d taps in %v", n, len(ports), time.Since(t0).Round(time.Millisecond))
	}
	return nil
}

// nftables is whether the run measures the plugin's nftables backend.
func (b *bench) nftables() bool { return b.h.O.Backend == "nftables" }
