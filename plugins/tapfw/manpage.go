package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// The manual page tapfw(8) is made from the same command table as tapfw
// help, so it names every command and flag the binary has. make deb
// installs it.

func manFlags(fs *flag.FlagSet) runFunc {
	date := fs.String("date", "", "the page's date, `YYYY-MM-DD` (default: $SOURCE_DATE_EPOCH's day, else today)")
	return func(o *operator, _ []string) int {
		d, err := manDate(*date)
		if err != nil {
			return o.fail("date: %v", err)
		}
		fmt.Fprint(o.stdout, manPage(d))
		return 0
	}
}

// manDate is the page's date: given, else the day of SOURCE_DATE_EPOCH
// (reproducible builds), else today.
func manDate(given string) (string, error) {
	if given != "" {
		if _, err := time.Parse(time.DateOnly, given); err != nil {
			return "", fmt.Errorf("%q is not YYYY-MM-DD", given)
		}
		return given, nil
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var sec int64
		if _, err := fmt.Sscan(s, &sec); err != nil {
			return "", fmt.Errorf("SOURCE_DATE_EPOCH %q is not a number of seconds", s)
		}
		return time.Unix(sec, 0).UTC().Format(time.DateOnly), nil
	}
	return time.Now().UTC().Format(time.DateOnly), nil
}

// manPage is tapfw(8) in roff (man(7) macros).
func manPage(date string) string {
	var b strings.Builder
	b.WriteString(`.TH TAPFW 8 "` + date + `" tapfw "System Administration"` + "\n")
	b.WriteString(".SH NAME\ntapfw \\- per-tap firewall for VMs and containers on Linux bridges (CNI plugin)\n")
	b.WriteString(".SH SYNOPSIS\n.B tapfw\n.I command\n.RI [ flags ]\n.RI [ args ]\n.PP\n" +
		".B CNI_COMMAND=ADD\n.RI [ CNI_* ...]\n.B tapfw\n<\n.I config\n")
	b.WriteString(".SH DESCRIPTION\n" + roff(description) + "\n")
	section := ""
	b.WriteString(".SH COMMANDS\n")
	for i := range commands {
		c := &commands[i]
		if c.section != section {
			section = c.section
			b.WriteString(".SS " + roff(strings.TrimSuffix(section, ":")) + "\n")
		}
		writeManEntry(&b, c)
	}
	for _, s := range manSections {
		b.WriteString(".SH " + s.title + "\n")
		for i, p := range s.paragraphs {
			if i > 0 {
				b.WriteString(".PP\n")
			}
			b.WriteString(roff(p) + "\n")
		}
	}
	return b.String()
}

// writeManEntry writes a command: its synopsis, summary and flags.
func writeManEntry(b *strings.Builder, c *command) {
	b.WriteString(".TP\n\\fBtapfw " + roff(c.name) + "\\fR")
	if words := c.synopsis()[1:]; len(words) > 0 {
		b.WriteString(" " + roff(strings.Join(words, " ")))
	}
	b.WriteString("\n" + roff(c.summary) + "\n")
	flags := c.flagInfos()
	if len(flags) == 0 {
		return
	}
	b.WriteString(".RS\n")
	for _, f := range flags {
		b.WriteString(".TP\n.B \\-\\-" + roff(f.name) + "\n")
		if f.value != "" {
			b.WriteString(".I " + roff(f.value) + "\n")
		}
		text := f.usage
		if f.def != "" {
			text += " (default " + f.def + ")"
		}
		b.WriteString(roff(text) + "\n")
	}
	b.WriteString(".RE\n")
}

// roff escapes text for a roff line: backslashes, hyphens (a minus
// sign, so options copy and paste), and a leading dot or quote that
// would start a request.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

const description = "tapfw filters each VM's or container's traffic at its tap or veth on a Linux bridge. " +
	"Called as a CNI plugin (CNI_COMMAND set), once per interface, it reads its config on stdin, installs that interface's rules, its bridge dispatch, the host's hooks and set entries, and exits; DEL removes exactly what ADD added. " +
	"There is no daemon and no state file: the kernel's netfilter state is the state. " +
	"Run with a command and without CNI_COMMAND, the same binary is the operator's tool, described below; it reads and changes the kernel of the network namespace it runs in."

// manSections follow COMMANDS in the page.
var manSections = []struct {
	title      string
	paragraphs []string
}{
	{"FILES", []string{
		"/etc/tapfw/tapfw.conf: the base config (host section, named sets, security groups, defaults), read by the QEMU scripts ($TAPFW_CONFIG) and by apply, whose host-wide parts it alone gives.",
		"/etc/tapfw/nics/TAP.json: a QEMU NIC's own config (bridge, MAC, addresses, rules); its top-level fields win over the base config's ($TAPFW_NIC_DIR).",
		"/usr/lib/tapfw/qemu-ifup, /usr/lib/tapfw/qemu-ifdown: the scripts QEMU (script=, downscript=) or LXC (lxc.net.N.script.up, .down) runs for a NIC.",
		"/lib/systemd/system/tapfw-apply.path, tapfw-apply.service: run apply --nics /etc/tapfw/nics whenever /etc/tapfw changes (systemctl enable --now tapfw-apply.path).",
		"/etc/tapfw/ui.token: the token every request to the web console (tapfw ui) needs, made with mode 0600 on its first start; /lib/systemd/system/tapfw-ui.service runs the console on 127.0.0.1:8390 (systemctl enable --now tapfw-ui.service).",
		"/etc/tapfw/tapfw.conf.prev: the base config as it was before the console's last edit.",
		"/run/tapfw.lock: the host-wide lock every call takes ($TAPFW_LOCK).",
	}},
	{"ENVIRONMENT", []string{
		"TAPFW_BACKEND (auto, iptables or nftables), TAPFW_MARKS, TAPFW_IPTABLES (auto, nft or legacy), TAPFW_LOCK, TAPFW_LOCK_TIMEOUT, TAPFW_XTABLES_WAIT, TAPFW_TRACE, and the QEMU scripts' TAPFW_CONFIG, TAPFW_NIC_DIR and TAPFW_BIN: see README.md.",
	}},
	{"EXIT STATUS", []string{
		"0 on success, 1 on an error, 2 on a bad flag or argument (the command's usage is printed on stderr); import-pve exits 3 when it wrote the files but left items out. As a CNI plugin, errors are CNI error objects on stdout with their code.",
	}},
	{"SEE ALSO", []string{
		"nft(8), iptables(8), ipset(8), qemu(1), lxc.container.conf(5); /usr/share/doc/tapfw/README.md",
	}},
}
