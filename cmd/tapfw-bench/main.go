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
//     against the kernel's counters.
//
// Usage (as root):
//
//	go run ./cmd/tapfw-bench -plugin bin/tapfw [-n 100,1000,4000] [-calls 30]
//	    [-dp-n 1,1000,4000] [-duration 3s] [-json bench.json] [-chart bench.png] [-md bench.md]
//	go run ./cmd/tapfw-bench -plugin bin/tapfw -quick
//	go run ./cmd/tapfw-bench -from-json bench.json [-chart bench.png]   (tables of an earlier run)
//
// Progress goes to stderr, the tables to stdout. Nothing touches the
// machine's own network: every link, rule, set and sysctl lives in
// namespaces this program creates and deletes, also on SIGINT and SIGTERM.
// Addresses come from 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// helperFlag makes the binary the per-rule baseline "plugin" (baseline.go);
// the benchmark runs itself with it inside a namespace.
const helperFlag = "-baseline-helper"

type options struct {
	plugin    string
	ns        []int // control plane: taps installed before measuring
	dpNs      []int // data plane: managed taps beside the two VMs
	calls     int
	duration  time.Duration
	jobs      int
	bridges   int
	iptables  string // auto, nft or legacy
	jsonPath  string
	chartPath string
	mdPath    string
	fromJSON  string
	ctTimeout int
	count     int // packets sent for the rules-checked count
	skipCP    bool
	skipBase  bool
	skipDP    bool
	quick     bool
	verbose   bool
	cmdline   string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == helperFlag {
		os.Exit(baselineHelper(os.Args[2:]))
	}
	os.Exit(run())
}

func parseFlags() (*options, error) {
	o := &options{}
	var nList, dpList string
	flag.StringVar(&o.plugin, "plugin", "bin/tapfw", "the tapfw plugin binary")
	flag.StringVar(&nList, "n", "100,1000,4000", "control plane: numbers of installed taps to measure at (ascending)")
	flag.StringVar(&dpList, "dp-n", "1,1000,4000", "data plane: numbers of managed taps on the VMs' bridge besides the two VMs")
	flag.IntVar(&o.calls, "calls", 30, "measured ADD and DEL calls at each N (each of plugin and baseline)")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "data plane: sending time per measurement")
	flag.IntVar(&o.jobs, "j", 2, "concurrent plugin calls while installing the N taps (1 or 2)")
	flag.IntVar(&o.bridges, "bridges", 4, "control plane: bridges the taps are spread over")
	flag.StringVar(&o.iptables, "iptables", "", "iptables backend: auto, nft or legacy (default: $TAPFW_IPTABLES, else auto)")
	flag.StringVar(&o.jsonPath, "json", "", "write the raw results as JSON to this file")
	flag.StringVar(&o.mdPath, "md", "", "also write the markdown tables to this file")
	flag.StringVar(&o.fromJSON, "from-json", "", "measure nothing: print the tables (and -chart, -md) of a -json file of an earlier run")
	flag.StringVar(&o.chartPath, "chart", "", "write a PNG chart (latency and packets/s against N) to this file")
	flag.IntVar(&o.ctTimeout, "ct-udp-timeout", 0, "data plane: nf_conntrack_udp_timeout (seconds) in the sandbox host, so every packet makes a new entry")
	flag.IntVar(&o.count, "count-packets", 500, "data plane: packets sent for the rules-checked count")
	flag.BoolVar(&o.skipCP, "no-control", false, "skip the control plane")
	flag.BoolVar(&o.skipBase, "no-baseline", false, "skip the per-rule baseline")
	flag.BoolVar(&o.skipDP, "no-data", false, "skip the data plane")
	flag.BoolVar(&o.quick, "quick", false, "a short run: -n 20,100 -dp-n 1,100 -calls 10 -duration 1s (flags given explicitly win)")
	flag.BoolVar(&o.verbose, "v", false, "more progress on stderr")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: tapfw-bench -plugin bin/tapfw [flags]   (as root)\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", flag.Args())
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		if !set["n"] {
			nList = "20,100"
		}
		if !set["dp-n"] {
			dpList = "1,100"
		}
		if !set["calls"] {
			o.calls = 10
		}
		if !set["duration"] {
			o.duration = time.Second
		}
	}
	var err error
	if o.ns, err = parseInts(nList, 1); err != nil {
		return nil, fmt.Errorf("-n: %w", err)
	}
	if o.dpNs, err = parseInts(dpList, 1); err != nil {
		return nil, fmt.Errorf("-dp-n: %w", err)
	}
	if o.calls < 1 || o.jobs < 1 || o.jobs > 2 || o.bridges < 1 || o.bridges > 64 || o.duration < 100*time.Millisecond || o.count < 10 {
		return nil, errors.New("need -calls >= 1, -j 1 or 2, -bridges 1..64, -duration >= 100ms, -count-packets >= 10")
	}
	if o.iptables == "" {
		o.iptables = os.Getenv("TAPFW_IPTABLES")
	}
	switch o.iptables {
	case "", "auto":
		o.iptables = "auto"
	case "nft", "legacy":
	default:
		return nil, fmt.Errorf("-iptables: %q is not auto, nft or legacy", o.iptables)
	}
	o.cmdline = commandLine()
	return o, nil
}

