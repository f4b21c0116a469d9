package explain

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// The rule lists a tap's IN chain renders decide every packet as their
// first-match meaning says (model.Decide): random lists of rules of every
// form (protocols, addresses, networks, ranges, aliases, lists, sets,
// any-family, port lists and ranges, ICMP types and codes, macros, every
// action, logged or not), rendered by
// ruleset, installed in the fake tables as an ADD would, and walked by
// explain as the kernel walks them, in both families.
func TestRenderedRulesDecideAsTheirModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	lists, packets, byRule := 0, 0, 0
	for lists < 300 {
		conf := randomTapConfig(rng)
		r, err := config.Resolve(conf, ruleset.Limits, config.Env{ContainerID: "c1", IfName: "tap1"}, nil, nil)
		if err != nil {
			continue // a list the config refuses (e.g. families mixed in a rule)
		}
		lists++
		plan, err := ruleset.Build(r.Model)
		if err != nil {
			t.Fatalf("build %+v: %v", conf.Rules.In, err)
		}
		for _, q := range []*ruleset.Plan{plan, plan.V6} {
			tb, sets := installPlan(t, q)
			fam := model.IPv4
			if q.Fam().V6 {
				fam = model.IPv6
			}
			for range 30 {
				p := randomPacket(rng, fam)
				want, idx := model.Decide(r.Model.Tap.In, r.Model.Tap.PolicyIn, p, r.Model.Sets)
				res, err := Explain(tb, sets, explainPacket(p))
				if err != nil {
					t.Fatalf("explain %+v: %v", p, err)
				}
				packets++
				if idx >= 0 {
					byRule++
				}
				if res.Verdict != string(want) {
					t.Fatalf("packet %+v through rules %+v (policy %s): explain says %s (%v), the model %s by rule %d",
						p, conf.Rules.In, conf.PolicyIn, res.Verdict, res.Decisive, want, idx)
				}
			}
		}
	}
	t.Logf("%d rule lists, %d packets, %d decided by a rule", lists, packets, byRule)
	// The lists and packets are drawn so that rules decide often: a
	// test where the policy decides everything would prove little.
	if byRule < packets/4 {
		t.Errorf("only %d of %d packets were decided by a rule", byRule, packets)
	}
}

// installPlan applies one family's plan to empty fake tables as a first
// ADD does and returns the installed table and the sets' contents by
// kernel name.
func installPlan(t *testing.T, q *ruleset.Plan) (*netfilter.Table, map[string][]netip.Prefix) {
	t.Helper()
	ft := netfilter.NewFakeTables()
	empty, err := ft.Save()
	if err != nil {
		t.Fatal(err)
	}
	t0, err := netfilter.ParseSave(empty)
	if err != nil {
		t.Fatal(err)
	}
	c, err := netfilter.PlanChanges(netfilter.TableReader{T: t0}, nil, q)
	if err != nil {
		t.Fatal(err)
	}
	if err := ft.Restore(c.RestoreFile()); err != nil {
		t.Fatal(err)
	}
	save, err := ft.Save()
	if err != nil {
		t.Fatal(err)
	}
	tb, err := netfilter.ParseSave(save)
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string][]netip.Prefix{}
	for _, s := range append(append([]ruleset.Set(nil), q.Sets...), q.BaseSets...) {
		sets[s.Name] = s.Entries
	}
	return tb, sets
}

var (
	modelAddrs4 = []string{"192.0.2.1", "192.0.2.77", "198.51.100.5", "203.0.113.200"}
	modelAddrs6 = []string{"2001:db8::1", "2001:db8::77", "2001:db8:1::5", "2001:db8:ff::9"}
	modelNets   = []string{"192.0.2.0/25", "198.51.100.0/24", "203.0.113.192/26", "2001:db8::/64", "2001:db8:1::/48",
		"192.0.2.77", "2001:db8::77", "0.0.0.0/0", "::/0", "+web",
		// Ranges, aliases and lists, both families mixed.
		"192.0.2.70-192.0.2.80", "2001:db8::70-2001:db8::80", "peer", "192.0.2.1,198.51.100.0/24",
		"203.0.113.200,2001:db8::77,+web", "192.0.2.78-192.0.2.200,peer6"}
	modelMacros    = []string{"DNS", "Ping", "SSH", "Trcrt", "GRE", "DHCPv6", "HTTPS"}
	modelPorts     = []int{22, 53, 80, 443, 546, 1000, 1500, 2000, 8080}
	modelPortSpecs = []string{"22", "80,443", "1000:2000", "53,1000:1499,8080", "443:443"}
	// ICMP types and codes the rules name and the packets carry.
	modelICMP4 = [][2]int{{8, 0}, {0, 0}, {3, 3}, {3, 1}, {11, 0}}
	modelICMP6 = [][2]int{{128, 0}, {129, 0}, {1, 4}, {1, 0}, {3, 0}}
)

