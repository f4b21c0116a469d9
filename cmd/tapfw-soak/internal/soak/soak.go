// Package soak is tapfw-soak's run: one backend's sandbox, the two VMs'
// traffic, the random ADD/DEL cycles, and what it checks afterwards.
package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// Options are one backend's soak settings, from the command line.
type Options struct {
	Plugin       string
	Backend      string // iptables or nftables
	Cycles       int
	Taps         int // the pool's size
	Seed         uint64
	TCPRate      int           // TCP records a second
	UDPRate      int           // UDP datagrams a second
	MaxStall     time.Duration // the longest a TCP record may wait for its acknowledgement
	RSSWindow    int           // calls in each window of the RSS comparison
	RSSTolerance float64       // allowed growth, a fraction of the first window's median
	RSSSlackKB   int64         // ... and in KiB: growth fails only beyond both
	Every        int           // progress (and a CHECK of the VMs) every this many cycles
}

// maxPluginErrors ends the cycles early: a plugin that fails this often
// is broken, and the rest would only repeat it.
const maxPluginErrors = 20

// Result is what one backend's soak measured and found.
type Result struct {
	O             Options
	Done          int // cycles run
	Adds, Dels    int
	Teardown      int // DELs after the cycles
	Kinds         map[string]int
	Calls         []Call // the cycles' calls, in order
	Traffic       TrafficResult
	Before, After Counts
	RSS           []RSSCheck
	PluginErrors  int
	CheckErrors   int      // CHECKs of the fixed taps that failed: drift
	Errors        []string // plugin and CHECK failures, the first few
	Aborted       string   // why the run stopped early, if it did
	Elapsed       time.Duration
}

func (r *Result) errorf(format string, a ...any) {
	if len(r.Errors) < 10 {
		r.Errors = append(r.Errors, fmt.Sprintf(format, a...))
	}
}

// run is one soak in progress.
type run struct {
	o        *Options
	s        *sandbox
	res      *Result
	rnd      *rand.Rand
	cycle    atomic.Int64
	attached []bool
	confs    [][]byte
	start    time.Time
	logf     func(format string, a ...any)
}

// Run soaks one backend in a fresh sandbox made in spaces; logf prints
// progress. An error is a failure to set up or to read the state; what the
// soak found is in the Result (see Failures).
func Run(ctx context.Context, o Options, spaces *testnet.Spaces, tmp string, logf func(string, ...any)) (*Result, error) {
	ru := &run{o: &o, res: &Result{O: o, Kinds: map[string]int{}}, start: time.Now(), logf: logf,
		rnd: rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15)), attached: make([]bool, o.Taps), confs: make([][]byte, o.Taps)}
	defer func() { ru.res.Elapsed = time.Since(ru.start) }()
	var err error
	logf("%s: building the sandbox (%d pool taps on %s and %s, two VMs and an anchor)", o.Backend, o.Taps, Bridge0, Bridge1)
	if ru.s, err = newSandbox(&o, spaces, tmp); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer func() {
		if err := spaces.Drop(ru.s.host, ru.s.client, ru.s.server); err != nil {
			logf("%s: removing the sandbox: %v", o.Backend, err)
		}
	}()
	if err := ru.addFixed(ctx); err != nil {
		return nil, err
	}
	settle()
	tr, err := StartTraffic(&o, ru.s.client, ru.s.server, &ru.cycle)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			ru.res.Traffic = tr.Stop()
		}
	}()
	time.Sleep(time.Second)
	if ru.res.Before, err = ReadCounts(ctx, ru.s.host); err != nil {
		return ru.res, fmt.Errorf("counting before: %w", err)
	}
	ru.cycles(ctx)
	ru.teardown(ctx)
	time.Sleep(time.Second) // the flows go on after the last change
	if ru.res.After, err = ReadCounts(ctx, ru.s.host); err != nil {
		return ru.res, fmt.Errorf("counting after: %w", err)
	}
	ru.checkFixed(ctx, "at the end")
	stopped = true
	ru.res.Traffic = tr.Stop()
	ru.compareRSS()
	if ctx.Err() != nil {
		return ru.res, ctx.Err()
	}
	return ru.res, nil
}

