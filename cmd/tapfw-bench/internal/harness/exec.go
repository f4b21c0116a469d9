package harness

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// RunIn runs argv inside ns with stdin and extra environment, without `ip
// netns exec`: the process is forked from a thread that has entered the
// namespace, so it starts there and nothing else is on its clock.
func RunIn(ctx context.Context, ns *testnet.NS, stdin []byte, env []string, argv ...string) ([]byte, report.Sample, error) {
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
		return nil, report.Sample{}, fmt.Errorf("start %s in %s: %w", argv[0], ns.Name, err)
	}
	err := cmd.Wait()
	wall := time.Since(start)
	var s report.Sample
	s.WallMs = float64(wall.Nanoseconds()) / 1e6
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru != nil {
		s.UserMs = float64(ru.Utime.Nano()) / 1e6
		s.SysMs = float64(ru.Stime.Nano()) / 1e6
		s.MaxRSSKB = ru.Maxrss
	}
	if err != nil {
		return stdout.Bytes(), s, fmt.Errorf("%s: %w: stdout %s stderr %s", strings.Join(argv, " "), err,
			clip(stdout.String()), clip(stderr.String()))
	}
	return stdout.Bytes(), s, nil
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return s
}

// NSRun runs a command inside ns (for setup and reading state, not timed).
func NSRun(ctx context.Context, ns *testnet.NS, stdin []byte, argv ...string) ([]byte, error) {
	out, _, err := RunIn(ctx, ns, stdin, nil, argv...)
	return out, err
}

// IptablesCmd is the iptables binary of a backend mode.
func IptablesCmd(mode string) string {
	switch mode {
	case "nft":
		return "iptables-nft"
	case "legacy":
		return "iptables-legacy"
	}
	return "iptables"
}

// Iptables is the run's iptables binary.
func (h *Harness) Iptables() string { return IptablesCmd(h.O.Iptables) }

// ReadTable reads the filter table in ns with iptables-save, with the
// rules' counters when counters is set.
func (h *Harness) ReadTable(ctx context.Context, ns *testnet.NS, counters bool) (*netfilter.Table, error) {
	args := []string{h.Iptables() + "-save", "-t", "filter"}
	if counters {
		args = append(args, "-c")
	}
	out, err := NSRun(ctx, ns, nil, args...)
	if err != nil {
		return nil, err
	}
	return netfilter.ParseSave(out)
}

// CountRules counts the rules of the filter table in ns.
func (h *Harness) CountRules(ctx context.Context, ns *testnet.NS) (int, error) {
	t, err := h.ReadTable(ctx, ns, false)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, specs := range t.Chains {
		n += len(specs)
	}
	return n, nil
}

// ReadSets reads tapfw's ipsets in ns over netlink, as the plugin does, on
// a thread inside ns.
func ReadSets(ns *testnet.NS) (map[string][]netip.Prefix, error) {
	var sets map[string][]netip.Prefix
	err := ns.Do(func() error {
		var err error
		sets, err = netfilter.NetlinkSets{}.List()
		return err
	})
	return sets, err
}
