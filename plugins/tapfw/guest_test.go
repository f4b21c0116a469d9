package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/ruleset"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// Real guests: three Linux guests (Debian's kernel, a busybox initramfs)
// boot under QEMU in a sandbox hypervisor, their taps set up by the
// repository's qemu-ifup and taken down by its qemu-ifdown, with the
// default options. dnsmasq on the bridge hands out their DHCPv4 leases and
// sends the router advertisements they build their IPv6 addresses from.
// The guests' own network stacks decide every verdict.
//
// TAPFW_GUEST_CONTROL=1 runs the same attacks with the guests on ports
// tapfw does not manage (an ifup script that only bridges them): each
// attack must then succeed, which shows that every check can fail.

// guestCache is where the guest kernel and busybox are unpacked, kept
// between runs (tmp/ is not in git).
const guestCache = "../../tmp/guest-cache"

// labGuest is one guest: its tap, MAC and the addresses dnsmasq gives it.
type labGuest struct {
	name, tap, mac string
	ip4, ip6       string
	g              *testnet.Guest
}

// guestLab is the sandbox hypervisor with its guests.
type guestLab struct {
	t       *testing.T
	q       *qemuHost
	control bool
	guests  []*labGuest
	// stopDnsmasq stops the host's DHCP and RA server (once).
	stopDnsmasq func()
}

// guestBase is the base config: the guests' rules (ssh and echo in; ssh,
// 23 and 8080 out) and a host firewall that lets DHCP and ssh in and the
// host's DHCP replies and TCP out.
const guestBase = `{
	"name": "guests",
	"rules": {
		"in": [{"action": "ACCEPT", "proto": "tcp", "dport": "22"}],
		"out": [{"action": "ACCEPT", "proto": "tcp", "dport": "22,23,8080"}]
	},
	"host": {
		"ips": ["192.0.2.31", "2001:db8:1::1"],
		"rules": {
			"in": [{"action": "ACCEPT", "proto": "udp", "dport": "67", "comment": "dhcp"},
			       {"action": "ACCEPT", "proto": "tcp", "dport": "22"}],
			"out": [{"action": "ACCEPT", "proto": "udp", "sport": "67", "comment": "dhcp replies"},
			        {"action": "ACCEPT", "proto": "tcp"}]
		}
	}
}`

// slaac is the address a guest builds from prefix and its MAC (EUI-64).
func slaac(prefix, mac string) string {
	hw, _ := net.ParseMAC(mac)
	ll := ruleset.LinkLocal(hw).As16()
	p := net.ParseIP(prefix).To16()
	copy(p[8:], ll[8:])
	return p.String()
}

func newGuestLab(t *testing.T, be testBackend) *guestLab {
	t.Helper()
	needQEMU(t)
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("dnsmasq not installed (scripts/deps.sh installs dnsmasq-base)")
	}
	q := newQEMUHost(t, be)
	lab := &guestLab{t: t, q: q, control: os.Getenv("TAPFW_GUEST_CONTROL") == "1"}
	ipv6On(t, q.ns, "vmbr0")
	q.run("ip", "-6", "addr", "add", "2001:db8:1::1/64", "dev", "vmbr0", "nodad")
	q.write("tapfw.conf", guestBase)
	for i := 1; i <= 3; i++ {
		mac := fmt.Sprintf("52:54:00:00:01:%02x", i)
		lg := &labGuest{name: fmt.Sprintf("g%d", i), tap: fmt.Sprintf("tap10%di0", i), mac: mac,
			ip4: fmt.Sprintf("192.0.2.1%d", i), ip6: slaac("2001:db8:1::", mac)}
		q.writeNIC(lg.tap, fmt.Sprintf(`{"bridge": "vmbr0", "mac": %q, "ips": [%q, %q]}`, lg.mac, lg.ip4, lg.ip6))
		lab.guests = append(lab.guests, lg)
	}
	lab.startDnsmasq()
	return lab
}

