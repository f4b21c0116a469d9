// Package traffic sends the data plane's packets and reads what arrived.
package traffic

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// Packets: one-way small UDP packets (60-byte frames), each with
// a different source port from a pool of flowPorts, sent with sendmmsg in
// batches as fast as the sender can: over an AF_PACKET socket out of a VM's
// eth0 (VM to VM, VM to host), or over a raw IP socket (IP_HDRINCL) from
// the host's own stack (host to VM, through its OUTPUT hook).

const (
	// The source ports of one path: 16384 flows. With the sandbox's
	// unreplied-UDP timeout at 0 an entry has expired when its port comes
	// round again, so each packet makes a new entry, and the table holds
	// at most this many entries per path.
	FlowPortLo = 49152
	FlowPortHi = 65535
	batchSize  = 64
	PayloadLen = 18 // 14+20+8+18 = 60 bytes on the wire, the Ethernet minimum
)

type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// Flow is a prepared set of packets and the sendmmsg headers that send
// them, all to the same address.
type Flow struct {
	fd    int
	pkts  [][]byte
	iovs  []unix.Iovec
	hdrs  []mmsghdr
	addr  []byte // raw sockaddr, referenced by every header
	next  int
	ports int
}

// Close closes the socket.
func (f *Flow) Close() {
	if f.fd >= 0 {
		_ = unix.Close(f.fd)
		f.fd = -1
	}
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// NewFrameFlow prepares Ethernet frames from src to dst:dport sent out of ifname
// in ns through an AF_PACKET socket. The socket is made inside ns and
// keeps to it; sending works from any thread.
func NewFrameFlow(ns *testnet.NS, ifname string, srcMAC, dstMAC net.HardwareAddr, srcIP, dstIP string, dport uint16) (*Flow, error) {
	f := &Flow{fd: -1}
	var ifindex int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		f.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
			return fmt.Errorf("bind packet socket: %w", err)
		}
		// Skip the qdisc layer, as a VM's virtio queue does: the sender
		// hands each frame straight to the veth.
		_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
		return nil
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("frames out of %s in %s: %w", ifname, ns.Name, err)
	}
	sa := unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(unix.ETH_P_IP), Ifindex: int32(ifindex), Halen: 6}
	copy(sa.Addr[:], dstMAC)
	f.addr = unsafe.Slice((*byte)(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	f.addr = bytes.Clone(f.addr)
	if err := f.build(func(sport uint16) ([]byte, error) {
		return testnet.Frame{SrcMAC: srcMAC, DstMAC: dstMAC, SrcIP: net.ParseIP(srcIP), DstIP: net.ParseIP(dstIP),
			SrcPort: sport, DstPort: dport, Payload: make([]byte, PayloadLen)}.Bytes()
	}); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// NewIPFlow prepares IPv4 packets to dst:dport from the host's own stack in ns: a raw
// socket with IP_HDRINCL, so each packet has its own source port and goes
// through routing and the OUTPUT hook like any locally sent packet.
func NewIPFlow(ns *testnet.NS, srcIP, dstIP string, dport uint16) (*Flow, error) {
	f := &Flow{fd: -1}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		f.fd = fd
		return nil
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raw IP in %s: %w", ns.Name, err)
	}
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET}
	copy(sa.Addr[:], net.ParseIP(dstIP).To4())
	f.addr = bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&sa)), unsafe.Sizeof(sa)))
	var zero net.HardwareAddr = make([]byte, 6)
	if err := f.build(func(sport uint16) ([]byte, error) {
		b, err := testnet.Frame{SrcMAC: zero, DstMAC: zero, SrcIP: net.ParseIP(srcIP), DstIP: net.ParseIP(dstIP),
			SrcPort: sport, DstPort: dport, Payload: make([]byte, PayloadLen)}.Bytes()
		if err != nil {
			return nil, err
		}
		return b[14 : 14+20+8+PayloadLen], nil
	}); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// build makes one packet per source port and a header for each.
func (f *Flow) build(mk func(sport uint16) ([]byte, error)) error {
	n := FlowPortHi - FlowPortLo + 1
	f.ports = n
	f.pkts = make([][]byte, n)
	f.iovs = make([]unix.Iovec, n)
	f.hdrs = make([]mmsghdr, n)
	for i := 0; i < n; i++ {
		p, err := mk(uint16(FlowPortLo + i))
		if err != nil {
			return err
		}
		f.pkts[i] = p
		f.iovs[i].Base = &p[0]
		f.iovs[i].SetLen(len(p))
		h := &f.hdrs[i].hdr
		h.Name = &f.addr[0]
		h.Namelen = uint32(len(f.addr))
		h.Iov = &f.iovs[i]
		h.SetIovlen(1)
	}
	return nil
}

