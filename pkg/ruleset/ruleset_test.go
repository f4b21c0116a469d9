package ruleset

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/model"
)

func TestNamesFitKernelLimits(t *testing.T) {
	long := strings.Repeat("a", MaxIfName)
	for _, c := range []string{TapIn(long), TapOut(long), BridgeChain(long), TrieIn.Node("x"), TrieHost.Node("c0"), ChainHostOut} {
		if len(c) > MaxChainName {
			t.Errorf("chain %q is %d > %d characters", c, len(c), MaxChainName)
		}
	}
	for _, s := range []string{TapSet(long), UserSet(strings.Repeat("b", MaxUserSetName)), TempSet(UserSet(strings.Repeat("b", MaxUserSetName)))} {
		if len(s) > MaxSetName {
			t.Errorf("set %q is %d > %d characters", s, len(s), MaxSetName)
		}
	}
	longest := Rule{Comment: DispatchComment(model.Tap{Name: long, Network: strings.Repeat("n", MaxNetworkName),
		ContainerID: strings.Repeat("c", MaxContainerID), IfName: long}), Verdict: Verdict{Target: "DROP"}}.InstalledComment()
	if len(longest) > MaxComment {
		t.Errorf("dispatch comment can be %d > %d characters", len(longest), MaxComment)
	}
	for _, what := range []string{"drop", "rej", "r999"} {
		if p := LogPrefix(long, "out", what); len(p) > 29 {
			t.Errorf("log prefix %q is %d > 29 characters", p, len(p))
		}
	}
}

// Tap chains, bridge chains and shared chains can never share a name,
// whatever the interface names.
func TestNamesDoNotCollide(t *testing.T) {
	if tap, ok := IsTapChain(TapIn("x-OUT")); !ok || tap != "x-OUT" {
		t.Errorf("IsTapChain(TapIn(x-OUT)) = %q %v", tap, ok)
	}
	if _, ok := IsTapChain(BridgeChain("tap1-IN")); ok {
		t.Error("a bridge chain reads as a tap chain")
	}
	if _, ok := IsTapChain(TrieIn.Node("tap1")); ok || !IsTrieChain(TrieIn.Node("tap1")) {
		t.Error("a trie node reads as a tap chain, or not as a trie node")
	}
	if _, ok := IsTapChain(ChainHostIn); ok {
		t.Error("a host chain reads as a tap chain")
	}
}

// Build refuses names over this backend's limits with the config's field,
// even when the config was not checked against them.
func TestBuildLimits(t *testing.T) {
	base := func() model.Config {
		return model.Config{Tap: model.Tap{Name: "tap1", Bridge: "br0", PolicyIn: model.Drop, PolicyOut: model.Drop},
			Bridge: model.Bridge{Name: "br0"}}
	}
	for _, c := range []struct {
		field string
		env   bool
		edit  func(*model.Config)
	}{
		{"ipsets", false, func(c *model.Config) { c.Sets = map[string][]netip.Prefix{strings.Repeat("s", Limits.SetName+1): nil} }},
		{"securityGroups", false, func(c *model.Config) { c.Groups = map[string]model.Group{strings.Repeat("g", Limits.GroupName+1): {}} }},
		{"name", false, func(c *model.Config) { c.Tap.Network = strings.Repeat("n", Limits.NetworkName+1) }},
		{"CNI_CONTAINERID", true, func(c *model.Config) { c.Tap.ContainerID = strings.Repeat("c", Limits.ContainerID+1) }},
	} {
		cfg := base()
		if _, err := Build(cfg); err != nil {
			t.Fatalf("base config: %v", err)
		}
		c.edit(&cfg)
		_, err := Build(cfg)
		var fe *model.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || fe.Env != c.env {
			t.Errorf("%s over the limit: %v, want a FieldError for %s (env %v)", c.field, err, c.field, c.env)
		}
	}
}