// startDnsmasq serves DHCPv4 (a fixed address per MAC) and router
// advertisements for 2001:db8:1::/64 on vmbr0, in the host namespace.
func (l *guestLab) startDnsmasq() {
	dir := l.t.TempDir()
	args := []string{"netns", "exec", l.q.ns.Name, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
		"--port=0", "--interface=vmbr0", "--bind-interfaces", "--except-interface=lo",
		"--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,10m", "--dhcp-authoritative",
		"--dhcp-leasefile=" + filepath.Join(dir, "leases"), "--pid-file=" + filepath.Join(dir, "pid"),
		"--enable-ra", "--dhcp-range=2001:db8:1::,ra-only,64,10m", "--ra-param=vmbr0,3",
		"--log-dhcp", "--log-facility=-"}
	for _, g := range l.guests {
		args = append(args, "--dhcp-host="+g.mac+","+g.ip4)
	}
	cmd := exec.Command("ip", args...)
	var out qemuBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("dnsmasq: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var once sync.Once
	l.stopDnsmasq = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			<-done
		})
	}
	l.t.Cleanup(func() {
		l.stopDnsmasq()
		if l.t.Failed() {
			l.t.Logf("dnsmasq:\n%s", out.String())
		}
	})
}

// boot starts every guest at once and waits for their shells.
func (l *guestLab) boot(img *testnet.GuestImage) {
	l.t.Helper()
	up, down := filepath.Join(l.q.scripts, "qemu-ifup"), filepath.Join(l.q.scripts, "qemu-ifdown")
	if l.control {
		up, down = l.bridgeOnlyScripts()
	}
	start := time.Now()
	for _, lg := range l.guests {
		g, err := testnet.StartGuest(img, testnet.GuestConfig{Name: lg.name, NS: l.q.ns, Tap: lg.tap, MAC: lg.mac,
			Script: up, DownScript: down, Env: l.q.env})
		if err != nil {
			l.t.Fatalf("%s: %v", lg.name, err)
		}
		lg.g = g
		l.t.Cleanup(func() { _ = g.Close() })
	}
	l.each(func(lg *labGuest) error { return lg.g.WaitReady(90 * time.Second) })
	l.t.Logf("%d guests ready after %v", len(l.guests), time.Since(start).Round(time.Millisecond))
}

// bridgeOnlyScripts are an ifup that only puts the tap on vmbr0 and an
// ifdown that does nothing: ports tapfw does not manage.
func (l *guestLab) bridgeOnlyScripts() (up, down string) {
	dir := l.t.TempDir()
	up, down = filepath.Join(dir, "ifup"), filepath.Join(dir, "ifdown")
	for p, body := range map[string]string{up: "ip link set dev \"$1\" master vmbr0 up\n", down: "true\n"} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			l.t.Fatal(err)
		}
	}
	return up, down
}

// each runs f for every guest at once and fails the test for each error.
func (l *guestLab) each(f func(*labGuest) error) {
	l.t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(l.guests))
	for i, lg := range l.guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(lg)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			l.t.Fatalf("%s: %v\nconsole:\n%s", l.guests[i].name, err, l.guests[i].g.Console())
		}
	}
}

// sh runs cmd in the guest and returns its output and whether it exited 0.
func (lg *labGuest) sh(t *testing.T, cmd string, timeout time.Duration) (string, bool) {
	t.Helper()
	out, code, err := lg.g.Run(cmd, timeout)
	if err != nil {
		t.Fatalf("%s: %s: %v\nconsole:\n%s", lg.name, cmd, err, lg.g.Console())
	}
	return out, code == 0
}

func (lg *labGuest) must(t *testing.T, cmd string) string {
	t.Helper()
	out, ok := lg.sh(t, cmd, 20*time.Second)
	if !ok {
		t.Fatalf("%s: %s failed:\n%s", lg.name, cmd, out)
	}
	return out
}

