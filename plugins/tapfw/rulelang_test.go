package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// The rule language Proxmox VE operators bring: macros, aliases, address
// lists and ranges, set entries that exclude, disabled rules, log levels;
// decided by real packets in both families, and explained as the packets
// went.

func TestRuleLanguage(t *testing.T) { forEachBackend(t, testRuleLanguage) }

func testRuleLanguage(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	serveTCP(t, []string{"22", "53", "80", "443", "5432", "5433", "8080", "9090"}, a.ns)
	// b is 192.0.2.11 and 2001:db8::11.
	rules := `{"in":[
		{"action":"ACCEPT","macro":"ssh","source":"192.0.2.5-192.0.2.15,2001:db8::11","comment":"admins"},
		{"action":"ACCEPT","macro":"DNS","source":"peer"},
		{"action":"ACCEPT","macro":"HTTP","enable":false},
		{"action":"ACCEPT","macro":"HTTPS","source":"peer6"},
		{"action":"ACCEPT","macro":"PostgreSQL","source":"+peers"},
		{"action":"ACCEPT","proto":"tcp","dport":"8080","source":"peer,198.51.100.7"},
		{"action":"ACCEPT","proto":"tcp","dport":"9090","source":"192.0.2.12-192.0.2.20,2001:db8::12-2001:db8::20"},
		{"action":"DROP","proto":"tcp","dport":"7070","log":"info"},
		{"action":"ACCEPT","proto":"tcp","dport":"5433","source":"+near"}]}`
	conf := testnet.Call{Command: "ADD", ContainerID: "vm-" + a.port, IfName: a.port,
		Config: []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"pve","type":"tapfw","bridge":"vmbr0","mac":%q,
		"ips":[%q,%q],"policyIn":"DROP","policyOut":"ACCEPT","logLevelIn":"notice",
		"aliases":{"peer":"192.0.2.11","PEER6":"2001:db8::11"},"ipsets":{"peers":["peer","peer6"],"near":["192.0.2.0/24","!192.0.2.8/29","2001:db8::/64"]},"rules":%s}`, a.mac, a.ip4, a.ip6, rules))}
	h.mustCall(conf)
	h.mustCall(b.groupConf("ADD", `[]`, `{}`)) // b sends as it likes

	type probe struct {
		name, port string
		want       [2]bool // IPv4, IPv6
	}
	probes := []probe{
		{"macro ssh, a range and an address", "22", [2]bool{true, true}},
		{"macro DNS (its tcp part), an IPv4 alias", "53", [2]bool{true, false}},
		{"macro HTTP, disabled", "80", [2]bool{false, false}},
		{"macro HTTPS, an IPv6 alias named in another case", "443", [2]bool{false, true}},
		{"macro PostgreSQL, a set of aliases", "5432", [2]bool{true, true}},
		{"a list of an alias and an address", "8080", [2]bool{true, false}},
		{"ranges that leave b out", "9090", [2]bool{false, false}},
		{"a set whose IPv4 entry excludes b's address", "5433", [2]bool{false, true}},
	}
	for _, p := range probes {
		for i, fam := range []struct{ src, dst, addr string }{
			{b.ip4.String(), a.ip4.String(), a.ip4.String() + ":" + p.port},
			{b.ip6.String(), a.ip6.String(), "[" + a.ip6.String() + "]:" + p.port},
		} {
			got := testnet.TCPProbe(b.ns, fam.addr, 700*time.Millisecond)
			if got != p.want[i] {
				t.Errorf("%s (%s): passed %v, want %v", p.name, fam.addr, got, p.want[i])
			}
			args := []string{"explain", "--json", "--tap", a.port, "--dir", "in", "--src", fam.src, "--dst", fam.dst, "--proto", "tcp", "--dport", p.port}
			var res struct{ Verdict string }
			if err := json.Unmarshal([]byte(h.mustOp(args...)), &res); err != nil {
				t.Fatal(err)
			}
			if (res.Verdict == "ACCEPT") != got {
				t.Errorf("%s (%s): explain says %s, the real packet passed: %v\n%s", p.name, fam.addr, res.Verdict, got, h.mustOp(append([]string{"explain"}, args[2:]...)...))
			}
		}
	}
	// show numbers each config rule as the config does; a rule that
	// stands for several has one line per part, numbered N.P.
	show := h.mustOp("show", a.port)
	for _, want := range []struct{ id, match string }{
		{"1.1", "from 192.0.2.5-192.0.2.15 tcp dport 22"},
		{"1.2", "from 2001:db8::11"},
		{"2.1", "udp dport 53"},
		{"2.2", "tcp dport 53"},
		{"4", "tcp dport 443"},
		{"7.2", "from 2001:db8::12-2001:db8::20 tcp dport 9090"},
	} {
		if !showHas(show, "in", want.id, want.match) {
			t.Errorf("show lacks rule %s (%s):\n%s", want.id, want.match, show)
		}
	}
	// Log levels: the rule's, the policy's.
	if !showHasLine(show, "in", "8", "tcp dport 7070", " info ") {
		t.Errorf("show lacks rule 8 logging at level info:\n%s", show)
	}
	if !showHasLine(show, "in", "-", "notice", "tapfw: policy") {
		t.Errorf("show lacks the IN policy logging at level notice:\n%s", show)
	}
	if showHas(show, "in", "3", "") || strings.Contains(show, "dport 80 ") {
		t.Errorf("show has the disabled rule 3:\n%s", show)
	}
	// The parts of a rule are in the config's order, both families'
	// together.
	if i, j := strings.Index(show, " 1.2 "), strings.Index(show, " 2.1 "); i < 0 || j < i {
		t.Errorf("rule 1.2 is not before 2.1:\n%s", show)
	}
	if t.Failed() {
		t.Logf("installed:\n%s", be.state(t, h.ns))
	}
}

// showHas reports whether show lists a rule of dir numbered id whose
// match holds match.
func showHas(show, dir, id, match string) bool {
	for _, line := range strings.Split(show, "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[0] == dir && f[1] == id && strings.Contains(line, match) {
			return true
		}
	}
	return false
}

// showHasLine reports whether show has a line of dir and number id that
// holds every one of words.
func showHasLine(show, dir, id string, words ...string) bool {
	for _, line := range strings.Split(show, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != dir || f[1] != id {
			continue
		}
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			return true
		}
	}
	return false
}

// TestGroupInPlace: a rule {"group": NAME} checks the group at its place
// in the list, in both directions, while the groups field's groups are
// still checked before every rule.
func TestGroupInPlace(t *testing.T) { forEachBackend(t, testGroupInPlace) }

func testGroupInPlace(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	serveTCP(t, []string{"8000", "8443", "8888"}, a.ns)
	serveTCP(t, []string{"25", "26"}, b.ns)
	groups := `"securityGroups":{
		"webg":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"8443"},{"action":"ACCEPT","proto":"tcp","dport":"8000"}]},
		"first":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"8888"}]},
		"post":{"out":[{"action":"ACCEPT","proto":"tcp","dport":"25"},{"action":"ACCEPT","proto":"tcp","dport":"26"}]}}`
	rules := `{"in":[{"action":"DROP","proto":"tcp","dport":"8443"},{"group":"webg","comment":"web servers"},{"action":"DROP","proto":"tcp","dport":"8888"}],
		"out":[{"action":"REJECT","proto":"tcp","dport":"25"},{"group":"post"}]}`
	h.mustCall(testnet.Call{Command: "ADD", ContainerID: "vm-" + a.port, IfName: a.port,
		Config: []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"pve","type":"tapfw","bridge":"vmbr0","mac":%q,
		"ips":[%q,%q],"policyIn":"DROP","policyOut":"DROP",%s,"groups":["first"],"rules":%s}`, a.mac, a.ip4, a.ip6, groups, rules))})
	// b's config defines groups of its own (mail among them): it
	// installs last, so this test's are named otherwise.
	h.mustCall(b.groupConf("ADD", `[]`, `{"in":[{"action":"ACCEPT"}]}`))
	for _, p := range []struct {
		name      string
		from      *testnet.NS
		to, port  string
		dir, peer string
		want      bool
	}{
		{"rule 1 drops 8443 before the group accepts it", b.ns, a.ip4.String(), "8443", "in", b.ip4.String(), false},
		{"the group in place accepts 8000", b.ns, a.ip4.String(), "8000", "in", b.ip4.String(), true},
		{"the groups field's group comes first", b.ns, a.ip4.String(), "8888", "in", b.ip4.String(), true},
		{"out rule 1 rejects 25 before the group", a.ns, b.ip4.String(), "25", "out", b.ip4.String(), false},
		{"the out group in place allows 26", a.ns, b.ip4.String(), "26", "out", b.ip4.String(), true},
		{"the out group, IPv6", a.ns, "[" + b.ip6.String() + "]", "26", "out", b.ip6.String(), true},
	} {
		got := testnet.TCPProbe(p.from, p.to+":"+p.port, 700*time.Millisecond)
		if got != p.want {
			t.Errorf("%s: passed %v, want %v", p.name, got, p.want)
		}
		addr := "--src"
		if p.dir == "out" {
			addr = "--dst"
		}
		args := []string{"explain", "--json", "--tap", a.port, "--dir", p.dir, addr, p.peer, "--proto", "tcp", "--dport", p.port}
		var res struct{ Verdict string }
		if err := json.Unmarshal([]byte(h.mustOp(args...)), &res); err != nil {
			t.Fatal(err)
		}
		if (res.Verdict == "ACCEPT") != got {
			t.Errorf("%s: explain says %s, the real packet passed: %v\n%s", p.name, res.Verdict, got, h.mustOp(append([]string{"explain"}, args[2:]...)...))
		}
	}
	show := h.mustOp("show", a.port)
	for _, w := range [][]string{{"in", "2", "GROUP", "group webg"}, {"out", "2", "GROUP", "group post"}, {"out", "2", "ACCEPT", "group post allowed"}} {
		if !showHasLine(show, w[0], w[1], w[2:]...) {
			t.Errorf("show lacks %v:\n%s", w, show)
		}
	}
	if t.Failed() {
		t.Logf("show:\n%s\ninstalled:\n%s", show, be.state(t, h.ns))
	}
}

