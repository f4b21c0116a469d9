package baseline

import (
	"fmt"
	"strings"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/taps"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// The baseline's rule set.
//
// The baseline applies the same configuration in the seed's flat layout
// (as tapfw's first backend renders it): per tap two chains, four dispatch
// rules and one ipset; shared hook, bridge, host chains and sets. Every rule
// is an argument list as go-iptables takes it.

type ipRule struct {
	Chain string
	Args  []string
}

const logLimit = "5/min"

func comment(owner, text string) []string {
	return []string{"-m", "comment", "--comment", owner + ": " + text}
}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// The baseline is the seed's flat layout as it was measured, so its names
// are written out here rather than taken from pkg/ruleset, which may move on.
func userSetName(s string) string  { return "tfw-s-" + s }
func tapSetName(tap string) string { return "tfw-t-" + tap }

// matchArgs renders a user rule's matches.
func matchArgs(r taps.Rule) []string {
	var a []string
	if r.Proto != "" {
		a = append(a, "-p", r.Proto)
	}
	addr := func(v, flag, dir string) {
		switch {
		case v == "":
		case strings.HasPrefix(v, "+"):
			a = append(a, "-m", "set", "--match-set", userSetName(v[1:]), dir)
		default:
			a = append(a, flag, v)
		}
	}
	// iptables prints -s/-d before the -p match's options; order matters
	// only for -C, which compares parsed rules.
	addr(r.Source, "-s", "src")
	addr(r.Dest, "-d", "dst")
	switch {
	case r.DPort != "" && strings.Contains(r.DPort, ","):
		a = append(a, "-m", "multiport", "--dports", r.DPort)
	case r.DPort != "":
		a = append(a, "-m", r.Proto, "--dport", r.DPort)
	}
	if r.Proto == "icmp" && r.ICMPType != "" {
		a = append(a, "-m", "icmp", "--icmp-type", r.ICMPType)
	}
	return a
}

// chainRules renders user rules, LOG and policy of one direction.
func chainRules(chain, owner, logName, dir, allow string, us []taps.Rule, policyLog bool) []ipRule {
	var out []ipRule
	for i, u := range us {
		c := fmt.Sprintf("%s rule %d", dir, i+1)
		if u.Comment != "" {
			c += " " + u.Comment
		}
		m := matchArgs(u)
		if u.Log == "true" {
			out = append(out, ipRule{chain, cat(m, comment(owner, c), []string{"-m", "limit", "--limit", logLimit, "-j", "LOG", "--log-prefix", fmt.Sprintf("tfw:%s:%s:r%d ", logName, dir, i+1)})})
		}
		var v []string
		switch u.Action {
		case "ACCEPT":
			v = []string{"-j", allow}
		case "DROP":
			v = []string{"-j", "DROP"}
		case "REJECT":
			v = []string{"-j", "REJECT"}
			if u.Proto == "tcp" {
				v = append(v, "--reject-with", "tcp-reset")
			}
		}
		out = append(out, ipRule{chain, cat(m, comment(owner, c), v)})
	}
	if policyLog {
		out = append(out, ipRule{chain, cat(comment(owner, "log policy"), []string{"-m", "limit", "--limit", logLimit, "-j", "LOG", "--log-prefix", fmt.Sprintf("tfw:%s:%s:drop ", logName, dir)})})
	}
	return append(out, ipRule{chain, cat(comment(owner, "policy drop"), []string{"-j", "DROP"})})
}

// baselineShared is what every tap's ADD makes sure of: chains, the hooks
// (inserted first in the built-in chains) and the shared rules.
type baselineShared struct {
	Chains []string
	Hooks  []ipRule
	Rules  []ipRule
	Sets   map[string][]string
}

func sharedFor(bridges []string) baselineShared {
	s := baselineShared{
		Chains: []string{"TFW-FORWARD", "TFW-INPUT", "TFW-OUTPUT", "TFW-INPUT-TAPS", "TFW-OUTPUT-TAPS", "TFW-HOST-IN", "TFW-HOST-OUT"},
		Sets:   map[string][]string{"tfw-host": taps.HostIPs, "tfw-cluster": taps.ClusterHosts, userSetName("admins"): taps.AdminsSet},
	}
	for _, h := range [][2]string{{"FORWARD", "TFW-FORWARD"}, {"INPUT", "TFW-INPUT"}, {"OUTPUT", "TFW-OUTPUT"}} {
		s.Hooks = append(s.Hooks, ipRule{h[0], cat(comment("@tapfw", "hook"), []string{"-j", h[1]})})
	}
	o := "@tapfw"
	s.Rules = append(s.Rules,
		ipRule{"TFW-INPUT", cat(comment(o, "from taps"), []string{"-j", "TFW-INPUT-TAPS"})},
		ipRule{"TFW-INPUT", cat([]string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"}, comment(o, "established"), []string{"-j", "ACCEPT"})},
		ipRule{"TFW-INPUT", cat([]string{"-m", "set", "--match-set", "tfw-host", "dst"}, comment(o, "to host"), []string{"-j", "TFW-HOST-IN"})},
		ipRule{"TFW-INPUT", cat(comment(o, "default"), []string{"-j", "ACCEPT"})},
		ipRule{"TFW-OUTPUT", cat([]string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"}, comment(o, "established"), []string{"-j", "ACCEPT"})},
		ipRule{"TFW-OUTPUT", cat([]string{"-m", "set", "--match-set", "tfw-host", "src"}, comment(o, "from host"), []string{"-j", "TFW-HOST-OUT"})},
		ipRule{"TFW-OUTPUT", cat(comment(o, "to taps"), []string{"-j", "TFW-OUTPUT-TAPS"})},
		ipRule{"TFW-OUTPUT", cat(comment(o, "default"), []string{"-j", "ACCEPT"})},
	)
	for _, br := range bridges {
		s.Chains = append(s.Chains, "TFW-B-"+br, "TFW-B-"+br+"-IN", "TFW-B-"+br+"-OUT")
		c, bo := "TFW-B-"+br, br
		s.Rules = append(s.Rules,
			ipRule{"TFW-FORWARD", cat([]string{"-o", br, "-m", "physdev", "--physdev-is-bridged"}, comment(bo, "bridged"), []string{"-j", c})},
			ipRule{"TFW-FORWARD", cat([]string{"-i", br}, comment(bo, "no inter-bridge routing"), []string{"-j", "DROP"})},
			ipRule{"TFW-FORWARD", cat([]string{"-o", br}, comment(bo, "no inter-bridge routing"), []string{"-j", "DROP"})},
			ipRule{c, cat([]string{"-m", "physdev", "--physdev-is-in", "--physdev-is-bridged"}, comment(bo, "from port"), []string{"-j", c + "-OUT"})},
			ipRule{c, cat([]string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"}, comment(bo, "established"), []string{"-j", "ACCEPT"})},
			ipRule{c, cat([]string{"-m", "physdev", "--physdev-is-out", "--physdev-is-bridged"}, comment(bo, "to port"), []string{"-j", c + "-IN"})},
			ipRule{c, cat(comment(bo, "default"), []string{"-j", "ACCEPT"})},
		)
	}
	h := "@host"
	s.Rules = append(s.Rules, ipRule{"TFW-HOST-IN", cat([]string{"-m", "set", "--match-set", "tfw-cluster", "src"}, comment(h, "cluster hosts"), []string{"-j", "RETURN"})})
	s.Rules = append(s.Rules, chainRules("TFW-HOST-IN", h, "host", "in", "RETURN", taps.HostIn, true)...)
	s.Rules = append(s.Rules, ipRule{"TFW-HOST-OUT", cat([]string{"-m", "set", "--match-set", "tfw-cluster", "dst"}, comment(h, "cluster hosts"), []string{"-j", "RETURN"})})
	s.Rules = append(s.Rules, chainRules("TFW-HOST-OUT", h, "host", "out", "RETURN", taps.HostOut, true)...)
	return s
}

// baselineTap is one tap's own part: its chains (rules in order) and its
// dispatch rules in the shared chains.
type baselineTap struct {
	Chains   []string
	Rules    []ipRule // in the tap's own chains
	Dispatch []ipRule // in shared chains
	Set      string
	Entries  []string
}

func tapFor(t taps.Spec) baselineTap {
	in, out := ruleset.TapIn(t.Name), ruleset.TapOut(t.Name)
	o := t.Name
	set := tapSetName(t.Name)
	r := t.UserRules()
	var rs []ipRule
	rs = append(rs,
		ipRule{out, cat([]string{"-m", "conntrack", "--ctstate", "INVALID"}, comment(o, "invalid"), []string{"-j", "DROP"})},
		ipRule{out, cat([]string{"-m", "mac", "!", "--mac-source", t.MAC}, comment(o, "mac anti-spoof"), []string{"-j", "DROP"})},
		ipRule{out, cat([]string{"-p", "udp", "-m", "udp", "--sport", "67", "--dport", "68"}, comment(o, "no dhcp server"), []string{"-j", "DROP"})},
		ipRule{out, cat([]string{"-p", "udp", "-m", "udp", "--sport", "68", "--dport", "67"}, comment(o, "dhcp request"), []string{"-j", "RETURN"})},
		ipRule{out, cat([]string{"-m", "set", "!", "--match-set", set, "src"}, comment(o, "ip anti-spoof"), []string{"-j", "DROP"})},
		ipRule{out, cat([]string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"}, comment(o, "established"), []string{"-j", "ACCEPT"})},
	)
	rs = append(rs, chainRules(out, o, o, "out", "RETURN", r.Out, true)...)
	rs = append(rs,
		ipRule{in, cat([]string{"-m", "conntrack", "--ctstate", "INVALID"}, comment(o, "invalid"), []string{"-j", "DROP"})},
		ipRule{in, cat([]string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"}, comment(o, "established"), []string{"-j", "ACCEPT"})},
	)
	rs = append(rs, chainRules(in, o, o, "in", "ACCEPT", r.In, true)...)
	br := t.Bridge
	disp := []ipRule{
		{"TFW-B-" + br + "-OUT", cat([]string{"-m", "physdev", "--physdev-in", t.Name, "--physdev-is-bridged"}, comment(o, "dispatch net=bench cid="+t.ContainerID+" if="+t.Name), []string{"-g", out})},
		{"TFW-B-" + br + "-IN", cat([]string{"-m", "physdev", "--physdev-out", t.Name, "--physdev-is-bridged"}, comment(o, "dispatch"), []string{"-g", in})},
		{"TFW-INPUT-TAPS", cat([]string{"-m", "physdev", "--physdev-in", t.Name}, comment(o, "to host"), []string{"-g", out})},
		{"TFW-OUTPUT-TAPS", cat([]string{"-m", "set", "--match-set", set, "dst"}, comment(o, "from host"), []string{"-g", in})},
	}
	return baselineTap{Chains: []string{in, out}, Rules: rs, Dispatch: disp, Set: set, Entries: t.IPs}
}

// restoreArgs renders args for an iptables-restore line, quoting what has
// spaces.
func restoreArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			a = `"` + strings.ReplaceAll(a, `"`, `\"`) + `"`
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