// udhcpcScript configures what udhcpc leased.
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew) ip addr flush dev "$interface" scope global label "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"; echo "lease $ip from $serverid" ;;
deconfig) ip addr flush dev "$interface" scope global label "$interface" ;;
esac
exit 0
`

// network brings each guest's network up: DHCPv4 with udhcpc, IPv6 from
// the host's router advertisements (after duplicate address detection),
// and TCP servers on ports 22, 23 and 8080 (busybox httpd, both families).
func (l *guestLab) network() {
	l.t.Helper()
	l.each(func(lg *labGuest) error {
		for _, c := range []string{
			"printf '%s' '" + udhcpcScript + "' > /tmp/udhcpc.sh && chmod +x /tmp/udhcpc.sh",
			"mkdir -p /www",
			"httpd -p 22 -h /www && httpd -p 23 -h /www && httpd -p 8080 -h /www",
		} {
			if _, code, err := lg.g.Run(c, 10*time.Second); err != nil || code != 0 {
				return fmt.Errorf("%s: exit %d, %v", c, code, err)
			}
		}
		out, code, err := lg.g.Run("udhcpc -i eth0 -n -q -t 10 -T 1 -s /tmp/udhcpc.sh", 30*time.Second)
		if err != nil || code != 0 || !strings.Contains(out, "lease "+lg.ip4) {
			return fmt.Errorf("no DHCPv4 lease (exit %d, %v):\n%s", code, err, out)
		}
		return waitFor(lg.g, "ip -6 addr show dev eth0 | grep -q '"+lg.ip6+"/64 scope global' && ! ip -6 addr show dev eth0 | grep -q tentative", 20*time.Second)
	})
}

// waitFor polls cond (a shell condition) in the guest until it holds.
func waitFor(g *testnet.Guest, cond string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, code, err := g.Run(cond, 10*time.Second)
		if err != nil {
			return err
		}
		if code == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			addrs, _, _ := g.Run("ip addr; ip -6 route", 5*time.Second)
			return fmt.Errorf("%q still false after %v: %s\n%s", cond, timeout, out, addrs)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// connect tries a TCP connection from the guest (busybox nc, which
// exits 0 once connected).
func (lg *labGuest) connect(t *testing.T, host, port string) bool {
	t.Helper()
	_, ok := lg.sh(t, "echo | nc -w 2 "+host+" "+port+" >/dev/null 2>&1", 15*time.Second)
	return ok
}

func TestRealGuests(t *testing.T) { forEachBackend(t, testRealGuests) }

func testRealGuests(t *testing.T, be testBackend) {
	lab := newGuestLab(t, be)
	img, err := testnet.PrepareGuestImage(guestCache)
	if err != nil {
		t.Fatalf("guest image: %v", err)
	}
	serveTCP(t, []string{"22", "8080"}, lab.q.ns)
	lab.boot(img)
	lab.network()
	g1, g2, g3 := lab.guests[0], lab.guests[1], lab.guests[2]
	lab.checkRules(g1, g2)
	if !lab.control {
		lab.checkOperator(g1, g2)
	}
	lab.checkSpoofing(g1, g2, g3)
	lab.checkRogueDHCP(g1, g3)
	lab.powerOff()
}

// guestProbe is one TCP connection and whether the rules allow it.
type guestProbe struct {
	name string
	try  func(v6 bool) bool
	want bool
}

// checkRules: what the guests' and the host's rules allow passes, the
// rest is dropped, both families, guest to guest and guest to host and
// back.
func (l *guestLab) checkRules(a, b *labGuest) {
	t := l.t
	hostAddr := func(v6 bool) string {
		if v6 {
			return "2001:db8:1::1"
		}
		return "192.0.2.31"
	}
	addr := func(g *labGuest, v6 bool) string {
		if v6 {
			return g.ip6
		}
		return g.ip4
	}
	fromHost := func(g *labGuest, port string) func(bool) bool {
		return func(v6 bool) bool {
			return testnet.TCPProbe(l.q.ns, net.JoinHostPort(addr(g, v6), port), 1500*time.Millisecond)
		}
	}
	probes := []guestProbe{
		{"a -> b ssh (b's IN allows)", func(v6 bool) bool { return a.connect(t, addr(b, v6), "22") }, true},
		{"a -> b 23 (a's OUT allows, b's IN does not)", func(v6 bool) bool { return a.connect(t, addr(b, v6), "23") }, false},
		{"a -> host ssh (the host's IN allows)", func(v6 bool) bool { return a.connect(t, hostAddr(v6), "22") }, true},
		{"a -> host 8080 (a's OUT allows, the host's IN does not)", func(v6 bool) bool { return a.connect(t, hostAddr(v6), "8080") }, false},
		{"host -> a ssh (a's IN allows)", fromHost(a, "22"), true},
		{"host -> a 23 (a's IN does not allow)", fromHost(a, "23"), false},
	}
	for _, p := range probes {
		want := p.want || l.control // without tapfw every port is open
		for _, v6 := range []bool{false, true} {
			if got := p.try(v6); got != want {
				t.Errorf("%s (IPv6 %v): passed=%v, want %v", p.name, v6, got, want)
			}
		}
	}
}

// checkOperator: tapfw list shows the running guests, and explain names
// the rule that dropped what a guest saw dropped.
func (l *guestLab) checkOperator(a, b *labGuest) {
	t := l.t
	var taps []inspect.Tap
	if err := json.Unmarshal([]byte(l.q.mustOp("list", "--json")), &taps); err != nil {
		t.Fatal(err)
	}
	if len(taps) != len(l.guests) {
		t.Fatalf("tapfw list: %d taps, want %d: %+v", len(taps), len(l.guests), taps)
	}
	for i, lg := range l.guests {
		tp := taps[i]
		if tp.Name != lg.tap || tp.Bridge != "vmbr0" || tp.MAC != lg.mac || !tp.Attached || tp.ContainerID != "qemu-"+lg.tap ||
			!strings.Contains(strings.Join(tp.IPs, " "), lg.ip4) || !strings.Contains(strings.Join(tp.IPs, " "), lg.ip6) {
			t.Errorf("tapfw list, %s: %+v", lg.name, tp)
		}
	}
	tapIn, hostIn := "TFW-T-"+b.tap+"-IN", "TFW-HOST-IN"
	if l.q.be.nftables() {
		tapIn, hostIn = "bridge tapfw tfw-pi", "inet tapfw tfw-h"
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"explain", "--tap", b.tap, "--dir", "in", "--src", a.ip4, "--dport", "23", "--peer", a.tap},
			"verdict DROP by " + tapIn},
		{[]string{"explain", "--tap", b.tap, "--dir", "in", "--src", a.ip6, "--dst", b.ip6, "--dport", "23", "--peer", a.tap},
			"verdict DROP by " + tapIn},
		{[]string{"explain", "--tap", a.tap, "--dir", "out", "--dst", "192.0.2.31", "--dport", "8080"},
			"verdict DROP by " + hostIn},
	} {
		out := l.q.mustOp(c.args...)
		if !strings.Contains(out, c.want) || !strings.Contains(out, "policy drop") {
			t.Errorf("tapfw %s: want %q and the policy drop:\n%s", strings.Join(c.args, " "), c.want, out)
		}
	}
}

// neighMAC is the MAC the guest's neighbour cache holds for ip, or "".
func (lg *labGuest) neighMAC(t *testing.T, ip string) string {
	t.Helper()
	out, _ := lg.sh(t, "ip neigh show "+ip, 5*time.Second)
	return lladdr(out)
}

func lladdr(out string) string {
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

func (l *guestLab) hostNeigh(ip string) string {
	return lladdr(l.q.run("ip", "neigh", "show", ip))
}

// checkSpoofing: attacker a takes victim b's IPv4 address (and announces
// it by gratuitous ARP), its IPv6 address (announced by unsolicited
// neighbour advertisements) and its MAC. With tapfw, a is cut off, the
// caches of the host and of observer c keep b's MAC, and b keeps working;
// on unmanaged ports (the control run) every attack works.
func (l *guestLab) checkSpoofing(a, b, c *labGuest) {
	t := l.t
	for _, ip := range []string{b.ip4, b.ip6} {
		if !testnet.TCPProbe(l.q.ns, net.JoinHostPort(ip, "22"), 3*time.Second) || !c.connect(t, ip, "22") {
			t.Fatalf("host or %s cannot reach %s's %s before the attack", c.name, b.name, ip)
		}
	}
	time.Sleep(1200 * time.Millisecond) // the ARP locktime, so a claim could replace the entries
	// a gives up its own addresses for b's, so that what it sends comes
	// from b's; the kernel announces them: gratuitous ARP by arping, an
	// unsolicited neighbour advertisement (ndisc_notify) for the IPv6 one.
	v6conf := "/proc/sys/net/ipv6/conf/eth0/"
	a.must(t, "ip addr del "+a.ip4+"/24 dev eth0 && ip addr add "+b.ip4+"/24 dev eth0 && "+
		"arping -U -c 2 -I eth0 -s "+b.ip4+" "+b.ip4+" >/dev/null; arping -A -c 2 -I eth0 -s "+b.ip4+" "+b.ip4+" >/dev/null; true")
	a.must(t, "echo 0 > "+v6conf+"accept_ra && echo 0 > "+v6conf+"accept_dad && echo 1 > "+v6conf+"ndisc_notify && "+
		"ip -6 addr del "+a.ip6+"/64 dev eth0 && ip -6 addr add "+b.ip6+"/64 dev eth0 && sleep 1")
	// A cache the attack changed holds a's MAC (the control run); with
	// tapfw it must still hold b's.
	poisoned := func(mac string) bool {
		if l.control {
			return mac == a.mac
		}
		return mac != b.mac
	}
	attacked := map[string]bool{
		"host's cache for b's IPv4 address": poisoned(l.hostNeigh(b.ip4)),
		"host's cache for b's IPv6 address": poisoned(l.hostNeigh(b.ip6)),
		"c's cache for b's IPv4 address":    poisoned(c.neighMAC(t, b.ip4)),
		"c's cache for b's IPv6 address":    poisoned(c.neighMAC(t, b.ip6)),
	}
	// Whether what a sends from b's addresses gets through must not hang
	// on the caches: the host and c answer b's address at a's MAC for now,
	// as if the poisoning had worked, so a connection succeeds exactly when
	// a's packets pass.
	l.q.run("ip", "neigh", "replace", b.ip4, "lladdr", a.mac, "dev", "vmbr0", "nud", "permanent")
	l.q.run("ip", "neigh", "replace", b.ip6, "lladdr", a.mac, "dev", "vmbr0", "nud", "permanent")
	c.must(t, "arp -s "+b.ip4+" "+a.mac)
	attacked["a reaches the host from b's IPv4 address"] = a.connect(t, "192.0.2.31", "22")
	attacked["a reaches the host from b's IPv6 address"] = a.connect(t, "2001:db8:1::1", "22")
	attacked["a reaches c from b's IPv4 address"] = a.connect(t, c.ip4, "22")
	l.q.run("ip", "neigh", "del", b.ip4, "dev", "vmbr0")
	l.q.run("ip", "neigh", "del", b.ip6, "dev", "vmbr0")
	c.must(t, "arp -d "+b.ip4)
	a.must(t, "ip addr del "+b.ip4+"/24 dev eth0; ip addr add "+a.ip4+"/24 dev eth0; ip -6 addr del "+b.ip6+"/64 dev eth0; ip -6 addr add "+a.ip6+"/64 dev eth0; true")
	if !l.control {
		l.expectWorking(b, c, "after a took b's addresses")
	}
	// a takes b's MAC: a is cut off; the bridge keeps b's MAC on b's port.
	a.must(t, "ip link set eth0 address "+b.mac+" && ping -c 2 -W 1 192.0.2.31 >/dev/null; true")
	attacked["a reaches the host with b's MAC"] = a.connect(t, "192.0.2.31", "22")
	attacked["the bridge learnt b's MAC on a's port"] = strings.Contains(l.q.run("bridge", "fdb", "show", "dev", a.tap), b.mac+" ")
	a.must(t, "ip link set eth0 address "+a.mac)
	for what, hit := range attacked {
		t.Logf("attack %s: worked=%v", what, hit)
		switch {
		case l.control && !hit:
			t.Errorf("control (no tapfw): attack failed: %s", what)
		case !l.control && hit:
			t.Errorf("attack worked: %s", what)
		}
	}
	if !l.control {
		l.expectWorking(b, c, "after a took b's MAC")
	}
}

// expectWorking: the host and c still reach b, both families.
func (l *guestLab) expectWorking(b, c *labGuest, when string) {
	t := l.t
	for _, ip := range []string{b.ip4, b.ip6} {
		if !testnet.TCPProbe(l.q.ns, net.JoinHostPort(ip, "22"), 3*time.Second) {
			t.Errorf("%s: the host no longer reaches %s at %s", when, b.name, ip)
		}
		if !c.connect(t, ip, "22") {
			t.Errorf("%s: %s no longer reaches %s at %s", when, c.name, b.name, ip)
		}
	}
}

// checkRogueDHCP: with the host's DHCP server stopped, a guest runs one
// (busybox udhcpd); another guest's client gets no lease from it (on
// unmanaged ports it does).
func (l *guestLab) checkRogueDHCP(rogue, client *labGuest) {
	t := l.t
	l.stopDnsmasq()
	conf := "interface eth0\\nstart 192.0.2.200\\nend 192.0.2.210\\nlease_file /tmp/udhcpd.leases\\nopt subnet 255.255.255.0\\n"
	rogue.must(t, "touch /tmp/udhcpd.leases && printf '"+conf+"' > /tmp/udhcpd.conf && udhcpd /tmp/udhcpd.conf")
	out, ok := client.sh(t, "udhcpc -i eth0 -n -q -t 5 -T 1 -s /tmp/udhcpc.sh", 30*time.Second)
	leased := ok && strings.Contains(out, "from "+rogue.ip4)
	t.Logf("attack a DHCP server in %s: %s leased=%v", rogue.name, client.name, leased)
	switch {
	case l.control && !leased:
		t.Errorf("control (no tapfw): the rogue DHCP server gave no lease:\n%s", out)
	case !l.control && ok:
		t.Errorf("a lease from a DHCP server in a guest:\n%s", out)
	}
}

// powerOff shuts every guest down from inside; QEMU runs qemu-ifdown, and
// nothing of their taps remains.
func (l *guestLab) powerOff() {
	l.each(func(lg *labGuest) error { return lg.g.Poweroff(60 * time.Second) })
	if l.control {
		return
	}
	state := l.q.state()
	for _, lg := range l.guests {
		if link := l.q.link(lg.tap); link.exists {
			l.t.Errorf("%s: tap %s still exists: %+v", lg.name, lg.tap, link)
		}
		if strings.Contains(state, lg.tap) {
			l.t.Errorf("%s: %s still in the kernel's netfilter state:\n%s", lg.name, lg.tap, state)
		}
	}
	if out := l.q.mustOp("list"); strings.Contains(out, "tap10") {
		l.t.Errorf("tapfw list after power-off:\n%s", out)
	}
}
