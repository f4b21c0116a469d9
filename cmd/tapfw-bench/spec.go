package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/rulecheck"
	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// The seed-like configuration every tap gets: the sample network's base
// config (host section, a named ipset) and about eight user rules a
// direction of every form the plugin renders (ports, port lists, ranges,
// icmp, a source set, networks, DROP with log, REJECT).

// Addresses of the data-plane sandbox.
const (
	dpHostIP  = "192.0.2.1"  // the bridge's address in the host namespace
	dpVMAIP   = "192.0.2.10" // the sending VM
	dpVMBIP   = "192.0.2.11" // the receiving VM
	dpVMAMAC  = "02:aa:00:00:00:0a"
	dpVMBMAC  = "02:aa:00:00:00:0b"
	benchPort = 9000 // UDP port the data plane sends to; every chain on the path allows it
)

// rule and rules are the plugin's own config types, so the benchmark
// writes what the plugin reads.
type (
	rule  = config.Rule
	rules = config.RuleLists
)

var userIn = []rule{
	{Action: "ACCEPT", Proto: "tcp", DPort: "22", Source: "+admins", Comment: "ssh"},
	{Action: "ACCEPT", Proto: "tcp", DPort: "80,443", Comment: "web"},
	{Action: "ACCEPT", Proto: "tcp", DPort: "8000:8100"},
	{Action: "ACCEPT", Proto: "udp", DPort: "53", Source: "198.51.100.0/24", Comment: "dns"},
	{Action: "ACCEPT", Proto: "icmp", ICMPType: "echo-request"},
	{Action: "DROP", Proto: "tcp", DPort: "3389", Log: true},
	{Action: "REJECT", Proto: "udp", DPort: "161"},
	{Action: "ACCEPT", Proto: "tcp", DPort: "5432", Source: "192.0.2.0/24", Comment: "db"},
}

var userOut = []rule{
	{Action: "ACCEPT", Proto: "udp", DPort: "53"},
	{Action: "ACCEPT", Proto: "tcp", DPort: "80,443"},
	{Action: "REJECT", Proto: "tcp", DPort: "25", Comment: "no mail"},
	{Action: "ACCEPT", Proto: "icmp"},
	{Action: "ACCEPT", Proto: "tcp", DPort: "22", Dest: "+admins"},
	{Action: "ACCEPT", Proto: "udp", DPort: "123", Comment: "ntp"},
	{Action: "ACCEPT", Proto: "tcp", DPort: "3306", Dest: "198.51.100.0/24"},
	{Action: "DROP", Proto: "tcp", DPort: "6667", Log: true},
}

// benchRule lets the data plane's packets through; the VMs have it last,
// so an allowed packet walks the whole chain.
var benchRule = rule{Action: "ACCEPT", Proto: "udp", DPort: fmt.Sprint(benchPort), Comment: "bench"}

var (
	hostIPs      = []string{dpHostIP}
	clusterHosts = []string{"192.0.2.2", "203.0.113.1"}
	hostIn       = []rule{
		{Action: "ACCEPT", Proto: "tcp", DPort: "22", Comment: "ssh"},
		{Action: "ACCEPT", Proto: "tcp", DPort: "8006", Comment: "web ui"},
		{Action: "ACCEPT", Proto: "udp", DPort: fmt.Sprint(benchPort), Comment: "bench"},
	}
	hostOut = []rule{
		{Action: "ACCEPT", Proto: "tcp", DPort: "22", Comment: "ssh"},
		{Action: "ACCEPT", Proto: "udp", DPort: fmt.Sprint(benchPort)},
	}
	adminsSet = []string{"203.0.113.0/28"}
)

// tapSpec is one tap: who it is and whether it is a traffic VM.
type tapSpec struct {
	Name        string   `json:"name"`
	Bridge      string   `json:"bridge"`
	MAC         string   `json:"mac"`
	IPs         []string `json:"ips"`
	ContainerID string   `json:"containerID"`
	VM          bool     `json:"vm,omitempty"` // adds benchRule in both directions
}

// vmid is the Proxmox-like VM number of the i-th tap: taps are tap1000i0,
// tap1001i0, ... so that names sort in the order they are added.
func vmid(i int) int { return 1000 + i }