// TestHostIface: a host rule's iface is the interface the packet reaches
// the host by: the same port of the same address passes from one side and
// not the other, in both families.
func TestHostIface(t *testing.T) { forEachBackend(t, testHostIface) }

func testHostIface(t *testing.T, be testBackend) {
	n := newRoutedNet(t, be)
	serveTCP(t, []string{"22", "2222"}, n.h.ns)
	host := `"host":{"ips":["192.0.2.1","203.0.113.1","2001:db8::1","2001:db8:9::1"],"rules":{"in":[
		{"action":"ACCEPT","proto":"tcp","dport":"22","iface":"up0"},
		{"action":"ACCEPT","proto":"tcp","dport":"2222","iface":"vmbr0"}]}}`
	add := n.a.conf(false, `{"out":[{"action":"ACCEPT"}]}`)
	add.Config = []byte(strings.Replace(string(add.Config), `"rules":`, host+`,"rules":`, 1))
	n.h.mustCall(add)
	probeBothFamilies(t, []familyProbe{
		{"wan to the host's ssh by up0", n.wan, [2]string{"203.0.113.1:22", "[2001:db8:9::1]:22"}, true},
		{"a to the host's ssh by vmbr0", n.a.ns, [2]string{"192.0.2.1:22", "[2001:db8::1]:22"}, false},
		{"a to the host's 2222 by vmbr0", n.a.ns, [2]string{"192.0.2.1:2222", "[2001:db8::1]:2222"}, true},
		{"wan to the host's 2222 by up0", n.wan, [2]string{"203.0.113.1:2222", "[2001:db8:9::1]:2222"}, false},
	})
	if t.Failed() {
		t.Logf("installed:\n%s", be.state(t, n.h.ns))
	}
}

