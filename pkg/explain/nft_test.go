package explain

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/nft"
)

func readListing(t *testing.T, name string) *nft.Listing {
	t.Helper()
	data, err := os.ReadFile("../../testdata/nft-json/" + name)
	if err != nil {
		t.Fatal(err)
	}
	l, err := nft.ParseListing(data)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// onBridge is a NEW TCP packet the bridge br forwards from port in to port out.
func onBridge(br, in, out, src, dst string, dport uint16) Packet {
	return Packet{Family: family(src), Hook: "FORWARD", InIface: br, OutIface: br, PhysIn: in, PhysOut: out, Bridged: true,
		Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: "tcp", SPort: 40000, DPort: dport,
		ICMPType: -1, ICMPCode: -1, HopLimit: 64}
}

func family(a string) int {
	if strings.Contains(a, ":") {
		return 6
	}
	return 4
}

func withMAC(p Packet, mac string) Packet {
	p.SrcMAC, _ = net.ParseMAC(mac)
	return p
}

func withState(p Packet, st string) Packet { p.CtState = st; return p }

// TestExplainNFTSeed walks packets through the seed's taps as the
// nftables backend installs them, with a foreign table at the same
// hooks (captured by testdata/nft-json/capture.sh).
func TestExplainNFTSeed(t *testing.T) {
	l := readListing(t, "seed.json")
	const mac110, mac123 = "1e:0b:85:27:8d:65", "e6:5f:f3:d4:2e:a6"
	cases := []struct {
		name    string
		p       Packet
		verdict string
		chain   string // the decisive rule's chain; "" for a policy
		comment string
	}{
		{"uplink to 110 ssh", onBridge("vmbr0", "uplink0", "tap110i0", "203.0.113.5", "192.0.2.200", 22), Accept, "bridge tapfw tfw-pi4-", "in rule 1 ssh"},
		{"uplink to 110 http", onBridge("vmbr0", "uplink0", "tap110i0", "203.0.113.5", "192.0.2.200", 80), Drop, "bridge tapfw tfw-pi4-", "policy drop"},
		{"uplink to 110 established", withState(onBridge("vmbr0", "uplink0", "tap110i0", "203.0.113.5", "192.0.2.200", 80), "ESTABLISHED"), Accept, "bridge tapfw tfw-pi4-", "established"},
		{"uplink to 110 invalid", withState(onBridge("vmbr0", "uplink0", "tap110i0", "203.0.113.5", "192.0.2.200", 22), "INVALID"), Drop, "bridge tapfw tfw-pi4-", "invalid"},
		{"110 to uplink ssh", withMAC(onBridge("vmbr0", "tap110i0", "uplink0", "192.0.2.200", "203.0.113.5", 22), mac110), Accept, "", ""},
		{"110 spoofs its address", withMAC(onBridge("vmbr0", "tap110i0", "uplink0", "192.0.2.99", "203.0.113.5", 22), mac110), Drop, "bridge tapfw tfw-po4-", "ip anti-spoof"},
		{"110 spoofs its mac", withMAC(onBridge("vmbr0", "tap110i0", "uplink0", "192.0.2.200", "203.0.113.5", 22), "02:00:00:00:00:01"), Drop, "bridge tapfw tfw-pre", "@tapfw: mac anti-spoof"},
		{"foreign table drops its blocked set", withMAC(onBridge("vmbr0", "tap123i0", "uplink0", "192.0.2.201", "203.0.113.200", 443), mac123), Drop, "inet tfwx-foreign filt", "foreign: blocked"},
		{"foreign table rejects its ports", withMAC(onBridge("vmbr0", "tap123i0", "uplink0", "192.0.2.201", "203.0.113.5", 2005), mac123), Reject, "inet tfwx-foreign filt", "foreign: ports"},
		{"123 to 110 ssh", withMAC(onBridge("vmbr0", "tap123i0", "tap110i0", "192.0.2.201", "192.0.2.200", 22), mac123), Accept, "bridge tapfw tfw-pi4-", "in rule 1 ssh"},
	}
	for _, c := range cases {
		res, err := ExplainNFT(l, c.p)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		text := res.Text()
		if res.Verdict != c.verdict {
			t.Errorf("%s: verdict %s, want %s:\n%s", c.name, res.Verdict, c.verdict, text)
			continue
		}
		switch {
		case c.chain == "" && res.Decisive != nil && res.Verdict != Accept:
			t.Errorf("%s: decided by %+v, want a policy:\n%s", c.name, res.Decisive, text)
		case c.chain != "" && (res.Decisive == nil || !strings.HasPrefix(res.Decisive.Chain, c.chain) || !strings.HasPrefix(res.Decisive.Comment, c.comment)):
			t.Errorf("%s: decided by %+v, want %s %q:\n%s", c.name, res.Decisive, c.chain, c.comment, text)
		}
		if len(res.Uncertain) > 0 {
			t.Errorf("%s: uncertain %q", c.name, res.Uncertain)
		}
	}
}

// TestExplainNFTDualStack: rejects the inet chains answer for a profile,
// IPv6, a routed network, logging chains and neighbour discovery.
func TestExplainNFTDualStack(t *testing.T) {
	l := readListing(t, "dualstack.json")
	const mac201, mac202 = "02:00:00:00:02:01", "02:00:00:00:02:02"
	from201 := func(src, dst string, dport uint16) Packet {
		return withMAC(onBridge("vmbr6", "tap201i0", "tap202i0", src, dst, dport), mac201)
	}
	from202 := func(src, dst string, dport uint16) Packet {
		return withMAC(onBridge("vmbr6", "tap202i0", "tap201i0", src, dst, dport), mac202)
	}
	cases := []struct {
		name     string
		p        Packet
		verdict  string
		chain    string
		comment  string
		reject   string
		noteLike string // a note of the decisive step holds it
	}{
		{"201 mails: rejected with a reset", from201("2001:db8:1::201", "2001:db8:1::202", 25), Reject, "bridge tapfw tfw-po6-", "out rule 1 no mail", "tcp reset", "carried out by inet tapfw tfw-rej-fwd"},
		{"201 to 202 https: 202's group", from201("192.0.2.201", "192.0.2.202", 443), Accept, "bridge tapfw tfw-g4-web-in", "+web: in rule 1", "", ""},
		{"201 to 202 ssh: 202's policy", from201("192.0.2.201", "192.0.2.202", 22), Drop, "bridge tapfw tfw-pi4-", "policy drop", "", ""},
		{"201 from its routed network", from201("2001:db8:201::9", "2001:db8:1::202", 443), Accept, "bridge tapfw tfw-g6-web-in", "+web: in rule 1", "", ""},
		{"201 spoofs an IPv6 source", from201("2001:db8:99::1", "2001:db8:1::202", 443), Drop, "bridge tapfw tfw-pre", "@tapfw: ipv6 anti-spoof", "", ""},
		{"202 to 201 8080: rejected by rule", from202("2001:db8:1::202", "2001:db8:1::201", 8080), Reject, "bridge tapfw tfw-pi6-", "in rule 5", "tcp reset", "carried out by"},
		{"202 to 201 8080 over IPv4", from202("192.0.2.202", "192.0.2.201", 8080), Drop, "bridge tapfw tfw-pi4-", "policy drop", "", ""},
	}
	for _, c := range cases {
		res, err := ExplainNFT(l, c.p)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		text := res.Text()
		d := res.Decisive
		switch {
		case res.Verdict != c.verdict:
			t.Errorf("%s: verdict %s, want %s:\n%s", c.name, res.Verdict, c.verdict, text)
		case d == nil || !strings.HasPrefix(d.Chain, c.chain) || !strings.HasPrefix(d.Comment, c.comment):
			t.Errorf("%s: decided by %+v, want %s %q:\n%s", c.name, d, c.chain, c.comment, text)
		case res.RejectWith != c.reject:
			t.Errorf("%s: reject with %q, want %q:\n%s", c.name, res.RejectWith, c.reject, text)
		case c.noteLike != "" && !strings.Contains(strings.Join(d.Notes, "\n"), c.noteLike):
			t.Errorf("%s: notes %q lack %q", c.name, d.Notes, c.noteLike)
		case len(res.Uncertain) > 0:
			t.Errorf("%s: uncertain %q", c.name, res.Uncertain)
		}
	}
}

// TestExplainNFTUncertain: a neighbour advertisement's target is not in
// the Packet, so the target anti-spoof rule is uncertain, said so, and
// assumed not to match.
func TestExplainNFTUncertain(t *testing.T) {
	l := readListing(t, "dualstack.json")
	p := withMAC(onBridge("vmbr6", "tap201i0", "tap202i0", "2001:db8:1::201", "2001:db8:1::202", 0), "02:00:00:00:02:01")
	p.Proto, p.SPort, p.DPort, p.ICMPType, p.ICMPCode, p.HopLimit = "ipv6-icmp", 0, 0, 136, 0, 255
	res, err := ExplainNFT(l, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Uncertain) == 0 || !strings.Contains(res.Uncertain[0], "nd target anti-spoof") && !strings.Contains(res.Uncertain[0], "@th,64,128") {
		t.Errorf("uncertain %q:\n%s", res.Uncertain, res.Text())
	}
}

// TestExplainNFTErrors: a malformed packet, and a ruleset that jumps to
// a chain it does not have, are errors, not verdicts.
func TestExplainNFTErrors(t *testing.T) {
	l := readListing(t, "seed.json")
	bad := onBridge("vmbr0", "uplink0", "tap110i0", "203.0.113.5", "2001:db8::1", 22)
	if _, err := ExplainNFT(l, bad); err == nil {
		t.Error("a packet of two families was explained")
	}
	broken, err := nft.ParseListing([]byte(`{"nftables":[{"table":{"family":"inet","name":"x"}},
		{"chain":{"family":"inet","table":"x","name":"f","type":"filter","hook":"forward","prio":0,"policy":"accept"}},
		{"rule":{"family":"inet","table":"x","chain":"f","handle":2,"expr":[{"jump":{"target":"gone"}}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ExplainNFT(broken, onBridge("vmbr0", "uplink0", "tap110i0", "203.0.113.5", "192.0.2.200", 22)); err == nil || !strings.Contains(err.Error(), "missing chain gone") {
		t.Errorf("a jump to a missing chain: %v", err)
	}
}
