// Command tapfw-bench measures tapfw against its performance targets, in
// sandbox network namespaces, and prints markdown tables for
// docs/performance.md:
//
//   - Control plane: with N taps already installed (spread over 4 bridges,
//     seed-like rule sets), the latency of ADD and DEL of further taps,
//     whole plugin process included (p50, p95), its CPU time and peak RSS;
//     beside it the same rule set applied the way the CNI firewall plugin
//     does it (one go-iptables call per rule, AppendUnique), the baseline.
//   - Data plane: two VM namespaces on a bridge that carries N more managed
//     taps; one-way small UDP packets, every one a new flow, received per
//     second by the second VM (FORWARD), by the host (INPUT) and from the
//     host (OUTPUT), with the no-firewall figure beside it; and the number
//     of rules a new packet is checked against before it reaches its tap's
//     chain, walked through the installed ruleset by pkg/explain and held
//     against the kernel's counters (iptables), or followed by the kernel's
//     own trace (nftables).
//   - Established traffic: one TCP connection VM to VM, measured with
//     iperf3 (bulk, and 64-byte writes) at the smallest and largest N,
//     beside the floor: the same path through a host whose only firewall
//     is conntrack and two accept rules (established, the iperf3 port).
//
// By default (-backend both) every phase runs for the iptables backend,
// then again for the nftables backend, each in sandboxes of its own; the
// baseline is measured once. The report starts with the targets of both.
//
// The phases live in internal/controlplane and internal/dataplane, what
// they share in internal/harness and internal/taps; internal/report holds
// the results and their tables, internal/chart draws them.
//
// Usage (as root):
//
//	go run ./cmd/tapfw-bench -plugin bin/tapfw [-backend both|iptables|nftables] [-n 100,1000,4000] [-nft-n 10000] [-calls 30]
//	    [-dp-n 1,1000,4000] [-duration 3s] [-tcp-time 3s] [-json bench.json] [-chart bench.png] [-md bench.md]
//	go run ./cmd/tapfw-bench -plugin bin/tapfw -quick
//	go run ./cmd/tapfw-bench -from-json bench.json [-chart bench.png]   (tables of an earlier run)
//
// Progress goes to stderr, the tables to stdout. Nothing touches the
// machine's own network: every link, rule, set and sysctl lives in
// namespaces this program creates and deletes, also on SIGINT and SIGTERM.
// Addresses come from 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24;
// the iperf3 processes run in the VMs' namespaces and are ended with them.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/baseline"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/chart"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/controlplane"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/dataplane"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/harness"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/taps"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/traffic"
	"github.com/tapfw/tapfw/pkg/testnet"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == baseline.HelperFlag {
		os.Exit(baseline.Helper(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == controlplane.CommitHelperFlag {
		os.Exit(controlplane.CommitHelper(os.Args[2:]))
	}
	os.Exit(run())
}

func defineFlags(o *harness.Options, nList, nftList, dpList *string) {
	flag.StringVar(&o.Plugin, "plugin", "bin/tapfw", "the tapfw plugin binary")
	flag.StringVar(nList, "n", "100,1000,4000", "control plane: numbers of installed taps to measure at (ascending)")
	flag.StringVar(nftList, "nft-n", "10000", "control plane, nftables backend only: more numbers of installed taps after -n (installing them takes the iptables backend hours); empty for none")
	flag.StringVar(dpList, "dp-n", "1,1000,4000", "data plane: numbers of managed taps on the VMs' bridge besides the two VMs")
	flag.IntVar(&o.Calls, "calls", 30, "measured ADD and DEL calls at each N (each of plugin and baseline)")
	flag.DurationVar(&o.Duration, "duration", 3*time.Second, "data plane: sending time per measurement")
	flag.IntVar(&o.Jobs, "j", 2, "concurrent plugin calls while installing the N taps (1 or 2)")
	flag.IntVar(&o.Bridges, "bridges", 4, "control plane: bridges the taps are spread over")
	flag.StringVar(&o.Iptables, "iptables", "", "iptables backend: auto, nft or legacy (default: $TAPFW_IPTABLES, else auto)")
	flag.StringVar(&o.Backend, "backend", "", "the plugin's backends to measure: both (iptables, then nftables, each in sandboxes of its own), iptables or nftables (default: $TAPFW_BACKEND, else both)")
	flag.DurationVar(&o.TCPTime, "tcp-time", 3*time.Second, "established traffic: iperf3 time per run (3 runs a figure, at the smallest and largest -dp-n); 0 skips it")
	flag.StringVar(&o.JSONPath, "json", "", "write the raw results as JSON to this file")
	flag.StringVar(&o.MDPath, "md", "", "also write the markdown tables to this file")
	flag.StringVar(&o.FromJSON, "from-json", "", "measure nothing: print the tables (and -chart, -md) of a -json file of an earlier run")
	flag.StringVar(&o.ChartPath, "chart", "", "write a PNG chart (latency and packets/s against N) to this file")
	flag.IntVar(&o.CtTimeout, "ct-udp-timeout", 0, "data plane: nf_conntrack_udp_timeout (seconds) in the sandbox host, so every packet makes a new entry")
	flag.IntVar(&o.Count, "count-packets", 500, "data plane: packets sent to hold the rules-checked walk against the kernel's counters")
	flag.BoolVar(&o.SkipCP, "no-control", false, "skip the control plane")
	flag.BoolVar(&o.SkipBase, "no-baseline", false, "skip the per-rule baseline")
	flag.BoolVar(&o.SkipDP, "no-data", false, "skip the data plane")
	flag.BoolVar(&o.Quick, "quick", false, "a short run: -n 20,100 -dp-n 1,100 -calls 10 -duration 1s -tcp-time 1s (flags given explicitly win)")
	flag.BoolVar(&o.Verbose, "v", false, "more progress on stderr")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: tapfw-bench -plugin bin/tapfw [flags]   (as root)\n\n")
		flag.PrintDefaults()
	}
}

func parseFlags() (*harness.Options, error) {
	o := &harness.Options{}
	var nList, nftList, dpList string
	defineFlags(o, &nList, &nftList, &dpList)
	flag.Parse()
	if flag.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", flag.Args())
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.Quick {
		if !set["n"] {
			nList = "20,100"
		}
		if !set["nft-n"] {
			nftList = ""
		}
		if !set["dp-n"] {
			dpList = "1,100"
		}
		if !set["calls"] {
			o.Calls = 10
		}
		if !set["duration"] {
			o.Duration = time.Second
		}
		if !set["tcp-time"] {
			o.TCPTime = time.Second
		}
	}
	var err error
	if o.Ns, err = parseInts(nList, 1, 9000); err != nil {
		return nil, fmt.Errorf("-n: %w", err)
	}
	if strings.TrimSpace(nftList) != "" {
		if o.NftNs, err = parseInts(nftList, o.Ns[len(o.Ns)-1]+1, 20000); err != nil {
			return nil, fmt.Errorf("-nft-n: %w", err)
		}
	}
	if o.DpNs, err = parseInts(dpList, 1, 9000); err != nil {
		return nil, fmt.Errorf("-dp-n: %w", err)
	}
	if o.Calls < 1 || o.Jobs < 1 || o.Jobs > 2 || o.Bridges < 1 || o.Bridges > 64 || o.Duration < 100*time.Millisecond || o.Count < 10 ||
		(o.TCPTime != 0 && o.TCPTime < time.Second) {
		return nil, errors.New("need -calls >= 1, -j 1 or 2, -bridges 1..64, -duration >= 100ms, -count-packets >= 10, -tcp-time 0 or >= 1s")
	}
	if o.Iptables == "" {
		o.Iptables = os.Getenv("TAPFW_IPTABLES")
	}
	switch o.Iptables {
	case "", "auto":
		o.Iptables = "auto"
	case "nft", "legacy":
	default:
		return nil, fmt.Errorf("-iptables: %q is not auto, nft or legacy", o.Iptables)
	}
	if o.Backend == "" {
		o.Backend = os.Getenv("TAPFW_BACKEND")
	}
	switch o.Backend {
	case "", "both":
		o.Backends = []string{"iptables", "nftables"}
	case "auto", "iptables", "nftables":
		o.Backends = []string{o.Backend}
	default:
		return nil, fmt.Errorf("-backend: %q is not both, iptables, nftables or auto", o.Backend)
	}
	o.Cmdline = commandLine()
	return o, nil
}

// parseInts reads "100,1000,4000": ascending, each from min to max.
func parseInts(s string, min, max int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < min || v > max {
			return nil, fmt.Errorf("%q is not a number from %d to %d", f, min, max)
		}
		if len(out) > 0 && v <= out[len(out)-1] {
			return nil, fmt.Errorf("%q: the list must be ascending", s)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// commandLine is how this run was started, for the report: "go run
// ./cmd/tapfw-bench" when run by go run, else the binary's name.
func commandLine() string {
	name := filepath.Base(os.Args[0])
	if strings.Contains(os.Args[0], "go-build") {
		name = "go run ./cmd/tapfw-bench"
	}
	parts := []string{name}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"$") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func run() int {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tapfw-bench: %v\n", err)
		return 2
	}
	if o.FromJSON != "" {
		return replot(o)
	}
	if err := checkTools(o); err != nil {
		fmt.Fprintf(os.Stderr, "tapfw-bench: %v\n", err)
		return 1
	}
	h := harness.New(o)
	return testnet.RunStoppable("tapfw-bench", 20*time.Second, func(ctx context.Context) int { return measure(ctx, h) }, h.Cleanup)
}

// checkTools checks that the run can start: root, the plugin, the tools.
func checkTools(o *harness.Options) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root: it creates network namespaces, bridges and firewall rules inside them")
	}
	var err error
	if o.Plugin, err = filepath.Abs(o.Plugin); err == nil {
		_, err = os.Stat(o.Plugin)
	}
	if err != nil {
		return fmt.Errorf("plugin binary: %v (build it with: make build)", err)
	}
	ipt := harness.IptablesCmd(o.Iptables)
	tools := []string{"ip", "bridge", ipt, ipt + "-save", ipt + "-restore", "ipset", "nft"}
	if !o.SkipDP && o.TCPTime > 0 {
		tools = append(tools, "iperf3")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (make deps installs it)", tool)
		}
	}
	return nil
}

