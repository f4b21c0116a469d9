package explain

import (
	"net/netip"
	"testing"

	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/nft"
)

// The host firewall's smurf rule, in each backend's words: a source of
// type broadcast is dropped (0.0.0.0, a DHCP client's, is let through
// first).
const smurfSave = `*filter
:INPUT ACCEPT [0:0]
-A INPUT -s 0.0.0.0/32 -j ACCEPT
-A INPUT -m addrtype --src-type BROADCAST -j DROP
-A INPUT -m addrtype ! --dst-type LOCAL,BROADCAST -j REJECT
COMMIT
`

const smurfListing = `{"nftables":[{"table":{"family":"inet","name":"t","handle":1}},
{"chain":{"family":"inet","table":"t","name":"in","handle":1,"type":"filter","hook":"input","prio":0,"policy":"accept"}},
{"rule":{"family":"inet","table":"t","chain":"in","handle":2,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"0.0.0.0"}},{"accept":null}]}},
{"rule":{"family":"inet","table":"t","chain":"in","handle":3,"expr":[{"match":{"op":"==","left":{"fib":{"result":"type","flags":["saddr"]}},"right":"broadcast"}},{"drop":null}]}},
{"rule":{"family":"inet","table":"t","chain":"in","handle":4,"expr":[{"match":{"op":"!=","left":{"fib":{"result":"type","flags":["daddr"]}},"right":{"set":["local","broadcast"]}}},{"reject":null}]}}]}`

// TestAddrType: addrtype (iptables) and fib ... type (nftables) look the
// address up in the host's local table: a directed broadcast and the
// limited broadcast are broadcast, the host's own address local, another
// address unicast; without the table a unicast source is uncertain, the
// limited broadcast still known.
func TestAddrType(t *testing.T) {
	tb, err := netfilter.ParseSave([]byte(smurfSave))
	if err != nil {
		t.Fatal(err)
	}
	l, err := nft.ParseListing([]byte(smurfListing))
	if err != nil {
		t.Fatal(err)
	}
	local := map[netip.Addr]string{
		netip.MustParseAddr("192.0.2.1"):   "local",
		netip.MustParseAddr("192.0.2.255"): "broadcast",
	}
	pkt := func(src, dst string, table map[netip.Addr]string) Packet {
		return Packet{Family: 4, Hook: "INPUT", InIface: "vmbr0", Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
			Proto: "udp", SPort: 5000, DPort: 6000, ICMPType: -1, ICMPCode: -1, HopLimit: 64, LocalTable: table}
	}
	for _, c := range []struct {
		name      string
		p         Packet
		verdict   string
		uncertain bool
	}{
		{"a unicast source to the host", pkt("198.51.100.7", "192.0.2.1", local), Accept, false},
		{"a directed broadcast source", pkt("192.0.2.255", "192.0.2.1", local), Drop, false},
		{"the limited broadcast source", pkt("255.255.255.255", "192.0.2.1", nil), Drop, false},
		{"a DHCP client", pkt("0.0.0.0", "255.255.255.255", local), Accept, false},
		{"to an address not the host's", pkt("198.51.100.7", "198.51.100.8", local), Reject, false},
		{"to the subnet's broadcast", pkt("198.51.100.7", "192.0.2.255", local), Accept, false},
		{"no local table", pkt("198.51.100.7", "192.0.2.1", nil), Accept, true},
	} {
		for _, be := range []struct {
			name string
			walk func(Packet) (Result, error)
		}{
			{"iptables", func(p Packet) (Result, error) { return Explain(tb, nil, p) }},
			{"nftables", func(p Packet) (Result, error) { return ExplainNFT(l, p) }},
		} {
			res, err := be.walk(c.p)
			if err != nil {
				t.Fatalf("%s, %s: %v", be.name, c.name, err)
			}
			if res.Verdict != c.verdict || (len(res.Uncertain) > 0) != c.uncertain {
				t.Errorf("%s, %s: %s, uncertain %q; want %s, uncertain %v\n%s", be.name, c.name, res.Verdict, res.Uncertain, c.verdict, c.uncertain, res.Text())
			}
		}
	}
}
