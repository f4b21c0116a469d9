package main

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/config"
)

// The operator's help and usage texts, all made from the table of
// commands: run in this process, they touch no kernel (a usage error
// stops before a command runs).

// runCLI runs `tapfw args...` and returns its status, stdout and stderr.
func runCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := runCommand(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// words joins the text's words with single spaces, so wrapped text
// compares with the table's.
func words(s string) string { return strings.Join(strings.Fields(s), " ") }

// commandFlags are the flags a command defines.
func commandFlags(c *command) []*flag.Flag {
	fs, _ := c.flagSet()
	var out []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { out = append(out, f) })
	return out
}

// TestHelpListsEveryCommand: tapfw help (and -h, --help) lists every
// command of the table with its summary and every flag of it.
func TestHelpListsEveryCommand(t *testing.T) {
	code, help, stderr := runCLI("help")
	if code != 0 || stderr != "" {
		t.Fatalf("help: status %d, stderr %q", code, stderr)
	}
	for _, alias := range []string{"-h", "--help"} {
		if code, out, _ := runCLI(alias); code != 0 || out != help {
			t.Errorf("tapfw %s: status %d, not the help:\n%s", alias, code, out)
		}
	}
	if len(commands) < 9 {
		t.Fatalf("only %d commands in the table", len(commands))
	}
	for i := range commands {
		c := &commands[i]
		if !strings.Contains(help, "\n  "+c.name+" ") && !strings.Contains(help, "\n  "+c.name+"\n") {
			t.Errorf("help lacks %s:\n%s", c.name, help)
		}
		if !strings.Contains(words(help), words(c.summary)) {
			t.Errorf("help lacks the summary of %s, %q", c.name, c.summary)
		}
		if !strings.Contains(words(help), words(strings.Join(c.synopsis(), " "))) {
			t.Errorf("help lacks the synopsis of %s, %q", c.name, c.synopsis())
		}
		for _, f := range commandFlags(c) {
			if !strings.Contains(help, "--"+f.Name) {
				t.Errorf("help lacks %s --%s", c.name, f.Name)
			}
		}
	}
	// With no command at all, the help goes to stderr with status 2.
	if code, out, stderr := runCLI(); code != 2 || out != "" || stderr != help {
		t.Errorf("tapfw without a command: status %d, stdout %q, stderr:\n%s", code, out, stderr)
	}
	if code, _, stderr := runCLI("frobnicate"); code != 2 || stderr != "tapfw: unknown command \"frobnicate\"\n\n"+help {
		t.Errorf("unknown command: status %d, stderr:\n%s", code, stderr)
	}
}

// TestUsageListsEveryFlag: a command's usage (tapfw help COMMAND, tapfw
// COMMAND -h) names every flag it defines with the flag's own text, and
// every value a flag takes has a name.
func TestUsageListsEveryFlag(t *testing.T) {
	for i := range commands {
		c := &commands[i]
		code, usage, stderr := runCLI("help", c.name)
		if code != 0 || stderr != "" || usage != c.usage() {
			t.Errorf("help %s: status %d, stderr %q, stdout:\n%s", c.name, code, stderr, usage)
		}
		if !strings.HasPrefix(usage, "usage: tapfw "+c.name) || !strings.Contains(words(usage), words(c.summary)) {
			t.Errorf("usage of %s lacks its synopsis or summary:\n%s", c.name, usage)
		}
		for _, h := range []string{"-h", "--help", "-help"} {
			if code, out, stderr := runCLI(c.name, h); code != 0 || out != usage || stderr != "" {
				t.Errorf("%s %s: status %d, stderr %q, stdout:\n%s", c.name, h, code, stderr, out)
			}
		}
		for _, f := range commandFlags(c) {
			value, text := flag.UnquoteUsage(f)
			if !strings.Contains(usage, strings.TrimSpace("\n  --"+f.Name+" "+value)+"\n") || !strings.Contains(words(usage), words(text)) {
				t.Errorf("usage of %s lacks --%s %s, %q:\n%s", c.name, f.Name, value, text, usage)
			}
			if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); !isBool && !strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: its usage names no value in backquotes (the usage shows %q)", c.name, f.Name, value)
			}
		}
	}
}

