// Package controlplane measures ADD and DEL: with N taps already installed
// (spread over the bridges, seed-like rule sets), the latency of the
// plugin's calls for further taps, whole process included, its CPU time
// and peak RSS; beside it the baseline's calls, and the kernel's floor (one
// iptables call changing one rule in the same table).
package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/baseline"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/harness"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/taps"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// caller is one ADD or DEL, of the plugin or of the baseline.
type caller func(ctx context.Context, command string, t taps.Spec) (report.Sample, error)

// bench is one control-plane run: the plugin's namespace and, unless
// skipped, the baseline's.
type bench struct {
	h        *harness.Harness
	bridges  []string
	cp       *testnet.NS
	lock     string
	bl       *baseline.State
	plugin   caller
	bridgeOf func(int) string
}

// Run measures at each N of the options and appends a row per N to rep.
func Run(ctx context.Context, h *harness.Harness, rep *report.Report) error {
	b, err := setup(h)
	if err != nil {
		return err
	}
	defer h.DropNS(b.cp)
	if b.bl != nil {
		defer h.DropNS(b.bl.NS())
	}
	installed := 0
	ns := h.O.Ns
	if h.O.Backend == "nftables" {
		ns = append(slices.Clip(ns), h.O.NftNs...)
	}
	for _, n := range ns {
		row := report.CPResult{N: n}
		t0 := time.Now()
		last, err := taps.Populate(ctx, h, fmt.Sprintf("control plane N=%d", n), b.cp, b.lock, installed, n,
			func(i int) taps.Spec { return taps.Filler(i, b.bridgeOf(i)) })
		if err != nil {
			return err
		}
		row.PopulateS, row.PopulateCalls, row.PopulateLastMs = time.Since(t0).Seconds(), n-installed, last
		installed = n
		if err := b.measurePlugin(ctx, n, &row); err != nil {
			return err
		}
		// The baseline takes seconds a call at 4000 taps: it is measured
		// at -n only.
		if b.bl != nil && slices.Contains(h.O.Ns, n) {
			if err := b.measureBaseline(ctx, n, &row); err != nil {
				return err
			}
		}
		rep.Control = append(rep.Control, row)
	}
	return nil
}

func setup(h *harness.Harness) (*bench, error) {
	b := &bench{h: h, bridges: bridgeNames(h.O.Bridges)}
	b.bridgeOf = func(i int) string { return b.bridges[i%len(b.bridges)] }
	tmp, err := h.Tmp()
	if err != nil {
		return nil, err
	}
	b.lock = filepath.Join(tmp, "cp.lock")
	if b.cp, err = h.NewHostNS("bcp", b.bridges); err != nil {
		return nil, err
	}
	b.plugin = func(ctx context.Context, command string, t taps.Spec) (report.Sample, error) {
		return taps.Call(ctx, h.O, b.cp, b.lock, command, t)
	}
	if !h.O.SkipBase {
		ns, err := h.NewHostNS("bbl", b.bridges)
		if err != nil {
			return nil, err
		}
		b.bl = baseline.NewState(h.O, ns, b.bridges)
	}
	return b, nil
}

func bridgeNames(k int) []string {
	out := make([]string, k)
	for i := range out {
		out[i] = fmt.Sprintf("vmbr%d", i)
	}
	return out
}