// replot prints the tables of an earlier run's JSON and writes its chart.
func replot(o *harness.Options) int {
	rep, err := report.ReadJSON(o.FromJSON)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tapfw-bench: %v\n", err)
		return 1
	}
	o.JSONPath = ""
	return output(harness.New(o), rep)
}

func paramsOf(o *harness.Options) report.Params {
	own, shared := baseline.RulesPerTap()
	p := report.Params{N: o.Ns, DataN: o.DpNs, Calls: o.Calls, DurationS: o.Duration.Seconds(), Jobs: o.Jobs,
		Bridges: o.Bridges, IptablesMode: o.Iptables, CtUDPTimeout: o.CtTimeout, CountPackets: o.Count,
		UserRulesIn: len(taps.UserIn), UserRulesOut: len(taps.UserOut), BaselineOwn: own, BaselineShared: shared,
		FlowsPerPath: traffic.FlowPortHi - traffic.FlowPortLo + 1, FrameBytes: 14 + 20 + 8 + traffic.PayloadLen}
	if !o.SkipDP && o.TCPTime > 0 {
		p.IperfSeconds, p.IperfRuns, p.SmallWriteBytes = o.TCPTime.Seconds(), dataplane.IperfRuns, dataplane.SmallWrite
	}
	if fi, err := os.Stat(o.Plugin); err == nil {
		p.PluginSizeBytes = fi.Size()
	}
	return p
}

