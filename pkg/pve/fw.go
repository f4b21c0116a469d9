// Package pve reads a Proxmox VE configuration tree (/etc/pve): its
// firewall files (cluster.fw, host.fw, <vmid>.fw), corosync.conf and the
// guests' configs, and turns them into tapfw's configs: one base config
// and one NIC file per guest NIC. What tapfw cannot say is reported as
// FILE:LINE: reason, and left out.
package pve

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Problem is one thing of the tree the import could not carry over.
type Problem struct {
	File   string
	Line   int // 0: the file as a whole
	Reason string
}

func (p Problem) String() string {
	if p.Line == 0 {
		return p.File + ": " + p.Reason
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Reason)
}

// FwFile is one firewall file as Proxmox VE writes it: sections
// [OPTIONS], [ALIASES], [IPSET name], [RULES] and (cluster.fw) [group
// name], each line with an optional "# comment".
type FwFile struct {
	Name    string // the file's path in the tree, for problems
	Options []Option
	Aliases []Alias
	IPSets  []IPSet
	Rules   []Rule
	Groups  []Group
}

// Option is "key: value" of [OPTIONS].
type Option struct {
	Key, Value string
	Line       int
}

// Alias is "name cidr" of [ALIASES].
type Alias struct {
	Name, CIDR, Comment string
	Line                int
}

// IPSet is an [IPSET name] section.
type IPSet struct {
	Name, Comment string
	Line          int
	Entries       []Entry
}

// Entry is one line of an ipset: an address, network or alias,
// "!" for one that is excluded.
type Entry struct {
	Value   string
	NoMatch bool
	Line    int
}

// Group is a [group name] section of cluster.fw.
type Group struct {
	Name, Comment string
	Line          int
	Rules         []Rule
}

// Rule is one rule line: "[|]DIR ACTION [options] [# comment]", DIR IN,
// OUT or FORWARD (or GROUP, whose ACTION is the group's name), ACTION
// ACCEPT, DROP, REJECT or MACRO(ACTION).
type Rule struct {
	Line                                     int
	Enable                                   bool
	Type                                     string // in, out, forward, group
	Action, Macro, Group                     string
	Iface, Proto, DPort, SPort, Source, Dest string
	Log, ICMPType, Comment                   string
}

var (
	sectionRE = regexp.MustCompile(`^\[(\w+)(?:\s+(\S+))?\]\s*(?:#\s*(.*?)\s*)?$`)
	optionRE  = regexp.MustCompile(`^([a-z_0-9]+):\s*(.*?)\s*$`)
	macroRE   = regexp.MustCompile(`^(\S+)\((ACCEPT|DROP|REJECT)\)$`)
)

// ParseFw reads a firewall file; lines it cannot read are problems.
func ParseFw(name string, r io.Reader) (*FwFile, []Problem) {
	f := &FwFile{Name: name}
	var probs []Problem
	bad := func(line int, format string, a ...any) {
		probs = append(probs, Problem{name, line, fmt.Sprintf(format, a...)})
	}
	section, arg := "", ""
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if m := sectionRE.FindStringSubmatch(line); m != nil {
			section, arg = strings.ToLower(m[1]), m[2]
			switch section {
			case "ipset":
				f.IPSets = append(f.IPSets, IPSet{Name: arg, Comment: m[3], Line: n})
			case "group":
				f.Groups = append(f.Groups, Group{Name: arg, Comment: m[3], Line: n})
			case "options", "aliases", "rules":
			default:
				bad(n, "section [%s] is not one tapfw reads; its lines are left out", m[1])
			}
			continue
		}
		switch section {
		case "options":
			m := optionRE.FindStringSubmatch(line)
			if m == nil {
				bad(n, "%q is not an option", line)
				continue
			}
			f.Options = append(f.Options, Option{Key: m[1], Value: m[2], Line: n})
		case "aliases":
			text, comment := cutComment(line)
			fields := strings.Fields(text)
			if len(fields) != 2 {
				bad(n, "%q is not an alias (NAME CIDR)", line)
				continue
			}
			f.Aliases = append(f.Aliases, Alias{Name: fields[0], CIDR: fields[1], Comment: comment, Line: n})
		case "ipset":
			text, _ := cutComment(line)
			v, nomatch := strings.CutPrefix(strings.TrimSpace(text), "!")
			s := &f.IPSets[len(f.IPSets)-1]
			s.Entries = append(s.Entries, Entry{Value: strings.TrimSpace(v), NoMatch: nomatch, Line: n})
		case "rules", "group":
			r, err := parseRule(line, n)
			if err != nil {
				bad(n, "%v (Proxmox VE skips it too)", err)
				continue
			}
			if section == "group" {
				g := &f.Groups[len(f.Groups)-1]
				g.Rules = append(g.Rules, r)
			} else {
				f.Rules = append(f.Rules, r)
			}
		case "":
			bad(n, "a line before any section")
		}
	}
	if err := sc.Err(); err != nil {
		bad(0, "reading: %v", err)
	}
	return f, probs
}

// cutComment splits "text # comment".
func cutComment(line string) (string, string) {
	text, comment, _ := strings.Cut(line, "#")
	return strings.TrimSpace(text), strings.TrimSpace(comment)
}

// parseRule reads a rule line as Proxmox VE's parse_fw_rule does.
func parseRule(line string, n int) (Rule, error) {
	r := Rule{Line: n, Enable: true}
	text, comment := cutComment(line)
	r.Comment = comment
	if t, ok := strings.CutPrefix(text, "|"); ok {
		r.Enable, text = false, t
	}
	f := strings.Fields(text)
	if len(f) < 2 {
		return r, fmt.Errorf("unable to parse rule %q", line)
	}
	r.Type, r.Action = strings.ToLower(f[0]), f[1]
	switch r.Type {
	case "in", "out", "forward":
		if m := macroRE.FindStringSubmatch(r.Action); m != nil {
			r.Macro, r.Action = m[1], m[2]
		}
	case "group":
		r.Group, r.Action = r.Action, ""
	default:
		return r, fmt.Errorf("rule type %q is not IN, OUT, FORWARD or GROUP", f[0])
	}
	opts := map[string]*string{
		"-i": &r.Iface, "-p": &r.Proto, "-proto": &r.Proto, "--proto": &r.Proto, "-dport": &r.DPort, "--dport": &r.DPort,
		"-sport": &r.SPort, "--sport": &r.SPort, "-source": &r.Source, "--source": &r.Source, "-dest": &r.Dest, "--dest": &r.Dest,
		"-log": &r.Log, "--log": &r.Log, "-icmp-type": &r.ICMPType, "--icmp-type": &r.ICMPType,
	}
	for i := 2; i < len(f); i += 2 {
		to, ok := opts[f[i]]
		if !ok || i+1 >= len(f) || (r.Type == "group" && f[i] != "-i") {
			return r, fmt.Errorf("unable to parse rule parameters %q", strings.Join(f[i:], " "))
		}
		*to = f[i+1]
	}
	return r, nil
}

// Option returns the value of option key ("" when not set) and its line.
func (f *FwFile) Option(key string) (string, int) {
	for _, o := range f.Options {
		if strings.EqualFold(o.Key, key) {
			return o.Value, o.Line
		}
	}
	return "", 0
}

// group is the [group name] section of that name (in any case), nil
// without one.
func (f *FwFile) group(name string) *Group {
	for i, g := range f.Groups {
		if strings.EqualFold(g.Name, name) {
			return &f.Groups[i]
		}
	}
	return nil
}