// addFixed ADDs the fixed taps (FixedTaps).
func (ru *run) addFixed(ctx context.Context) error {
	for _, f := range FixedTaps() {
		if _, err := ru.s.call(ctx, "ADD", f.Tap, f.Conf); err != nil {
			return fmt.Errorf("the fixed taps' ADD: %w", err)
		}
	}
	return nil
}

// checkFixed runs CHECK for the fixed taps: their firewall must not have
// drifted.
func (ru *run) checkFixed(ctx context.Context, when string) {
	for _, f := range FixedTaps() {
		if _, err := ru.s.call(ctx, "CHECK", f.Tap, f.Conf); err != nil && ctx.Err() == nil {
			ru.res.CheckErrors++
			ru.res.errorf("CHECK %s %s: %v", f.Tap.Name, when, err)
		}
	}
}

// cycles is the soak: o.Cycles times, a random pool tap is ADDed (with a
// random template) if it is not attached, else DELeted.
func (ru *run) cycles(ctx context.Context) {
	o, res := ru.o, ru.res
	for i := 0; i < o.Cycles; i++ {
		if ctx.Err() != nil {
			res.Aborted = "interrupted"
			return
		}
		ru.cycle.Store(int64(i))
		k := ru.rnd.IntN(o.Taps)
		t := ru.s.pool[k]
		command := "DEL"
		if !ru.attached[k] {
			var kind string
			command = "ADD"
			kind, ru.confs[k] = PoolConfig(t, ru.rnd)
			res.Kinds[kind]++
			res.Adds++
		} else {
			res.Dels++
		}
		// A failed ADD may have installed part of the tap: it counts
		// as attached, so that a DEL removes it.
		ru.attached[k] = command == "ADD"
		u, err := ru.s.call(ctx, command, t, ru.confs[k])
		res.Calls = append(res.Calls, Call{Command: command, Wall: u.Wall, MaxRSSKB: u.MaxRSSKB})
		res.Done = i + 1
		if err != nil && ctx.Err() == nil {
			res.PluginErrors++
			res.errorf("cycle %d: %v", i, err)
			if res.PluginErrors >= maxPluginErrors {
				res.Aborted = fmt.Sprintf("%d plugin calls failed", res.PluginErrors)
				return
			}
		}
		if (i+1)%o.Every == 0 || i+1 == o.Cycles {
			ru.checkFixed(ctx, fmt.Sprintf("after cycle %d", i))
			ru.progress(i + 1)
		}
	}
}

func (ru *run) progress(done int) {
	n := 0
	for _, a := range ru.attached {
		if a {
			n++
		}
	}
	last := ru.res.Calls[len(ru.res.Calls)-1]
	ru.logf("%s: %d/%d cycles, %d pool taps attached, last call %s %.0f ms, %d plugin errors, %v",
		ru.o.Backend, done, ru.o.Cycles, n, last.Command, last.Wall.Seconds()*1000, ru.res.PluginErrors,
		time.Since(ru.start).Round(time.Second))
}

// teardown DELs every pool tap the soak left attached.
func (ru *run) teardown(ctx context.Context) {
	ctx = context.WithoutCancel(ctx) // leave nothing half-done, also when interrupted
	for k, a := range ru.attached {
		if !a {
			continue
		}
		if _, err := ru.s.call(ctx, "DEL", ru.s.pool[k], ru.confs[k]); err != nil {
			ru.res.PluginErrors++
			ru.res.errorf("teardown: %v", err)
		}
		ru.attached[k] = false
		ru.res.Teardown++
	}
}

// compareRSS compares the start and the end of the cycles' calls; the
// warm-up is the first Taps cycles (at most a quarter of them), while the
// pool fills up to its steady half.
func (ru *run) compareRSS() {
	warm := min(ru.o.Taps, len(ru.res.Calls)/4)
	for _, c := range []string{"ADD", "DEL"} {
		ru.res.RSS = append(ru.res.RSS, CompareRSS(ru.res.Calls, c, warm, ru.o.RSSWindow, ru.o.RSSTolerance, ru.o.RSSSlackKB))
	}
}