// measure runs the phases for each backend and prints what they measured.
func measure(ctx context.Context, h *harness.Harness) int {
	defer h.Cleanup()
	o := h.O
	if _, err := h.Tmp(); err != nil {
		fmt.Fprintf(os.Stderr, "tapfw-bench: %v\n", err)
		return 1
	}
	rep := &report.Report{Command: o.Cmdline, Machine: report.MachineInfo(harness.IptablesCmd(o.Iptables)), Params: paramsOf(o)}
	rep.Date = h.Start().UTC().Format("2006-01-02 15:04 MST")
	h.Progress("tapfw-bench: %s; %s", rep.Machine.Summary(), rep.Command)
	h.Progress("planned: backends %s, one after the other", strings.Join(o.Backends, ", "))
	if !o.SkipCP {
		h.Progress("planned: control plane at N=%v, %d ADD+DEL pairs each, plugin%s", o.Ns, o.Calls,
			map[bool]string{true: "", false: " and baseline (once)"}[o.SkipBase])
	}
	if !o.SkipDP {
		h.Progress("planned: data plane at N=%v, %v per figure; established TCP %v a run", o.DpNs, o.Duration, o.TCPTime)
	}
	for i, name := range o.Backends {
		run, phase, err := measureBackend(ctx, h, name, i > 0)
		rep.Backends = append(rep.Backends, *run)
		if err != nil {
			return failed(ctx, h, rep, name+": "+phase, err)
		}
	}
	rep.Timing.TotalS = time.Since(h.Start()).Seconds()
	for _, b := range rep.Backends {
		rep.Timing.ControlPlaneS += b.Timing.ControlPlaneS
		rep.Timing.DataPlaneS += b.Timing.DataPlaneS
	}
	if code := output(h, rep); code != 0 {
		return code
	}
	h.Progress("done in %v", time.Since(h.Start()).Round(time.Second))
	return 0
}