// familyProbe is a TCP connection to make in both families.
type familyProbe struct {
	name string
	from *testnet.NS
	to   [2]string // IPv4, IPv6 host:port
	want bool
}

// probeBothFamilies makes each probe's connections and reports those
// whose verdict is not the one wanted.
func probeBothFamilies(t *testing.T, probes []familyProbe) {
	t.Helper()
	for _, p := range probes {
		for _, to := range p.to {
			if got := testnet.TCPProbe(p.from, to, 700*time.Millisecond); got != p.want {
				t.Errorf("%s (%s): passed %v, want %v", p.name, to, got, p.want)
			}
		}
	}
}

// TestHostProtections: with allLocal every address of the host is behind
// its firewall (an address host.ips does not list included, loopback
// not); the management set reaches ssh before a host rule that drops it;
// the blacklist's sources are dropped by the host and by the guests, the
// guest's own accept rule notwithstanding.
func TestHostProtections(t *testing.T) { forEachBackend(t, testHostProtections) }

func testHostProtections(t *testing.T, be testBackend) {
	n := newRoutedNet(t, be)
	serveTCP(t, []string{"22", "2222"}, n.h.ns)
	serveTCP(t, []string{"80"}, n.a.ns)
	base := fmt.Sprintf(`"host":{"allLocal":true,"rules":{"in":[{"action":"DROP","proto":"tcp","dport":"22"}]}},
		"ipsets":{"management":[%q,%q],"blacklist":[%q,%q]},`, n.a.ip4, n.a.ip6, n.wan4, n.wan6)
	for _, c := range []testnet.Call{n.a.conf(true, `{"in":[{"action":"ACCEPT","proto":"tcp","dport":"80"}],"out":[{"action":"ACCEPT"}]}`),
		n.b.conf(true, `{"out":[{"action":"ACCEPT"}]}`)} {
		c.Config = []byte(strings.Replace(string(c.Config), `"rules":`, base+`"rules":`, 1))
		n.h.mustCall(c)
	}
	probeBothFamilies(t, []familyProbe{
		{"a (management) to the host's ssh, which a host rule drops", n.a.ns, [2]string{"192.0.2.1:22", "[2001:db8::1]:22"}, true},
		{"a (management) to ssh on another address of the host", n.a.ns, [2]string{"203.0.113.1:22", "[2001:db8:9::1]:22"}, true},
		{"b to the host's ssh: the host rule", n.b.ns, [2]string{"198.51.100.1:22", "[2001:db8:1::1]:22"}, false},
		{"b to an address host.ips does not list: the policy", n.b.ns, [2]string{"198.51.100.1:2222", "[2001:db8:1::1]:2222"}, false},
		{"the host to itself by loopback", n.h.ns, [2]string{"127.0.0.1:2222", "[::1]:2222"}, true},
		{"the host to its own address (by loopback)", n.h.ns, [2]string{"192.0.2.1:2222", "[2001:db8::1]:2222"}, true},
		{"b to a's web", n.b.ns, [2]string{"192.0.2.10:80", "[2001:db8::10]:80"}, true},
		{"wan (blacklisted) to a's web, which a accepts", n.wan, [2]string{"192.0.2.10:80", "[2001:db8::10]:80"}, false},
		{"wan (blacklisted) to the host's ssh", n.wan, [2]string{"203.0.113.1:22", "[2001:db8:9::1]:22"}, false},
	})
	if t.Failed() {
		t.Logf("installed:\n%s", be.state(t, n.h.ns))
	}
}

