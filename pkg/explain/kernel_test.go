//go:build kernelcheck

package explain

// The kernel check replays every explainCase with a real packet, as root,
// each in a network namespace of its own (nothing touches the machine's
// own netfilter state):
//
//	go test -tags kernelcheck -run TestKernel -v ./pkg/explain/
//
// Each case gets a fresh namespace with the devices its packet needs
// (bridges with veth ports to child namespaces, plain veths, routes), the
// testdata's ipsets and table (iptables-nft-restore), and then one frame,
// written raw into the port it comes from (or, for OUTPUT, an IP packet
// sent through a raw socket). The rules whose counters moved, and the
// built-in policy if its counter moved, must be exactly the rules Explain
// reports as matched. The packet is made realistic first: its conntrack
// state is the one the kernel will give it (an ICMP error without a
// connection is INVALID, a neighbour solicitation UNTRACKED, ...), an
// ESTABLISHED packet gets its connection opened by a first packet the
// other way, and cases that no real packet can be (an unset ICMP type, a
// RELATED UDP packet) are skipped, and so are cases whose answer Explain
// says is uncertain when the kernel answers otherwise (the skip message
// shows what the kernel did).
//
// It needs unshare, nsenter, ip, bridge, ipset, iptables-nft and
// iptables-legacy (each backend is checked when installed), and
// br_netfilter. TFW_EXPLAIN_DEBUG=1 logs the counters and the conntrack
// table of each case.

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const envKernelCase = "TFW_EXPLAIN_KERNEL_CASE"

func TestKernel(t *testing.T) {
	testnet.NeedKernel(t)
	for _, backend := range []string{"nft", "legacy"} {
		if _, err := exec.LookPath("iptables-" + backend + "-restore"); err != nil {
			t.Logf("no iptables-%s", backend)
			continue
		}
		for si, cs := range caseSets {
			for i, c := range cs.cases() {
				t.Run(backend+"/"+cs.file+"/"+c.name, func(t *testing.T) { kernelCase(t, backend, si, i) })
			}
		}
	}
}