// measurePlugin times the plugin's calls and the floor at N taps.
func (b *bench) measurePlugin(ctx context.Context, n int, row *report.CPResult) error {
	h := b.h
	var err error
	if row.PluginAdd, row.PluginDel, err = b.measureCalls(ctx, fmt.Sprintf("control plane N=%d: plugin", n), n, b.plugin); err != nil {
		return err
	}
	if row.PluginRules, err = h.CountInstalled(ctx, b.cp); err != nil {
		return err
	}
	h.Progress("control plane N=%d: plugin ADD p50 %.1f ms p95 %.1f ms, DEL p50 %.1f ms p95 %.1f ms (%d rules installed)",
		n, row.PluginAdd.P50, row.PluginAdd.P95, row.PluginDel.P50, row.PluginDel.P95, row.PluginRules)
	floor, tool := b.measureFloor, h.Iptables()
	if h.O.Backend == "nftables" {
		floor, tool, row.FloorTool = b.measureNftFloor, "nft", "nft"
	}
	if row.FloorAdd, row.FloorDel, err = floor(ctx); err != nil {
		return fmt.Errorf("control plane N=%d: floor: %w", n, err)
	}
	h.Progress("control plane N=%d: one-rule %s add p50 %.1f ms, delete p50 %.1f ms", n, tool, row.FloorAdd.P50, row.FloorDel.P50)
	if err := b.measureApply(ctx, n, row); err != nil {
		return fmt.Errorf("control plane N=%d: apply: %w", n, err)
	}
	if err := b.measureConsole(ctx, n, row); err != nil {
		return fmt.Errorf("control plane N=%d: console: %w", n, err)
	}
	if h.O.Backend != "nftables" {
		return nil
	}
	if err := b.measureCommits(ctx, row); err != nil {
		return fmt.Errorf("control plane N=%d: commits: %w", n, err)
	}
	h.Progress("control plane N=%d: commit of one dispatch element p50 %.2f ms, of one plain element %.2f ms", n, row.CommitJump.P50, row.CommitPlain.P50)
	return nil
}

// measureBaseline grows the baseline's state to N taps and times its calls.
func (b *bench) measureBaseline(ctx context.Context, n int, row *report.CPResult) error {
	h := b.h
	h.Progress("control plane N=%d: baseline: building the state of %d taps with one iptables-restore", n, n)
	if err := b.bl.Grow(ctx, n, b.bridgeOf); err != nil {
		return err
	}
	var err error
	if row.BaselineAdd, row.BaselineDel, err = b.measureCalls(ctx, fmt.Sprintf("control plane N=%d: baseline", n), n, b.bl.Call); err != nil {
		return err
	}
	if row.BaselineRules, err = h.CountRules(ctx, b.bl.NS()); err != nil {
		return err
	}
	h.Progress("control plane N=%d: baseline ADD p50 %.1f ms p95 %.1f ms, DEL p50 %.1f ms p95 %.1f ms (%d rules installed)",
		n, row.BaselineAdd.P50, row.BaselineAdd.P95, row.BaselineDel.P50, row.BaselineDel.P95, row.BaselineRules)
	return nil
}

// measureCalls runs Calls interleaved ADD/DEL pairs of fresh taps (named
// right after the N installed ones, so the table stays at N and N+1) after
// one unmeasured warm-up pair, and summarizes them.
func (b *bench) measureCalls(ctx context.Context, what string, n int, call caller) (*report.CallStats, *report.CallStats, error) {
	o := b.h.O
	warm := taps.Filler(n+o.Calls, b.bridgeOf(n+o.Calls))
	for _, c := range []string{"ADD", "DEL"} {
		if _, err := call(ctx, c, warm); err != nil {
			return nil, nil, fmt.Errorf("%s: warm-up %s: %w", what, c, err)
		}
	}
	var adds, dels []report.Sample
	last := time.Now()
	for k := 0; k < o.Calls; k++ {
		t := taps.Filler(n+k, b.bridgeOf(n+k))
		a, err := call(ctx, "ADD", t)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		d, err := call(ctx, "DEL", t)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		adds, dels = append(adds, a), append(dels, d)
		if time.Since(last) > 10*time.Second || o.Verbose {
			b.h.Progress("%s: %d/%d ADD+DEL pairs (last ADD %.0f ms, DEL %.0f ms)", what, k+1, o.Calls, a.WallMs, d.WallMs)
			last = time.Now()
		}
	}
	return report.Summarize(adds), report.Summarize(dels), nil
}

// floorChain is the benchmark's own chain for the floor measurement; its
// name is not tapfw's, so the plugin never reads or touches it.
const floorChain = "BENCH-FLOOR"

// measureFloor times Calls single-rule appends and deletes with the
// iptables command in the plugin's namespace, in a chain no rule jumps to.
func (b *bench) measureFloor(ctx context.Context) (*report.CallStats, *report.CallStats, error) {
	ipt := b.h.Iptables()
	if _, err := harness.NSRun(ctx, b.cp, nil, ipt, "-w", "-N", floorChain); err != nil {
		return nil, nil, err
	}
	defer harness.NSRun(context.WithoutCancel(ctx), b.cp, nil, ipt, "-w", "-X", floorChain)
	rule := []string{"-p", "udp", "--dport", "9", "-j", "DROP"}
	var adds, dels []report.Sample
	for k := 0; k < b.h.O.Calls; k++ {
		_, a, err := harness.RunIn(ctx, b.cp, nil, nil, append([]string{ipt, "-w", "-A", floorChain}, rule...)...)
		if err != nil {
			return nil, nil, err
		}
		_, d, err := harness.RunIn(ctx, b.cp, nil, nil, append([]string{ipt, "-w", "-D", floorChain}, rule...)...)
		if err != nil {
			return nil, nil, err
		}
		adds, dels = append(adds, a), append(dels, d)
	}
	return report.Summarize(adds), report.Summarize(dels), nil
}

