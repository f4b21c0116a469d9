package soak

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tapfw/tapfw/pkg/config"
)

// The sandbox's names and addresses (documentation ranges only).
const (
	Bridge0 = "vmbr0" // the VMs' bridge, and every even pool tap's
	Bridge1 = "vmbr1" // every odd pool tap's

	ClientTap, ClientIP, ClientMAC = "tap100i0", "192.0.2.10", "02:5a:00:00:00:0a"
	ServerTap, ServerIP, ServerMAC = "tap101i0", "192.0.2.11", "02:5a:00:00:00:0b"
	AnchorTap, AnchorIP, AnchorMAC = "tap102i0", "192.0.2.12", "02:5a:00:00:00:0c"

	FlowPort     = 5001 // TCP, allowed into the server VM: the long-lived flow
	UDPFlowPort  = 5003 // UDP, allowed into the server VM: the numbered datagrams
	ProbePort    = 5002 // TCP, not allowed into the server VM: the probe
	UDPProbePort = 5004 // UDP, not allowed into the server VM: the probe

	// MaxTaps is the largest pool: the pool's IPv4 addresses are
	// 198.51.100.1-254 and 203.0.113.1-254, one per tap.
	MaxTaps = 500
)

// Tap is one tap the soak calls the plugin for.
type Tap struct {
	Name, Bridge, MAC string
	IPs               []string
	ContainerID       string
}

// PoolTap is the i-th tap of the random pool: tap2000i0, tap2001i0, ...
// alternating between the two bridges, each with its own MAC and
// addresses (every third one also an IPv6 address).
func PoolTap(i int) Tap {
	id := 2000 + i
	ip := fmt.Sprintf("198.51.100.%d", 1+i)
	if i >= 254 {
		ip = fmt.Sprintf("203.0.113.%d", 1+i-254)
	}
	t := Tap{
		Name:        fmt.Sprintf("tap%di0", id),
		Bridge:      []string{Bridge0, Bridge1}[i%2],
		MAC:         fmt.Sprintf("02:5a:01:00:%02x:%02x", byte(i>>8), byte(i)),
		IPs:         []string{ip},
		ContainerID: fmt.Sprintf("soak%d", id),
	}
	if i%3 == 0 {
		t.IPs = append(t.IPs, fmt.Sprintf("2001:db8:5a::%x", i+1))
	}
	return t
}

// VMTaps are the client and the server VM.
func VMTaps() (client, server Tap) {
	return Tap{Name: ClientTap, Bridge: Bridge0, MAC: ClientMAC, IPs: []string{ClientIP}, ContainerID: "soak100"},
		Tap{Name: ServerTap, Bridge: Bridge0, MAC: ServerMAC, IPs: []string{ServerIP}, ContainerID: "soak101"}
}

// Fixed is a tap attached for the whole soak, and its config.
type Fixed struct {
	Tap  Tap
	Conf []byte
}

// FixedTaps are the taps ADDed before the cycles and attached throughout:
// the two VMs, and an anchor on vmbr1 (a tap device without a VM). A bridge's own chains and its fail-closed rules stay
// while any tap of the host is attached, also after its own last tap's
// DEL; with a tap on each bridge throughout, the state before the cycles
// and after them is the same when nothing leaked.
func FixedTaps() []Fixed {
	c, s := VMTaps()
	cc, sc := VMConfigs()
	a := Tap{Name: AnchorTap, Bridge: Bridge1, MAC: AnchorMAC, IPs: []string{AnchorIP}, ContainerID: "soak102"}
	return []Fixed{{c, cc}, {s, sc}, {a, marshal(base(a))}}
}

// base is what every call sends the same: the host-wide parts (ipsets,
// security groups, host section, log options, logDropped among them: it
// also sets the host firewall's log rules) must not differ between calls,
// or the last ADD's version would replace them: the fixed taps' CHECK
// would fail and the counts could not come back.
func base(t Tap) config.NetConf {
	return config.NetConf{
		PluginConf: types.PluginConf{CNIVersion: "1.0.0", Name: "soak", Type: "tapfw"},
		Bridge:     t.Bridge, MAC: t.MAC, IPs: t.IPs,
		IPSets: map[string][]string{
			"admins": {"203.0.113.0/28", "2001:db8:ad::/48"},
			"peers":  {"198.51.100.0/25", "192.0.2.128/26"},
		},
		SecurityGroups: map[string]config.RuleLists{
			"web":  {In: []config.Rule{{Action: "ACCEPT", Proto: "tcp", DPort: "80,443", Comment: "web"}}, Out: []config.Rule{{Action: "ACCEPT", Proto: "udp", DPort: "53"}}},
			"mgmt": {In: []config.Rule{{Action: "ACCEPT", Proto: "tcp", DPort: "22", Source: "+admins"}}},
		},
		Host: &config.Host{
			IPs: []string{"192.0.2.1"}, ClusterHosts: []string{"192.0.2.2"},
			Rules: config.RuleLists{In: []config.Rule{{Action: "ACCEPT", Proto: "tcp", DPort: "22", Comment: "ssh"}}},
		},
	}
}