// failed reports a phase's error, and prints what was measured so far: a
// long run is not wasted.
func failed(ctx context.Context, h *harness.Harness, rep *report.Report, phase string, err error) int {
	if ctx.Err() != nil {
		fmt.Fprintf(os.Stderr, "tapfw-bench: interrupted during %s\n", phase)
		return 130
	}
	fmt.Fprintf(os.Stderr, "tapfw-bench: %s: %v\n", phase, err)
	if rep.Measured() {
		rep.Incomplete = phase + ": " + err.Error()
		output(h, rep)
	}
	return 1
}

// measureBackend runs the phases with the plugin's backend set to name,
// in sandboxes of their own (every phase deletes its namespaces when it
// ends). The baseline does not depend on the backend: after the first
// backend (later is set) it is not measured again.
func measureBackend(ctx context.Context, h *harness.Harness, name string, later bool) (*report.BackendRun, string, error) {
	o := h.O
	skipBase := o.SkipBase
	defer func() { o.SkipBase = skipBase }()
	o.Backend, o.SkipBase = name, skipBase || later
	run := &report.BackendRun{Backend: name}
	h.Progress("backend %s", name)
	sub := &report.Report{}
	if !o.SkipCP {
		t0 := time.Now()
		err := controlplane.Run(ctx, h, sub)
		run.Control, run.Timing.ControlPlaneS = sub.Control, time.Since(t0).Seconds()
		if err != nil {
			return run, "control plane", err
		}
	}
	if !o.SkipDP {
		t0 := time.Now()
		err := dataplane.Run(ctx, h, sub)
		run.Data, run.Timing.DataPlaneS = sub.Data, time.Since(t0).Seconds()
		if err != nil {
			return run, "data plane", err
		}
	}
	return run, "", nil
}

// output prints the tables and writes the markdown, the JSON and the chart.
func output(h *harness.Harness, rep *report.Report) int {
	var md bytes.Buffer
	report.WriteMarkdown(&md, rep)
	_, _ = os.Stdout.Write(md.Bytes())
	code := 0
	write := func(path string, f func(string) error) {
		if path == "" {
			return
		}
		if err := f(path); err != nil {
			fmt.Fprintf(os.Stderr, "tapfw-bench: %v\n", err)
			code = 1
			return
		}
		h.Progress("wrote %s", path)
	}
	write(h.O.MDPath, func(p string) error { return os.WriteFile(p, md.Bytes(), 0o644) })
	write(h.O.JSONPath, func(p string) error { return report.WriteJSON(p, rep) })
	write(h.O.ChartPath, func(p string) error { return chart.Write(p, rep) })
	return code
}
