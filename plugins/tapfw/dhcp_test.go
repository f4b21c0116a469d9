package main

import (
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/ruleset"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// DHCP server replies, decided by real packets: with dhcp on, udp 67 -> 68
// reaches a guest whose IN policy drops everything else, from another port
// of the bridge and from the host itself, by unicast and by broadcast (and
// DHCPv6 replies from link-local addresses); nothing else gets in through
// that exemption; dhcpServers narrows it to the servers named.

// udpFrom sends one datagram from src (host:port) to dst inside ns, as a
// DHCP server does (testnet.UDPSendFrom).
func udpFrom(t *testing.T, ns *testnet.NS, src, dst, dev, payload string) {
	t.Helper()
	if err := testnet.UDPSendFrom(ns, src, dst, dev, []byte(payload)); err != nil {
		t.Fatal(err)
	}
}

// dhcpNet is a host (vmbr0, 192.0.2.31 and its link-local address), guest
// a on tap110i0, and two servers on uplink ports eth8 (192.0.2.5) and eth9
// (192.0.2.6), all with IPv6.
type dhcpNet struct {
	h          *host
	a          *l2vm
	srv, other *l2vm
}

// dhcpStray is an address guest a has that its config does not list.
const dhcpStray = "192.0.2.77"

func newDHCPNet(t *testing.T, be testBackend) *dhcpNet {
	h, a, _ := l2net(t, be)
	n := &dhcpNet{h: h, a: a}
	mk := func(port, mac, ip4 string) *l2vm {
		ns, err := testnet.NewNS("dh")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ns.Close() })
		if err := testnet.AddPort(h.ns, "vmbr0", port, ns, mac, ip4+"/24", ""); err != nil {
			t.Fatal(err)
		}
		ipv6On(t, ns, "eth0")
		hw, _ := net.ParseMAC(mac)
		return &l2vm{ns: ns, port: port, mac: hw, ip4: net.ParseIP(ip4), ll: net.IP(ruleset.LinkLocal(hw).AsSlice())}
	}
	n.srv = mk("eth8", "02:00:00:00:00:05", "192.0.2.5")
	n.other = mk("eth9", "02:00:00:00:00:06", "192.0.2.6")
	// Link-local addresses must have passed duplicate address detection
	// before they can send or receive.
	for _, v := range []*l2vm{n.a, n.srv, n.other} {
		waitDAD(t, v.ns, "eth0")
	}
	// a also holds an address that is not in its ips, which srv reaches
	// without ARP (a's ARP for it is dropped at layer 2).
	if _, err := a.ns.Run("ip", "addr", "add", dhcpStray+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.srv.ns.Run("ip", "neigh", "replace", dhcpStray, "lladdr", a.mac.String(), "dev", "eth0", "nud", "permanent"); err != nil {
		t.Fatal(err)
	}
	return n
}

// dhcpCase is one datagram to guest a and whether it must arrive.
type dhcpCase struct {
	name     string
	from     func(n *dhcpNet) (*testnet.NS, string) // namespace, source host:port
	dst      func(n *dhcpNet) string                // destination host:port
	def      bool                                   // with dhcp on, any server
	narrowed bool                                   // with dhcpServers naming srv
}

func dhcpCases() []dhcpCase {
	srv4 := func(port string) func(n *dhcpNet) (*testnet.NS, string) {
		return func(n *dhcpNet) (*testnet.NS, string) { return n.srv.ns, "192.0.2.5:" + port }
	}
	return []dhcpCase{
		{"server on a port, unicast 67 -> 68", srv4("67"), func(n *dhcpNet) string { return addrOf(n.a.ip4, "68") }, true, true},
		{"server on a port, broadcast 67 -> 68", srv4("67"), func(*dhcpNet) string { return "255.255.255.255:68" }, true, true},
		{"server on a port, unicast 67 -> 68 to an address not in ips", srv4("67"), func(*dhcpNet) string { return dhcpStray + ":68" }, false, false},
		{"server on a port, 67 -> 69", srv4("67"), func(n *dhcpNet) string { return addrOf(n.a.ip4, "69") }, false, false},
		{"server on a port, 68 -> 68", srv4("68"), func(n *dhcpNet) string { return addrOf(n.a.ip4, "68") }, false, false},
		{"another server, unicast 67 -> 68", func(n *dhcpNet) (*testnet.NS, string) { return n.other.ns, "192.0.2.6:67" },
			func(n *dhcpNet) string { return addrOf(n.a.ip4, "68") }, true, false},
		{"the host itself, unicast 67 -> 68", func(n *dhcpNet) (*testnet.NS, string) { return n.h.ns, "192.0.2.31:67" },
			func(n *dhcpNet) string { return addrOf(n.a.ip4, "68") }, true, false},
		{"the host itself, 67 -> 69", func(n *dhcpNet) (*testnet.NS, string) { return n.h.ns, "192.0.2.31:67" },
			func(n *dhcpNet) string { return addrOf(n.a.ip4, "69") }, false, false},
		{"dhcpv6 server on a port, link-local 547 -> 546", func(n *dhcpNet) (*testnet.NS, string) {
			return n.srv.ns, net.JoinHostPort(n.srv.ll.String()+"%eth0", "547")
		}, func(n *dhcpNet) string { return addrOf(n.a.ll, "546") }, true, true},
		{"another dhcpv6 server, link-local 547 -> 546", func(n *dhcpNet) (*testnet.NS, string) {
			return n.other.ns, net.JoinHostPort(n.other.ll.String()+"%eth0", "547")
		}, func(n *dhcpNet) string { return addrOf(n.a.ll, "546") }, true, false},
		{"dhcpv6 from a global address 547 -> 546", func(n *dhcpNet) (*testnet.NS, string) { return n.h.ns, "[2001:db8::1]:547" },
			func(n *dhcpNet) string { return addrOf(n.a.ip6, "546") }, false, false},
		{"dhcpv6 server, link-local 547 -> 547", func(n *dhcpNet) (*testnet.NS, string) {
			return n.srv.ns, net.JoinHostPort(n.srv.ll.String()+"%eth0", "547")
		}, func(n *dhcpNet) string { return addrOf(n.a.ll, "547") }, false, false},
	}
}

