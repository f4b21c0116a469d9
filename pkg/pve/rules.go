package pve

import (
	"fmt"
	"strconv"
	"strings"
)

// A converted rule is a JSON object of tapfw's rule fields, and where it
// came from: its file and line, for a problem the config's validation
// finds in it later.
type outRule struct {
	fields map[string]any
	origin Problem // File and Line
}

// ports converts a Proxmox VE port list: names (those of /etc/services,
// as Proxmox VE takes them) to numbers.
func ports(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		var ends []string
		for _, end := range strings.SplitN(item, ":", 2) {
			if _, err := strconv.Atoi(end); err == nil {
				ends = append(ends, end)
				continue
			}
			n, ok := etcServices[end]
			if !ok {
				return "", fmt.Errorf("port name %q is not in /etc/services", end)
			}
			ends = append(ends, strconv.Itoa(n))
		}
		out = append(out, strings.Join(ends, ":"))
	}
	return strings.Join(out, ","), nil
}

// convertRule turns a Proxmox VE rule of file f into tapfw's words, in
// scope s; dir is "in" or "out". A GROUP rule becomes {"group": ...}
// with the group's tapfw name.
func (s *scope) convertRule(f string, r Rule, groups map[string]string) (outRule, error) {
	o := outRule{fields: map[string]any{}, origin: Problem{File: f, Line: r.Line}}
	set := func(k, v string) {
		if v != "" {
			o.fields[k] = v
		}
	}
	if !r.Enable {
		o.fields["enable"] = false
	}
	if c := comment(r.Comment); c != "" {
		o.fields["comment"] = c
	}
	if err := pveRuleError(r, !s.host); err != nil {
		return o, fmt.Errorf("%w (Proxmox VE skips it too)", err)
	}
	if r.Type == "group" {
		g, ok := groups[strings.ToLower(r.Group)]
		if !ok {
			return o, fmt.Errorf("security group %s is not defined in cluster.fw", r.Group)
		}
		o.fields["group"] = g
		return o, nil
	}
	set("action", r.Action)
	set("macro", r.Macro)
	set("proto", proto(r.Proto))
	if icmpFamily(r.Proto) != 0 && r.DPort != "" {
		r.ICMPType, r.DPort = r.DPort, "" // checked as a type number or name
	}
	if r.ICMPType != "" {
		t, _ := icmpType(r.Proto, r.ICMPType, true)
		set("icmpType", t)
	}
	if s.host {
		set("iface", r.Iface)
	}
	if r.Log != "" && r.Log != "nolog" {
		o.fields["log"] = r.Log
	}
	for _, p := range []struct{ key, v string }{{"source", r.Source}, {"dest", r.Dest}} {
		a, err := s.address(p.v)
		if err != nil {
			return o, fmt.Errorf("%s: %w", p.key, err)
		}
		set(p.key, a)
	}
	for _, p := range []struct{ key, v string }{{"sport", r.SPort}, {"dport", r.DPort}} {
		v, err := ports(p.v)
		if err != nil {
			return o, fmt.Errorf("%s: %w", p.key, err)
		}
		set(p.key, v)
	}
	return o, nil
}

// comment keeps what of a comment tapfw's comments may hold: letters,
// digits, spaces and _ . , : ; = / @ ( ) # + -, at most 128 characters.
func comment(c string) string {
	var b strings.Builder
	for _, r := range c {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(" _.,:;=/@()#+-", r):
			b.WriteRune(r)
		default:
			b.WriteRune('_')
		}
	}
	s := strings.TrimSpace(b.String())
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// ruleList converts the rules of one direction and place: those whose
// type is dir ("in" or "out"), and GROUP rules (which check the group's
// rules of both directions) in both. A rule of another type (FORWARD)
// or one tapfw cannot say is a problem. keep, when set, says which rules
// belong here (a guest's NIC takes only the rules without -i, or with
// its own netN).
func (s *scope) ruleList(f string, rules []Rule, dir string, groups map[string]string, keep func(Rule) bool, probs *[]Problem) []outRule {
	var out []outRule
	for _, r := range rules {
		if r.Type == "forward" {
			if dir == "in" {
				*probs = append(*probs, Problem{f, r.Line, "FORWARD rules (Proxmox VE's nftables firewall) have no place in tapfw: a tap's rules are IN and OUT"})
			}
			continue
		}
		if (r.Type != dir && r.Type != "group") || (keep != nil && !keep(r)) {
			continue
		}
		o, err := s.convertRule(f, r, groups)
		if err != nil {
			if dir == "in" || r.Type != "group" {
				*probs = append(*probs, Problem{f, r.Line, err.Error()})
			}
			continue
		}
		out = append(out, o)
	}
	return out
}

// proto is a rule's protocol as tapfw writes it: tcp, udp, icmp and
// icmpv6 by name, another by its number.
func proto(p string) string {
	switch p {
	case "", "tcp", "udp", "icmp", "icmpv6", "ipv6-icmp":
		return p
	}
	if n, ok := etcProtocols[p]; ok {
		return strconv.Itoa(n)
	}
	return p
}
