package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/ruleset"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// Multicast group membership (IGMP, MLD) with real packets. A snooping
// bridge or switch sends a group's traffic, the solicited-node groups of
// IPv6 neighbour discovery among them, only to ports that reported a
// membership: reports the firewall drops leave a guest, or the host, deaf.
//
// The groups joined are the documentation ones (RFC 6676); the reports
// and queries go to the link-scope addresses the protocols fix
// (224.0.0.22, 224.0.0.1, ff02::16, ff02::1), on the sandbox bridge only.
var (
	docGroup4 = net.ParseIP("233.252.0.1")
	docGroup6 = net.ParseIP("ff02::db8:0:1")
	// The host joins others: IGMPv2 and MLDv1 members keep back their
	// answer to a query when they hear another member's first.
	hostGroup4 = net.ParseIP("233.252.0.2")
	hostGroup6 = net.ParseIP("ff02::db8:0:2")
)

// TestMulticastMembership: with every policy DROP, a guest's own reports
// reach the uplink, and queries and other members' reports from there
// reach it (and it answers), but not IGMP with a TTL above 1 nor MLD to a
// unicast address; with "igmp": false none of it passes; the host's
// reports pass its firewall.
func TestMulticastMembership(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testMulticastMembership)
}

func testMulticastMembership(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	// Flood everything, so the uplink sees what passes the firewall
	// whether or not the bridge has heard a querier.
	h.run("ip", "link", "set", "vmbr0", "type", "bridge", "mcast_snooping", "0")
	up, err := testnet.NewNS("up")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = up.Close() })
	upMAC := "02:00:00:00:01:99"
	if err := testnet.AddPort(h.ns, "vmbr0", "up0", up, upMAC, "192.0.2.99/24", ""); err != nil {
		t.Fatal(err)
	}
	hw, _ := net.ParseMAC(upMAC)
	upLL := net.IP(ruleset.LinkLocal(hw).AsSlice())

	strict := func(v *l2vm, extra string) testnet.Call {
		c := v.dualConf("ADD", `{}`, "DROP")
		c.Config = []byte(strings.Replace(string(c.Config), `"policyOut":"ACCEPT"`, `"policyOut":"DROP"`+extra, 1))
		return c
	}
	h.mustCall(strict(a, ""))
	h.mustCall(strict(b, `,"igmp":false`))

	capUp, capA, capB := capture(t, up), capture(t, a.ns), capture(t, b.ns)

	hostMAC, err := testnet.LinkMAC(h.ns, "vmbr0")
	if err != nil {
		t.Fatal(err)
	}
	hostLL := net.IP(ruleset.LinkLocal(hostMAC).AsSlice())
	for _, m := range []struct {
		ns     *testnet.NS
		dev    string
		groups []net.IP
	}{
		{a.ns, "eth0", []net.IP{docGroup4, docGroup6}},
		{b.ns, "eth0", []net.IP{docGroup4, docGroup6}},
		{h.ns, "vmbr0", []net.IP{hostGroup4, hostGroup6}},
	} {
		for _, g := range m.groups {
			c, err := testnet.Join(m.ns, m.dev, g)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
		}
	}

	// Joining sends unsolicited reports at once: IGMPv3 to 224.0.0.22,
	// MLDv2 to ff02::16.
	for who, p := range map[string]string{
		"guest IGMPv3 report": "ipv4 " + a.ip4.String() + " > 224.0.0.22 proto 2 ttl 1 type 34",
		"guest MLDv2 report":  "ipv6 " + a.ll.String() + " > ff02::16 next 58 hl 1 type 143",
		"host IGMPv3 report":  "ipv4 192.0.2.31 > 224.0.0.22 proto 2 ttl 1 type 34",
		"host MLDv2 report":   "ipv6 " + hostLL.String() + " > ff02::16 next 58 hl 1 type 143",
	} {
		if !capUp.Wait(p, 3*time.Second) {
			t.Errorf("%s did not reach the uplink (want %q); it saw:\n%s", who, p, strings.Join(capUp.Packets(), "\n"))
		}
	}

	// Queries from the uplink (a switch or router): the guest answers
	// each with a report for its group, to the group's address.
	if err := testnet.SendRaw(up, "eth0", testnet.IGMP(hw, net.ParseIP("192.0.2.99"), net.ParseIP("224.0.0.1"), 0x11, nil, 1)); err != nil {
		t.Fatal(err)
	}
	if err := testnet.SendRaw(up, "eth0", testnet.MLD(hw, upLL, net.ParseIP("ff02::1"), 130)); err != nil {
		t.Fatal(err)
	}
	for who, p := range map[string]string{
		"IGMPv2 answer": "ipv4 " + a.ip4.String() + " > " + docGroup4.String() + " proto 2 ttl 1 type 22",
		"MLDv1 answer":  "ipv6 " + a.ll.String() + " > " + docGroup6.String() + " next 58 hl 1 type 131",
	} {
		if !capUp.Wait(p, 3*time.Second) {
			t.Errorf("the guest's %s did not reach the uplink (want %q); it saw:\n%s\nthe guest saw:\n%s", who, p, strings.Join(capUp.Packets(), "\n"), strings.Join(capA.Packets(), "\n"))
		}
	}

	// Other members' reports reach the guest too (v1 and v2 listeners
	// hold back their own answers on hearing one), for a group of their
	// own here. Not so a report with TTL 2, nor MLD to a unicast
	// address: sent first, they would be there before the others.
	upIP, other4, other6 := net.ParseIP("192.0.2.99"), net.ParseIP("233.252.0.9"), net.ParseIP("ff02::db8:0:9")
	unicast := testnet.MLD(hw, upLL, a.ll, 131)
	copy(unicast[0:6], a.mac)
	for _, f := range [][]byte{
		testnet.IGMP(hw, upIP, other4, 0x16, other4, 2),
		unicast,
		testnet.IGMP(hw, upIP, other4, 0x16, other4, 1),
		testnet.MLD(hw, upLL, net.ParseIP("ff02::16"), 143),
		testnet.MLD(hw, upLL, other6, 131),
	} {
		if err := testnet.SendRaw(up, "eth0", f); err != nil {
			t.Fatal(err)
		}
	}
	for who, p := range map[string]string{
		"IGMPv2 report": "ipv4 192.0.2.99 > " + other4.String() + " proto 2 ttl 1 type 22",
		"MLDv2 report":  "ipv6 " + upLL.String() + " > ff02::16 next 58 hl 1 type 143",
		"MLDv1 report":  "ipv6 " + upLL.String() + " > " + other6.String() + " next 58 hl 1 type 131",
	} {
		if !capA.Wait(p, 2*time.Second) {
			t.Errorf("the uplink's %s did not reach the guest (want %q); it saw:\n%s", who, p, strings.Join(capA.Packets(), "\n"))
		}
	}
	for _, p := range capA.Packets() {
		if strings.HasPrefix(p, "ipv4 192.0.2.99 > "+other4.String()+" proto 2 ttl 2") || strings.HasPrefix(p, "ipv6 "+upLL.String()+" > "+a.ll.String()+" ") {
			t.Errorf("reached the guest past its DROP policy: %s", p)
		}
	}

	// "igmp": false: b's reports stay in the firewall, queries and other
	// members' reports never reach it.
	for _, p := range capUp.Packets() {
		if membership(p) && (strings.HasPrefix(p, "ipv4 "+b.ip4.String()+" ") || strings.HasPrefix(p, "ipv6 "+b.ll.String()+" ")) {
			t.Errorf("a report from the guest with igmp off reached the uplink: %s", p)
		}
	}
	for _, p := range capB.Packets() {
		// What the host itself sends is dispatched by destination (OUTPUT
		// cannot see the bridge port), so only bridged senders count.
		for _, from := range []string{"ipv4 192.0.2.99 ", "ipv6 " + upLL.String() + " ", "ipv4 " + a.ip4.String() + " ", "ipv6 " + a.ll.String() + " "} {
			if membership(p) && strings.HasPrefix(p, from) {
				t.Errorf("a query or report reached the guest with igmp off: %s", p)
			}
		}
	}
}