// TestHostTCPFlags: a segment with SYN, FIN and ACK, sent to the host's
// open ssh port, gets the host's answer (a reset) only with both
// protections off: conntrack calls it INVALID (dropped unless
// allowInvalid), and tcpFlags drops it as an impossible combination.
func TestHostTCPFlags(t *testing.T) { forEachBackend(t, testHostTCPFlags) }

func testHostTCPFlags(t *testing.T, be testBackend) {
	n := newRoutedNet(t, be)
	serveTCP(t, []string{"22"}, n.h.ns)
	upMAC, err := testnet.LinkMAC(n.h.ns, "up0")
	if err != nil {
		t.Fatal(err)
	}
	wanMAC, err := testnet.LinkMAC(n.wan, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		options string
		answer  bool
	}{
		{`"allowInvalid":true`, true},
		{`"allowInvalid":true,"tcpFlags":true`, false},
		{`"tcpFlags":false`, false},
	} {
		add := n.a.conf(false, `{"out":[{"action":"ACCEPT"}]}`)
		host := `"host":{"ips":["203.0.113.1"],` + c.options + `,"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22"}],"out":[{"action":"ACCEPT"}]}},`
		add.Config = []byte(strings.Replace(string(add.Config), `"rules":`, host+`"rules":`, 1))
		n.h.mustCall(add)
		capture, err := testnet.CaptureOn(n.wan, "eth0")
		if err != nil {
			t.Fatal(err)
		}
		frame := tcpFrame(wanMAC, upMAC, net.ParseIP(n.wan4), net.ParseIP("203.0.113.1"), uint16(40000+i), 22, tcpSYN|tcpFIN|tcpACK)
		if err := testnet.SendRaw(n.wan, "eth0", frame); err != nil {
			t.Fatal(err)
		}
		got := capture.Wait("ipv4 203.0.113.1 > "+n.wan4+" proto 6", time.Second)
		capture.Close()
		if got != c.answer {
			t.Errorf("%s: the host answered %v, want %v (seen: %v)", c.options, got, c.answer, capture.Packets())
		}
	}
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpACK = 0x10
)

