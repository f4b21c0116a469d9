package testnet

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Call is one run of the plugin binary as a CNI runtime or a QEMU ifup
// script would run it, inside a namespace.
type Call struct {
	Bin         string // path to bin/tapfw
	Command     string // ADD, DEL, CHECK, GC, STATUS, VERSION
	ContainerID string
	IfName      string
	Args        string   // CNI_ARGS
	Env         []string // extra KEY=VALUE
	Config      []byte   // stdin
}

// CallPlugin runs c inside host (the hypervisor's namespace). The tap
// lives in that namespace too, so CNI_NETNS is the host's own and
// CNI_NETNS_OVERRIDE=1 is set, as the QEMU scripts do. It returns stdout;
// on failure the error holds the exit status, stdout and stderr.
func CallPlugin(host *NS, c Call) ([]byte, error) {
	bin, err := filepath.Abs(c.Bin)
	if err != nil {
		return nil, fmt.Errorf("finding the plugin: %w", err)
	}
	cmd := exec.Command("ip", "netns", "exec", host.Name, bin)
	cmd.Env = append(os.Environ(), c.environ(host, bin)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = bytes.NewReader(c.Config)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("tapfw %s %s: %w: stdout %s stderr %s", c.Command, c.IfName, err,
			strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// environ is the CNI environment of c for a tap in host, then c.Env.
func (c Call) environ(host *NS, bin string) []string {
	return append([]string{
		"CNI_COMMAND=" + c.Command,
		"CNI_CONTAINERID=" + c.ContainerID,
		"CNI_IFNAME=" + c.IfName,
		"CNI_NETNS=" + host.Path,
		"CNI_NETNS_OVERRIDE=1",
		"CNI_PATH=" + filepath.Dir(bin),
		"CNI_ARGS=" + c.Args,
	}, c.Env...)
}

// RunPlugin is CallPlugin without `ip netns exec`: the plugin is forked
// from a thread inside host (RunIn), so the Usage is the plugin's own.
func RunPlugin(ctx context.Context, host *NS, c Call) ([]byte, Usage, error) {
	bin, err := filepath.Abs(c.Bin)
	if err != nil {
		return nil, Usage{}, fmt.Errorf("finding the plugin: %w", err)
	}
	out, u, err := RunIn(ctx, host, c.Config, c.environ(host, bin), bin)
	if err != nil {
		return out, u, fmt.Errorf("tapfw %s %s: %w", c.Command, c.IfName, err)
	}
	return out, u, nil
}
