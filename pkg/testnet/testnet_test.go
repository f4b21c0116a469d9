package testnet

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	createdMu sync.Mutex
	created   []string // namespaces created by this test binary
)

// TestMain fails the run if a namespace created by a test survives it, and
// deletes such leftovers so a broken Close never pollutes the machine.
func TestMain(m *testing.M) {
	code := GuardHost(m)
	if os.Geteuid() == 0 {
		list, _ := exec.Command("ip", "netns", "list").Output()
		createdMu.Lock()
		for _, name := range created {
			if nsListed(list, name) {
				fmt.Fprintf(os.Stderr, "namespace %s leaked; deleting it\n", name)
				_ = exec.Command("ip", "netns", "delete", name).Run()
				code = 1
			}
		}
		createdMu.Unlock()
	}
	os.Exit(code)
}

func nsListed(list []byte, name string) bool {
	for _, line := range strings.Split(string(list), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

func newNS(t *testing.T, prefix string) *NS {
	t.Helper()
	n, err := NewNS(prefix)
	if err != nil {
		t.Fatal(err)
	}
	createdMu.Lock()
	created = append(created, n.Name)
	createdMu.Unlock()
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// lab is a host namespace with bridge br0 (192.0.2.1/24) and peers a
// (192.0.2.10 on tap1) and b (192.0.2.11 on tap2).
type lab struct {
	host, a, b *NS
	macA, macB net.HardwareAddr
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{host: newNS(t, "h"), a: newNS(t, "a"), b: newNS(t, "b")}
	if err := AddBridge(l.host, "br0", "192.0.2.1/24"); err != nil {
		t.Fatal(err)
	}
	if err := AddPort(l.host, "br0", "tap1", l.a, "02:00:00:00:00:0a", "192.0.2.10/24", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if err := AddPort(l.host, "br0", "tap2", l.b, "", "192.0.2.11/24", ""); err != nil {
		t.Fatal(err)
	}
	var err error
	if l.macA, err = LinkMAC(l.a, "eth0"); err != nil {
		t.Fatal(err)
	}
	if l.macA.String() != "02:00:00:00:00:0a" {
		t.Fatalf("peer a MAC = %s, want the requested 02:00:00:00:00:0a", l.macA)
	}
	if l.macB, err = LinkMAC(l.b, "eth0"); err != nil {
		t.Fatal(err)
	}
	return l
}

// unicast is a UDP frame from a to b with their real addresses.
func (l *lab) unicast(payload string) Frame {
	return Frame{
		SrcMAC: l.macA, DstMAC: l.macB,
		SrcIP: net.ParseIP("192.0.2.10"), DstIP: net.ParseIP("192.0.2.11"),
		SrcPort: 40000, DstPort: 5000,
		Payload: []byte(payload),
	}
}

func TestNSLifecycle(t *testing.T) {
	NeedKernel(t)
	n, err := NewNS("life")
	if err != nil {
		t.Fatal(err)
	}
	createdMu.Lock()
	created = append(created, n.Name)
	createdMu.Unlock()
	if !strings.HasPrefix(n.Name, "tfwlife-") || n.Path != "/var/run/netns/"+n.Name {
		t.Errorf("name %q path %q", n.Name, n.Path)
	}
	out, err := n.Run("ip", "-o", "link", "show", "lo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "UP") {
		t.Errorf("lo not up: %s", out)
	}
	if out, err := n.Run("cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6"); err == nil && strings.TrimSpace(string(out)) != "1" {
		t.Errorf("disable_ipv6 = %q", out)
	}
	// Do runs inside the namespace: only lo is there.
	err = n.Do(func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		if len(ifs) != 1 || ifs[0].Name != "lo" {
			return fmt.Errorf("interfaces in new namespace: %v", ifs)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if _, err := n.Run("false"); err == nil {
		t.Error("Run(false) succeeded")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	list, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if nsListed(list, n.Name) {
		t.Errorf("%s still listed after Close", n.Name)
	}
	if err := n.Do(func() error { return nil }); err == nil {
		t.Error("Do on a closed namespace succeeded")
	}
}

func TestTCPProbe(t *testing.T) {
	NeedKernel(t)
	l := newLab(t)
	srv, err := TCPServe(l.b, "192.0.2.11:22")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	if !TCPProbe(l.a, "192.0.2.11:22", 3*time.Second) {
		t.Error("probe to served port failed")
	}
	if !TCPProbe(l.host, "192.0.2.11:22", 3*time.Second) {
		t.Error("probe from host to served port failed")
	}
	if !TCPProbeFrom(l.a, "192.0.2.10", "192.0.2.11:22", 3*time.Second) {
		t.Error("probe with explicit source failed")
	}
	if TCPProbeFrom(l.a, "192.0.2.99", "192.0.2.11:22", time.Second) {
		t.Error("probe from an address a does not own succeeded")
	}
	start := time.Now()
	if TCPProbe(l.a, "192.0.2.11:23", 3*time.Second) {
		t.Error("probe to unserved port succeeded")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refused probe took %v; RST should end it at once", d)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if TCPProbe(l.a, "192.0.2.11:22", time.Second) {
		t.Error("probe succeeded after server Close")
	}
}

func TestSendFrameUnicast(t *testing.T) {
	NeedKernel(t)
	l := newLab(t)
	ln, err := UDPListen(l.b, "0.0.0.0:5000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	if err := SendFrame(l.a, "eth0", l.unicast("unicast-1")); err != nil {
		t.Fatal(err)
	}
	if !ln.Got([]byte("unicast-1"), 2*time.Second) {
		t.Fatal("bridged frame from a did not reach b")
	}
	// Exact match only, and arrivals are remembered.
	if ln.Got([]byte("unicast-"), 100*time.Millisecond) || ln.Got([]byte("unicast-12"), 0) {
		t.Error("Got matched a payload that was not sent")
	}
	if !ln.Got([]byte("unicast-1"), 0) {
		t.Error("Got forgot an earlier payload")
	}
	// A frame to a MAC nobody has is flooded but dropped by b as PACKET_OTHERHOST.
	f := l.unicast("unicast-wrongmac")
	f.DstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0xee, 0xee}
	if err := SendFrame(l.a, "eth0", f); err != nil {
		t.Fatal(err)
	}
	if ln.Got(f.Payload, 300*time.Millisecond) {
		t.Error("frame to a foreign MAC was received")
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if ln.Got([]byte("never"), time.Second) {
		t.Error("closed listener reported a payload")
	}
}

func TestSendFrameDHCPBroadcast(t *testing.T) {
	NeedKernel(t)
	l := newLab(t)
	ln, err := UDPListen(l.host, "0.0.0.0:67")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	discover := Frame{
		SrcMAC: l.macA, DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		SrcIP: net.IPv4zero, DstIP: net.IPv4bcast,
		SrcPort: 68, DstPort: 67,
		Payload: []byte("dhcp-discover-probe"),
	}
	if err := SendFrame(l.a, "eth0", discover); err != nil {
		t.Fatal(err)
	}
	if !ln.Got(discover.Payload, 2*time.Second) {
		t.Fatal("DHCP-like broadcast from a did not reach the host")
	}
}

func TestFirewallDropsBridgedProbe(t *testing.T) {
	NeedKernel(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables not installed")
	}
	l := newLab(t)
	if err := l.host.Sysctl("net.bridge.bridge-nf-call-iptables", "1"); err != nil {
		t.Skipf("bridge netfilter unavailable in namespaces: %v", err)
	}
	ln, err := UDPListen(l.b, "0.0.0.0:5000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv, err := TCPServe(l.b, "192.0.2.11:22")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	send := func(payload string) {
		t.Helper()
		if err := SendFrame(l.a, "eth0", l.unicast(payload)); err != nil {
			t.Fatal(err)
		}
	}
	send("fw-before")
	if !ln.Got([]byte("fw-before"), 2*time.Second) {
		t.Fatal("probe failed before any rule was added")
	}

	rule := []string{"FORWARD", "-m", "physdev", "--physdev-in", "tap1", "-j", "DROP"}
	if _, err := l.host.Run(append([]string{"iptables", "-A"}, rule...)...); err != nil {
		t.Fatal(err)
	}
	send("fw-dropped")
	if ln.Got([]byte("fw-dropped"), 500*time.Millisecond) {
		t.Error("UDP probe passed the FORWARD DROP rule")
	}
	if TCPProbe(l.a, "192.0.2.11:22", 500*time.Millisecond) {
		t.Error("TCP probe passed the FORWARD DROP rule")
	}
	if out, err := l.host.Run("iptables", "-L", "FORWARD", "-v", "-n", "-x"); err != nil {
		t.Fatal(err)
	} else if !bytes.Contains(out, []byte("DROP")) {
		t.Errorf("rule missing:\n%s", out)
	}

	if _, err := l.host.Run(append([]string{"iptables", "-D"}, rule...)...); err != nil {
		t.Fatal(err)
	}
	send("fw-after")
	if !ln.Got([]byte("fw-after"), 2*time.Second) {
		t.Error("probe still failing after the rule was removed")
	}
}

func TestFrameBytes(t *testing.T) {
	f := Frame{
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		SrcIP: net.ParseIP("192.0.2.10"), DstIP: net.ParseIP("192.0.2.11"),
		SrcPort: 1234, DstPort: 5000, Payload: []byte("hello"),
	}
	b, err := f.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 60 {
		t.Errorf("len = %d, want 60 (padded)", len(b))
	}
	ip := b[14:34]
	if Checksum(0, ip) != 0 {
		t.Error("IPv4 header checksum does not verify")
	}
	if ip[8] != 64 || ip[9] != 17 {
		t.Errorf("ttl %d proto %d", ip[8], ip[9])
	}
	udp := b[34 : 34+8+5]
	pseudo := append(append(append([]byte{}, ip[12:20]...), 0, 17), 0, byte(len(udp)))
	if Checksum(Sum16(0, pseudo), udp) != 0 {
		t.Error("UDP checksum does not verify")
	}
	if _, err := (Frame{SrcMAC: f.SrcMAC, DstMAC: f.DstMAC, SrcIP: nil, DstIP: f.DstIP}).Bytes(); err == nil {
		t.Error("missing source IP accepted")
	}
	if _, err := (Frame{SrcIP: f.SrcIP, DstIP: f.DstIP}).Bytes(); err == nil {
		t.Error("missing MACs accepted")
	}
}

// TestHostStateSeesChanges: what GuardHost compares notices a tapfw ipset,
// a tapfw chain, a new link and a new route. Read here inside a sandbox,
// as it would be in the host's namespace.
func TestHostStateSeesChanges(t *testing.T) {
	NeedKernel(t)
	ns, err := NewNS("guard")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	state := func() (s string) {
		t.Helper()
		if err := ns.Do(func() error { s = HostState(); return nil }); err != nil {
			t.Fatal(err)
		}
		return s
	}
	prev := state()
	for _, change := range [][]string{
		{"ipset", "create", "tfw-guard", "hash:net"},
		{"iptables", "-N", "TFW-GUARD"},
		{"ip", "link", "add", "guard0", "type", "veth", "peer", "name", "guard1"},
		{"ip", "link", "set", "guard0", "up"},
		{"ip", "route", "add", "198.51.100.0/24", "dev", "guard0"},
	} {
		if out, err := ns.Run(change...); err != nil {
			t.Fatalf("%v: %v\n%s", change, err, out)
		}
		now := state()
		if now == prev && change[2] != "set" {
			t.Errorf("HostState did not change after %v:\n%s", change, now)
		}
		prev = now
	}
}