func randomTapConfig(rng *rand.Rand) *config.NetConf {
	no := false
	conf := &config.NetConf{
		Bridge: "br0", Tap: "tap1", MAC: "02:00:00:00:00:01", IPs: []string{"192.0.2.10", "2001:db8::10"},
		DHCP: &no, NDP: &no, IGMP: &no,
		PolicyIn: []string{"ACCEPT", "DROP", "REJECT"}[rng.IntN(3)],
		IPSets:   map[string][]string{"web": {"192.0.2.64/26", "203.0.113.200", "2001:db8::/120"}},
		Aliases:  map[string]string{"peer": "198.51.100.5", "peer6": "2001:db8:1::/48"},
	}
	for range 1 + rng.IntN(8) {
		conf.Rules.In = append(conf.Rules.In, randomRule(rng))
	}
	return conf
}

func randomRule(rng *rand.Rand) config.Rule {
	r := config.Rule{Action: []string{"ACCEPT", "DROP", "REJECT"}[rng.IntN(3)], Log: config.LogOption([]string{"false", "false", "false", "true", "info"}[rng.IntN(5)])}
	r.Proto = []string{"", "tcp", "udp", "icmp", "icmpv6", "47"}[rng.IntN(6)]
	if rng.IntN(2) == 0 {
		r.Source = modelNets[rng.IntN(len(modelNets))]
	}
	if rng.IntN(3) == 0 {
		r.Dest = modelNets[rng.IntN(len(modelNets))]
	}
	if rng.IntN(4) == 0 {
		r.Macro, r.Proto = modelMacros[rng.IntN(len(modelMacros))], ""
		return r
	}
	switch r.Proto {
	case "tcp", "udp":
		if rng.IntN(2) == 0 {
			r.DPort = modelPortSpecs[rng.IntN(len(modelPortSpecs))]
		}
		if rng.IntN(4) == 0 {
			r.SPort = modelPortSpecs[rng.IntN(len(modelPortSpecs))]
		}
	case "icmp", "icmpv6":
		types := modelICMP4
		if r.Proto == "icmpv6" {
			types = modelICMP6
		}
		switch tc := types[rng.IntN(len(types))]; rng.IntN(3) {
		case 0:
			r.ICMPType = strconv.Itoa(tc[0])
		case 1:
			r.ICMPType = fmt.Sprintf("%d/%d", tc[0], tc[1])
		}
	}
	return r
}

func randomPacket(rng *rand.Rand, fam string) model.Packet {
	addrs, icmp, icmpProto := modelAddrs4, modelICMP4, 1
	if fam == model.IPv6 {
		addrs, icmp, icmpProto = modelAddrs6, modelICMP6, 58
	}
	p := model.Packet{Family: fam,
		Src: netip.MustParseAddr(addrs[rng.IntN(len(addrs))]), Dst: netip.MustParseAddr(addrs[rng.IntN(len(addrs))])}
	switch rng.IntN(4) {
	case 0:
		p.Proto = 6
	case 1:
		p.Proto = 17
	case 2:
		p.Proto = icmpProto
		tc := icmp[rng.IntN(len(icmp))]
		p.ICMPType, p.ICMPCode = tc[0], tc[1]
	default:
		p.Proto = 47
	}
	if p.Proto == 6 || p.Proto == 17 {
		p.SPort, p.DPort = modelPorts[rng.IntN(len(modelPorts))], modelPorts[rng.IntN(len(modelPorts))]
	}
	return p
}

// explainPacket is p bridged from the uplink to the tap, a new flow.
func explainPacket(p model.Packet) Packet {
	e := Packet{Family: 4, Hook: "FORWARD", InIface: "br0", OutIface: "br0", PhysIn: "uplink0", PhysOut: "tap1",
		Bridged: true, Src: p.Src, Dst: p.Dst, Proto: strconv.Itoa(p.Proto),
		SPort: uint16(p.SPort), DPort: uint16(p.DPort), ICMPType: -1, ICMPCode: -1, CtState: "NEW", HopLimit: 64}
	if p.Family == model.IPv6 {
		e.Family = 6
	}
	switch p.Proto {
	case 6:
		e.Proto = "tcp"
	case 17:
		e.Proto = "udp"
	case 1:
		e.Proto, e.ICMPType, e.ICMPCode = "icmp", p.ICMPType, p.ICMPCode
	case 58:
		e.Proto, e.ICMPType, e.ICMPCode = "ipv6-icmp", p.ICMPType, p.ICMPCode
	}
	return e
}
