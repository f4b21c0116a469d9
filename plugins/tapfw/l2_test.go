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

// Layer-2 anti-spoofing, proved with real frames: each attack is
// first shown to work without tapfw (so the test can see it), then shown
// to fail with it.

type l2vm struct {
	ns   *testnet.NS
	port string
	mac  net.HardwareAddr
	ip4  net.IP
	ip6  net.IP
	ll   net.IP
	net6 string // a network routed to the VM
}

func l2net(t *testing.T, be testBackend) (*host, *l2vm, *l2vm) {
	h := newHostOn(t, be)
	ipv6On(t, h.ns, "vmbr0")
	h.run("ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "vmbr0", "nodad")
	mk := func(port, mac, ip4, ip6 string) *l2vm {
		n, err := testnet.NewNS("l2")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		if err := testnet.AddPort(h.ns, "vmbr0", port, n, mac, ip4+"/24", ""); err != nil {
			t.Fatal(err)
		}
		ipv6On(t, n, "eth0")
		if _, err := n.Run("ip", "-6", "addr", "add", ip6+"/64", "dev", "eth0", "nodad"); err != nil {
			t.Fatal(err)
		}
		if err := n.Sysctl("net.ipv6.conf.eth0.accept_ra", "1"); err != nil {
			t.Fatal(err)
		}
		hw, _ := net.ParseMAC(mac)
		ll := net.IP(ruleset.LinkLocal(hw).AsSlice())
		return &l2vm{ns: n, port: port, mac: hw, ip4: net.ParseIP(ip4), ip6: net.ParseIP(ip6), ll: ll, net6: "2001:db8:" + port[3:6] + "::/64"}
	}
	a := mk("tap110i0", "02:00:00:00:01:10", "192.0.2.10", "2001:db8::10")
	b := mk("tap111i0", "02:00:00:00:01:11", "192.0.2.11", "2001:db8::11")
	return h, a, b
}

// ipv6On turns IPv6 on for dev in ns: testnet turns it off in its
// namespaces.
func ipv6On(t *testing.T, ns *testnet.NS, dev string) {
	t.Helper()
	for _, k := range []string{"all", "default", dev} {
		if err := ns.Sysctl("net.ipv6.conf."+k+".disable_ipv6", "0"); err != nil {
			t.Fatal(err)
		}
	}
}

// waitDAD waits until no IPv6 address of dev in ns is tentative: until
// then the kernel neither sends from them nor accepts packets to them.
func waitDAD(t *testing.T, ns *testnet.NS, dev string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, err := ns.Run("ip", "-6", "addr", "show", "dev", dev, "tentative")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(out)) == "" {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s in %s still tentative:\n%s", dev, ns.Name, out)
		}
	}
}

