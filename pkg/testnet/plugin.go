package testnet

import (
	"bytes"
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
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+c.Command,
		"CNI_CONTAINERID="+c.ContainerID,
		"CNI_IFNAME="+c.IfName,
		"CNI_NETNS="+host.Path,
		"CNI_NETNS_OVERRIDE=1",
		"CNI_PATH="+filepath.Dir(bin),
		"CNI_ARGS="+c.Args,
	)
	cmd.Env = append(cmd.Env, c.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = bytes.NewReader(c.Config)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("tapfw %s %s: %w: stdout %s stderr %s", c.Command, c.IfName, err,
			strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
