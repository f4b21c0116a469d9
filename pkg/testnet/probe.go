package testnet

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// network returns "tcp4"/"udp4" for IPv4 literals so that wildcard listens
// stay plain AF_INET sockets, otherwise base.
func network(base, addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
			return base + "4"
		}
	}
	return base
}

type tcpServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	once sync.Once
}

// TCPServe listens on addr (e.g. "192.0.2.31:22") inside ns and accepts,
// then immediately closes, connections until the returned Closer is closed.
func TCPServe(ns *NS, addr string) (io.Closer, error) {
	var ln net.Listener
	err := ns.Do(func() error {
		var err error
		ln, err = net.Listen(network("tcp", addr), addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tcp listen %s in %s: %w", addr, ns.Name, err)
	}
	s := &tcpServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				_ = c.Close()
			}
		}
	}()
	return s, nil
}

// Close stops accepting and closes the listening socket.
func (s *tcpServer) Close() error {
	var err error
	s.once.Do(func() {
		err = s.ln.Close()
		s.wg.Wait()
	})
	return err
}

// TCPProbe connects from ns to addr and reports whether the three-way
// handshake completed within timeout. A refused connection returns false at once.
func TCPProbe(ns *NS, addr string, timeout time.Duration) bool {
	return TCPProbeFrom(ns, "", addr, timeout)
}