func (v *l2vm) conf(extra string) testnet.Call {
	return testnet.Call{Command: "ADD", ContainerID: "vm-" + v.port, IfName: v.port,
		Config: []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"l2","type":"tapfw","bridge":"vmbr0","mac":%q,
		"ips":[%q,%q,%q],"policyIn":"ACCEPT","policyOut":"ACCEPT"%s}`, v.mac, v.ip4, v.ip6, v.net6, extra))}
}

// neigh is the MAC ns has for ip, or "".
func neigh(t *testing.T, ns *testnet.NS, ip net.IP) string {
	t.Helper()
	out, err := ns.Run("ip", "neigh", "show", ip.String())
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// learn makes from resolve to's address (a UDP packet to port 9 needs
// it), waits for the entry, then waits out the ARP locktime so that a
// later claim could replace it.
func learn(t *testing.T, from *testnet.NS, to net.IP) {
	t.Helper()
	err := from.Do(func() error {
		c, err := net.Dial("udp", net.JoinHostPort(to.String(), "9"))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("hello"))
		return err
	})
	if err != nil {
		t.Fatalf("udp to %s: %v", to, err)
	}
	for i := 0; i < 40 && neigh(t, from, to) == ""; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if neigh(t, from, to) == "" {
		t.Fatalf("%s did not resolve %s", from.Name, to)
	}
	time.Sleep(1200 * time.Millisecond)
}

type attack struct {
	name string
	run  func(t *testing.T, h *host, a, b *l2vm) // a attacks
	hit  func(t *testing.T, h *host, a, b *l2vm) bool
}

var l2attacks = []attack{
	{
		name: "gratuitous ARP for the neighbour's address poisons the host's cache",
		run: func(t *testing.T, h *host, a, b *l2vm) {
			learn(t, h.ns, b.ip4)
			send(t, a, testnet.ARPFrame(a.mac, testnet.BroadcastMAC, 2, a.mac, b.ip4, testnet.BroadcastMAC, b.ip4))
		},
		hit: func(t *testing.T, h *host, a, b *l2vm) bool { return neigh(t, h.ns, b.ip4) == a.mac.String() },
	},
	{
		name: "gratuitous ARP for the host's address poisons the neighbour's cache",
		run: func(t *testing.T, h *host, a, b *l2vm) {
			learn(t, b.ns, net.ParseIP("192.0.2.31"))
			send(t, a, testnet.ARPFrame(a.mac, testnet.BroadcastMAC, 2, a.mac, net.ParseIP("192.0.2.31"), testnet.BroadcastMAC, net.ParseIP("192.0.2.31")))
		},
		hit: func(t *testing.T, h *host, a, b *l2vm) bool {
			return neigh(t, b.ns, net.ParseIP("192.0.2.31")) == a.mac.String()
		},
	},
	{
		name: "unsolicited neighbour advertisement for the neighbour's address poisons the host's cache",
		run: func(t *testing.T, h *host, a, b *l2vm) {
			learn(t, h.ns, b.ip6)
			na := testnet.NeighborAdvert(b.ip6, a.mac)
			send(t, a, testnet.IPv6Frame(a.mac, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, a.ll, net.ParseIP("ff02::1"), 58, na, 2))
		},
		hit: func(t *testing.T, h *host, a, b *l2vm) bool { return neigh(t, h.ns, b.ip6) == a.mac.String() },
	},
	{
		name: "router advertisement gives the neighbour a route",
		run: func(t *testing.T, h *host, a, b *l2vm) {
			_, pfx, _ := net.ParseCIDR("2001:db8:99::/64")
			ra := testnet.RouterAdvert(a.mac, pfx)
			send(t, a, testnet.IPv6Frame(a.mac, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, a.ll, net.ParseIP("ff02::1"), 58, ra, 2))
			time.Sleep(300 * time.Millisecond)
		},
		hit: func(t *testing.T, h *host, a, b *l2vm) bool {
			out, err := b.ns.Run("ip", "-6", "route", "show")
			if err != nil {
				t.Fatal(err)
			}
			return strings.Contains(string(out), "2001:db8:99::/64") || strings.Contains(string(out), "default via "+a.ll.String())
		},
	},
}

func send(t *testing.T, v *l2vm, frame []byte) {
	t.Helper()
	if err := testnet.SendRaw(v.ns, "eth0", frame); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
}

// TestL2AntiSpoofing: ARP, neighbour advertisements and router
// advertisements from a VM claiming what is not its own change nobody's
// caches or routes once tapfw is on.
func TestL2AntiSpoofing(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testL2AntiSpoofing)
}

func testL2AntiSpoofing(t *testing.T, be testBackend) {
	for _, at := range l2attacks {
		t.Run(at.name, func(t *testing.T) {
			// Without tapfw the attack works: the test can see it.
			h, a, b := l2net(t, be)
			at.run(t, h, a, b)
			if !at.hit(t, h, a, b) {
				t.Fatalf("without tapfw the attack did not work; the test cannot tell")
			}
			// With tapfw it does not.
			h, a, b = l2net(t, be)
			h.mustCall(a.conf(""))
			h.mustCall(b.conf(""))
			at.run(t, h, a, b)
			if at.hit(t, h, a, b) {
				t.Errorf("with tapfw the attack worked:\n%s", h.run("nft", "list", "table", "bridge", "tapfw"))
			}
		})
	}
	t.Run("radv true lets router advertisements through", func(t *testing.T) {
		h, a, b := l2net(t, be)
		h.mustCall(a.conf(`,"radv":true`))
		h.mustCall(b.conf(""))
		ra := l2attacks[3]
		ra.run(t, h, a, b)
		if !ra.hit(t, h, a, b) {
			t.Errorf("radv:true, yet the neighbour got no route")
		}
	})
}

// TestL2IPv6Traffic: IPv6 from a VM passes from its own addresses and its
// link-local one, not from another; a DHCPv6 server reply from it is
// dropped, a reply from another port passes; the rest of neighbour
// discovery works both ways between VM and host and between VMs.
func TestL2IPv6Traffic(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testL2IPv6Traffic)
}

func testL2IPv6Traffic(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	h.mustCall(a.conf(""))
	h.mustCall(b.conf(""))
	// Neighbour discovery between the VMs and with the host works.
	learn(t, a.ns, b.ip6)
	learn(t, h.ns, a.ip6)
	l, err := testnet.UDPListen(b.ns, "[::]:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l546, err := testnet.UDPListen(b.ns, "[::]:546")
	if err != nil {
		t.Fatal(err)
	}
	defer l546.Close()
	bmac, err := testnet.LinkMAC(b.ns, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		src      net.IP
		sport    uint16
		dport    uint16
		listener *testnet.UDPListener
		want     bool
	}{
		{"from its own address", a.ip6, 5000, 9000, l, true},
		{"from its link-local address", a.ll, 5000, 9000, l, true},
		{"from another address (2001:db8::99)", net.ParseIP("2001:db8::99"), 5000, 9000, l, false},
		{"from an address of its network " + a.net6, net.ParseIP(strings.TrimSuffix(a.net6, "/64") + "7"), 5000, 9000, l, true},
		{"from an address of the neighbour's network " + b.net6, net.ParseIP(strings.TrimSuffix(b.net6, "/64") + "7"), 5000, 9000, l, false},
		{"from the neighbour's address", b.ip6, 5000, 9000, l, false},
		{"DHCPv6 server reply 547->546", a.ll, 547, 546, l546, false},
		{"a reply to 546 from port 548", a.ll, 548, 546, l546, true},
	}
	for i, c := range cases {
		payload := []byte(fmt.Sprintf("l2-%d-%d", i, time.Now().UnixNano()))
		send(t, a, testnet.IPv6Frame(a.mac, bmac, c.src, b.ip6, 17, testnet.UDP6(c.sport, c.dport, payload), 6))
		if got := c.listener.Got(payload, time.Second); got != c.want {
			t.Errorf("%s: received %v, want %v", c.name, got, c.want)
		}
	}
}

// TestL2CheckAndDel: CHECK sees a tampered bridge table, ADD repairs it,
// DEL removes the tap's part and the last DEL the table.
func TestL2CheckAndDel(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testL2CheckAndDel)
}

func testL2CheckAndDel(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	h.mustCall(a.conf(""))
	h.mustCall(b.conf(""))
	check := a.conf("")
	check.Command = "CHECK"
	h.mustCall(check)
	for _, tamper := range [][]string{
		{"delete", "element", "bridge", "tapfw", "tfw-ip6", `{ "tap110i0" . 2001:db8::10 }`},
		{"delete", "element", "bridge", "tapfw", "tfw-mac", `{ "tap110i0" . 02:00:00:00:01:10 }`},
		{"flush", "chain", "bridge", "tapfw", "tfw-pre"},
		{"delete", "element", "bridge", "tapfw", "tfw-taps", `{ "tap110i0" }`},
		{"flush", "chain", "bridge", "tapfw", "tfw-r-tap110i0"},
	} {
		h.run(append([]string{"nft"}, tamper...)...)
		_, e := h.call(check)
		if e == nil || e.Code != errDrift || !strings.Contains(e.Msg, "bridge tapfw") {
			t.Errorf("CHECK after nft %s: %+v", strings.Join(tamper, " "), e)
		}
		h.mustCall(a.conf(""))
		h.mustCall(check)
	}
	del := a.conf("")
	del.Command = "DEL"
	h.mustCall(del)
	if s := h.state(); strings.Contains(s, "tap110i0") || !strings.Contains(s, "tap111i0") {
		t.Errorf("DEL of tap110i0 left it or took tap111i0:\n%s", s)
	}
	del = b.conf("")
	del.Command = "DEL"
	h.mustCall(del)
	if s := h.state(); strings.Contains(s, "bridge tapfw") || strings.Contains(s, "TFW-") {
		t.Errorf("the last DEL left tapfw's tables:\n%s", s)
	}
}

// TestL2NothingToCheck: a tap with no MAC, no address and the layer-2
// checks off is in the set of taps all the same; CHECK finds no drift
// and DEL takes it out of every set.
func TestL2NothingToCheck(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, func(t *testing.T, be testBackend) {
		h := newHostOn(t, be, "tap110i0", "tap111i0")
		conf := func(cmd, tap string) testnet.Call {
			return testnet.Call{Command: cmd, ContainerID: "vm-" + tap, IfName: tap,
				Config: []byte(`{"cniVersion":"1.0.0","name":"vms","type":"tapfw","macFilter":false,"ipFilter":false,"dhcp":false,"logDropped":false}`)}
		}
		h.mustCall(conf("ADD", "tap110i0"))
		h.mustCall(conf("ADD", "tap111i0"))
		if s := h.run("nft", "list", "set", "bridge", "tapfw", "tfw-taps"); !strings.Contains(s, `"tap110i0"`) {
			t.Fatalf("tap110i0 is not in the set of taps:\n%s", s)
		}
		h.mustCall(conf("CHECK", "tap110i0"))
		h.mustCall(conf("DEL", "tap110i0"))
		if s := h.run("nft", "list", "ruleset"); strings.Contains(s, "tap110i0") || !strings.Contains(s, "tap111i0") {
			t.Errorf("DEL of tap110i0 left it or took tap111i0:\n%s", s)
		}
	})
}