// fillerAddrs are the addresses filler taps take in turn: 198.51.100.1-254,
// 203.0.113.1-254 and 192.0.2.64-254 (the data plane uses 192.0.2.1-63).
// The documentation ranges hold 699 of them, so from the 700th tap on
// addresses repeat, each shared by as few taps as possible; a real host's
// VMs have distinct addresses, which only shortens the host-to-VM chains.
var fillerAddrs = func() []string {
	var out []string
	for _, r := range []struct {
		prefix   string
		from, to int
	}{{"198.51.100.", 1, 254}, {"203.0.113.", 1, 254}, {"192.0.2.", 64, 254}} {
		for h := r.from; h <= r.to; h++ {
			out = append(out, fmt.Sprintf("%s%d", r.prefix, h))
		}
	}
	return out
}()

// fillerTap is the i-th tap that only has a config: it never sends.
func fillerTap(i int, bridge string) tapSpec {
	id := vmid(i)
	return tapSpec{
		Name:        fmt.Sprintf("tap%di0", id),
		Bridge:      bridge,
		MAC:         fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i)),
		IPs:         []string{fillerAddrs[i%len(fillerAddrs)]},
		ContainerID: fmt.Sprintf("vm%d", id),
	}
}

// vmTap is a traffic VM's tap: the i-th tap by name, with the VM's own address.
func vmTap(i int, bridge, mac, ip string) tapSpec {
	t := fillerTap(i, bridge)
	t.MAC, t.IPs, t.VM = mac, []string{ip}, true
	return t
}

// port is t as explain's packets see it.
func (t tapSpec) port() rulecheck.Port {
	return rulecheck.Port{Tap: t.Name, Bridge: t.Bridge, MAC: mustMAC(t.MAC), IP: netip.MustParseAddr(t.IPs[0])}
}

func (t tapSpec) userRules() rules {
	r := rules{In: append([]rule(nil), userIn...), Out: append([]rule(nil), userOut...)}
	if t.VM {
		r.In = append(r.In, benchRule)
		r.Out = append(r.Out, benchRule)
	}
	return r
}

// pluginConfig is the whole JSON a QEMU ifup script would send for t: the
// base config (host section, ipsets) merged with the NIC's fields.
func (t tapSpec) pluginConfig() []byte {
	c := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "bench",
		"type":       "tapfw",
		"ipsets":     map[string][]string{"admins": adminsSet},
		"host": map[string]any{
			"ips":          hostIPs,
			"clusterHosts": clusterHosts,
			"rules":        rules{In: hostIn, Out: hostOut},
		},
		"bridge": t.Bridge,
		"mac":    t.MAC,
		"ips":    t.IPs,
		"rules":  t.userRules(),
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // static shapes: cannot fail
	}
	return b
}

// ---- the baseline's rule set ----
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

func userSetName(s string) string  { return "tfw-s-" + s }
func tapSetName(tap string) string { return "tfw-t-" + tap }

// matchArgs renders a user rule's matches.
func matchArgs(r rule) []string {
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
func chainRules(chain, owner, logName, dir, allow string, us []rule, policyLog bool) []ipRule {
	var out []ipRule
	for i, u := range us {
		c := fmt.Sprintf("%s rule %d", dir, i+1)
		if u.Comment != "" {
			c += " " + u.Comment
		}
		m := matchArgs(u)
		if u.Log {
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
		Sets:   map[string][]string{"tfw-host": hostIPs, "tfw-cluster": clusterHosts, userSetName("admins"): adminsSet},
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
	s.Rules = append(s.Rules, chainRules("TFW-HOST-IN", h, "host", "in", "RETURN", hostIn, true)...)
	s.Rules = append(s.Rules, ipRule{"TFW-HOST-OUT", cat([]string{"-m", "set", "--match-set", "tfw-cluster", "dst"}, comment(h, "cluster hosts"), []string{"-j", "RETURN"})})
	s.Rules = append(s.Rules, chainRules("TFW-HOST-OUT", h, "host", "out", "RETURN", hostOut, true)...)
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

func tapFor(t tapSpec) baselineTap {
	in, out := ruleset.TapIn(t.Name), ruleset.TapOut(t.Name)
	o := t.Name
	set := tapSetName(t.Name)
	r := t.userRules()
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
