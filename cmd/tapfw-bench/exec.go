package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// Sample is one measured process: wall time from fork to reaped, and the
// rusage wait4 reports for it. That rusage covers the process and every
// child it waited for (iptables-save, iptables-restore, ipset, iptables):
// CPU times are summed, MaxRSS is the largest of them.
type Sample struct {
	WallMs   float64 `json:"wallMs"`
	UserMs   float64 `json:"userMs"`
	SysMs    float64 `json:"sysMs"`
	MaxRSSKB int64   `json:"maxRssKB"`
}

// CPUMs is user plus system time.
func (s Sample) CPUMs() float64 { return s.UserMs + s.SysMs }

// runIn runs argv inside ns with stdin and extra environment, without `ip
// netns exec`: the process is forked from a thread that has entered the
// namespace, so it starts there and nothing else is on its clock.
func runIn(ctx context.Context, ns *testnet.NS, stdin []byte, env []string, argv ...string) ([]byte, Sample, error) {
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
		return nil, Sample{}, fmt.Errorf("start %s in %s: %w", argv[0], ns.Name, err)
	}
	err := cmd.Wait()
	wall := time.Since(start)
	var s Sample
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

// pluginEnv is the environment of a plugin call for tap in ns, as the QEMU
// ifup script sets it.
func pluginEnv(o *options, ns *testnet.NS, lock, command string, t tapSpec) []string {
	env := []string{
		"CNI_COMMAND=" + command,
		"CNI_CONTAINERID=" + t.ContainerID,
		"CNI_IFNAME=" + t.Name,
		"CNI_NETNS=" + ns.Path,
		"CNI_NETNS_OVERRIDE=1",
		"CNI_PATH=" + filepath.Dir(o.plugin),
		"CNI_ARGS=",
		"TAPFW_LOCK=" + lock,
		"TAPFW_LOCK_TIMEOUT=120s",
	}
	if o.iptables != "auto" {
		env = append(env, "TAPFW_IPTABLES="+o.iptables)
	}
	return env
}

// callPlugin runs the plugin once for t and measures the process.
func callPlugin(ctx context.Context, o *options, ns *testnet.NS, lock, command string, t tapSpec) (Sample, error) {
	_, s, err := runIn(ctx, ns, t.pluginConfig(), pluginEnv(o, ns, lock, command, t), o.plugin)
	if err != nil {
		return s, fmt.Errorf("tapfw %s %s: %w", command, t.Name, err)
	}
	return s, nil
}

// iptablesCmd is the iptables binary of a backend mode.
func iptablesCmd(mode string) string {
	switch mode {
	case "nft":
		return "iptables-nft"
	case "legacy":
		return "iptables-legacy"
	}
	return "iptables"
}

// nsRun runs a command inside ns (for setup and reading state, not timed).
func nsRun(ctx context.Context, ns *testnet.NS, stdin []byte, argv ...string) ([]byte, error) {
	out, _, err := runIn(ctx, ns, stdin, nil, argv...)
	return out, err
}