// TCPProbeFrom is TCPProbe with the local source address bound to srcIP ("" lets the kernel choose).
func TCPProbeFrom(ns *NS, srcIP, addr string, timeout time.Duration) bool {
	d := net.Dialer{Timeout: timeout}
	if srcIP != "" {
		ip := net.ParseIP(srcIP)
		if ip == nil {
			return false
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	ok := false
	_ = ns.Do(func() error {
		c, err := d.Dial(network("tcp", addr), addr)
		if err != nil {
			return err
		}
		ok = true
		// Reset instead of FIN so that repeated probes leave no TIME_WAIT behind.
		_ = c.(*net.TCPConn).SetLinger(0)
		return c.Close()
	})
	return ok
}

// UDPListener records the payloads of datagrams received on a UDP socket.
type UDPListener struct {
	conn *net.UDPConn
	done chan struct{}

	mu     sync.Mutex
	got    map[string]struct{}
	notify chan struct{} // closed and replaced whenever a new datagram arrives
	once   sync.Once
}

// UDPListen listens on addr inside ns (e.g. "0.0.0.0:67", with SO_REUSEADDR
// and SO_BROADCAST set) and records the payloads it receives until Close.
func UDPListen(ns *NS, addr string) (*UDPListener, error) {
	var pc net.PacketConn
	err := ns.Do(func() error {
		var err error
		pc, err = reuseBroadcast.ListenPacket(context.Background(), network("udp", addr), addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("udp listen %s in %s: %w", addr, ns.Name, err)
	}
	l := &UDPListener{
		conn:   pc.(*net.UDPConn),
		done:   make(chan struct{}),
		got:    make(map[string]struct{}),
		notify: make(chan struct{}),
	}
	go l.read()
	return l, nil
}

// reuseBroadcast opens UDP sockets with SO_REUSEADDR and SO_BROADCAST set,
// as DHCP servers and clients do.
var reuseBroadcast = net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}}

// UDPSendFrom sends one datagram from src (host:port, its own port, as a
// DHCP server sends) to dst inside ns, broadcast allowed; a link-local
// destination goes out of dev. A datagram the sender's own firewall drops
// in OUTPUT (EPERM) counts as sent.
func UDPSendFrom(ns *NS, src, dst, dev string, payload []byte) error {
	err := ns.Do(func() error {
		pc, err := reuseBroadcast.ListenPacket(context.Background(), network("udp", src), src)
		if err != nil {
			return err
		}
		defer pc.Close()
		to, err := net.ResolveUDPAddr(network("udp", src), dst)
		if err != nil {
			return err
		}
		if to.IP.IsLinkLocalUnicast() {
			to.Zone = dev
		}
		if _, err = pc.WriteTo(payload, to); errors.Is(err, unix.EPERM) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("udp %s -> %s in %s: %w", src, dst, ns.Name, err)
	}
	return nil
}

func (l *UDPListener) read() {
	defer close(l.done)
	buf := make([]byte, 65536)
	for {
		n, _, err := l.conn.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		l.mu.Lock()
		l.got[string(buf[:n])] = struct{}{}
		close(l.notify)
		l.notify = make(chan struct{})
		l.mu.Unlock()
	}
}

// Got reports whether a datagram with exactly payload has arrived, waiting up to timeout for it.
func (l *UDPListener) Got(payload []byte, timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		l.mu.Lock()
		_, ok := l.got[string(payload)]
		notify := l.notify
		l.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-notify:
		case <-l.done:
			return l.has(payload)
		case <-timer.C:
			return l.has(payload)
		}
	}
}

func (l *UDPListener) has(payload []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.got[string(payload)]
	return ok
}

// Close closes the socket and waits for the receiver to stop; payloads already received stay queryable.
func (l *UDPListener) Close() error {
	var err error
	l.once.Do(func() {
		err = l.conn.Close()
		<-l.done
	})
	return err
}

// Frame is a hand-made Ethernet+IPv4+UDP frame, so a probe can forge source
// MAC/IP or send DHCP from 0.0.0.0.
type Frame struct {
	SrcMAC, DstMAC   net.HardwareAddr
	SrcIP, DstIP     net.IP // IPv4 only
	SrcPort, DstPort uint16
	Payload          []byte
}

// Bytes serializes the frame with a valid IPv4 header checksum, TTL 64 and a
// valid UDP checksum, padded to the 60-byte Ethernet minimum.
func (f Frame) Bytes() ([]byte, error) {
	if len(f.SrcMAC) != 6 || len(f.DstMAC) != 6 {
		return nil, errors.New("frame needs 6-byte source and destination MACs")
	}
	src, dst := f.SrcIP.To4(), f.DstIP.To4()
	if src == nil || dst == nil {
		return nil, errors.New("frame needs IPv4 source and destination addresses")
	}
	udpLen := 8 + len(f.Payload)
	if 20+udpLen > 0xffff {
		return nil, errors.New("frame payload too large")
	}
	b := make([]byte, max(14+20+udpLen, 60))
	copy(b[0:6], f.DstMAC)
	copy(b[6:12], f.SrcMAC)
	binary.BigEndian.PutUint16(b[12:14], unix.ETH_P_IP)

	ip := b[14:34]
	ip[0] = 0x45 // version 4, 20-byte header
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+udpLen))
	ip[8] = 64 // TTL
	ip[9] = unix.IPPROTO_UDP
	copy(ip[12:16], src)
	copy(ip[16:20], dst)
	binary.BigEndian.PutUint16(ip[10:12], Checksum(0, ip))

	udp := b[34 : 34+udpLen]
	binary.BigEndian.PutUint16(udp[0:2], f.SrcPort)
	binary.BigEndian.PutUint16(udp[2:4], f.DstPort)
	binary.BigEndian.PutUint16(udp[4:6], uint16(udpLen))
	copy(udp[8:], f.Payload)
	pseudo := make([]byte, 0, 12)
	pseudo = append(append(append(pseudo, src...), dst...), 0, unix.IPPROTO_UDP, byte(udpLen>>8), byte(udpLen))
	sum := Checksum(Sum16(0, pseudo), udp)
	if sum == 0 {
		sum = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(udp[6:8], sum)
	return b, nil
}

// Sum16 adds b as big-endian 16-bit words to the one's-complement accumulator acc.
func Sum16(acc uint32, b []byte) uint32 {
	for len(b) >= 2 {
		acc += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

// Checksum returns the Internet checksum of b continuing from acc.
func Checksum(acc uint32, b []byte) uint16 {
	acc = Sum16(acc, b)
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return ^uint16(acc)
}

// htons converts v to network byte order as the kernel expects in sockaddr_ll.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// SendFrame writes f out of ifname inside ns through an AF_PACKET raw socket,
// bypassing the sender's IP stack, routing, ARP and netfilter.
func SendFrame(ns *NS, ifname string, f Frame) error {
	b, err := f.Bytes()
	if err != nil {
		return fmt.Errorf("send frame: %w", err)
	}
	return SendRaw(ns, ifname, b)
}

// LinkMAC returns the MAC address of ifname inside ns.
func LinkMAC(ns *NS, ifname string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := ns.Do(func() error {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		mac = bytes.Clone(link.Attrs().HardwareAddr)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mac of %s in %s: %w", ifname, ns.Name, err)
	}
	return mac, nil
}