// kernelCase runs case i of caseSets[si] in a namespace of its own.
func kernelCase(t *testing.T, backend string, si, i int) {
	cmd := exec.Command("unshare", "-n", os.Args[0], "-test.run=^TestKernelCase$", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d:%d", envKernelCase, backend, si, i))
	raw, err := cmd.CombinedOutput()
	// The child's own result lines must not read as this run's in a log
	// that is counted line by line (scripts/test.sh).
	out := strings.ReplaceAll(string(raw), "--- ", "child: ")
	switch {
	case err != nil:
		t.Errorf("%v\n%s", err, out)
	case strings.Contains(string(raw), "--- SKIP"):
		// No real packet can be this case, or Explain said its answer is
		// uncertain: nothing to compare, and nothing wrong.
		t.Logf("not compared with the kernel:\n%s", out)
	default:
		t.Logf("%s", out)
	}
}

// TestKernelCase runs one case inside the namespace TestKernel made.
func TestKernelCase(t *testing.T) {
	v := os.Getenv(envKernelCase)
	if v == "" {
		t.Log("runs one case in TestKernel's child process only")
		return
	}
	f := strings.Split(v, ":")
	set, _ := strconv.Atoi(f[1])
	idx, _ := strconv.Atoi(f[2])
	c := caseSets[set].cases()[idx]
	file := caseSets[set].file

	p, skip := realistic(c.p)
	if skip != "" {
		t.Skip(skip)
	}
	k := &kernel{t: t, backend: f[0], pids: map[string]int{}, macs: map[string]net.HardwareAddr{}}
	defer k.close()
	k.setup(p, file)
	// Keep conntrack on in this namespace for good, whatever the filter
	// table holds: an nftables rule that reads ct turns it on.
	k.run(k.iptables(p.Family), "-t", "mangle", "-A", "PREROUTING", "-m", "conntrack", "--ctstate", "NEW")
	k.run(k.iptables(p.Family), "-t", "mangle", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW")
	if p.CtState == "ESTABLISHED" {
		k.restore(p.Family, []byte("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"))
		k.open(p)
		if os.Getenv("TFW_EXPLAIN_DEBUG") != "" {
			ct := conntrackTable()
			t.Logf("conntrack after opening:\n%s", ct)
		}
	}
	// Keep the host's own packets (answers, RST, ICMP errors, anything
	// else) out of the counters: only the probe may pass raw OUTPUT.
	if p.Hook == "OUTPUT" {
		k.run(k.iptables(p.Family), "-t", "raw", "-A", "OUTPUT", "!", "-d", p.Dst.String(), "-j", "DROP")
		k.run(k.iptables(p.Family), "-t", "raw", "-A", "OUTPUT", "!", "-p", p.Proto, "-j", "DROP")
	} else {
		k.run(k.iptables(p.Family), "-t", "raw", "-A", "OUTPUT", "-j", "DROP")
	}
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	k.restore(p.Family, data)
	k.send(p)
	got := k.settled(p.Family)
	if os.Getenv("TFW_EXPLAIN_DEBUG") != "" {
		t.Logf("counters:\n%s", k.run(k.iptables(p.Family)+"-save", "-c"))
		ct := conntrackTable()
		t.Logf("conntrack:\n%s", ct)
	}

	rs, sets := load(t, file)
	r, err := Explain(rs, sets, p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, s := range r.Steps {
		switch {
		case s.What == WhatPolicy:
			want[s.Chain+" policy"] = true
		case s.Index > 0 && s.What != WhatUnknown:
			want[fmt.Sprintf("%s %d", s.Chain, s.Index)] = true
		}
	}
	if fmt.Sprint(keys(got)) != fmt.Sprint(keys(want)) {
		msg := fmt.Sprintf("kernel matched %v\nexplain says  %v\n%s", keys(got), keys(want), r.Text())
		if len(r.Uncertain) > 0 {
			t.Skipf("uncertain, and the kernel differs:\n%s", msg)
		}
		t.Fatalf("%s", msg)
	}
	t.Logf("packet %+v\n%s", p, r.Text())
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// realistic returns p with the conntrack state the kernel will give it,
// or why no real packet can be p.
func realistic(p Packet) (Packet, string) {
	p.CtState = strings.ToUpper(p.CtState)
	switch p.CtState {
	case "RELATED":
		return p, "a RELATED packet needs a related connection"
	case "", "NEW":
		p.CtState = "NEW"
	}
	switch strings.ToLower(p.Proto) {
	case "icmp":
		if p.ICMPType < 0 || p.ICMPCode < 0 {
			return p, "icmp type or code unset"
		}
		switch p.ICMPType {
		case 8, 13, 15, 17:
			p.CtState = "NEW"
		default:
			p.CtState = "INVALID" // an error or a reply without connection
		}
	case "ipv6-icmp", "icmpv6", "58":
		if p.ICMPType < 0 || p.ICMPCode < 0 {
			return p, "icmp type or code unset"
		}
		switch p.ICMPType {
		case 128, 139:
			p.CtState = "NEW"
		case 130, 131, 132, 133, 134, 135, 136, 143:
			p.CtState = "UNTRACKED"
		default:
			p.CtState = "INVALID"
		}
	}
	if p.CtState == "INVALID" && p.Proto != "tcp" && !strings.Contains(p.Proto, "icmp") && p.Proto != "58" {
		return p, "no way to make this protocol INVALID"
	}
	if p.CtState == "ESTABLISHED" && p.Hook != "FORWARD" && p.PhysIn != "" {
		return p, "the opening packet would leave through a bridge"
	}
	if p.SrcMAC == nil && p.Hook != "OUTPUT" {
		p.SrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	}
	return p, ""
}

type kernel struct {
	t       *testing.T
	backend string         // nft or legacy
	pids    map[string]int // child namespace behind each port or plain interface
	macs    map[string]net.HardwareAddr
	proc    []*exec.Cmd
}

func (k *kernel) run(args ...string) string {
	k.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		k.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// iptables is the command of the backend for the family.
func (k *kernel) iptables(family int) string {
	if family == 6 {
		return "ip6tables-" + k.backend
	}
	return "iptables-" + k.backend
}

func (k *kernel) restore(family int, data []byte) {
	k.t.Helper()
	cmd := exec.Command(k.iptables(family) + "-restore")
	cmd.Stdin = strings.NewReader(string(data))
	if out, err := cmd.CombinedOutput(); err != nil {
		k.t.Fatalf("restore: %v\n%s", err, out)
	}
}

func (k *kernel) close() {
	for _, c := range k.proc {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
}

var noV6 = []string{"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"}

// child starts a namespace for the far end of name, with a veth pair:
// name here, eth0 there with the MAC.
func (k *kernel) child(name string, mac net.HardwareAddr) {
	if _, ok := k.pids[name]; ok {
		return
	}
	cmd := exec.Command("unshare", "-n", "sleep", "60")
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	k.proc = append(k.proc, cmd)
	pid := cmd.Process.Pid
	// Wait for unshare to have made the namespace.
	self, _ := os.Readlink("/proc/thread-self/ns/net")
	for i := 0; ; i++ {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err == nil && ns != self {
			break
		}
		if i == 100 {
			k.t.Fatalf("no namespace for %s", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ns := []string{"nsenter", "-t", strconv.Itoa(pid), "-n"}
	k.run(append(ns, noV6...)...)
	k.run("ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "address", mac.String(), "netns", strconv.Itoa(pid))
	k.run(append(ns, "ip", "link", "set", "eth0", "up")...)
	k.run("ip", "link", "set", name, "up")
	k.pids[name], k.macs[name] = pid, mac
}

func (k *kernel) bridge(name string) {
	if _, err := net.InterfaceByName(name); err == nil {
		return
	}
	k.run("ip", "link", "add", name, "type", "bridge")
	k.run("ip", "link", "set", name, "up")
}

func (k *kernel) port(bridge, port string, mac net.HardwareAddr) {
	k.bridge(bridge)
	k.child(port, mac)
	k.run("ip", "link", "set", port, "master", bridge)
	k.run("bridge", "fdb", "replace", mac.String(), "dev", port, "master", "static")
}

func isBridgeName(s string) bool { return strings.HasPrefix(s, "br") || strings.HasPrefix(s, "vmbr") }

var (
	macOut   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	macPlain = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x03}
)

// setup builds what p crosses, and the ipsets of file.
func (k *kernel) setup(p Packet, file string) {
	k.run(noV6...)
	k.run("ip", "link", "set", "lo", "up")
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		k.t.Fatal(err)
	}
	sets, err := parseSets(data)
	if err != nil {
		k.t.Fatal(err)
	}
	for name, entries := range sets {
		fam := "inet"
		if len(entries) > 0 && entries[0].Addr().Is6() {
			fam = "inet6"
		}
		k.run("ipset", "create", name, "hash:net", "family", fam)
		for _, e := range entries {
			k.run("ipset", "add", name, e.String())
		}
	}
	// Sets the rules name that the testdata does not list: empty.
	for _, s := range []string{"nosuchset"} {
		if _, ok := sets[s]; !ok && file == "semantics.save" {
			k.run("ipset", "create", s, "hash:net")
		}
	}
	in := p.SrcMAC
	if in == nil {
		in = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	}
	switch {
	case p.Hook == "OUTPUT":
		if isBridgeName(p.OutIface) {
			k.bridge(p.OutIface)
		} else {
			k.child(p.OutIface, macPlain)
		}
	case p.PhysIn != "":
		k.port(p.InIface, p.PhysIn, in)
	default:
		k.child(p.InIface, in)
	}
	switch {
	case p.Bridged:
		k.port(p.OutIface, p.PhysOut, macOut)
	case p.Hook == "FORWARD":
		k.child(p.OutIface, macPlain)
	}
	if p.Hook == "FORWARD" && !p.Bridged {
		k.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
		k.run("ip", "route", "add", p.Dst.String(), "dev", p.OutIface)
		k.run("ip", "neigh", "replace", p.Dst.String(), "lladdr", macPlain.String(), "dev", p.OutIface, "nud", "permanent")
	}
	if p.Hook == "INPUT" {
		k.run("ip", "addr", "add", p.Dst.String()+"/32", "dev", "lo")
	}
	if p.Hook == "OUTPUT" {
		k.run("ip", "addr", "add", p.Src.String()+"/32", "dev", "lo")
		k.run("ip", "route", "add", p.Dst.String(), "dev", p.OutIface)
		k.run("ip", "neigh", "replace", p.Dst.String(), "lladdr", macPlain.String(), "dev", p.OutIface, "nud", "permanent")
	}
	time.Sleep(100 * time.Millisecond)
}

// open sends the packet that opens p's connection: p reversed.
func (k *kernel) open(p Packet) {
	r := p
	r.Src, r.Dst, r.SPort, r.DPort = p.Dst, p.Src, p.DPort, p.SPort
	r.CtState = "NEW"
	switch {
	case p.Bridged:
		r.PhysIn, r.PhysOut, r.SrcMAC = p.PhysOut, p.PhysIn, macOut
		k.send(r)
	case p.Hook == "INPUT":
		// From the host, out of the in interface.
		k.run("ip", "route", "add", p.Src.String(), "dev", p.InIface)
		k.run("ip", "neigh", "replace", p.Src.String(), "lladdr", macPlain.String(), "dev", p.InIface, "nud", "permanent")
		r.Hook, r.OutIface, r.InIface = "OUTPUT", p.InIface, ""
		k.send(r)
	default:
		k.t.Skip("cannot open this connection")
	}
	// The frame is queued to the peer's backlog and handled in a softirq,
	// which a busy machine runs late: wait for the connection itself.
	waitFor(k.t, "the opening packet's connection", func() bool {
		for _, line := range strings.Split(conntrackTable(), "\n") {
			// The bridge's own IGMP reports are tracked as "unknown".
			if f := strings.Fields(line); len(f) > 2 && f[2] != "unknown" {
				return true
			}
		}
		return false
	})
}

// conntrackTable is this namespace's conntrack table. It is read through
// thread-self: a thread that sendIn moved into a child namespace may be
// the thread-group leader, and /proc/self (/proc/net) follows that one.
func conntrackTable() string {
	ct, _ := os.ReadFile("/proc/thread-self/net/nf_conntrack")
	return string(ct)
}

// settled returns the rules whose counters moved, once some counter has
// moved and a further read finds the same: the probe is handled in a
// softirq that a busy machine runs late.
func (k *kernel) settled(family int) map[string]bool {
	var got map[string]bool
	waitFor(k.t, "the probe's counters", func() bool {
		got = k.matched(family)
		return len(got) > 0
	})
	waitFor(k.t, "the probe's counters to settle", func() bool {
		time.Sleep(50 * time.Millisecond)
		again := k.matched(family)
		same := fmt.Sprint(keys(again)) == fmt.Sprint(keys(got))
		got = again
		return same
	})
	return got
}

// waitFor polls ok for up to ten seconds.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// send puts p on the wire where it comes from.
func (k *kernel) send(p Packet) {
	k.t.Helper()
	tcpFlags := byte(0x02) // SYN
	switch p.CtState {
	case "INVALID":
		tcpFlags = 0x03 // SYN+FIN
	case "ESTABLISHED":
		tcpFlags = 0x12 // SYN+ACK
	}
	ip := ipPacket(p, tcpFlags)
	if p.Hook == "OUTPUT" {
		// EPERM: the filter dropped it, which the counters tell.
		if err := rawSend(p, ip); err != nil && err != unix.EPERM {
			k.t.Fatal(err)
		}
		return
	}
	from := p.InIface
	if p.PhysIn != "" {
		from = p.PhysIn
	}
	// Bridged: to the out port's MAC; otherwise to ours (the bridge, or
	// our end of the veth).
	dst := k.macs[p.PhysOut]
	if !p.Bridged {
		ifi, err := net.InterfaceByName(p.InIface)
		if err != nil {
			k.t.Fatal(err)
		}
		dst = ifi.HardwareAddr
	}
	et := uint16(0x0800)
	if p.Family == 6 {
		et = 0x86dd
	}
	frame := append(append(append([]byte{}, dst...), p.SrcMAC...), byte(et>>8), byte(et))
	frame = append(frame, ip...)
	if err := sendIn(k.pids[from], "eth0", frame); err != nil {
		k.t.Fatal(err)
	}
}

// sendIn writes a frame out of ifname in the namespace of pid, from a
// thread that is thrown away afterwards.
func sendIn(pid int, ifname string, frame []byte) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := netns.GetFromPid(pid)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			errc <- err
			return
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		copy(sa.Addr[:], frame[:6])
		errc <- unix.Sendto(fd, frame, 0, sa)
	}()
	return <-errc
}

// rawSend sends an IPv4 packet from this namespace's stack.
func rawSend(p Packet, ip []byte) error {
	if p.Family != 4 {
		return fmt.Errorf("raw send of IPv%d", p.Family)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Sendto(fd, ip, 0, &unix.SockaddrInet4{Addr: p.Dst.As4()})
}

// matched reads which rules and policies counted a packet.
func (k *kernel) matched(family int) map[string]bool {
	out := k.run(k.iptables(family)+"-save", "-c", "-t", "filter")
	got := map[string]bool{}
	idx := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) == 3 && f[1] != "-" && !strings.HasPrefix(f[2], "[0:") {
				got[f[0]+" policy"] = true
			}
		case strings.HasPrefix(line, "["):
			cnt, rest, _ := strings.Cut(line, " ")
			rest, _ = strings.CutPrefix(rest, "-A ")
			chain, _, _ := strings.Cut(rest, " ")
			idx[chain]++
			if !strings.HasPrefix(cnt, "[0:") {
				got[fmt.Sprintf("%s %d", chain, idx[chain])] = true
			}
		}
	}
	return got
}

// ipPacket builds p's IP packet; tcpFlags for a TCP one.
func ipPacket(p Packet, tcpFlags byte) []byte {
	proto, err := protoNumber(p.Proto)
	if err != nil {
		panic(err)
	}
	var l4 []byte
	switch proto {
	case 6:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], p.SPort)
		binary.BigEndian.PutUint16(l4[2:], p.DPort)
		binary.BigEndian.PutUint32(l4[4:], 1000)
		if tcpFlags&0x10 != 0 {
			binary.BigEndian.PutUint32(l4[8:], 1001) // acks the opening SYN
		}
		l4[12] = 5 << 4
		l4[13] = tcpFlags
		binary.BigEndian.PutUint16(l4[14:], 65535)
	case 17:
		l4 = make([]byte, 12)
		binary.BigEndian.PutUint16(l4[0:], p.SPort)
		binary.BigEndian.PutUint16(l4[2:], p.DPort)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[8:], "ping")
	case 1, 58:
		l4 = make([]byte, 8)
		l4[0], l4[1] = byte(p.ICMPType), byte(p.ICMPCode)
		binary.BigEndian.PutUint32(l4[4:], 0x00010001)
		if proto == 58 && (p.ICMPType == 135 || p.ICMPType == 136) {
			t := p.Dst.As16()
			l4 = append(l4[:4], make([]byte, 4)...)
			l4 = append(l4, t[:]...)
		}
		if proto == 1 && p.ICMPType != 8 && p.ICMPType != 0 {
			// An error quotes the header and 8 bytes of a packet.
			inner := ipv4Header(17, netip.MustParseAddr("192.0.2.99"), p.Src, 8)
			l4 = append(l4, inner...)
			l4 = append(l4, 0, 53, 0, 53, 0, 8, 0, 0)
		}
	default:
		l4 = make([]byte, 8)
	}
	if p.Family == 4 {
		h := ipv4Header(byte(proto), p.Src, p.Dst, len(l4))
		switch proto {
		case 6, 17:
			putSum(l4, proto, pseudo4(p.Src, p.Dst, proto, len(l4)))
		case 1:
			binary.BigEndian.PutUint16(l4[2:], testnet.Checksum(0, l4))
		}
		return append(h, l4...)
	}
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
	h[6], h[7] = byte(proto), 64
	if proto == 58 && p.ICMPType >= 133 && p.ICMPType <= 137 {
		h[7] = 255
	}
	s, d := p.Src.As16(), p.Dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	if proto == 6 || proto == 17 || proto == 58 {
		ps := append(append(append([]byte{}, s[:]...), d[:]...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, byte(proto))
		putSum(l4, proto, testnet.Sum16(0, ps))
	}
	return append(h, l4...)
}

func ipv4Header(proto byte, src, dst netip.Addr, l4len int) []byte {
	h := make([]byte, 20)
	h[0], h[1] = 0x45, 0
	binary.BigEndian.PutUint16(h[2:], uint16(20+l4len))
	binary.BigEndian.PutUint16(h[4:], 1)
	h[8], h[9] = 64, proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], testnet.Checksum(0, h))
	return h
}

func pseudo4(src, dst netip.Addr, proto, n int) uint32 {
	s, d := src.As4(), dst.As4()
	b := append(append(append([]byte{}, s[:]...), d[:]...), 0, byte(proto), byte(n>>8), byte(n))
	return testnet.Sum16(0, b)
}

// putSum writes the checksum of a TCP, UDP or ICMPv6 header with its
// pseudo-header sum.
func putSum(l4 []byte, proto int, pseudo uint32) {
	off := map[int]int{6: 16, 17: 6, 58: 2}[proto]
	c := testnet.Checksum(pseudo, l4)
	if proto == 17 && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}
