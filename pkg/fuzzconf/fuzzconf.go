// Package fuzzconf builds tapfw configs from fuzzed fields, for the fuzz
// targets of both backends' rendering: one tap, one rule in one direction
// (also in a host section), a named set, and flags for the options.
package fuzzconf

import (
	"encoding/json"
	"strings"
)

// Input is the fuzzed fields of one config.
type Input struct {
	Tap, Bridge, MAC, IPs, Proto, SPort, DPort, Source, Dest, Comment, ICMPType, Action string
	Log                                                                                 bool
	SetName, SetEntry                                                                   string
	Flags                                                                               uint8
}

// Bits of Input.Flags.
const (
	NoMAC = 1 << iota
	NoIP
	NoDHCP
	NoLog
	Host      // a host section, with the rule in it too
	Out       // the rule is an out rule
	RejectIn  // policyIn REJECT
	AcceptOut // policyOut ACCEPT
)

// Seeds are inputs at the edges of what validation accepts, and past them.
func Seeds() []Input {
	return []Input{
		{"tap110i0", "vmbr0", "1e:0b:85:27:8d:65", "192.0.2.200", "tcp", "", "22", "+admins", "", "ssh", "", "ACCEPT", false, "admins", "203.0.113.0/28", Host},
		{"veth0123abcd", "cni0", "02:00:00:00:0c:01", "198.51.100.16/28,192.0.2.60", "udp", "1000:2000", "53,123,1:5", "198.51.100.0/24", "192.0.2.0/25",
			"dns (udp) #1; x=y @z/a,b +c", "", "REJECT", true, "web.1", "198.51.100.128/25", Host | Out | RejectIn},
		{"t", "b", "02:00:00:00:00:01", "203.0.113.1", "icmp", "", "", "", "+s_1", "", "3/3", "DROP", true, "s_1", "192.0.2.0/24", AcceptOut},
		{"tap_9", "br-0.1", "", "", "47", "", "", "", "", "gre", "", "ACCEPT", false, "", "", NoMAC | NoIP | NoDHCP | NoLog},
		{"tap123456789012", "br1234567890123", "02:ff:ff:ff:ff:ff", "198.51.100.255,0.0.0.0,255.255.255.255", "tcp", "0:65535", "0", "0.0.0.0/0", "128.0.0.0/1",
			strings.Repeat("x ", 64), "", "REJECT", true, strings.Repeat("s", 25), "192.0.2.128/25", Host | Out},
		{"A", "B", "02:00:00:00:00:02", "192.0.2.7/32", "icmp", "", "", "", "", "   ", "echo-request", "ACCEPT", false, "", "", 0},
		{"tap1", "vmbr0", "02:00:00:00:00:03", "192.0.2.1", "tcp", "", "22", "", "", `x" -j ACCEPT`, "", "ACCEPT", false, "", "", 0},
		{"tap1\n-A", "vmbr0\nCOMMIT", "02:00:00:00:00:04", "192.0.2.1", "udp", "", "53", "", "", "", "", "ACCEPT", false, "", "", 0},
		{"tap1", "vmbr0", "02:00:00:00:00:05", "192.0.2.1", "sctp", "", "", "", "", "*filter", "", "ACCEPT", false, "", "", 0},
		{"a.b_c-d", "br.0", "02:00:00:00:00:06", "192.0.2.0/31,192.0.2.3", "udp", "0", "0:0,65535:65535,1:2,3,4,5,6,7,8,9,10", "+s", "+s", "#", "", "REJECT", true, "s", "203.0.113.0/24", Host | RejectIn},
		{"tap2", "vmbr0", "02:00:00:00:00:07", "192.0.2.2", "255", "", "", "", "", "", "", "DROP", true, "", "", AcceptOut},
		{"tap3", "vmbr0", "02:00:00:00:00:08", "192.0.2.3", "1", "", "", "", "", "", "254/255", "ACCEPT", true, "", "", Out},
		{"tap4", "vmbr0", "02:00:00:00:00:09", "192.0.2.4", "6", "65535", "0:65535", "0.0.0.0/32", "255.255.255.255", strings.Repeat("#", 128), "", "REJECT", true, "", "", Out | Host},
		{"tap5", "vmbr0", "02:00:00:00:00:0a", "192.0.2.5", "tcp", "", "22:22", "", "", "", "", "ACCEPT", false, "", "", 0},
	}
}

// JSON is the config the input describes.
func (in Input) JSON() []byte {
	rule := map[string]any{"action": in.Action, "log": in.Log}
	for key, v := range map[string]string{"proto": in.Proto, "sport": in.SPort, "dport": in.DPort, "source": in.Source, "dest": in.Dest, "comment": in.Comment, "icmpType": in.ICMPType} {
		if v != "" {
			rule[key] = v
		}
	}
	dir := "in"
	if in.Flags&Out != 0 {
		dir = "out"
	}
	conf := map[string]any{
		"cniVersion": "1.0.0", "name": "fuzz", "type": "tapfw",
		"tap": in.Tap, "bridge": in.Bridge,
		"macFilter": in.Flags&NoMAC == 0, "ipFilter": in.Flags&NoIP == 0,
		"dhcp": in.Flags&NoDHCP == 0, "logDropped": in.Flags&NoLog == 0,
		"rules": map[string]any{dir: []any{rule}},
	}
	if in.MAC != "" {
		conf["mac"] = in.MAC
	}
	if in.IPs != "" {
		conf["ips"] = strings.Split(in.IPs, ",")
	}
	if in.Flags&RejectIn != 0 {
		conf["policyIn"] = "REJECT"
	}
	if in.Flags&AcceptOut != 0 {
		conf["policyOut"] = "ACCEPT"
	}
	if in.SetName != "" {
		conf["ipsets"] = map[string]any{in.SetName: []any{in.SetEntry}}
	}
	if in.Flags&Host != 0 {
		conf["host"] = map[string]any{
			"ips": []any{"192.0.2.31"}, "clusterHosts": []any{"192.0.2.47"},
			"rules": map[string]any{dir: []any{rule}},
		}
	}
	data, err := json.Marshal(conf)
	if err != nil {
		panic(err) // maps of strings and bools always marshal
	}
	return data
}