func marshal(c config.NetConf) []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // static shapes: cannot fail
	}
	return b
}

func rule(action, proto, dport string) config.Rule {
	return config.Rule{Action: action, Proto: proto, DPort: dport}
}

// VMConfigs are the two VMs' configs: the server lets the TCP flow and the
// UDP datagrams in and nothing else (the probes' ports are closed by its
// policy); the client may send to all four ports, so only the server's
// IN chain stands between the probes and their listeners.
func VMConfigs() (client, server []byte) {
	c, s := VMTaps()
	cc, sc := base(c), base(s)
	cc.Rules.Out = []config.Rule{
		rule("ACCEPT", "tcp", fmt.Sprintf("%d,%d", FlowPort, ProbePort)),
		rule("ACCEPT", "udp", fmt.Sprintf("%d,%d", UDPFlowPort, UDPProbePort)),
	}
	sc.Rules.In = []config.Rule{
		rule("ACCEPT", "tcp", fmt.Sprint(FlowPort)),
		rule("ACCEPT", "udp", fmt.Sprint(UDPFlowPort)),
		rule("DROP", "tcp", "6000:6100"),
	}
	return marshal(cc), marshal(sc)
}

// template turns a pool tap's base config into one of the soak's kinds.
type template struct {
	name  string
	apply func(c *config.NetConf, r *rand.Rand)
}

func randPort(r *rand.Rand) string { return fmt.Sprint(1024 + r.IntN(60000)) }

var (
	no        = false
	templates = []template{
		{"plain", func(c *config.NetConf, r *rand.Rand) {}},
		{"web", func(c *config.NetConf, r *rand.Rand) {
			c.Groups = []string{"web"}
			c.Rules.In = []config.Rule{{Action: "ACCEPT", Proto: "icmp", ICMPType: "echo-request"}}
		}},
		{"admins", func(c *config.NetConf, r *rand.Rand) {
			c.Groups = []string{"mgmt", "web"}
			c.Rules.Out = []config.Rule{{Action: "ACCEPT", Proto: "tcp", DPort: "3306", Dest: "+peers"}, rule("REJECT", "tcp", "25")}
		}},
		{"server", func(c *config.NetConf, r *rand.Rand) {
			c.Rules.In = []config.Rule{rule("ACCEPT", "tcp", "8000:8100"), rule("REJECT", "udp", "161"),
				{Action: "DROP", Proto: "tcp", DPort: "3389", Log: "true"}, rule("ACCEPT", "tcp", randPort(r))}
			c.Rules.Out = []config.Rule{rule("ACCEPT", "tcp", "80,443")}
			c.PolicyOut = "ACCEPT"
		}},
		{"open", func(c *config.NetConf, r *rand.Rand) {
			// Not logDropped: it also sets the host firewall's log
			// rules, which are the host's, not the tap's.
			c.PolicyIn, c.PolicyOut, c.MACFilter = "ACCEPT", "ACCEPT", &no
		}},
		{"v6", func(c *config.NetConf, r *rand.Rand) {
			c.Rules.In = []config.Rule{{Action: "ACCEPT", Proto: "tcp", DPort: "443", Source: "2001:db8:1::/48"},
				{Action: "ACCEPT", Proto: "icmpv6", ICMPType: "echo-request"}, rule("ACCEPT", "udp", randPort(r))}
			c.PolicyIn = "REJECT"
		}},
		{"dhcp", func(c *config.NetConf, r *rand.Rand) {
			c.DHCPServers, c.IPFilter, c.IGMP = []string{"192.0.2.1"}, &no, &no
			c.Rules.In = []config.Rule{{Action: "ACCEPT", Proto: "udp", DPort: randPort(r), Source: "192.0.2.0/24"}}
			c.Rules.Out = []config.Rule{{Action: "ACCEPT", Proto: "tcp", SPort: randPort(r), Comment: "random source port"}}
		}},
	}
)

// PoolConfig is an ADD's config for pool tap t: one of the templates at
// random, some with random ports, so that some taps share their rules and
// some do not.
func PoolConfig(t Tap, r *rand.Rand) (kind string, conf []byte) {
	c := base(t)
	tpl := templates[r.IntN(len(templates))]
	tpl.apply(&c, r)
	return tpl.name, marshal(c)
}
