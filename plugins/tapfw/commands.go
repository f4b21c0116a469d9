package main

import (
	"fmt"
	"io"
	"os"

	"github.com/tapfw/tapfw/pkg/model"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Operator subcommands: the same binary, run with arguments and without
// CNI_COMMAND.

const usage = `usage: tapfw <command> [args]

Without CNI_COMMAND in the environment, tapfw is the operator tool:

  help                       this text
  qemu-config TAP            print the plugin config for TAP that the QEMU
                             scripts send: $TAPFW_CONFIG (default
                             /etc/tapfw/tapfw.conf) merged with
                             $TAPFW_NIC_DIR/TAP.json (default /etc/tapfw/nics),
                             the NIC file's fields winning
  qemu-config --bridge TAP   print only the bridge TAP belongs on

Seeing what is installed (in this network namespace):
  list [--json]              every tap: bridge, MAC, IPs, rule counts, and
                             packets/bytes accepted and dropped each way
  show [--json] TAP          TAP's rules in the config's words, with counters
  explain --tap TAP --dir in|out [--proto P] [--src A] [--dst A]
          [--dport N] [--sport N] [--icmp-type T[/C]] [--state S]
          [--peer PORT] [--json]
                             which rule in which chain decides that packet
  metrics [--textfile PATH]  per-tap and per-rule counters, Prometheus text
  render [--ifname TAP] [--container-id ID] [--args K=V;..] [FILE]
                             what an ADD of the config (stdin or FILE) would
                             change: ipset changes and restore input; changes
                             nothing (the flags default to CNI_IFNAME,
                             CNI_CONTAINERID and CNI_ARGS)

Cleaning up:
  gc [--dry-run]             remove the firewall of taps whose interface is gone
  flush [--dry-run]          remove everything tapfw made, and nothing else

As a CNI plugin (CNI_COMMAND set) it reads its config on stdin; see README.md.
`

// runCommand runs an operator subcommand and returns the exit status.
func runCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "qemu-config":
		return qemuConfig(args[1:], stdout, stderr)
	}
	o := &operator{stdin: os.Stdin, stdout: stdout, stderr: stderr}
	cmds := map[string]func([]string) int{
		"list": o.list, "show": o.show, "explain": o.explain, "metrics": o.metrics,
		"render": o.render, "gc": o.gc, "flush": o.flush,
	}
	if cmd, ok := cmds[args[0]]; ok {
		o.p = newPlugin()
		return cmd(args[1:])
	}
	fmt.Fprintf(stderr, "tapfw: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func qemuConfig(args []string, stdout, stderr io.Writer) int {
	bridgeOnly := false
	if len(args) > 0 && args[0] == "--bridge" {
		bridgeOnly, args = true, args[1:]
	}
	if len(args) != 1 {
		fmt.Fprint(stderr, "usage: tapfw qemu-config [--bridge] TAP\n")
		return 2
	}
	tap := args[0]
	if err := model.ValidateIfName(tap); err != nil {
		fmt.Fprintf(stderr, "tapfw: tap: %v\n", err)
		return 1
	}
	data, conf, err := config.MergeNIC(config.NICPaths(tap))
	if err != nil {
		fmt.Fprintf(stderr, "tapfw: config of %s: %v\n", tap, err)
		return 1
	}
	// The tap QEMU names is the one firewalled: a "tap" field naming
	// another would leave this one on its bridge with no firewall.
	if conf.Tap != "" && conf.Tap != tap {
		base, nic := config.NICPaths(tap)
		fmt.Fprintf(stderr, "tapfw: config of %s: tap: %q in %s or %s is not %s; leave the field out\n", tap, conf.Tap, base, nic, tap)
		return 1
	}
	if conf.Bridge == "" {
		_, nic := config.NICPaths(tap)
		fmt.Fprintf(stderr, "tapfw: config of %s: bridge: required in %s\n", tap, nic)
		return 1
	}
	// Validate every value now, so the script refuses the NIC before it
	// touches the tap.
	env := config.Env{ContainerID: "qemu-" + tap, IfName: tap}
	if _, err := config.Resolve(conf, ruleset.Limits, env, nil, nil); err != nil {
		fmt.Fprintf(stderr, "tapfw: config of %s: %v\n", tap, err)
		return 1
	}
	if bridgeOnly {
		fmt.Fprintln(stdout, conf.Bridge)
	} else {
		_, _ = stdout.Write(data)
	}
	return 0
}
