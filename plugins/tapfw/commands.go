package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/model"
)

// Operator subcommands: the same binary, run with arguments and without
// CNI_COMMAND. One table, commands, names each one with its arguments,
// summary and flags; tapfw help, each command's usage (tapfw help COMMAND,
// tapfw COMMAND -h, a bad flag or argument) and the list in README.md are
// made from it, so none can leave a command or a flag out.

// command is one operator subcommand.
type command struct {
	name string
	// args are the positional arguments as the usage shows them: one word
	// each, in brackets if optional. They are also the count the command
	// takes.
	args    string
	summary string
	// section is the heading tapfw help lists the command under.
	section string
	// flags defines the command's flags on fs and returns what runs it,
	// once they are parsed, with the positional arguments. A flag's usage
	// names its value in backquotes (flag.UnquoteUsage) and ends in
	// "(required)" if the command needs it.
	flags func(fs *flag.FlagSet) runFunc
	// kernel: the command reads or changes the firewall, through the
	// plugin's backend.
	kernel bool
}

type runFunc func(o *operator, args []string) int

const (
	seeing    = "Seeing what is installed (in this network namespace):"
	changing  = "Changing a running host:"
	cleaning  = "Cleaning up:"
	importing = "Coming from Proxmox VE:"
	browsing  = "In a browser:"
)

// commands is set in init: help, one of them, reads it.
var commands []command

func init() {
	commands = []command{
		{name: "help", args: "[COMMAND]", flags: helpFlags,
			summary: "this text, or COMMAND's usage and flags; tapfw help macros lists the rule macros"},
		{name: "man", flags: manFlags,
			summary: "print the manual page tapfw(8), made from this table, in roff"},
		{name: "qemu-config", args: "TAP", flags: qemuConfigFlags,
			summary: "print the plugin config for TAP that the QEMU scripts send: $TAPFW_CONFIG (default /etc/tapfw/tapfw.conf) merged with $TAPFW_NIC_DIR/TAP.json (default /etc/tapfw/nics), the NIC file's fields winning"},
		{name: "list", section: seeing, kernel: true, flags: listFlags,
			summary: "every tap: bridge, MAC, IPs, rule counts, and packets/bytes accepted and dropped each way"},
		{name: "show", args: "TAP", section: seeing, kernel: true, flags: showFlags,
			summary: "TAP's rules in the config's words, with counters"},
		{name: "explain", section: seeing, kernel: true, flags: explainFlags,
			summary: "which rule in which chain decides that packet"},
		{name: "metrics", section: seeing, kernel: true, flags: metricsFlags,
			summary: "per-tap and per-rule counters, Prometheus text"},
		{name: "render", args: "[FILE]", section: seeing, kernel: true, flags: renderFlags,
			summary: "what an ADD of the config (stdin or FILE) would change: ipset changes and restore input, or nft commands; changes nothing (the flags default to CNI_IFNAME, CNI_CONTAINERID and CNI_ARGS)"},
		{name: "import-pve", section: importing, flags: importPVEFlags,
			summary: "write tapfw.conf and a NIC file per guest NIC from a Proxmox VE tree (its firewall files, corosync.conf, guest configs); installs nothing; exit 3 when items are left out, each on stderr as FILE:LINE: reason"},
		{name: "apply", section: changing, kernel: true, flags: applyFlags,
			summary: "bring the running host to the files: the base config's host, ipsets, securityGroups and log options, and with --nics each running QEMU tap's NIC file; prints what changed, and cuts the connections the new rules refuse"},
		{name: "ui", section: browsing, kernel: true, flags: uiFlags,
			summary: "serve the web console: every tap with live counters, a tap's rules, explain, the NFLOG log and a counter chart; and edits of the base config's host firewall, named sets and security groups, each previewed as apply --dry-run, then applied as apply does; every request needs the token"},
		{name: "gc", section: cleaning, kernel: true, flags: gcFlags,
			summary: "remove the firewall of taps whose interface is gone"},
		{name: "flush", section: cleaning, kernel: true, flags: flushFlags,
			summary: "remove everything tapfw made, and nothing else"},
	}
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// runCommand runs an operator subcommand and returns the exit status.
func runCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, helpText())
		return 2
	}
	name := args[0]
	if name == "-h" || name == "--help" {
		name = "help"
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(stderr, "tapfw: unknown command %q\n\n%s", args[0], helpText())
		return 2
	}
	return c.run(&operator{stdin: os.Stdin, stdout: stdout, stderr: stderr}, args[1:])
}

