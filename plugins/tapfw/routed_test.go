package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// Routed traffic, decided by real packets: the host routes between two
// bridges and to an uplink. With allowBridgeRouting a routed packet from a
// tap meets that tap's OUT chain (anti-spoofing, then its rules) and one
// routed to a tap's address meets that tap's IN chain, as bridged packets
// do; without it, routing into or out of the bridge is dropped.

// routedVM is a guest on one of the routed bridges.
type routedVM struct {
	*l2vm
	bridge string
	gw4    string
	gw6    string
}

// routedNet is the host (vmbr0 192.0.2.0/24 and 2001:db8::/64, vmbr1
// 198.51.100.0/24 and 2001:db8:1::/64, the uplink up0 203.0.113.0/24 and
// 2001:db8:9::/64, forwarding on), guest a on vmbr0, guest b on vmbr1, and
// wan behind the uplink.
type routedNet struct {
	h    *host
	a, b *routedVM
	wan  *testnet.NS
	// wan's addresses
	wan4, wan6 string
}

func newRoutedNet(t *testing.T, be testBackend) *routedNet {
	t.Helper()
	h := newHostOn(t, be)
	if err := testnet.AddBridge(h.ns, "vmbr1", "198.51.100.1/24"); err != nil {
		t.Fatal(err)
	}
	h.run("ip", "addr", "add", "192.0.2.1/24", "dev", "vmbr0")
	for _, br := range []string{"vmbr0", "vmbr1"} {
		ipv6On(t, h.ns, br)
	}
	h.run("ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "vmbr0", "nodad")
	h.run("ip", "-6", "addr", "add", "2001:db8:1::1/64", "dev", "vmbr1", "nodad")
	wan, err := testnet.NewNS("wan")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wan.Close() })
	h.run("ip", "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", wan.Name)
	ipv6On(t, h.ns, "up0")
	h.run("ip", "addr", "add", "203.0.113.1/24", "dev", "up0")
	h.run("ip", "-6", "addr", "add", "2001:db8:9::1/64", "dev", "up0", "nodad")
	h.run("ip", "link", "set", "up0", "up")
	ipv6On(t, wan, "eth0")
	for _, args := range [][]string{
		{"ip", "addr", "add", "203.0.113.2/24", "dev", "eth0"},
		{"ip", "-6", "addr", "add", "2001:db8:9::2/64", "dev", "eth0", "nodad"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "route", "add", "default", "via", "203.0.113.1"},
		{"ip", "-6", "route", "add", "default", "via", "2001:db8:9::1"},
	} {
		if _, err := wan.Run(args...); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		if err := h.ns.Sysctl(k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	n := &routedNet{h: h, wan: wan, wan4: "203.0.113.2", wan6: "2001:db8:9::2"}
	n.a = n.vm("vmbr0", "tap110i0", "02:00:00:00:01:10", "192.0.2.10", "2001:db8::10", "192.0.2.1", "2001:db8::1")
	n.b = n.vm("vmbr1", "tap120i0", "02:00:00:00:01:20", "198.51.100.10", "2001:db8:1::10", "198.51.100.1", "2001:db8:1::1")
	return n
}

func (n *routedNet) vm(bridge, port, mac, ip4, ip6, gw4, gw6 string) *routedVM {
	t := n.h.t
	t.Helper()
	ns, err := testnet.NewNS("rt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	if err := testnet.AddPort(n.h.ns, bridge, port, ns, mac, ip4+"/24", gw4); err != nil {
		t.Fatal(err)
	}
	ipv6On(t, ns, "eth0")
	for _, args := range [][]string{
		{"ip", "-6", "addr", "add", ip6 + "/64", "dev", "eth0", "nodad"},
		{"ip", "-6", "route", "add", "default", "via", gw6},
	} {
		if _, err := ns.Run(args...); err != nil {
			t.Fatal(err)
		}
	}
	hw, _ := net.ParseMAC(mac)
	return &routedVM{l2vm: &l2vm{ns: ns, port: port, mac: hw, ip4: net.ParseIP(ip4), ip6: net.ParseIP(ip6)}, bridge: bridge, gw4: gw4, gw6: gw6}
}

// conf is the ADD of v with the given routing choice, DROP policies and
// rules.
func (v *routedVM) conf(routing bool, rules string) testnet.Call {
	return testnet.Call{Command: "ADD", ContainerID: "vm-" + v.port, IfName: v.port,
		Config: []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"routed","type":"tapfw","bridge":%q,"mac":%q,
		"ips":[%q,%q],"allowBridgeRouting":%t,"rules":%s}`, v.bridge, v.mac, v.ip4, v.ip6, routing, rules))}
}

// Guest a: ssh in; web and 8080 out. Guest b: web in; ssh and 8080 out.
const (
	routedRulesA = `{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22"}],
		"out":[{"action":"ACCEPT","proto":"tcp","dport":"80"},{"action":"ACCEPT","proto":"tcp","dport":"8080"},{"action":"ACCEPT","proto":"udp","dport":"9000"}]}`
	routedRulesB = `{"in":[{"action":"ACCEPT","proto":"tcp","dport":"80"}],
		"out":[{"action":"ACCEPT","proto":"tcp","dport":"22"},{"action":"ACCEPT","proto":"tcp","dport":"8080"}]}`
)

// routedProbe is one TCP connection and the verdict each setting expects.
type routedProbe struct {
	name     string
	from     func(n *routedNet) *testnet.NS
	to       func(n *routedNet, v6 bool) string // host:port
	routed   bool                               // with both bridges routing
	oneSided bool                               // with vmbr1 not routing
}

func addrOf(ip net.IP, port string) string { return net.JoinHostPort(ip.String(), port) }

var routedProbes = []routedProbe{
	{"a -> b web (a's OUT and b's IN allow)", fromA, toB("80"), true, false},
	{"a -> b 8080 (a's OUT allows, b's IN does not)", fromA, toB("8080"), false, false},
	{"a -> b 443 (a's OUT does not allow)", fromA, toB("443"), false, false},
	{"b -> a ssh (b's OUT and a's IN allow)", fromB, toA("22"), true, false},
	{"b -> a 8080 (b's OUT allows, a's IN does not)", fromB, toA("8080"), false, false},
	{"a -> wan web (a's OUT allows)", fromA, toWAN("80"), true, true},
	{"a -> wan 443 (a's OUT does not allow)", fromA, toWAN("443"), false, false},
	{"wan -> a ssh (a's IN allows)", fromWAN, toA("22"), true, true},
	{"wan -> a 23 (a's IN does not allow)", fromWAN, toA("23"), false, false},
	{"wan -> b web (b's IN allows)", fromWAN, toB("80"), true, false},
	{"b -> wan ssh (b's OUT allows)", fromB, toWAN("22"), true, false},
	{"b -> wan web (b's OUT does not allow)", fromB, toWAN("80"), false, false},
}

func fromA(n *routedNet) *testnet.NS   { return n.a.ns }
func fromB(n *routedNet) *testnet.NS   { return n.b.ns }
func fromWAN(n *routedNet) *testnet.NS { return n.wan }

func toVM(v func(n *routedNet) *routedVM, port string) func(*routedNet, bool) string {
	return func(n *routedNet, v6 bool) string {
		if v6 {
			return addrOf(v(n).ip6, port)
		}
		return addrOf(v(n).ip4, port)
	}
}

func toA(port string) func(*routedNet, bool) string {
	return toVM(func(n *routedNet) *routedVM { return n.a }, port)
}

func toB(port string) func(*routedNet, bool) string {
	return toVM(func(n *routedNet) *routedVM { return n.b }, port)
}

func toWAN(port string) func(*routedNet, bool) string {
	return func(n *routedNet, v6 bool) string {
		if v6 {
			return net.JoinHostPort(n.wan6, port)
		}
		return net.JoinHostPort(n.wan4, port)
	}
}

// expect runs every probe in both families and reports the ones whose
// verdict is not want(probe).
func (n *routedNet) expect(t *testing.T, when string, timeout time.Duration, want func(routedProbe) bool) {
	t.Helper()
	for _, p := range routedProbes {
		for _, v6 := range []bool{false, true} {
			fam := "IPv4"
			if v6 {
				fam = "IPv6"
			}
			addr := p.to(n, v6)
			got := testnet.TCPProbe(p.from(n), addr, timeout)
			if got != want(p) {
				t.Errorf("%s: %s over %s (%s): passed=%v, want %v", when, p.name, fam, addr, got, want(p))
			}
		}
	}
}

// spoofed sends a's UDP datagram to wan's port 9000 with src as its source
// (IPv4 or IPv6), routed through the host, and reports whether wan got it.
func (n *routedNet) spoofed(t *testing.T, l4, l6 *testnet.UDPListener, src net.IP, payload string) bool {
	t.Helper()
	gw, err := testnet.LinkMAC(n.h.ns, n.a.bridge)
	if err != nil {
		t.Fatal(err)
	}
	if src.To4() != nil {
		err = testnet.SendFrame(n.a.ns, "eth0", testnet.Frame{SrcMAC: n.a.mac, DstMAC: gw, SrcIP: src, DstIP: net.ParseIP(n.wan4),
			SrcPort: 40000, DstPort: 9000, Payload: []byte(payload)})
		if err != nil {
			t.Fatal(err)
		}
		return l4.Got([]byte(payload), 500*time.Millisecond)
	}
	frame := testnet.IPv6Frame(n.a.mac, gw, src, net.ParseIP(n.wan6), 17, testnet.UDP6(40000, 9000, []byte(payload)), 6)
	if err := testnet.SendRaw(n.a.ns, "eth0", frame); err != nil {
		t.Fatal(err)
	}
	return l6.Got([]byte(payload), 500*time.Millisecond)
}

func TestRoutedTraffic(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testRoutedTraffic)
}

func testRoutedTraffic(t *testing.T, be testBackend) {
	n := newRoutedNet(t, be)
	serveTCP(t, []string{"22", "23", "80", "443", "8080"}, n.a.ns, n.b.ns, n.wan)
	l4, err := testnet.UDPListen(n.wan, "0.0.0.0:9000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l4.Close() })
	l6, err := testnet.UDPListen(n.wan, "[::]:9000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l6.Close() })
	// The neighbours resolve before the firewall (the host's first
	// solicitations may wait for its addresses to settle), so every
	// verdict below is the firewall's and none a lost neighbour's.
	n.expect(t, "without tapfw", 3*time.Second, func(routedProbe) bool { return true })
	dhcp68, err := testnet.UDPListen(n.a.ns, "0.0.0.0:68")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dhcp68.Close() })
	udpFrom(t, n.wan, n.wan4+":67", addrOf(n.a.ip4, "68"), "eth0", "bare routed dhcp reply")
	if !dhcp68.Got([]byte("bare routed dhcp reply"), time.Second) {
		t.Fatal("without tapfw a routed udp 67 -> 68 does not arrive: the check below could not fail")
	}
	forged4, forged6 := net.ParseIP("192.0.2.99"), net.ParseIP("2001:db8::99")
	// The host routes a forged source (same subnet, so the reverse path
	// holds) as long as nothing filters it: the check can fail.
	if !n.spoofed(t, l4, l6, forged4, "bare forged v4") || !n.spoofed(t, l4, l6, forged6, "bare forged v6") {
		t.Fatal("without tapfw a forged source is not routed: the spoofing check below could not fail")
	}

	n.h.mustCall(n.a.conf(true, routedRulesA))
	n.h.mustCall(n.b.conf(true, routedRulesB))
	n.expect(t, "both bridges route", 600*time.Millisecond, func(p routedProbe) bool { return p.routed })
	for _, c := range []struct {
		src  net.IP
		want bool
	}{{n.a.ip4, true}, {forged4, false}, {n.a.ip6, true}, {forged6, false}} {
		payload := "routed from " + c.src.String()
		if got := n.spoofed(t, l4, l6, c.src, payload); got != c.want {
			t.Errorf("a -> wan udp 9000 from %s: arrived=%v, want %v", c.src, got, c.want)
		}
	}
	// A DHCP server answers on its client's link: the guest's exemption
	// for DHCP replies does not let routed ones in.
	udpFrom(t, n.wan, n.wan4+":67", addrOf(n.a.ip4, "68"), "eth0", "routed dhcp reply")
	if dhcp68.Got([]byte("routed dhcp reply"), 500*time.Millisecond) {
		t.Error("a routed udp 67 -> 68 from the uplink reached a")
	}
	if !be.nftables() {
		out := n.h.run("iptables-save", "-t", "filter")
		if !strings.Contains(out, `-A TFW-FORWARD -m comment --comment "@tapfw: routed #`) {
			t.Errorf("TFW-FORWARD lacks its routed tail:\n%s", out)
		}
	}
	n.h.mustCall(testnet.Call{Command: "CHECK", ContainerID: "vm-" + n.a.port, IfName: n.a.port, Config: n.a.conf(true, routedRulesA).Config})

	// vmbr1 stops routing: what goes into or out of it by routing is
	// dropped, whatever a's rules say; a still reaches the uplink.
	n.h.mustCall(n.b.conf(false, routedRulesB))
	n.expect(t, "vmbr1 does not route", 600*time.Millisecond, func(p routedProbe) bool { return p.oneSided })
	// Neither routes: a is cut off from the uplink too.
	n.h.mustCall(n.a.conf(false, routedRulesA))
	n.expect(t, "no bridge routes", 600*time.Millisecond, func(routedProbe) bool { return false })
	if n.spoofed(t, l4, l6, n.a.ip4, "no routing v4") {
		t.Error("a's own datagram was routed to wan although vmbr0 does not route")
	}
}
