// Package dataplane measures what the firewall costs a packet: two VM
// namespaces on a bridge that carries N more managed taps; one-way small
// UDP packets, every one a new flow, received per second by the second VM
// (FORWARD), by the host (INPUT) and from the host (OUTPUT), beside the
// same network without a firewall; the rules a new packet is checked
// against, walked through the installed table by pkg/explain and held
// against the kernel's counters (rulecheck; iptables backend), or
// followed by the kernel's trace (nftables backend); and, at the smallest
// and largest N, one established TCP connection VM to VM (iperf3) beside
// the floor, a third sandbox with only conntrack and two accept rules.
package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/harness"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/rulecheck"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/taps"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/traffic"
)

// benchFlow is what the data plane's packets have in common, for explain.
var benchFlow = rulecheck.Flow{Host: netip.MustParseAddr(taps.HostIP), SPort: traffic.FlowPortLo, DPort: taps.BenchPort}

// bench is one data-plane run: the firewalled sandbox and its twin.
type bench struct {
	h         *harness.Harness
	fw, twin  *sandbox
	floor     *sandbox // established traffic: conntrack and two accept rules
	lock      string
	installed int // taps in the firewalled sandbox
}

// Run measures at each N of the options and appends a row per N to rep.
func Run(ctx context.Context, h *harness.Harness, rep *report.Report) error {
	b := &bench{h: h}
	defer b.close()
	if err := b.setup(ctx); err != nil {
		return err
	}
	for _, n := range h.O.DpNs {
		if err := ctx.Err(); err != nil {
			return err
		}
		row, err := b.measureAt(ctx, n)
		if err != nil {
			return err
		}
		rep.Data = append(rep.Data, row)
	}
	return nil
}

func (b *bench) setup(ctx context.Context) error {
	tmp, err := b.h.Tmp()
	if err != nil {
		return err
	}
	b.lock = filepath.Join(tmp, "dp.lock")
	if b.fw, err = newSandbox(b.h, "firewall", "bdp"); err != nil {
		return err
	}
	if b.twin, err = newSandbox(b.h, "no firewall", "bnf"); err != nil {
		return err
	}
	if err := b.twin.setPorts(ctx, 0, 1); err != nil {
		return err
	}
	return b.setupFloor(ctx)
}

func (b *bench) close() {
	for _, s := range []*sandbox{b.fw, b.twin, b.floor} {
		if s != nil {
			b.h.DropNS(s.host, s.a, s.b)
			s.close()
		}
	}
}

// measureAt grows the firewalled sandbox to N taps besides the VMs and
// measures every path.
func (b *bench) measureAt(ctx context.Context, n int) (report.DPResult, error) {
	o, fw := b.h.O, b.fw
	row := report.DPResult{N: n}
	if err := b.restoreFillers(ctx); err != nil {
		return row, err
	}
	t0 := time.Now()
	if _, err := taps.Populate(ctx, b.h, fmt.Sprintf("data plane N=%d", n), fw.host, b.lock, b.installed, n+2,
		func(i int) taps.Spec { return taps.Filler(i, bridge) }); err != nil {
		return row, err
	}
	row.PopulateS = time.Since(t0).Seconds()
	b.installed = n + 2
	if err := b.placeVMs(ctx, &row); err != nil {
		return row, err
	}
	// Short unreplied-UDP timeout: a source port comes round again only
	// after its entry has expired, so every packet is a new entry and
	// the table stays at most FlowPorts entries per path.
	if err := fw.host.Sysctl("net.netfilter.nf_conntrack_udp_timeout", fmt.Sprint(o.CtTimeout)); err != nil {
		return row, err
	}
	var err error
	if row.TableRules, err = b.h.CountInstalled(ctx, fw.host); err != nil {
		return row, err
	}
	b.h.Progress("data plane N=%d: VMs on %s and %s, %s (%d rules in the table); measuring %v per figure",
		n, fw.portA, fw.portB, row.Placement, row.TableRules, o.Duration)
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return row, err
		}
		pr, err := b.measurePath(ctx, n, p)
		if err != nil {
			return row, err
		}
		row.Paths = append(row.Paths, pr)
	}
	if err := b.worstTaps(ctx, n, &row); err != nil {
		return row, err
	}
	if b.measureTCPAt(n) {
		if row.Established, err = b.established(ctx, n); err != nil {
			return row, err
		}
	}
	if st, err := traffic.CtStats(fw.host); err == nil {
		row.CtCount = st["entries"]
	}
	return row, nil
}