// run parses the command's flags and arguments and runs it: -h prints its
// usage, a bad flag or argument count prints it to stderr with status 2.
func (c *command) run(o *operator, args []string) int {
	fs, run := c.flagSet()
	fs.SetOutput(o.stderr) // the flag package's own "flag provided but not defined"
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(o.stdout, c.usage())
		return 0
	case err != nil || !c.takes(fs.NArg()):
		fmt.Fprint(o.stderr, c.usage())
		return 2
	}
	if c.kernel {
		o.p = newPlugin()
	}
	return run(o, fs.Args())
}

func (c *command) flagSet() (*flag.FlagSet, runFunc) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // run prints the usage
	return fs, c.flags(fs)
}

// takes says whether the command takes n positional arguments.
func (c *command) takes(n int) bool {
	words := strings.Fields(c.args)
	required := 0
	for _, w := range words {
		if !strings.HasPrefix(w, "[") {
			required++
		}
	}
	return n >= required && n <= len(words)
}

// flagInfo is a flag as the usage shows it.
type flagInfo struct {
	name, value, usage string // value: "" for a boolean flag
	required           bool
	def                string // "" for the zero value
}

// flagInfos are the command's flags, the required ones first, each group
// in the order of their names.
func (c *command) flagInfos() []flagInfo {
	fs, _ := c.flagSet()
	var out []flagInfo
	fs.VisitAll(func(f *flag.Flag) {
		value, usage := flag.UnquoteUsage(f)
		fi := flagInfo{name: f.Name, value: value, usage: usage, required: strings.HasSuffix(usage, "(required)")}
		switch v := f.Value.(flag.Getter).Get().(type) {
		case string:
			if v != "" {
				fi.def = fmt.Sprintf("%q", v)
			}
		case bool:
			if v {
				fi.def = "true"
			}
		default:
			if f.DefValue != "0" {
				fi.def = f.DefValue
			}
		}
		out = append(out, fi)
	})
	slices.SortStableFunc(out, func(a, b flagInfo) int {
		switch {
		case a.required == b.required:
			return 0
		case a.required:
			return -1
		}
		return 1
	})
	return out
}

// synopsis is the command's words: its name, flags and arguments.
func (c *command) synopsis() []string {
	words := []string{c.name}
	for _, f := range c.flagInfos() {
		w := "--" + f.name
		if f.value != "" {
			w += " " + f.value
		}
		if !f.required {
			w = "[" + w + "]"
		}
		words = append(words, w)
	}
	return append(words, strings.Fields(c.args)...)
}

// usage is what tapfw help COMMAND and tapfw COMMAND -h print.
func (c *command) usage() string {
	var b strings.Builder
	words := c.synopsis()
	prefix := "usage: tapfw "
	indent := strings.Repeat(" ", len(prefix)+len(c.name)+1)
	for _, l := range fill(words, width-len(prefix), width-len(indent)) {
		b.WriteString(prefix + l + "\n")
		prefix = indent
	}
	b.WriteString("\n")
	for _, l := range fill(strings.Fields(c.summary), width, width) {
		b.WriteString(l + "\n")
	}
	if flags := c.flagInfos(); len(flags) > 0 {
		b.WriteString("\nflags:\n")
		for _, f := range flags {
			b.WriteString(strings.TrimRight("  --"+f.name+" "+f.value, " ") + "\n")
			text := f.usage
			if f.def != "" {
				text += " (default " + f.def + ")"
			}
			for _, l := range fill(strings.Fields(text), width-8, width-8) {
				b.WriteString("        " + l + "\n")
			}
		}
	}
	return b.String()
}

// helpText is tapfw help: every command's synopsis and summary.
func helpText() string {
	var b strings.Builder
	b.WriteString("usage: tapfw <command> [args]\n\n" +
		"Without CNI_COMMAND in the environment, tapfw is the operator tool;\n" +
		"tapfw help COMMAND (or tapfw COMMAND -h) describes COMMAND and its flags:\n\n")
	section := ""
	for i := range commands {
		c := &commands[i]
		if c.section != section {
			section = c.section
			b.WriteString("\n" + section + "\n")
		}
		c.writeEntry(&b)
	}
	b.WriteString("\nAs a CNI plugin (CNI_COMMAND set) it reads its config on stdin; see README.md.\n")
	return b.String()
}

