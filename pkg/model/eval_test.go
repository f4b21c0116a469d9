package model

import (
	"net/netip"
	"testing"
)

// Decide is first match: the first rule that matches gives the verdict,
// the policy decides when none does; a rule of one family never matches
// the other's packets.
func TestDecide(t *testing.T) {
	web := map[string][]netip.Prefix{"web": {netip.MustParsePrefix("198.51.100.0/24")}}
	rules := []Rule{
		{Action: Drop, Proto: "tcp", DPort: "22", Source: Addr{Set: "web"}},
		{Action: Accept, Proto: "tcp", DPort: "22,1000:2000"},
		{Action: Reject, Proto: "icmp", ICMPType: "3/3"},
		{Action: Accept, Source: Addr{Family: IPv6}},
		{Action: Accept, Proto: "47", Dest: Addr{Prefix: netip.MustParsePrefix("192.0.2.0/25")}},
	}
	v4 := func(src string, proto, dport int) Packet {
		return Packet{Family: IPv4, Proto: proto, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("192.0.2.10"), SPort: 40000, DPort: dport}
	}
	for _, c := range []struct {
		name string
		p    Packet
		want Action
		rule int
	}{
		{"ssh from the set", v4("198.51.100.7", 6, 22), Drop, 0},
		{"ssh from elsewhere", v4("203.0.113.1", 6, 22), Accept, 1},
		{"a port in the range", v4("203.0.113.1", 6, 2000), Accept, 1},
		{"past the range", v4("203.0.113.1", 6, 2001), Drop, -1},
		{"udp to 22", v4("203.0.113.1", 17, 22), Drop, -1},
		{"icmp 3/3", Packet{Family: IPv4, Proto: 1, ICMPType: 3, ICMPCode: 3}, Reject, 2},
		{"icmp 3/1", Packet{Family: IPv4, Proto: 1, ICMPType: 3, ICMPCode: 1}, Drop, -1},
		{"any IPv6", Packet{Family: IPv6, Proto: 17, Src: netip.MustParseAddr("2001:db8::1"), DPort: 9}, Accept, 3},
		{"gre to the network", v4("203.0.113.1", 47, 0), Accept, 4},
	} {
		if got, i := Decide(rules, Drop, c.p, web); got != c.want || i != c.rule {
			t.Errorf("%s: %s by rule %d, want %s by rule %d", c.name, got, i, c.want, c.rule)
		}
	}
}
