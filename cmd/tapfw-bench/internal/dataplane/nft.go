package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/harness"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/taps"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/traffic"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// benchTables is the prefix of the nftables tables the benchmark adds for
// a measurement and deletes after it; tapfw never reads them.
const benchTables = "tapfw_bench"

// nftApply loads an nft script in ns.
func nftApply(ctx context.Context, ns *testnet.NS, script string) error {
	_, err := harness.NSRun(ctx, ns, []byte(script), "nft", "-f", "-")
	return err
}

// nftDelete deletes the benchmark's table, whatever happened before.
func nftDelete(ns *testnet.NS, family, table string) {
	_, _ = harness.NSRun(context.Background(), ns, nil, "nft", "delete", "table", family, table)
}

// newShare checks that every packet of a flood is a new conntrack entry:
// in a table of the benchmark's own, a chain at the path's inet hook (after
// conntrack has looked the packet up, before it confirms a new entry)
// counts the bench's packets, and those whose entry is already CONFIRMED
// (an existing flow). The table is there only during this separate flood,
// not while the packets/s are measured, and goes again after it.
func (b *bench) newShare(ctx context.Context, p pathSpec, d time.Duration) (float64, error) {
	s := b.fw
	table := benchTables + "_new"
	script := fmt.Sprintf(`table inet %s {
	chain count {
		type filter hook %s priority -100; policy accept;
		udp dport %d ct status confirmed counter
		udp dport %d counter
	}
}
`, table, strings.ToLower(p.hook), taps.BenchPort, taps.BenchPort)
	if err := nftApply(ctx, s.host, script); err != nil {
		return 0, err
	}
	defer nftDelete(s.host, "inet", table)
	f, err := p.flow(s)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, _, err := f.Flood(d); err != nil {
		return 0, err
	}
	out, err := harness.NSRun(ctx, s.host, nil, "nft", "list", "chain", "inet", table, "count")
	if err != nil {
		return 0, err
	}
	c := regexp.MustCompile(`counter packets (\d+)`).FindAllSubmatch(out, -1)
	if len(c) != 2 {
		return 0, fmt.Errorf("nft list chain inet %s count: %d counters, want 2", table, len(c))
	}
	old, _ := strconv.ParseUint(string(c[0][1]), 10, 64)
	all, _ := strconv.ParseUint(string(c[1][1]), 10, 64)
	if all == 0 {
		return 0, fmt.Errorf("no packets counted at the %s hook", p.hook)
	}
	return 1 - float64(old)/float64(all), nil
}

// traceK is how many packets the nftables trace follows.
const traceK = 50

// nftChecks counts, for the nftables backend, the rules the VMs' packet of
// p is evaluated against, from the kernel's own trace: a table of the
// benchmark's own sets nftrace on the bench's packets where they start
// (bridge prerouting, or inet output for the host's), `nft monitor trace`
// records every chain they enter and every rule that matched, and each
// such rule's place in its chain (from the installed ruleset) is the
// number of rules evaluated there. It returns the checks and the packets
// that arrived.
func (b *bench) nftChecks(ctx context.Context, p pathSpec) (*report.RuleChecks, uint64, error) {
	s := b.fw
	table := benchTables + "_trace"
	script := fmt.Sprintf(`table bridge %[1]s {
	chain pre { type filter hook prerouting priority -500; udp dport %[2]d meta nftrace set 1; }
}
table inet %[1]s {
	chain out { type filter hook output priority -500; udp dport %[2]d meta nftrace set 1; }
}
`, table, taps.BenchPort)
	if err := nftApply(ctx, s.host, script); err != nil {
		return nil, 0, err
	}
	defer nftDelete(s.host, "bridge", table)
	defer nftDelete(s.host, "inet", table)
	rs, err := harness.ReadNft(ctx, s.host)
	if err != nil {
		return nil, 0, err
	}
	// nft monitor reads the whole ruleset before it listens, longer the
	// more taps there are: a trace that saw nothing is taken again with
	// a longer wait.
	var lines []string
	var recv uint64
	for _, warm := range []time.Duration{300 * time.Millisecond, 2 * time.Second, 8 * time.Second} {
		if lines, recv, err = b.traceFlow(ctx, p, warm); !errors.Is(err, errNoTrace) {
			break
		}
	}
	if err != nil {
		return nil, 0, err
	}
	c, err := countTrace(lines, rs)
	if err != nil {
		return nil, 0, err
	}
	return c.checks(traceK), recv, nil
}

// errNoTrace is a trace that printed nothing.
var errNoTrace = errors.New("nft monitor trace printed nothing")

// traceFlow sends traceK packets of p while `nft monitor trace` runs in
// the host's namespace, and returns its lines and the packets received.
func (b *bench) traceFlow(ctx context.Context, p pathSpec, warm time.Duration) ([]string, uint64, error) {
	s := b.fw
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mon := exec.CommandContext(ctx, "nft", "-a", "monitor", "trace")
	var out, stderr bytes.Buffer
	mon.Stdout, mon.Stderr = &out, &stderr
	mon.WaitDelay = 2 * time.Second
	if err := s.host.Do(mon.Start); err != nil {
		return nil, 0, fmt.Errorf("nft monitor trace: %w", err)
	}
	stop := func() { _ = mon.Process.Signal(os.Interrupt); _ = mon.Wait() }
	defer func() {
		if mon.ProcessState == nil {
			stop()
		}
	}()
	time.Sleep(warm) // until it listens
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
	for k := 0; k < traceK; k++ {
		if err := f.Trickle(1); err != nil {
			return nil, 0, err
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	after, err := traffic.UDPCounter(rx)
	if err != nil {
		return nil, 0, err
	}
	var lines []string
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) == 0 {
		return nil, 0, fmt.Errorf("%w: %s", errNoTrace, strings.TrimSpace(stderr.String()))
	}
	return lines, after - before, nil
}