// parseInts reads "100,1000,4000": ascending, each at least min, at most 9000.
func parseInts(s string, min int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < min || v > 9000 {
			return nil, fmt.Errorf("%q is not a number from %d to 9000", f, min)
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
	if o.fromJSON != "" {
		return replot(o)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "tapfw-bench: must run as root: it creates network namespaces, bridges and firewall rules inside them")
		return 1
	}
	if o.plugin, err = filepath.Abs(o.plugin); err == nil {
		_, err = os.Stat(o.plugin)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tapfw-bench: plugin binary: %v (build it with: make build)\n", err)
		return 1
	}
	ipt := iptablesCmd(o.iptables)
	for _, tool := range []string{"ip", "bridge", ipt, ipt + "-save", ipt + "-restore", "ipset"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "tapfw-bench: %s not found (make deps installs it)\n", tool)
			return 1
		}
	}

	b := newBench(o)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	done := make(chan int, 1)
	go func() { done <- b.run(ctx) }()
	select {
	case code := <-done:
		return code
	case sig := <-sigs:
		fmt.Fprintf(os.Stderr, "\ntapfw-bench: %v: stopping and removing the namespaces\n", sig)
		cancel()
	}
	select {
	case <-done:
	case sig := <-sigs:
		fmt.Fprintf(os.Stderr, "tapfw-bench: %v again: removing the namespaces now\n", sig)
	case <-time.After(20 * time.Second):
		fmt.Fprintln(os.Stderr, "tapfw-bench: still busy: removing the namespaces now")
	}
	b.cleanup()
	return 130
}

// replot prints the tables of an earlier run's JSON and writes its chart.
func replot(o *options) int {
	data, err := os.ReadFile(o.fromJSON)
	var rep Report
	if err == nil {
		err = json.Unmarshal(data, &rep)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tapfw-bench: %s: %v\n", o.fromJSON, err)
		return 1
	}
	o.jsonPath = ""
	return newBench(o).output(&rep)
}

// bench holds the run's state; cleanup may run from the signal path while
// run is still going.
type bench struct {
	o     *options
	start time.Time
	tmp   string // lock files

	mu     sync.Mutex
	spaces []*testnet.NS
	closed bool
}

func newBench(o *options) *bench { return &bench{o: o, start: time.Now()} }

// newNS creates a namespace that cleanup deletes.
func (b *bench) newNS(prefix string) (*testnet.NS, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("stopping")
	}
	n, err := testnet.NewNS(prefix)
	if err != nil {
		return nil, err
	}
	b.spaces = append(b.spaces, n)
	return n, nil
}

// dropNS deletes namespaces before the end of the run (to free the memory
// of a large ruleset).
func (b *bench) dropNS(list ...*testnet.NS) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range list {
		if n == nil {
			continue
		}
		if err := n.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "tapfw-bench: %v\n", err)
		}
		b.spaces = slices.DeleteFunc(b.spaces, func(x *testnet.NS) bool { return x == n })
	}
}

