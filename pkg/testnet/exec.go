package testnet

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Usage is what one process cost, from wait4: wall time from start to
// exit, CPU time, and its peak resident set size. The rusage's peak
// counts the parent's memory too (Go starts children with vfork, and
// exec keeps the larger peak), so MaxRSSKB is the plugin's own report
// (`tapfw: peak rss N KiB` on stderr, under TAPFW_TRACE) when it gives
// one, else the rusage's.
type Usage struct {
	Wall, User, Sys time.Duration
	MaxRSSKB        int64
	// RSSReported: MaxRSSKB is the plugin's own report, not the rusage's.
	RSSReported bool
}

// PeakRSSLine starts the plugin's report of its own peak memory.
const PeakRSSLine = "tapfw: peak rss "

// reportedRSS is the peak the plugin reported on stderr, if it did.
func reportedRSS(stderr string) (int64, bool) {
	_, rest, ok := strings.Cut(stderr, PeakRSSLine)
	if !ok {
		return 0, false
	}
	v, _, _ := strings.Cut(rest, " ")
	kb, err := strconv.ParseInt(v, 10, 64)
	return kb, err == nil
}

// RunIn runs argv inside ns with stdin and extra environment, without `ip
// netns exec`: the process is forked from a thread that has entered the
// namespace, so it starts there, nothing else is on its clock and its
// rusage is its own. On failure the error holds stdout and stderr.
func RunIn(ctx context.Context, ns *NS, stdin []byte, env []string, argv ...string) ([]byte, Usage, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	var start time.Time
	if err := ns.Do(func() error {
		start = time.Now()
		return cmd.Start()
	}); err != nil {
		return nil, Usage{}, fmt.Errorf("start %s in %s: %w", argv[0], ns.Name, err)
	}
	err := cmd.Wait()
	u := Usage{Wall: time.Since(start)}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru != nil {
		u.User = time.Duration(ru.Utime.Nano())
		u.Sys = time.Duration(ru.Stime.Nano())
		u.MaxRSSKB = ru.Maxrss
	}
	if kb, ok := reportedRSS(stderr.String()); ok {
		u.MaxRSSKB, u.RSSReported = kb, true
	}
	if err != nil {
		return stdout.Bytes(), u, fmt.Errorf("%s: %w: stdout %s stderr %s", strings.Join(argv, " "), err,
			clip(stdout.String()), clip(stderr.String()))
	}
	return stdout.Bytes(), u, nil
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return s
}