// send sends up to count packets with one sendmmsg, continuing the cycle
// of source ports; it returns how many the kernel took.
func (f *Flow) send(count int) (int, error) {
	count = min(count, batchSize, f.ports-f.next)
	r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(f.fd), uintptr(unsafe.Pointer(&f.hdrs[f.next])), uintptr(count), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	f.next = (f.next + int(r)) % f.ports
	return int(r), nil
}

// Flood sends as fast as it can for d and returns the packets the kernel
// took and the time it took. Transient ENOBUFS/EAGAIN (a full queue) are
// retried; the packets they refused are not counted as sent.
func (f *Flow) Flood(d time.Duration) (uint64, time.Duration, error) {
	var sent uint64
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; ; i++ {
		if i%16 == 0 && !time.Now().Before(deadline) {
			break
		}
		n, err := f.send(batchSize)
		switch {
		case err == nil:
			sent += uint64(n)
		case errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			f.next = (f.next + 1) % f.ports // the refused packet is skipped
		default:
			return sent, time.Since(start), err
		}
	}
	return sent, time.Since(start), nil
}

// Trickle sends exactly count packets in small batches with pauses, so
// none is lost to a full queue (for the counters' cross-check).
func (f *Flow) Trickle(count int) error {
	for sent := 0; sent < count; {
		n, err := f.send(min(8, count-sent))
		if err != nil {
			return err
		}
		sent += n
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}

// UDPCounter is the packets that reached the UDP layer of ns: delivered to
// a socket's queue (InDatagrams) or dropped there because the queue was
// full (RcvbufErrors). The receiving sockets are never read: a packet
// counts as received once the network has delivered it.
func UDPCounter(ns *testnet.NS) (uint64, error) {
	var data []byte
	err := ns.Do(func() error {
		var err error
		// /proc/self/net would be the main thread's namespace.
		data, err = os.ReadFile("/proc/thread-self/net/snmp")
		return err
	})
	if err != nil {
		return 0, err
	}
	v, err := snmpFields(data, "Udp:")
	if err != nil {
		return 0, fmt.Errorf("%s: %w", ns.Name, err)
	}
	return v["InDatagrams"] + v["RcvbufErrors"], nil
}

func snmpFields(data []byte, prefix string) (map[string]uint64, error) {
	var head []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != prefix {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		out := map[string]uint64{}
		for i := 1; i < len(f) && i < len(head); i++ {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			out[head[i]] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("no %s lines in snmp", prefix)
}

// CtStats sums the per-CPU conntrack statistics of ns by column name
// (insert, drop, early_drop, ...).
func CtStats(ns *testnet.NS) (map[string]uint64, error) {
	var data []byte
	err := ns.Do(func() error {
		var err error
		data, err = os.ReadFile("/proc/thread-self/net/stat/nf_conntrack")
		return err
	})
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) < 2 {
		return nil, errors.New("empty nf_conntrack stats")
	}
	head := strings.Fields(lines[0])
	out := map[string]uint64{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		for i := 0; i < len(f) && i < len(head); i++ {
			v, _ := strconv.ParseUint(f[i], 16, 64)
			if head[i] == "entries" {
				out[head[i]] = v // the same global figure on every line
				continue
			}
			out[head[i]] += v
		}
	}
	return out, nil
}

// UDPSink binds a UDP socket on port in ns and never reads it.
func UDPSink(ns *testnet.NS, port int) (int, error) {
	fd := -1
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrInet4{Port: port})
	})
	if err != nil {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
		return -1, fmt.Errorf("udp sink :%d in %s: %w", port, ns.Name, err)
	}
	return fd, nil
}

// TCPInSegs is the TCP segments ns has received (InSegs).
func TCPInSegs(ns *testnet.NS) (uint64, error) {
	var data []byte
	err := ns.Do(func() error {
		var err error
		data, err = os.ReadFile("/proc/thread-self/net/snmp")
		return err
	})
	if err != nil {
		return 0, err
	}
	v, err := snmpFields(data, "Tcp:")
	if err != nil {
		return 0, fmt.Errorf("%s: %w", ns.Name, err)
	}
	return v["InSegs"], nil
}