func TestSpecQuoting(t *testing.T) {
	r := Rule{Chain: "C", Comment: "tap1: x", Verdict: Verdict{Target: "LOG", LogPrefix: "tfw:tap1:in:drop "}}
	want := `-A C -m comment --comment "tap1: x #` + hashOf(r) + `" -j LOG --log-prefix "tfw:tap1:in:drop "`
	if got := r.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	r = Rule{Chain: "C", Src: netip.MustParsePrefix("192.0.2.1/32"), Proto: "tcp", DPorts: "22,80", Comment: "bare_word-1", Verdict: Verdict{Target: "REJECT", RejectWith: "tcp-reset"}}
	want = `-A C -s 192.0.2.1/32 -p tcp -m multiport --dports 22,80 -m comment --comment "bare_word-1 #` + hashOf(r) + `" -j REJECT --reject-with tcp-reset`
	if got := r.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestDispatchCommentRoundTrip(t *testing.T) {
	for _, tp := range []model.Tap{
		{Name: "tap110i0", Network: "seed", ContainerID: "vm110", IfName: "tap110i0"},
		{Name: "veth12", IfName: "eth0"},
	} {
		a, ok := ParseDispatchComment(DispatchComment(tp))
		if !ok || a.Tap != tp.Name || a.Network != tp.Network || a.ContainerID != tp.ContainerID || a.IfName != tp.IfName {
			t.Errorf("round trip of %+v gave %+v %v", tp, a, ok)
		}
	}
	if _, ok := ParseDispatchComment("tap1: dispatch"); ok {
		t.Error("the IN dispatch comment parsed as an attachment")
	}
}

func TestBuildOrderAndPolicy(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	p, err := Build(model.Config{
		Tap: model.Tap{Name: "tap1", Bridge: "br0", MAC: mac, MACFilter: true, IPFilter: true, DHCP: true,
			PolicyIn: model.Accept, PolicyOut: model.Reject, LogDropped: true,
			Out: []model.Rule{{Action: model.Accept, Proto: "tcp", DPort: "22", Log: true}}},
		Bridge: model.Bridge{Name: "br0", AllowRouting: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range p.Owned[1].Rules {
		out = append(out, r.Comment)
	}
	want := []string{"tap1: invalid", "tap1: mac anti-spoof", "tap1: no dhcp server", "tap1: dhcp discover",
		"tap1: ip anti-spoof", "tap1: dhcp renew", "tap1: established", "tap1: out rule 1", "tap1: out rule 1", "tap1: log policy", "tap1: policy reject"}
	if strings.Join(out, "|") != strings.Join(want, "|") {
		t.Errorf("OUT chain order:\n got %v\nwant %v", out, want)
	}
	in := p.Owned[0].Rules
	if last := in[len(in)-1]; last.Verdict.Target != "ACCEPT" {
		t.Errorf("IN policy ACCEPT rendered as %s", last.Verdict.Target)
	}
	for _, r := range p.Members {
		if r.Chain == ChainForward && r.Verdict.Target == "DROP" {
			t.Error("allowBridgeRouting still drops routed traffic")
		}
	}
	if _, err := Build(model.Config{Tap: model.Tap{Name: "tap 1", Bridge: "br0"}, Bridge: model.Bridge{Name: "br0"}}); err == nil {
		t.Error("Build accepted a bad tap name")
	}
}

func hashOf(r Rule) string {
	c := r.InstalledComment()
	return c[strings.LastIndex(c, "#")+1:]
}

// The installed comment changes with any part of the rule.
func TestCommentHashFollowsRule(t *testing.T) {
	a := Rule{Chain: "C", Proto: "tcp", DPort: "22", Comment: "tap1: in rule 1", Verdict: Verdict{Target: "ACCEPT"}}
	b := a
	b.DPort = "23"
	if a.InstalledComment() == b.InstalledComment() {
		t.Error("same comment for different rules")
	}
	if !strings.HasPrefix(a.InstalledComment(), "tap1: in rule 1 #") || len(hashOf(a)) != 8 {
		t.Errorf("comment %q", a.InstalledComment())
	}
}

func TestTriePaths(t *testing.T) {
	p := TrieIn.PathFor("tap12", "TFW-T-tap12-OUT", "tap12: dispatch")
	if len(p.Nodes) != 5 || p.Nodes[0] != "TFW-DI" || len(p.Edges) != 4 {
		t.Fatalf("path %+v", p)
	}
	if got := p.Edges[3].Spec(); !strings.HasPrefix(got, "-m physdev --physdev-in tap1+ ") || !strings.HasSuffix(got, "-g "+p.Nodes[4]) {
		t.Errorf("edge 3: %s", got)
	}
	if got := p.Leaf.Spec(); !strings.HasPrefix(got, "-m physdev --physdev-in tap12 ") || p.Leaf.Chain != p.Nodes[4] {
		t.Errorf("leaf: %s in %s", got, p.Leaf.Chain)
	}
	// Long names stop at MaxTrieDepth levels: the leaf is exact there.
	p = TrieIn.PathFor("veth0123456789a", "T", "x: dispatch")
	if len(p.Nodes) != MaxTrieDepth+1 || p.Leaf.Chain != TrieIn.Node("veth0123") || p.Leaf.Physdev.In != "veth0123456789a" {
		t.Errorf("long name: %d nodes, leaf %s in %s", len(p.Nodes), p.Leaf.Physdev.In, p.Leaf.Chain)
	}
	// Addresses: the leaf sits one nibble up and matches exactly.
	for _, c := range []struct{ ip, key, leafNode, edge string }{
		{"198.51.100.7/32", "c6336407", "c633640", "198.51.100.0/28"},
		{"198.51.100.16/28", "c633641", "c63364", "198.51.100.0/24"},
		{"198.51.100.4/30", "c6336404/30", "c63364", "198.51.100.0/24"},
	} {
		ip := netip.MustParsePrefix(c.ip)
		if k := IPKey(ip); k != c.key {
			t.Errorf("IPKey(%s) = %s, want %s", ip, k, c.key)
		}
		p := TrieHost.PathFor(IPKey(ip), "X", "t: from host")
		if p.Leaf.Chain != TrieHost.Node(c.leafNode) || p.Leaf.Dst != ip {
			t.Errorf("%s: leaf %s in %s", ip, p.Leaf.Dst, p.Leaf.Chain)
		}
		if e := p.Edges[len(p.Edges)-1]; e.Dst.String() != c.edge {
			t.Errorf("%s: last edge %s, want %s", ip, e.Dst, c.edge)
		}
	}
}

// DHCP replies: by default any source for IPv4 (to broadcast or the tap's
// own set) and link-local ones for IPv6; with dhcpServers only those,
// each in its own family, sets in both.
func TestDHCPReplies(t *testing.T) {
	tap := model.Tap{Name: "tap1", DHCP: true, IPFilter: true}
	specs := func(fam *Family, servers ...model.Addr) []string {
		tap.DHCPServers = servers
		var out []string
		for _, r := range dhcpReplies("C", tap, fam, Verdict{Target: "ACCEPT"}) {
			out = append(out, strings.Join(r.Args()[:len(r.Args())-6], " "))
		}
		return out
	}
	for _, c := range []struct {
		name    string
		fam     *Family
		servers []model.Addr
		want    []string
	}{
		{"v4 any", IPv4, nil, []string{
			"-d 255.255.255.255/32 -p udp -m udp --sport 67 --dport 68",
			"-p udp -m set --match-set tfw-t-tap1 dst -m udp --sport 67 --dport 68"}},
		{"v6 any", IPv6, nil, []string{"-s fe80::/10 -p udp -m udp --sport 547 --dport 546"}},
		{"v4 servers", IPv4, []model.Addr{{Prefix: netip.MustParsePrefix("192.0.2.5/32")}, {Set: "dhcp"}, {Prefix: netip.MustParsePrefix("fe80::5/128")}}, []string{
			"-s 192.0.2.5/32 -d 255.255.255.255/32 -p udp -m udp --sport 67 --dport 68",
			"-s 192.0.2.5/32 -p udp -m set --match-set tfw-t-tap1 dst -m udp --sport 67 --dport 68",
			"-d 255.255.255.255/32 -p udp -m set --match-set tfw-s-dhcp src -m udp --sport 67 --dport 68",
			"-p udp -m set --match-set tfw-s-dhcp src -m set --match-set tfw-t-tap1 dst -m udp --sport 67 --dport 68"}},
		{"v6 servers", IPv6, []model.Addr{{Prefix: netip.MustParsePrefix("192.0.2.5/32")}, {Set: "dhcp"}, {Prefix: netip.MustParsePrefix("fe80::5/128")}}, []string{
			"-p udp -m set --match-set tfw6-s-dhcp src -m udp --sport 547 --dport 546",
			"-s fe80::5/128 -p udp -m udp --sport 547 --dport 546"}},
		{"v6 with IPv4 servers only: none", IPv6, []model.Addr{{Prefix: netip.MustParsePrefix("192.0.2.5/32")}}, nil},
		{"v6 any of the family", IPv6, []model.Addr{{Prefix: netip.MustParsePrefix("192.0.2.5/32")}, {Family: IPv6.Name}}, []string{
			"-p udp -m udp --sport 547 --dport 546"}},
	} {
		got := specs(c.fam, c.servers...)
		if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%s:\n%s\nwant\n%s", c.name, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
		}
	}
}

func TestStripHash(t *testing.T) {
	r := Rule{Chain: "C", Comment: "tap1: in rule 1 dns #1", Verdict: Verdict{Target: "ACCEPT"}}
	for in, want := range map[string]string{
		r.InstalledComment():     "tap1: in rule 1 dns #1",
		"tap1: in rule 1 dns #1": "tap1: in rule 1 dns #1",
		"foreign #1234567g":      "foreign #1234567g",
		"#12345678":              "#12345678",
		"x #12345678":            "x",
	} {
		if got := StripHash(in); got != want {
			t.Errorf("StripHash(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsGroupChain(t *testing.T) {
	for chain, want := range map[string]string{
		GroupChain("web", "in"): "web", GroupChain("a-b", "out"): "a-b",
		"TFW-G--IN": "", "TFW-G-web": "", "TFW-T-web-IN": "", "TFW-GROUP-ALLOW": "",
	} {
		if got, ok := IsGroupChain(chain); got != want || ok != (want != "") {
			t.Errorf("IsGroupChain(%q) = %q, %v; want %q", chain, got, ok, want)
		}
	}
}

// A log prefix reads back as what wrote it, with or without an owner, and
// from within a kernel log line.
func TestLogPrefixRoundTrip(t *testing.T) {
	for _, l := range []LogLine{{"tap110i0", "in", "drop"}, {"", "out", "r12"}, {"host", "in", "rej"}, {"+web", "in", "r2"}} {
		line := "kernel: " + LogPrefix(l.Owner, l.Dir, l.What) + "IN=tap1 OUT=tap2"
		if got, ok := ParseLogPrefix(line); !ok || got != l {
			t.Errorf("%q reads as %+v, %v; want %+v", line, got, ok, l)
		}
	}
	for _, bad := range []string{"tfw:in", "tfw::in:drop", "tfw:x:up:drop", "tfw:in:", "nothing"} {
		if got, ok := ParseLogPrefix(bad); ok {
			t.Errorf("%q reads as %+v", bad, got)
		}
	}
}

// TestHelpersDefined: every helper a config may name has its ports here.
func TestHelpersDefined(t *testing.T) {
	for _, name := range model.Helpers {
		if !slices.ContainsFunc(Helpers, func(h Helper) bool { return h.Name == name && len(h.Ports) > 0 }) {
			t.Errorf("helper %s has no definition", name)
		}
	}
	if len(Helpers) != len(model.Helpers) {
		t.Errorf("%d helpers defined, %d nameable", len(Helpers), len(model.Helpers))
	}
}
