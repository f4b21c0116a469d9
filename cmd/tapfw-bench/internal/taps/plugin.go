package taps

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/harness"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// pluginEnv is the environment of a plugin call for tap in ns, as the QEMU
// ifup script sets it.
func pluginEnv(o *harness.Options, ns *testnet.NS, lock, command string, t Spec) []string {
	return append([]string{
		"CNI_COMMAND=" + command,
		"CNI_CONTAINERID=" + t.ContainerID,
		"CNI_IFNAME=" + t.Name,
		"CNI_NETNS=" + ns.Path,
		"CNI_NETNS_OVERRIDE=1",
		"CNI_PATH=" + filepath.Dir(o.Plugin),
		"CNI_ARGS=",
	}, OperatorEnv(o, lock)...)
}

// OperatorEnv is the environment of an operator command (tapfw apply)
// on the run's backend, with the plugin calls' lock; the plugin reports
// its own peak memory (testnet.Usage).
func OperatorEnv(o *harness.Options, lock string) []string {
	env := []string{"TAPFW_LOCK=" + lock, "TAPFW_LOCK_TIMEOUT=120s", "TAPFW_TRACE=1"}
	if o.Iptables != "auto" {
		env = append(env, "TAPFW_IPTABLES="+o.Iptables)
	}
	if o.Backend != "" {
		env = append(env, "TAPFW_BACKEND="+o.Backend)
	}
	return env
}

// Call runs the plugin once for t in ns and measures the process.
func Call(ctx context.Context, o *harness.Options, ns *testnet.NS, lock, command string, t Spec) (report.Sample, error) {
	_, s, err := harness.RunIn(ctx, ns, t.PluginConfig(), pluginEnv(o, ns, lock, command, t), o.Plugin)
	if err != nil {
		return s, fmt.Errorf("tapfw %s %s: %w", command, t.Name, err)
	}
	return s, nil
}

// installer is one Populate: workers take the next tap until to.
type installer struct {
	h       *harness.Harness
	ns      *testnet.NS
	lock    string
	to      int
	tap     func(int) Spec
	next    atomic.Int64
	done    atomic.Int64
	lastMs  atomic.Uint64 // float64 bits
	errOnce sync.Once
	err     error
}

func (in *installer) work(ctx context.Context, cancel func()) {
	for ctx.Err() == nil {
		i := int(in.next.Add(1) - 1)
		if i >= in.to {
			return
		}
		s, err := Call(ctx, in.h.O, in.ns, in.lock, "ADD", in.tap(i))
		if err != nil {
			in.errOnce.Do(func() { in.err = err; cancel() })
			return
		}
		in.lastMs.Store(math.Float64bits(s.WallMs))
		in.done.Add(1)
	}
}

func (in *installer) last() float64 { return math.Float64frombits(in.lastMs.Load()) }

// Populate calls the plugin with ADD for taps from..to-1, up to Jobs at
// once, printing progress; it returns the wall time of the last call.
func Populate(ctx context.Context, h *harness.Harness, what string, ns *testnet.NS, lock string, from, to int, tap func(int) Spec) (float64, error) {
	if to <= from {
		return 0, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	total := to - from
	h.Progress("%s: installing taps %d..%d with the plugin (%d calls, %d at a time)", what, from, to-1, total, h.O.Jobs)
	in := &installer{h: h, ns: ns, lock: lock, to: to, tap: tap}
	in.next.Store(int64(from))
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < h.O.Jobs; w++ {
		wg.Add(1)
		go func() { defer wg.Done(); in.work(ctx, cancel) }()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			if in.err != nil {
				return 0, in.err
			}
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			el := time.Since(start)
			h.Progress("%s: installed %d taps in %v (%.1f calls/s, last call %.0f ms)", what, total, el.Round(time.Second),
				float64(total)/el.Seconds(), in.last())
			return in.last(), nil
		case <-tick.C:
			d := in.done.Load()
			el := time.Since(start)
			rate := float64(d) / el.Seconds()
			eta := "?"
			if d > 0 {
				// Calls get slower as taps accumulate when a call's cost
				// grows with N; this estimate assumes the current rate.
				eta = (time.Duration(float64(int64(total)-d)/rate) * time.Second).Round(time.Second).String()
			}
			h.Progress("%s: %d/%d taps installed (%.1f calls/s, last call %.0f ms, eta %s at this rate)",
				what, d, total, rate, in.last(), eta)
		}
	}
}