// tcpFrame is an Ethernet frame holding an IPv4 TCP segment with flags,
// no options and no data, with valid checksums.
func tcpFrame(srcMAC, dstMAC net.HardwareAddr, src, dst net.IP, sport, dport uint16, flags byte) []byte {
	b := make([]byte, 14+20+20)
	copy(b[0:6], dstMAC)
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:14], 0x0800)
	ip := b[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:4], 40)
	copy(ip[12:16], src.To4())
	copy(ip[16:20], dst.To4())
	binary.BigEndian.PutUint16(ip[10:12], testnet.Checksum(0, ip))
	tcp := b[34:54]
	binary.BigEndian.PutUint16(tcp[0:2], sport)
	binary.BigEndian.PutUint16(tcp[2:4], dport)
	binary.BigEndian.PutUint32(tcp[4:8], 0x01020304)
	tcp[12], tcp[13] = 5<<4, flags
	binary.BigEndian.PutUint16(tcp[14:16], 64240)
	pseudo := append(append(append([]byte{}, src.To4()...), dst.To4()...), 0, 6, 0, 20)
	binary.BigEndian.PutUint16(tcp[16:18], testnet.Checksum(testnet.Sum16(0, pseudo), tcp))
	return b
}

// TestHostSynFlood: with synFlood, a source's SYNs to the host over its
// rate and burst are dropped, and another source's pass meanwhile.
func TestHostSynFlood(t *testing.T) { forEachBackend(t, testHostSynFlood) }

func testHostSynFlood(t *testing.T, be testBackend) {
	n := newRoutedNet(t, be)
	serveTCP(t, []string{"22"}, n.h.ns)
	add := n.a.conf(false, `{"out":[{"action":"ACCEPT"}]}`)
	host := `"host":{"ips":["192.0.2.1","203.0.113.1"],"synFlood":true,"synFloodRate":1,"synFloodBurst":3,
		"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22"}],"out":[{"action":"ACCEPT"}]}},`
	add.Config = []byte(strings.Replace(string(add.Config), `"rules":`, host+`"rules":`, 1))
	n.h.mustCall(add)
	passed := 0
	for range 10 {
		if testnet.TCPProbe(n.wan, "203.0.113.1:22", 300*time.Millisecond) {
			passed++
		}
	}
	// The burst, and at most a refill or two while the probes ran.
	if passed < 3 || passed > 6 {
		t.Errorf("%d of 10 quick connections from wan passed, want the burst of 3 and few more", passed)
	}
	if !testnet.TCPProbe(n.a.ns, "192.0.2.1:22", 700*time.Millisecond) {
		t.Error("a's connection did not pass while wan was over its limit")
	}
}

// TestIsolatePorts: with isolatePorts the bridge keeps guests apart
// whatever their rules allow, while each still reaches the host; CHECK
// sees a port whose isolation was taken away, and DEL clears the flag.
func TestIsolatePorts(t *testing.T) { forEachBackend(t, testIsolatePorts) }

