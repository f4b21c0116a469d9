// Package taps is the benchmark's taps: the seed-like configuration every
// tap gets, the names and addresses of the filler taps and the traffic
// VMs, and the plugin calls that install them.
package taps

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/rulecheck"
	"github.com/tapfw/tapfw/pkg/config"
)

// The seed-like configuration every tap gets: the sample network's base
// config (host section, a named ipset) and about eight user rules a
// direction of every form the plugin renders (ports, port lists, ranges,
// icmp, a source set, networks, DROP with log, REJECT).

// Addresses of the data-plane sandbox.
const (
	HostIP    = "192.0.2.1"  // the bridge's address in the host namespace
	VMAIP     = "192.0.2.10" // the sending VM
	VMBIP     = "192.0.2.11" // the receiving VM
	VMAMAC    = "02:aa:00:00:00:0a"
	VMBMAC    = "02:aa:00:00:00:0b"
	BenchPort = 9000 // UDP port the data plane sends to; every chain on the path allows it
)

// Rule and Rules are the plugin's own config types, so the benchmark
// writes what the plugin reads.
type (
	Rule  = config.Rule
	Rules = config.RuleLists
)

var UserIn = []Rule{
	{Action: "ACCEPT", Proto: "tcp", DPort: "22", Source: "+admins", Comment: "ssh"},
	{Action: "ACCEPT", Proto: "tcp", DPort: "80,443", Comment: "web"},
	{Action: "ACCEPT", Proto: "tcp", DPort: "8000:8100"},
	{Action: "ACCEPT", Proto: "udp", DPort: "53", Source: "198.51.100.0/24", Comment: "dns"},
	{Action: "ACCEPT", Proto: "icmp", ICMPType: "echo-request"},
	{Action: "DROP", Proto: "tcp", DPort: "3389", Log: "true"},
	{Action: "REJECT", Proto: "udp", DPort: "161"},
	{Action: "ACCEPT", Proto: "tcp", DPort: "5432", Source: "192.0.2.0/24", Comment: "db"},
}

var UserOut = []Rule{
	{Action: "ACCEPT", Proto: "udp", DPort: "53"},
	{Action: "ACCEPT", Proto: "tcp", DPort: "80,443"},
	{Action: "REJECT", Proto: "tcp", DPort: "25", Comment: "no mail"},
	{Action: "ACCEPT", Proto: "icmp"},
	{Action: "ACCEPT", Proto: "tcp", DPort: "22", Dest: "+admins"},
	{Action: "ACCEPT", Proto: "udp", DPort: "123", Comment: "ntp"},
	{Action: "ACCEPT", Proto: "tcp", DPort: "3306", Dest: "198.51.100.0/24"},
	{Action: "DROP", Proto: "tcp", DPort: "6667", Log: "true"},
}

// BenchRule lets the data plane's packets through; the VMs have it last
// but for IperfRule, so an allowed packet walks the whole chain.
var BenchRule = Rule{Action: "ACCEPT", Proto: "udp", DPort: fmt.Sprint(BenchPort), Comment: "bench"}

// IperfPort is the TCP port of the established-traffic measurement
// (iperf3's server in VM b); IperfRule, after BenchRule in both
// directions of the VMs, lets its connection's first packet through.
const IperfPort = 5201

var IperfRule = Rule{Action: "ACCEPT", Proto: "tcp", DPort: fmt.Sprint(IperfPort), Comment: "iperf3"}

var (
	HostIPs      = []string{HostIP}
	ClusterHosts = []string{"192.0.2.2", "203.0.113.1"}
	HostIn       = []Rule{
		{Action: "ACCEPT", Proto: "tcp", DPort: "22", Comment: "ssh"},
		{Action: "ACCEPT", Proto: "tcp", DPort: "8006", Comment: "web ui"},
		{Action: "ACCEPT", Proto: "udp", DPort: fmt.Sprint(BenchPort), Comment: "bench"},
	}
	HostOut = []Rule{
		{Action: "ACCEPT", Proto: "tcp", DPort: "22", Comment: "ssh"},
		{Action: "ACCEPT", Proto: "udp", DPort: fmt.Sprint(BenchPort)},
	}
	AdminsSet = []string{"203.0.113.0/28"}
)

// Spec is one tap: who it is and whether it is a traffic VM.
type Spec struct {
	Name        string   `json:"name"`
	Bridge      string   `json:"bridge"`
	MAC         string   `json:"mac"`
	IPs         []string `json:"ips"`
	ContainerID string   `json:"containerID"`
	VM          bool     `json:"vm,omitempty"` // adds BenchRule in both directions
}

// ID is the Proxmox-like VM number of the i-th tap: taps are tap1000i0,
// tap1001i0, ... so that names sort in the order they are added.
func ID(i int) int { return 1000 + i }

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

// Filler is the i-th tap that only has a config: it never sends.
func Filler(i int, bridge string) Spec {
	id := ID(i)
	return Spec{
		Name:        fmt.Sprintf("tap%di0", id),
		Bridge:      bridge,
		MAC:         fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i)),
		IPs:         []string{fillerAddrs[i%len(fillerAddrs)]},
		ContainerID: fmt.Sprintf("vm%d", id),
	}
}

// VM is a traffic VM's tap: the i-th tap by name, with the VM's own address.
func VM(i int, bridge, mac, ip string) Spec {
	t := Filler(i, bridge)
	t.MAC, t.IPs, t.VM = mac, []string{ip}, true
	return t
}

// Port is t as explain's packets see it.
func (t Spec) Port() rulecheck.Port {
	return rulecheck.Port{Tap: t.Name, Bridge: t.Bridge, MAC: MustMAC(t.MAC), IP: netip.MustParseAddr(t.IPs[0])}
}

// UserRules are the tap's own rules: the seed-like ones, and for a VM the
// bench rule and the iperf3 rule last in both directions.
func (t Spec) UserRules() Rules {
	r := Rules{In: append([]Rule(nil), UserIn...), Out: append([]Rule(nil), UserOut...)}
	if t.VM {
		r.In = append(r.In, BenchRule, IperfRule)
		r.Out = append(r.Out, BenchRule, IperfRule)
	}
	return r
}

// PluginConfig is the whole JSON a QEMU ifup script would send for t: the
// base config (host section, ipsets) merged with the NIC's fields.
func (t Spec) PluginConfig() []byte {
	c := baseConfig(nil)
	c["cniVersion"], c["name"], c["type"] = "1.0.0", "bench", "tapfw"
	c["bridge"], c["mac"], c["ips"], c["rules"] = t.Bridge, t.MAC, t.IPs, t.UserRules()
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // static shapes: cannot fail
	}
	return b
}

// MustMAC parses one of the benchmark's own MAC addresses.
func MustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// baseConfig is the host-wide part of every tap's config: the host
// section and the named set admins, with more entries in it.
func baseConfig(moreAdmins []string) map[string]any {
	return map[string]any{
		"ipsets": map[string][]string{"admins": append(slices.Clip(AdminsSet), moreAdmins...)},
		"host": map[string]any{
			"ips":          HostIPs,
			"clusterHosts": ClusterHosts,
			"rules":        Rules{In: HostIn, Out: HostOut},
		},
	}
}

// BaseConfig is the base config tapfw apply reads that the taps' configs
// agree with, but for moreAdmins in the set admins.
func BaseConfig(moreAdmins ...string) []byte {
	b, err := json.Marshal(baseConfig(moreAdmins))
	if err != nil {
		panic(err) // static shapes: cannot fail
	}
	return b
}