// run sends each case's datagram and reports those whose arrival is not
// want(case).
func (n *dhcpNet) run(t *testing.T, when string, want func(dhcpCase) bool) {
	t.Helper()
	ls := map[string]*testnet.UDPListener{}
	for _, addr := range []string{"0.0.0.0:68", "0.0.0.0:69", "[::]:546", "[::]:547"} {
		l, err := testnet.UDPListen(n.a.ns, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ls[addr] = l
	}
	for i, c := range dhcpCases() {
		ns, src := c.from(n)
		dst := c.dst(n)
		payload := fmt.Sprintf("%s %d %s", when, i, c.name)
		udpFrom(t, ns, src, dst, "eth0", payload)
		_, port, _ := net.SplitHostPort(dst)
		l := ls["0.0.0.0:"+port]
		if port == "546" || port == "547" {
			l = ls["[::]:"+port]
		}
		if got := l.Got([]byte(payload), 400*time.Millisecond); got != want(c) {
			t.Errorf("%s: %s (%s -> %s): arrived=%v, want %v", when, c.name, src, dst, got, want(c))
		}
	}
}

func (n *dhcpNet) add(t *testing.T, extra string) {
	t.Helper()
	n.h.mustCall(testnet.Call{Command: "ADD", ContainerID: "vm-" + n.a.port, IfName: n.a.port,
		Config: []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"dhcp","type":"tapfw","bridge":"vmbr0","mac":%q,
		"ips":[%q,%q]%s}`, n.a.mac, n.a.ip4, n.a.ip6, extra))})
}

func TestDHCPReplies(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testDHCPReplies)
}

func testDHCPReplies(t *testing.T, be testBackend) {
	n := newDHCPNet(t, be)
	n.run(t, "without tapfw", func(dhcpCase) bool { return true })
	n.add(t, "")
	n.run(t, "dhcp on", func(c dhcpCase) bool { return c.def })
	n.add(t, fmt.Sprintf(`,"dhcpServers":["192.0.2.5","+srv6"],"ipsets":{"srv6":[%q]}`, n.srv.ll))
	n.run(t, "dhcpServers", func(c dhcpCase) bool { return c.narrowed })
	n.add(t, `,"dhcp":false`)
	n.run(t, "dhcp off", func(dhcpCase) bool { return false })
}

// TestListShowsMACWithoutMACFilter: the guest's MAC is recorded in the
// kernel even when no rule matches it.
func TestListShowsMACWithoutMACFilter(t *testing.T) {
	forEachBackend(t, testListShowsMACWithoutMACFilter)
}

func testListShowsMACWithoutMACFilter(t *testing.T, be testBackend) {
	h := newHostOn(t, be, "tap110i0")
	h.mustCall(testnet.Call{Command: "ADD", ContainerID: "vm110", IfName: "tap110i0",
		Config: tapConf("1.0.0", `,"macFilter":false`)})
	var taps []inspect.Tap
	if err := json.Unmarshal([]byte(h.mustOp("list", "--json")), &taps); err != nil {
		t.Fatal(err)
	}
	if len(taps) != 1 || taps[0].MAC != "02:00:00:00:01:10" {
		t.Errorf("list with macFilter off: %+v, want mac 02:00:00:00:01:10", taps)
	}
	// Without a MAC there is none to show.
	h.mustCall(testnet.Call{Command: "ADD", ContainerID: "vm110", IfName: "tap110i0",
		Config: []byte(`{"cniVersion":"1.0.0","name":"vms","type":"tapfw","macFilter":false,"ips":["192.0.2.200"]}`)})
	taps = nil
	if err := json.Unmarshal([]byte(h.mustOp("list", "--json")), &taps); err != nil {
		t.Fatal(err)
	}
	if len(taps) != 1 || taps[0].MAC != "" {
		t.Errorf("list without a MAC: %+v", taps)
	}
}