// nftFloorChain is the benchmark's chain in tapfw's bridge table for the
// floor: nothing jumps to it, and it is gone before the plugin runs again.
const nftFloorChain = "bench-floor"

// measureNftFloor times Calls single-rule additions (nft add rule) and
// removals (nft flush chain) in a chain of tapfw's bridge table that no
// rule jumps to: what any commit adding a rule to that table costs.
func (b *bench) measureNftFloor(ctx context.Context) (*report.CallStats, *report.CallStats, error) {
	chain := []string{"bridge", harness.NftTable, nftFloorChain}
	if _, err := harness.NSRun(ctx, b.cp, nil, append([]string{"nft", "add", "chain"}, chain...)...); err != nil {
		return nil, nil, err
	}
	defer harness.NSRun(context.WithoutCancel(ctx), b.cp, nil, append([]string{"nft", "delete", "chain"}, chain...)...)
	var adds, dels []report.Sample
	for k := 0; k < b.h.O.Calls; k++ {
		_, a, err := harness.RunIn(ctx, b.cp, nil, nil, append(append([]string{"nft", "add", "rule"}, chain...), "udp", "dport", "9", "drop")...)
		if err != nil {
			return nil, nil, err
		}
		_, d, err := harness.RunIn(ctx, b.cp, nil, nil, append([]string{"nft", "flush", "chain"}, chain...)...)
		if err != nil {
			return nil, nil, err
		}
		adds, dels = append(adds, a), append(dels, d)
	}
	return report.Summarize(adds), report.Summarize(dels), nil
}

// applyExtra is the address tapfw apply's measured runs add to and take
// out of the set admins.
const applyExtra = "198.51.100.250"

// measureApply times tapfw apply at N taps: Calls runs that change the
// named set every tap's host section shares (one entry in or out; apply
// then judges every tap's connections), each followed by a run that
// finds nothing to change (what a path unit's spurious start costs).
func (b *bench) measureApply(ctx context.Context, n int, row *report.CPResult) error {
	h := b.h
	tmp, err := h.Tmp()
	if err != nil {
		return err
	}
	files := [2]string{filepath.Join(tmp, "apply-a.conf"), filepath.Join(tmp, "apply-b.conf")}
	for i, data := range [][]byte{taps.BaseConfig(), taps.BaseConfig(applyExtra)} {
		if err := os.WriteFile(files[i], data, 0o644); err != nil {
			return err
		}
	}
	apply := func(file, want string) (report.Sample, error) {
		out, s, err := harness.RunIn(ctx, b.cp, nil, taps.OperatorEnv(h.O, b.lock), h.O.Plugin, "apply", "--config", file)
		if err != nil {
			return s, fmt.Errorf("tapfw apply --config %s: %w", file, err)
		}
		if !strings.Contains(string(out), want) {
			return s, fmt.Errorf("tapfw apply --config %s said %q, want %q", file, out, want)
		}
		return s, nil
	}
	if _, err := apply(files[0], ""); err != nil { // warm-up, and the set as the taps left it
		return err
	}
	var changed, same []report.Sample
	for k := 0; k < h.O.Calls; k++ {
		file := files[(k+1)%2]
		c, err := apply(file, "changed ipsets.admins")
		if err != nil {
			return err
		}
		s, err := apply(file, "nothing to change")
		if err != nil {
			return err
		}
		changed, same = append(changed, c), append(same, s)
	}
	row.ApplyChange, row.ApplySame = report.Summarize(changed), report.Summarize(same)
	h.Progress("control plane N=%d: apply changing a set p50 %.1f ms, with nothing to change %.1f ms", n, row.ApplyChange.P50, row.ApplySame.P50)
	return nil
}