// capture records what eth0 of ns sees until the test ends.
func capture(t *testing.T, ns *testnet.NS) *testnet.Capture {
	t.Helper()
	c, err := testnet.CaptureOn(ns, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestMLDBeforeDAD: a guest whose link-local address is still tentative
// reports from the unspecified address, to ff02::16 only; from there,
// nothing else passes.
func TestMLDBeforeDAD(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testMLDBeforeDAD)
}

func testMLDBeforeDAD(t *testing.T, be testBackend) {
	h, a, _ := l2net(t, be)
	h.mustCall(a.dualConf("ADD", `{}`, "DROP"))
	// The guest's own reports from :: stop once its link-local address is
	// no longer tentative; after that only ours reach the rule.
	waitDAD(t, a.ns, "eth0")
	const dad, spoof = "tap110i0: mld before dad", "tap110i0: ip anti-spoof"
	for _, c := range []struct {
		dst  string
		typ  byte
		rule string
	}{
		{"ff02::16", 143, dad},
		{"ff02::db8:0:1", 131, spoof},
		{"ff02::db8:0:1", 143, spoof},
	} {
		dad0, spoof0 := h.packets(6, dad), h.packets(6, spoof)
		if err := testnet.SendRaw(a.ns, "eth0", testnet.MLD(a.mac, net.IPv6unspecified, net.ParseIP(c.dst), c.typ)); err != nil {
			t.Fatal(err)
		}
		want := map[string]int{dad: dad0, spoof: spoof0}
		want[c.rule]++
		for end := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got := map[string]int{dad: h.packets(6, dad), spoof: h.packets(6, spoof)}
			if got[dad] == want[dad] && got[spoof] == want[spoof] {
				break
			}
			if time.Now().After(end) {
				t.Errorf("type %d from :: to %s: counters %v, want %v", c.typ, c.dst, got, want)
				break
			}
		}
	}
}