// cleanup deletes every namespace and the temporary directory; a second
// call does nothing.
func (b *bench) cleanup() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for i := len(b.spaces) - 1; i >= 0; i-- {
		if err := b.spaces[i].Close(); err != nil {
			fmt.Fprintf(os.Stderr, "tapfw-bench: %v\n", err)
		}
	}
	b.spaces = nil
	if b.tmp != "" {
		_ = os.RemoveAll(b.tmp)
		b.tmp = ""
	}
}

// progress prints one line to stderr, prefixed with the time since start.
func (b *bench) progress(format string, a ...any) {
	el := time.Since(b.start).Round(time.Second)
	fmt.Fprintf(os.Stderr, "[%8s] %s\n", el, fmt.Sprintf(format, a...))
}

func (b *bench) run(ctx context.Context) int {
	defer b.cleanup()
	var err error
	b.mu.Lock()
	b.tmp, err = os.MkdirTemp("", "tapfw-bench-")
	b.mu.Unlock()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tapfw-bench: %v\n", err)
		return 1
	}
	rep := &Report{Command: b.o.cmdline, Machine: machineInfo(b.o.iptables), Params: paramsOf(b.o)}
	rep.Date = b.start.UTC().Format("2006-01-02 15:04 MST")
	b.progress("tapfw-bench: %s; %s", rep.Machine.summary(), rep.Command)
	if !b.o.skipCP {
		b.progress("planned: control plane at N=%v, %d ADD+DEL pairs each, plugin%s", b.o.ns, b.o.calls,
			map[bool]string{true: "", false: " and baseline"}[b.o.skipBase])
	}
	if !b.o.skipDP {
		b.progress("planned: data plane at N=%v, %v per figure", b.o.dpNs, b.o.duration)
	}

	fail := func(phase string, err error) int {
		if ctx.Err() != nil {
			fmt.Fprintf(os.Stderr, "tapfw-bench: interrupted during %s\n", phase)
			return 130
		}
		fmt.Fprintf(os.Stderr, "tapfw-bench: %s: %v\n", phase, err)
		// Print what was measured so far: a long run is not wasted.
		if len(rep.Control)+len(rep.Data) > 0 {
			rep.Incomplete = phase + ": " + err.Error()
			b.output(rep)
		}
		return 1
	}
	if !b.o.skipCP {
		t0 := time.Now()
		if err := b.controlPlane(ctx, rep); err != nil {
			return fail("control plane", err)
		}
		rep.Timing.ControlPlaneS = time.Since(t0).Seconds()
	}
	if !b.o.skipDP {
		t0 := time.Now()
		if err := b.dataPlane(ctx, rep); err != nil {
			return fail("data plane", err)
		}
		rep.Timing.DataPlaneS = time.Since(t0).Seconds()
	}
	rep.Timing.TotalS = time.Since(b.start).Seconds()
	if code := b.output(rep); code != 0 {
		return code
	}
	b.progress("done in %v", time.Since(b.start).Round(time.Second))
	return 0
}

// output prints the tables and writes the JSON and the chart.
func (b *bench) output(rep *Report) int {
	var md bytes.Buffer
	writeMarkdown(&md, rep)
	_, _ = os.Stdout.Write(md.Bytes())
	code := 0
	if b.o.mdPath != "" {
		if err := os.WriteFile(b.o.mdPath, md.Bytes(), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "tapfw-bench: %v\n", err)
			code = 1
		} else {
			b.progress("wrote %s", b.o.mdPath)
		}
	}
	if b.o.jsonPath != "" {
		if err := writeJSON(b.o.jsonPath, rep); err != nil {
			fmt.Fprintf(os.Stderr, "tapfw-bench: %v\n", err)
			code = 1
		} else {
			b.progress("wrote %s", b.o.jsonPath)
		}
	}
	if b.o.chartPath != "" {
		if err := writeChart(b.o.chartPath, rep); err != nil {
			fmt.Fprintf(os.Stderr, "tapfw-bench: %v\n", err)
			code = 1
		} else {
			b.progress("wrote %s", b.o.chartPath)
		}
	}
	return code
}