// width is the width of the help and usage text; summaryColumn is where
// tapfw help starts each summary.
const (
	width         = 80
	summaryColumn = 29
)

// writeEntry writes the command's lines in tapfw help: the synopsis, and
// the summary beside it or, if there is no room, below it.
func (c *command) writeEntry(b *strings.Builder) {
	indent := strings.Repeat(" ", 2+len(c.name)+1)
	syn := fill(c.synopsis(), width-2, width-len(indent))
	summary := fill(strings.Fields(c.summary), width-summaryColumn, width-summaryColumn)
	pad := strings.Repeat(" ", summaryColumn)
	if len(syn) == 1 && 2+len(syn[0])+2 <= summaryColumn {
		b.WriteString("  " + syn[0] + pad[2+len(syn[0]):] + summary[0] + "\n")
		summary = summary[1:]
	} else {
		for i, l := range syn {
			if i == 0 {
				b.WriteString("  " + l + "\n")
			} else {
				b.WriteString(indent + l + "\n")
			}
		}
	}
	for _, l := range summary {
		b.WriteString(pad + l + "\n")
	}
}

// fill joins words into lines: the first at most first columns wide, the
// others at most rest; a longer word has a line of its own.
func fill(words []string, first, rest int) []string {
	var lines []string
	line, max := "", first
	for _, w := range words {
		switch {
		case line == "":
			line = w
		case len(line)+1+len(w) <= max:
			line += " " + w
		default:
			lines = append(lines, line)
			line, max = w, rest
		}
	}
	return append(lines, line)
}

// help prints tapfw help, or the usage of the command named.
func (o *operator) help(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(o.stdout, helpText())
		return 0
	}
	if args[0] == "macros" {
		fmt.Fprint(o.stdout, macrosText())
		return 0
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(o.stderr, "tapfw: unknown command %q\n\n%s", args[0], helpText())
		return 2
	}
	fmt.Fprint(o.stdout, c.usage())
	return 0
}

func helpFlags(*flag.FlagSet) runFunc { return (*operator).help }

// macrosText lists the macros a rule may name ("macro": "SSH"): each
// with what it is for, and the rules it stands for below.
func macrosText() string {
	var b strings.Builder
	b.WriteString("A rule with \"macro\": NAME (in any case) stands for one rule per part of\n" +
		"NAME, each with the rule's action, source, dest, log and comment.\n\n")
	const col = 20
	pad := strings.Repeat(" ", col)
	for _, m := range config.Macros() {
		for i, line := range fill(strings.Fields(m.Description), width-col, width-col) {
			name := ""
			if i == 0 {
				name = m.Name
			}
			fmt.Fprintf(&b, "%-*s%s\n", col, name, line)
		}
		parts := make([]string, len(m.Parts))
		for i, p := range m.Parts {
			parts[i] = p.String()
			if i < len(m.Parts)-1 {
				parts[i] += ";"
			}
		}
		for _, line := range fill(parts, width-col, width-col) {
			b.WriteString(pad + line + "\n")
		}
	}
	return b.String()
}

func qemuConfigFlags(fs *flag.FlagSet) runFunc {
	bridgeOnly := fs.Bool("bridge", false, "print only the bridge TAP belongs on")
	return func(o *operator, args []string) int { return o.qemuConfig(args[0], *bridgeOnly) }
}

// qemuConfig prints the config the QEMU scripts send for tap, or only its
// bridge.
func (o *operator) qemuConfig(tap string, bridgeOnly bool) int {
	if err := model.ValidateIfName(tap); err != nil {
		return o.fail("tap: %v", err)
	}
	base, nic := config.NICPaths(tap)
	data, r, err := nicConfig(tap, base, nic, addLimits())
	if err != nil {
		return o.fail("config of %s: %v", tap, err)
	}
	conf := r.Conf
	if bridgeOnly {
		fmt.Fprintln(o.stdout, conf.Bridge)
	} else {
		_, _ = o.stdout.Write(data)
	}
	return 0
}