// packets is the packet counter of the rule whose comment starts with
// comment, from save -c.
// packets is the packet counter of the rule whose comment is comment,
// in the tables of IP family fam (4 or 6) of the host's backend.
func (h *host) packets(fam int, comment string) int {
	h.t.Helper()
	if h.be.nftables() {
		return h.nftPackets(fam, comment)
	}
	save := "iptables-save"
	if fam == 6 {
		save = "ip6tables-save"
	}
	for _, line := range strings.Split(h.run(save, "-c"), "\n") {
		if !strings.Contains(line, `--comment "`+comment+" ") {
			continue
		}
		var n, bytes int
		if _, err := fmt.Sscanf(line, "[%d:%d]", &n, &bytes); err != nil {
			h.t.Fatalf("%s: %v", line, err)
		}
		return n
	}
	h.t.Fatalf("no rule %q in %s", comment, save)
	return 0
}

// nftPackets is packets for the nftables backend: the rule with that
// comment, less the tap's name, in the tap's profiles of the family.
func (h *host) nftPackets(fam int, comment string) int {
	h.t.Helper()
	tap, what, _ := strings.Cut(comment, ": ")
	word := map[int]string{4: "ip", 6: "ip6"}[fam]
	for _, m := range []string{"tfw-out", "tfw-in"} {
		chain := h.profile(tap, m, word)
		for _, line := range strings.Split(h.run("nft", "list", "chain", "bridge", "tapfw", chain), "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasSuffix(line, `comment "`+what+`"`) {
				continue
			}
			_, rest, ok := strings.Cut(line, "counter packets ")
			var n int
			if _, err := fmt.Sscanf(rest, "%d", &n); !ok || err != nil {
				h.t.Fatalf("%s: no counter", line)
			}
			return n
		}
	}
	h.t.Fatalf("no rule %q in the IPv%d tap chains", comment, fam)
	return 0
}

// membership says whether a capture summary is IGMP or MLD.
func membership(p string) bool {
	if strings.HasPrefix(p, "ipv4 ") {
		return strings.Contains(p, " proto 2 ")
	}
	for _, typ := range []string{"130", "131", "132", "143"} {
		if strings.HasSuffix(p, " next 58 hl 1 type "+typ) {
			return true
		}
	}
	return false
}