// restoreFillers puts back the filler taps whose places the VMs took.
func (b *bench) restoreFillers(ctx context.Context) error {
	fw := b.fw
	if !fw.vmsAdded {
		return nil
	}
	for _, t := range fw.vmTaps() {
		if _, err := taps.Call(ctx, b.h.O, fw.host, b.lock, "DEL", t); err != nil {
			return err
		}
	}
	for _, i := range fw.vmIdx {
		if _, err := taps.Call(ctx, b.h.O, fw.host, b.lock, "ADD", taps.Filler(i, bridge)); err != nil {
			return err
		}
	}
	fw.vmsAdded = false
	return nil
}

// placeVMs lets the VMs take the places of the two worst-placed taps.
func (b *bench) placeVMs(ctx context.Context, row *report.DPResult) error {
	fw := b.fw
	ia, ib, how := b.pickVMSlots(ctx, b.installed)
	for _, i := range []int{ia, ib} {
		if _, err := taps.Call(ctx, b.h.O, fw.host, b.lock, "DEL", taps.Filler(i, bridge)); err != nil {
			return err
		}
	}
	if err := fw.setPorts(ctx, ia, ib); err != nil {
		return err
	}
	for _, t := range fw.vmTaps() {
		if _, err := taps.Call(ctx, b.h.O, fw.host, b.lock, "ADD", t); err != nil {
			return err
		}
		row.VMs = append(row.VMs, t.Name)
	}
	fw.vmsAdded = true
	row.Placement = how
	return nil
}

// measurePath is one path's packets/s with and without the firewall, its
// share of new flows, and its rules checked.
func (b *bench) measurePath(ctx context.Context, n int, p pathSpec) (report.PathResult, error) {
	o, fw := b.h.O, b.fw
	pr := report.PathResult{Path: p.name, Desc: p.desc, CheckedTap: p.tap(fw)}
	var err error
	if pr.NoFwPPS, pr.NoFwSentPPS, err = pps(b.twin, p, o.Duration); err != nil {
		return pr, fmt.Errorf("%s without firewall: %w", p.name, err)
	}
	if pr.FwPPS, pr.FwSentPPS, err = pps(fw, p, o.Duration); err != nil {
		return pr, fmt.Errorf("%s with firewall: %w", p.name, err)
	}
	if b.floor != nil {
		if pr.FloorPPS, _, err = pps(b.floor, p, o.Duration); err != nil {
			return pr, fmt.Errorf("%s through the conntrack floor: %w", p.name, err)
		}
	}
	if pr.NewFlowShare, err = b.newShare(ctx, p, min(o.Duration, time.Second)); err != nil {
		return pr, fmt.Errorf("%s new-flow check: %w", p.name, err)
	}
	if pr.NoFwPPS > 0 {
		pr.Ratio = pr.FwPPS / pr.NoFwPPS
	}
	if pr.Checks, pr.CountRecv, err = b.countChecks(ctx, p, o.Count); err != nil {
		return pr, fmt.Errorf("%s rule count: %w", p.name, err)
	}
	if pr.CountRecv != pr.Checks.Packets {
		b.h.Progress("data plane N=%d %s: warning: %d of %d counted packets arrived", n, p.name, pr.CountRecv, pr.Checks.Packets)
	}
	b.h.Progress("data plane N=%d %s: %.0f pps with firewall, %.0f without (%.0f%%); %.1f rules checked before the tap's chain (%.1f in all); %.1f%% of packets made a new conntrack entry",
		n, p.name, pr.FwPPS, pr.NoFwPPS, 100*pr.Ratio, pr.Checks.Dispatch, pr.Checks.Total, 100*pr.NewFlowShare)
	return pr, nil
}

// pps sends on p's flow for d and returns received and sent packets per second.
func pps(s *sandbox, p pathSpec, d time.Duration) (recv, sent float64, err error) {
	f, err := p.flow(s)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	// Warm up: caches, the bridge's path, conntrack's first entries.
	if _, _, err := f.Flood(100 * time.Millisecond); err != nil {
		return 0, 0, err
	}
	time.Sleep(50 * time.Millisecond)
	rx := p.recv(s)
	before, err := traffic.UDPCounter(rx)
	if err != nil {
		return 0, 0, err
	}
	n, el, err := f.Flood(d)
	if err != nil {
		return 0, 0, err
	}
	time.Sleep(100 * time.Millisecond) // let the queues drain
	after, err := traffic.UDPCounter(rx)
	if err != nil {
		return 0, 0, err
	}
	return float64(after-before) / el.Seconds(), float64(n) / el.Seconds(), nil
}
