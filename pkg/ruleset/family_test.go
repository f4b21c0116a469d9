package ruleset

import (
	"net/netip"
	"testing"

	"github.com/tapfw/tapfw/pkg/model"
)

// TestAddrString: addresses print as iptables-save prints them (glibc's
// inet_ntop), so wanted and installed rules compare as text.
func TestAddrString(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":          "192.0.2.1",
		"2001:db8::1":        "2001:db8::1",
		"::":                 "::",
		"::f":                "::f",
		"::ffff":             "::ffff",
		"::f:ffff":           "::0.15.255.255",
		"::1:0":              "::0.1.0.0",
		"::ffff:192.0.2.1":   "::ffff:192.0.2.1",
		"::1:0:0":            "::1:0:0",
		"fe80::ff:fe00:201":  "fe80::ff:fe00:201",
		"2001:db8:0:0:1::1":  "2001:db8::1:0:0:1",
		"2001:0:0:1:0:0:0:1": "2001:0:0:1::1",
	} {
		if got := AddrString(netip.MustParseAddr(in)); got != want {
			t.Errorf("AddrString(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestTrieHost6: keys are nibbles last first; edges match the low
// nibbles under a mask; a network's leaf is in the root.
func TestTrieHost6(t *testing.T) {
	a := netip.MustParsePrefix("2001:db8:1::201/128")
	if k := IPKey6(a); k != "1020000000000000000010008bd01002" {
		t.Fatalf("key %s", k)
	}
	p := HostPath(IPv6, "tap201i0", a)
	if len(p.Nodes) != MaxTrieDepth+1 || p.Nodes[3] != "TFW-DH-102" {
		t.Errorf("nodes %v", p.Nodes)
	}
	if got := p.Edges[4].Spec(); got[:len("-d ::201/::0.15.255.255")] != "-d ::201/::0.15.255.255" {
		t.Errorf("edge 5: %s", got)
	}
	if got := p.Leaf.Dst; got != a || p.Leaf.DstMask.IsValid() {
		t.Errorf("leaf %v mask %v", got, p.Leaf.DstMask)
	}
	n := HostPath(IPv6, "tap201i0", netip.MustParsePrefix("2001:db8:201::/64"))
	if len(n.Nodes) != 1 || n.Leaf.Dst.String() != "2001:db8:201::/64" {
		t.Errorf("network path %v leaf %v", n.Nodes, n.Leaf.Dst)
	}
}

// TestApplies: a rule goes to the family its addresses or protocol name.
func TestRenders(t *testing.T) {
	v4 := model.Addr{Prefix: netip.MustParsePrefix("192.0.2.0/24")}
	v6 := model.Addr{Prefix: netip.MustParsePrefix("2001:db8::/32")}
	for _, c := range []struct {
		u      model.Rule
		v4, v6 bool
	}{
		{model.Rule{Proto: "tcp"}, true, true},
		{model.Rule{Source: v4}, true, false},
		{model.Rule{Dest: v6}, false, true},
		{model.Rule{Proto: "icmp"}, true, false},
		{model.Rule{Proto: model.ProtoICMPv6}, false, true},
		{model.Rule{Source: model.Addr{Family: "ipv6"}}, false, true},
		{model.Rule{Source: model.Addr{Set: "web"}}, true, true},
	} {
		if IPv4.Renders(c.u) != c.v4 || IPv6.Renders(c.u) != c.v6 {
			t.Errorf("%+v: applies to ipv4 %v, ipv6 %v", c.u, IPv4.Renders(c.u), IPv6.Renders(c.u))
		}
	}
	if f, ok := FamilyOfSet("tfw6-t-x"); !ok || f != IPv6 {
		t.Error("tfw6-t-x is not IPv6")
	}
	if TempSet("tfw6-t-x")[:7] != "tfw6-x-" || TempSet("tfw-t-x")[:6] != "tfw-x-" {
		t.Error("temporary sets do not keep the family prefix")
	}
}