// TestUsageOnBadFlag: every command given a flag it lacks, or a wrong
// number of arguments, prints its usage to stderr and exits 2, running
// nothing.
func TestUsageOnBadFlag(t *testing.T) {
	for i := range commands {
		c := &commands[i]
		code, out, stderr := runCLI(c.name, "--no-such-flag")
		if want := "flag provided but not defined: -no-such-flag\n" + c.usage(); code != 2 || out != "" || stderr != want {
			t.Errorf("%s --no-such-flag: status %d, stdout %q, stderr:\n%s\nwant:\n%s", c.name, code, out, stderr, want)
		}
		n := len(strings.Fields(c.args))
		tooMany := append([]string{c.name}, strings.Fields(strings.Repeat("tap110i0 ", n+1))...)
		if code, out, stderr := runCLI(tooMany...); code != 2 || out != "" || stderr != c.usage() {
			t.Errorf("%s with %d arguments: status %d, stdout %q, stderr:\n%s", c.name, n+1, code, out, stderr)
		}
		if strings.Contains(c.args, "TAP") && !strings.Contains(c.args, "[") {
			if code, out, stderr := runCLI(c.name); code != 2 || out != "" || stderr != c.usage() {
				t.Errorf("%s without arguments: status %d, stdout %q, stderr:\n%s", c.name, code, out, stderr)
			}
		}
	}
	if code, _, stderr := runCLI("help", "frobnicate"); code != 2 || !strings.HasPrefix(stderr, "tapfw: unknown command \"frobnicate\"\n") {
		t.Errorf("help frobnicate: status %d, stderr:\n%s", code, stderr)
	}
}

// TestExplainHopLimitDocumented: explain's --hop-limit, once in neither
// the help nor the README, is in the help, explain's usage and the README.
func TestExplainHopLimitDocumented(t *testing.T) {
	_, help, _ := runCLI("help")
	_, usage, _ := runCLI("explain", "-h")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(help, "[--hop-limit N]") || !strings.Contains(usage, "  --hop-limit N\n") || !strings.Contains(usage, "IPv6 hop limit") || !strings.Contains(string(readme), "--hop-limit") {
		t.Errorf("--hop-limit is missing:\nhelp:\n%s\nusage:\n%s", help, usage)
	}
}

// TestREADMEListsCommands: the README holds tapfw help as it is, so it
// lists every command and flag of the table.
func TestREADMEListsCommands(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if _, help, _ := runCLI("help"); !strings.Contains(string(readme), "```\n$ tapfw help\n"+help+"```\n") {
		t.Errorf("README.md does not hold the output of tapfw help; put this in its commands block:\n$ tapfw help\n%s", help)
	}
}

// TestQemuConfigFlags: qemu-config prints the merged config, and with
// --bridge only the bridge, as the QEMU scripts call it; a bad NIC file
// is refused with status 1.
func TestQemuConfigFlags(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TAPFW_CONFIG", dir+"/tapfw.conf")
	t.Setenv("TAPFW_NIC_DIR", dir)
	if err := os.WriteFile(dir+"/tapfw.conf", []byte(qemuBase), 0o644); err != nil {
		t.Fatal(err)
	}
	nic := func(content string) {
		t.Helper()
		if err := os.WriteFile(dir+"/tap110i0.json", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nic(`{"bridge":"vmbr0","mac":"1e:0b:85:27:8d:65","ips":["192.0.2.200"]}`)
	if code, out, stderr := runCLI("qemu-config", "--bridge", "tap110i0"); code != 0 || out != "vmbr0\n" || stderr != "" {
		t.Errorf("qemu-config --bridge: status %d, stdout %q, stderr %q", code, out, stderr)
	}
	if code, out, stderr := runCLI("qemu-config", "tap110i0"); code != 0 || !strings.Contains(out, `"bridge"`) || !strings.Contains(out, `"admins"`) || stderr != "" {
		t.Errorf("qemu-config: status %d, stdout %q, stderr %q", code, out, stderr)
	}
	nic(`{"mac":"1e:0b:85:27:8d:65"}`)
	if code, _, stderr := runCLI("qemu-config", "--bridge", "tap110i0"); code != 1 || !strings.Contains(stderr, "tapfw: config of tap110i0: bridge: required in "+dir+"/tap110i0.json") {
		t.Errorf("qemu-config of a NIC without a bridge: status %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runCLI("qemu-config", "tap110i0", "--bridge"); code != 2 || stderr != lookup("qemu-config").usage() {
		t.Errorf("qemu-config TAP --bridge: status %d, stderr %q", code, stderr)
	}
}

// TestHelpMacros: tapfw help macros lists every macro with its parts, in
// lines of the help's width.
func TestHelpMacros(t *testing.T) {
	code, out, _ := runCLI("help", "macros")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, m := range config.Macros() {
		if !strings.Contains(out, "\n"+m.Name+" ") {
			t.Errorf("%s is not listed", m.Name)
		}
	}
	for _, want := range []string{"SSH                 Secure shell traffic\n                    tcp dport 22\n",
		"                    udp dport 53; tcp dport 53\n", "icmp type echo-request; icmpv6 type echo-request"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > width {
			t.Errorf("longer than %d: %q", width, line)
		}
	}
}