func testIsolatePorts(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	serveTCP(t, []string{"80"}, a.ns, b.ns, h.ns)
	open := `{"in":[{"action":"ACCEPT"}],"out":[{"action":"ACCEPT"}]}`
	conf := func(v *l2vm, cmd string) testnet.Call {
		c := v.groupConf(cmd, `[]`, open)
		c.Config = []byte(strings.Replace(string(c.Config), `"bridge":"vmbr0"`, `"bridge":"vmbr0","isolatePorts":true`, 1))
		return c
	}
	h.mustCall(conf(a, "ADD"))
	h.mustCall(conf(b, "ADD"))
	for _, p := range []struct {
		name string
		from *testnet.NS
		to   string
		want bool
	}{
		{"a to b", a.ns, b.ip4.String() + ":80", false},
		{"b to a, IPv6", b.ns, "[" + a.ip6.String() + "]:80", false},
		{"a to the host", a.ns, "192.0.2.31:80", true},
		{"b to the host, IPv6", b.ns, "[2001:db8::1]:80", true},
	} {
		if got := testnet.TCPProbe(p.from, p.to, 700*time.Millisecond); got != p.want {
			t.Errorf("%s (%s): passed %v, want %v", p.name, p.to, got, p.want)
		}
	}
	h.mustCall(conf(a, "CHECK"))
	h.run("ip", "link", "set", a.port, "type", "bridge_slave", "isolated", "off")
	if _, e := h.call(conf(a, "CHECK")); e == nil || !strings.Contains(e.Msg, "not isolated") {
		t.Errorf("CHECK of a port no longer isolated: %+v", e)
	}
	h.mustCall(conf(a, "ADD"))
	h.mustCall(conf(a, "DEL"))
	if out := h.run("ip", "-d", "link", "show", a.port); !strings.Contains(out, "isolated off") {
		t.Errorf("after DEL:\n%s", out)
	}
}

// TestL2Protocols: with l2Protocols a guest's frames of other ethertypes
// stay in the bridge, its IP traffic passes, and a listed ethertype does.
func TestL2Protocols(t *testing.T) { forEachBackend(t, testL2Protocols) }

func testL2Protocols(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	serveTCP(t, []string{"80"}, b.ns)
	h.mustCall(b.groupConf("ADD", `[]`, `{"in":[{"action":"ACCEPT"}]}`))
	for _, c := range []struct {
		list     string
		ethernet bool // the 0x88b5 frame reaches b
	}{
		{`["ip","arp","ip6"]`, false},
		{`["ip","arp","ip6","0x88b5"]`, true},
	} {
		add := a.groupConf("ADD", `[]`, `{"out":[{"action":"ACCEPT"}]}`)
		add.Config = []byte(strings.Replace(string(add.Config), `"bridge":"vmbr0"`, `"bridge":"vmbr0","l2Protocols":`+c.list, 1))
		h.mustCall(add)
		for _, to := range []string{b.ip4.String() + ":80", "[" + b.ip6.String() + "]:80"} {
			if !testnet.TCPProbe(a.ns, to, 700*time.Millisecond) {
				t.Errorf("%s: a to %s did not pass", c.list, to)
			}
		}
		capture, err := testnet.CaptureOn(b.ns, "eth0")
		if err != nil {
			t.Fatal(err)
		}
		frame := make([]byte, 60)
		copy(frame[0:6], b.mac)
		copy(frame[6:12], a.mac)
		binary.BigEndian.PutUint16(frame[12:14], 0x88b5)
		if err := testnet.SendRaw(a.ns, "eth0", frame); err != nil {
			t.Fatal(err)
		}
		got := capture.Wait("ether 0x88b5 "+a.mac.String(), time.Second)
		capture.Close()
		if got != c.ethernet {
			t.Errorf("%s: an 0x88b5 frame reached b: %v, want %v", c.list, got, c.ethernet)
		}
	}
}

// TestAllowedPairs: a guest with an allowed pair (a VRRP router's virtual
// MAC and address) sends from that MAC with that address, by IPv4, IPv6
// and ARP; the virtual MAC with its real address, and its own MAC with
// the virtual address, stay in the bridge.
func TestAllowedPairs(t *testing.T) { forEachBackend(t, testAllowedPairs) }

