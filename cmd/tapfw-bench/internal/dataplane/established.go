package dataplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/harness"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/taps"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/traffic"
)

// Established traffic, as a user would measure it: iperf3, one TCP
// connection from VM a to VM b, IperfRuns runs a figure, the median.
const (
	IperfRuns  = 3
	SmallWrite = 64 // bytes per write of the small-write runs (-l)
)

// measureTCPAt is whether established traffic is measured at n: the
// smallest and the largest N, unless -tcp-time 0.
func (b *bench) measureTCPAt(n int) bool {
	ns := b.h.O.DpNs
	return b.h.O.TCPTime > 0 && (n == ns[0] || n == ns[len(ns)-1])
}

// setupFloor builds the floor: a sandbox like the twin whose host has
// only a conntrack table and two accept rules, established and the iperf3
// port (bridged packets pass the inet hooks through br_netfilter, as with
// tapfw), in a table of the benchmark's own. It is what any stateful
// firewall pays.
func (b *bench) setupFloor(ctx context.Context) error {
	if b.h.O.TCPTime == 0 {
		return nil
	}
	var err error
	if b.floor, err = newSandbox(b.h, "floor", "bfl"); err != nil {
		return err
	}
	if err := b.floor.setPorts(ctx, 0, 1); err != nil {
		return err
	}
	if err := b.floor.host.Sysctl("net.bridge.bridge-nf-call-iptables", "1"); err != nil {
		return fmt.Errorf("floor: bridge-nf-call-iptables (br_netfilter loaded?): %w", err)
	}
	// As in the firewalled sandbox, every UDP packet of the new-flow
	// figures makes a new entry.
	if err := b.floor.host.Sysctl("net.netfilter.nf_conntrack_udp_timeout", fmt.Sprint(b.h.O.CtTimeout)); err != nil {
		return err
	}
	return nftApply(ctx, b.floor.host, fmt.Sprintf(`table inet %s_floor {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		tcp dport %d accept
		udp dport %d accept
	}
}
`, benchTables, taps.IperfPort, taps.BenchPort))
}

// established measures one TCP connection VM to VM through tapfw and
// through the floor, their runs interleaved.
func (b *bench) established(ctx context.Context, n int) (*report.Established, error) {
	e := &report.Established{}
	figs := []*report.TCPFigures{&e.Fw, &e.Floor}
	for _, s := range []*sandbox{b.fw, b.floor} {
		stop, err := startIperfServer(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("established (%s): %w", s.name, err)
		}
		defer stop()
	}
	for run := 0; run < IperfRuns; run++ {
		for i, s := range []*sandbox{b.fw, b.floor} {
			if err := b.iperfRun(ctx, s, figs[i]); err != nil {
				return nil, fmt.Errorf("established (%s): %w", s.name, err)
			}
		}
	}
	for _, f := range figs {
		f.BulkBps, f.SmallPps, f.SmallWps = report.Median(f.BulkRuns), report.Median(f.SmallPpsRuns), report.Median(f.SmallWpsRuns)
	}
	b.h.Progress("data plane N=%d established TCP VM to VM: bulk %.2f Gbit/s with tapfw, %.2f floor; %d-byte writes %.0f segments/s with tapfw, %.0f floor",
		n, e.Fw.BulkBps/1e9, e.Floor.BulkBps/1e9, SmallWrite, e.Fw.SmallPps, e.Floor.SmallPps)
	return e, nil
}

// startIperfServer starts `iperf3 -s` in s's VM b and returns what stops
// it (the process this started, by its handle).
func startIperfServer(ctx context.Context, s *sandbox) (func(), error) {
	cmd := exec.CommandContext(ctx, "iperf3", "-s", "-B", taps.VMBIP, "-p", fmt.Sprint(taps.IperfPort))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 2 * time.Second
	if err := s.b.Do(cmd.Start); err != nil {
		return nil, fmt.Errorf("iperf3 -s: %w", err)
	}
	time.Sleep(200 * time.Millisecond) // until it listens
	return func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }, nil
}

// iperfResult is what the benchmark reads of `iperf3 -J`.
type iperfResult struct {
	End struct {
		SumSent     struct{ Bytes, Seconds float64 } `json:"sum_sent"`
		SumReceived struct {
			Seconds       float64
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// iperfBusy is how iperf3's server refuses a test while it is still
// ending the one before.
const iperfBusy = "the server is busy"

// iperf runs the client in s's VM a with extra flags and returns its result
// and the TCP segments VM b received meanwhile. A server still busy with
// the previous run is asked again, up to 5 times, 200 ms apart.
func (b *bench) iperf(ctx context.Context, s *sandbox, extra ...string) (*iperfResult, uint64, error) {
	for try := 1; ; try++ {
		r, segs, err := b.iperfOnce(ctx, s, extra...)
		if err == nil || try == 5 || !strings.Contains(err.Error(), iperfBusy) {
			return r, segs, err
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// iperfOnce is one iperf3 client run (see iperf).
func (b *bench) iperfOnce(ctx context.Context, s *sandbox, extra ...string) (*iperfResult, uint64, error) {
	secs := fmt.Sprint(max(1, int(b.h.O.TCPTime.Round(time.Second).Seconds())))
	args := append([]string{"iperf3", "-c", taps.VMBIP, "-p", fmt.Sprint(taps.IperfPort), "-t", secs, "-J"}, extra...)
	before, err := traffic.TCPInSegs(s.b)
	if err != nil {
		return nil, 0, err
	}
	out, err := harness.NSRun(ctx, s.a, nil, args...)
	if err != nil {
		return nil, 0, err
	}
	after, err := traffic.TCPInSegs(s.b)
	if err != nil {
		return nil, 0, err
	}
	var r iperfResult
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, 0, fmt.Errorf("iperf3 -J: %w", err)
	}
	if r.Error != "" || r.End.SumReceived.Seconds <= 0 {
		return nil, 0, fmt.Errorf("iperf3: %q (%.1f s received)", r.Error, r.End.SumReceived.Seconds)
	}
	return &r, after - before, nil
}

// iperfRun is one bulk run and one small-write run, added to f.
func (b *bench) iperfRun(ctx context.Context, s *sandbox, f *report.TCPFigures) error {
	// Bulk as the client's kernel sends by default; small writes are to
	// be small packets, so for them it must not hold writes back to merge
	// them (TCP autocorking off in VM a; TCP_NODELAY, -N, does the rest).
	if err := s.a.Sysctl("net.ipv4.tcp_autocorking", "1"); err != nil {
		return err
	}
	bulk, _, err := b.iperf(ctx, s)
	if err != nil {
		return fmt.Errorf("bulk: %w", err)
	}
	if err := s.a.Sysctl("net.ipv4.tcp_autocorking", "0"); err != nil {
		return err
	}
	small, segs, err := b.iperf(ctx, s, "-l", fmt.Sprint(SmallWrite), "-N")
	if err != nil {
		return fmt.Errorf("small writes: %w", err)
	}
	f.BulkRuns = append(f.BulkRuns, bulk.End.SumReceived.BitsPerSecond)
	f.SmallPpsRuns = append(f.SmallPpsRuns, float64(segs)/small.End.SumReceived.Seconds)
	f.SmallWpsRuns = append(f.SmallWpsRuns, small.End.SumSent.Bytes/SmallWrite/small.End.SumSent.Seconds)
	return nil
}
