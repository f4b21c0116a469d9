// Command tapfw-soak is tapfw's long reliability run (make soak; not part
// of make test; docs/soak.md): for each backend, in a fresh sandbox,
// -cycles ADD/DEL calls of random taps from a pool of -taps, each ADD
// with one of a few rule templates, while two VMs keep an allowed TCP
// flow and a UDP stream running and probe a closed TCP and UDP port.
// It checks that the flows lose nothing, never stall or break, the
// probes never pass, CHECK of the taps attached throughout (the VMs and
// an anchor) finds no drift, the counts of chains, rules, sets, set
// elements and conntrack entries are back where they started once the
// soak's taps are DELeted, and that the plugin's peak RSS per call has
// not grown. It prints a markdown table per backend and a summary line
// per backend on stdout, progress on stderr, and exits 1 naming every
// failed check.
//
// Usage (as root): go run ./cmd/tapfw-soak -plugin bin/tapfw [-cycles 10000]
// [-backend both|iptables|nftables] [-taps 200] [-seed N]
//
// Nothing touches the machine's own network: everything happens in
// namespaces named tfws-..., deleted at the end, also on SIGINT and
// SIGTERM; the host's own netfilter state, links, routes and sysctls are
// read before and after (testnet.HostState), and a change fails the run.
// Addresses come from 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and
// 2001:db8::/32.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tapfw/tapfw/cmd/tapfw-soak/internal/soak"
	"github.com/tapfw/tapfw/pkg/testnet"
)

func main() { os.Exit(run()) }

func parseFlags() (soak.Options, []string, error) {
	o := soak.Options{}
	backend := flag.String("backend", "both", "both (iptables, then nftables, each in its own sandbox), iptables or nftables")
	flag.StringVar(&o.Plugin, "plugin", "bin/tapfw", "the tapfw plugin binary")
	flag.IntVar(&o.Cycles, "cycles", 10000, "ADD/DEL calls of random pool taps, per backend")
	flag.IntVar(&o.Taps, "taps", 200, fmt.Sprintf("pool taps the cycles draw from (2..%d), half on each bridge", soak.MaxTaps))
	flag.Uint64Var(&o.Seed, "seed", 0, "random seed (0: from the clock; the tables print it)")
	flag.IntVar(&o.TCPRate, "tcp-rate", 250, "TCP flow: 512-byte records a second")
	flag.IntVar(&o.UDPRate, "udp-rate", 1000, "UDP flow: datagrams a second")
	flag.DurationVar(&o.MaxStall, "max-stall", time.Second, "the longest a TCP record may wait for its acknowledgement")
	flag.IntVar(&o.RSSWindow, "rss-window", 500, "calls in each window of the RSS comparison")
	flag.Float64Var(&o.RSSTolerance, "rss-tolerance", 0.05, "allowed RSS growth, a fraction of the start's median")
	flag.Int64Var(&o.RSSSlackKB, "rss-slack-kb", 1024, "allowed RSS growth in KiB (growth beyond both fails)")
	flag.IntVar(&o.Every, "every", 1000, "progress line and a CHECK of the fixed taps (the VMs and the anchor) every this many cycles")
	flag.Parse()
	if flag.NArg() > 0 {
		return o, nil, fmt.Errorf("unexpected arguments: %v", flag.Args())
	}
	if o.Cycles < 1 || o.Taps < 2 || o.Taps > soak.MaxTaps || o.TCPRate < 1 || o.UDPRate < 1 || o.Every < 1 || o.RSSWindow < 10 {
		return o, nil, fmt.Errorf("need -cycles >= 1, -taps 2..%d, -tcp-rate, -udp-rate, -every >= 1, -rss-window >= 10", soak.MaxTaps)
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano()%1e9) + 1
	}
	switch *backend {
	case "both":
		return o, []string{"iptables", "nftables"}, nil
	case "iptables", "nftables":
		return o, []string{*backend}, nil
	}
	return o, nil, fmt.Errorf("-backend: %q is not both, iptables or nftables", *backend)
}

// checkTools checks that the soak can start: root, the plugin, the tools.
func checkTools(o *soak.Options) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root: it creates network namespaces, bridges and firewall rules inside them")
	}
	var err error
	if o.Plugin, err = filepath.Abs(o.Plugin); err == nil {
		_, err = os.Stat(o.Plugin)
	}
	if err != nil {
		return fmt.Errorf("plugin binary: %w (build it with: make build)", err)
	}
	for _, tool := range []string{"ip", "iptables-save", "ip6tables-save", "ipset", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (make deps installs it)", tool)
		}
	}
	return nil
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func run() int {
	o, backends, err := parseFlags()
	if err == nil {
		err = checkTools(&o)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tapfw-soak: %v\n", err)
		return 2
	}
	spaces := &testnet.Spaces{}
	return testnet.RunStoppable("tapfw-soak", 30*time.Second,
		func(ctx context.Context) int { return soakAll(ctx, o, backends, spaces) },
		func() {
			if err := spaces.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "tapfw-soak: %v\n", err)
			}
		})
}

// soakAll soaks each backend in turn, each in its own sandbox, and
// prints its table; it fails when a soak failed or the host's own network
// changed.
func soakAll(ctx context.Context, o soak.Options, backends []string, spaces *testnet.Spaces) int {
	hostBefore := testnet.HostState()
	tmp, err := os.MkdirTemp("", "tapfw-soak-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "tapfw-soak: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	defer func() {
		if err := spaces.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "tapfw-soak: %v\n", err)
		}
	}()
	var failed []string
	var results []*soak.Result
	for _, b := range backends {
		o.Backend = b
		res, fails := soakOne(ctx, o, spaces, tmp)
		if len(fails) > 0 {
			failed = append(failed, b+": "+strings.Join(fails, "; "))
		}
		if res != nil {
			results = append(results, res)
		}
		if ctx.Err() != nil {
			return 130
		}
	}
	soak.WriteSummary(os.Stdout, results)
	if hostBefore != testnet.HostState() {
		failed = append(failed, "the host's own network changed during the soak (only the tfws- namespaces may change)")
	}
	if len(failed) > 0 {
		for _, f := range failed {
			fmt.Fprintf(os.Stderr, "tapfw-soak: FAIL: %s\n", f)
		}
		return 1
	}
	logf("tapfw-soak: PASS (%s)", strings.Join(backends, ", "))
	return 0
}

// soakOne runs one backend's soak (in a sandbox of its own, removed at
// its end), prints its table and returns its result and failures.
func soakOne(ctx context.Context, o soak.Options, spaces *testnet.Spaces, tmp string) (*soak.Result, []string) {
	res, err := soak.Run(ctx, o, spaces, tmp, logf)
	if res != nil {
		res.WriteMarkdown(os.Stdout)
	}
	if err != nil {
		return res, []string{err.Error()}
	}
	return res, res.Failures()
}