func testAllowedPairs(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	vmac, _ := net.ParseMAC("00:00:5e:00:01:07")
	vip4, vip6 := net.ParseIP("192.0.2.50"), net.ParseIP("2001:db8::50")
	add := a.groupConf("ADD", `[]`, `{"out":[{"action":"ACCEPT"}]}`)
	add.Config = []byte(strings.Replace(string(add.Config), `"bridge":"vmbr0"`,
		`"bridge":"vmbr0","allowedPairs":[{"mac":"00:00:5e:00:01:07","ips":["192.0.2.50","2001:db8::50"]}]`, 1))
	h.mustCall(add)
	h.mustCall(b.groupConf("ADD", `[]`, `{"in":[{"action":"ACCEPT"}]}`))
	udp4 := func(mac net.HardwareAddr, src net.IP, port uint16) []byte {
		f, err := testnet.Frame{SrcMAC: mac, DstMAC: b.mac, SrcIP: src, DstIP: b.ip4, SrcPort: port, DstPort: 9, Payload: []byte("pair")}.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	udp6 := func(mac net.HardwareAddr, src net.IP) []byte {
		return testnet.IPv6Frame(mac, b.mac, src, b.ip6, 17, testnet.UDP6(4000, 9, []byte("pair")), 6)
	}
	arp := func(mac net.HardwareAddr, sender net.IP) []byte {
		return testnet.ARPFrame(mac, testnet.BroadcastMAC, 2, mac, sender, testnet.BroadcastMAC, sender)
	}
	for _, p := range []struct {
		name  string
		frame []byte
		seen  string // what b's capture shows when it arrives
		want  bool
	}{
		{"ipv4: the pair", udp4(vmac, vip4, 4001), "ipv4 192.0.2.50 > ", true},
		{"ipv4: own mac, own address", udp4(a.mac, a.ip4, 4002), "ipv4 192.0.2.10 > ", true},
		{"ipv4: the pair's mac, the guest's own address", udp4(vmac, a.ip4, 4003), "", false},
		{"ipv4: own mac, the pair's address", udp4(a.mac, vip4, 4004), "ipv4 192.0.2.50 > ", false},
		{"ipv6: the pair", udp6(vmac, vip6), "ipv6 2001:db8::50 > ", true},
		{"ipv6: own mac, the pair's address", udp6(a.mac, vip6), "ipv6 2001:db8::50 > ", false},
		{"arp: the pair", arp(vmac, vip4), "ether 0x0806 " + vmac.String(), true},
		{"arp: the pair's mac, the guest's own address", arp(vmac, a.ip4), "ether 0x0806 " + vmac.String(), false},
		{"arp: own mac, the pair's address", arp(a.mac, vip4), "ether 0x0806 " + a.mac.String(), false},
	} {
		capture, err := testnet.CaptureOn(b.ns, "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if err := testnet.SendRaw(a.ns, "eth0", p.frame); err != nil {
			t.Fatal(err)
		}
		seen := p.seen
		if seen == "" {
			seen = "ipv4 " + a.ip4.String() + " > " + b.ip4.String() + " proto 17"
		}
		got := capture.Wait(seen, 700*time.Millisecond)
		capture.Close()
		if got != p.want {
			t.Errorf("%s: reached b %v, want %v (b saw %v)", p.name, got, p.want, capture.Packets())
		}
	}
	// DEL takes every element of the pairs out again.
	del := add
	del.Command = "DEL"
	h.mustCall(del)
	for _, set := range []string{"tfw-pmac", "tfw-pair4", "tfw-pair6", "tfw-pip4", "tfw-pip6", "tfw-mac", "tfw-pairs"} {
		if out := h.run("nft", "list", "set", "bridge", "tapfw", set); strings.Contains(out, a.port) {
			t.Errorf("after DEL, set %s still holds %s:\n%s", set, a.port, out)
		}
	}
	if out := h.run("nft", "list", "map", "bridge", "tapfw", "tfw-extra"); strings.Contains(out, a.port) {
		t.Errorf("after DEL, map tfw-extra still holds %s:\n%s", a.port, out)
	}
	if t.Failed() {
		t.Logf("installed:\n%s", be.state(t, h.ns))
	}
}

// TestHelpers: with "helpers": ["ftp"] the passive data connection an FTP
// server guest announces is RELATED and passes its IN chain, which allows
// only the control port; without the helper it is a new connection, and
// the policy drops it.
func TestHelpers(t *testing.T) { forEachBackend(t, testHelpers) }

func testHelpers(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	h.mustCall(b.groupConf("ADD", `[]`, `{"out":[{"action":"ACCEPT"}]}`))
	const dataPort = 40037
	var ctl, data net.Listener
	if err := a.ns.Do(func() (err error) {
		if ctl, err = net.Listen("tcp", a.ip4.String()+":21"); err != nil {
			return err
		}
		data, err = net.Listen("tcp", fmt.Sprintf("%s:%d", a.ip4, dataPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	defer data.Close()
	go serveFTP(ctl, a.ip4, dataPort)
	go func() {
		for {
			c, err := data.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, c := range []struct {
		helpers string
		want    bool
	}{{`["ftp"]`, true}, {`[]`, false}} {
		add := a.groupConf("ADD", `[]`, `{"in":[{"action":"ACCEPT","proto":"tcp","dport":"21"}],"out":[{"action":"ACCEPT"}]}`)
		add.Config = []byte(strings.Replace(string(add.Config), `"bridge":"vmbr0"`, `"bridge":"vmbr0","helpers":`+c.helpers, 1))
		h.mustCall(add)
		got, err := ftpPassive(b.ns, a.ip4.String())
		if err != nil {
			t.Fatalf("helpers %s: %v", c.helpers, err)
		}
		if got != c.want {
			t.Errorf("helpers %s: the passive data connection passed %v, want %v", c.helpers, got, c.want)
		}
	}
	if t.Failed() {
		t.Logf("installed:\n%s", be.state(t, h.ns))
	}
}

// serveFTP answers each control connection as much of FTP as a passive
// data connection needs: a greeting, and PASV with the data port.
func serveFTP(ln net.Listener, ip net.IP, port int) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "220 tapfw test\r\n")
			buf := make([]byte, 512)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if strings.HasPrefix(string(buf[:n]), "PASV") {
					v4 := ip.To4()
					fmt.Fprintf(c, "227 Entering Passive Mode (%d,%d,%d,%d,%d,%d)\r\n", v4[0], v4[1], v4[2], v4[3], port>>8, port&0xff)
				}
			}
		}()
	}
}

// ftpPassive opens a control connection from ns to server:21, asks for
// passive mode and reports whether the announced data connection opens.
func ftpPassive(ns *testnet.NS, server string) (bool, error) {
	var ctl net.Conn
	if err := ns.Do(func() (err error) {
		ctl, err = net.DialTimeout("tcp", server+":21", 2*time.Second)
		return err
	}); err != nil {
		return false, fmt.Errorf("control connection: %w", err)
	}
	defer ctl.Close()
	_ = ctl.SetDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 512)
	if _, err := ctl.Read(buf); err != nil {
		return false, fmt.Errorf("greeting: %w", err)
	}
	if _, err := fmt.Fprintf(ctl, "PASV\r\n"); err != nil {
		return false, err
	}
	n, err := ctl.Read(buf)
	if err != nil {
		return false, fmt.Errorf("PASV: %w", err)
	}
	var h1, h2, h3, h4, p1, p2 int
	if _, err := fmt.Sscanf(string(buf[:n]), "227 Entering Passive Mode (%d,%d,%d,%d,%d,%d)", &h1, &h2, &h3, &h4, &p1, &p2); err != nil {
		return false, fmt.Errorf("PASV reply %q: %w", buf[:n], err)
	}
	ok := false
	err = ns.Do(func() error {
		d, err := net.DialTimeout("tcp", fmt.Sprintf("%d.%d.%d.%d:%d", h1, h2, h3, h4, p1<<8|p2), time.Second)
		if err == nil {
			ok = true
			d.Close()
		}
		return nil
	})
	return ok, err
}
