package testnet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// NFLog receives the log lines netfilter sends to one NFLOG group of a
// namespace (what ulogd would read) and keeps their prefixes and a summary
// of each packet's header.
type NFLog struct{ rec *recorder[Logged] }

// Logged is one packet logged to the group.
type Logged struct {
	Prefix string
	// Packet summarises the network header (see summary).
	Packet string
}

func (l Logged) String() string { return fmt.Sprintf("%q %s", l.Prefix, l.Packet) }

// nfnetlink_log, from linux/netfilter/nfnetlink_log.h.
const (
	nfnlSubsysULog   = 4
	nfulnlMsgPacket  = 0
	nfulnlMsgConfig  = 1
	nfulaCfgCmd      = 1
	nfulaCfgMode     = 2
	nfulnlCfgCmdBind = 1
	nfulnlCopyPacket = 2
	nfulaPrefix      = 10
	nfulaPayload     = 9
	// copyRange is enough for an IPv6 header and the first bytes after it.
	copyRange = 64
)

// NFLogListen binds group in ns and collects the prefixes of what is
// logged to it until Close.
func NFLogListen(ns *NS, group uint16) (*NFLog, error) {
	l := &NFLog{rec: newRecorder[Logged]()}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("nflog socket: %w", err)
		}
		l.rec.fd = fd
		return unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	})
	if err != nil {
		l.Close()
		return nil, err
	}
	bind := attr(nfulaCfgCmd, []byte{nfulnlCfgCmdBind})
	mode := attr(nfulaCfgMode, []byte{0, 0, 0, copyRange, nfulnlCopyPacket, 0})
	for _, a := range [][]byte{bind, mode} {
		if err := l.config(group, a); err != nil {
			l.Close()
			return nil, err
		}
	}
	if err := l.rec.start(messages); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func attr(typ uint16, data []byte) []byte {
	n := 4 + len(data)
	b := make([]byte, (n+3)&^3)
	binary.LittleEndian.PutUint16(b[0:], uint16(n))
	binary.LittleEndian.PutUint16(b[2:], typ)
	copy(b[4:], data)
	return b
}

// config sends one NFULNL_MSG_CONFIG for group with attribute a and waits
// for its acknowledgement.
func (l *NFLog) config(group uint16, a []byte) error {
	msg := make([]byte, 16+4+len(a))
	binary.LittleEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.LittleEndian.PutUint16(msg[4:], nfnlSubsysULog<<8|nfulnlMsgConfig)
	binary.LittleEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	msg[16] = unix.AF_UNSPEC
	binary.BigEndian.PutUint16(msg[18:], group)
	copy(msg[20:], a)
	if err := unix.Sendto(l.rec.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("nflog config: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(l.rec.fd, buf, 0)
	if err != nil {
		return fmt.Errorf("nflog config: %w", err)
	}
	if n >= 20 && binary.LittleEndian.Uint16(buf[4:]) == unix.NLMSG_ERROR {
		if code := int32(binary.LittleEndian.Uint32(buf[16:])); code != 0 {
			return fmt.Errorf("nflog config of group %d: %w", group, unix.Errno(-code))
		}
	}
	return nil
}

// messages reads the packet messages of one read from the group.
func messages(b []byte) []Logged {
	var out []Logged
	for len(b) >= 16 {
		size := int(binary.LittleEndian.Uint32(b[0:]))
		if size < 16 || size > len(b) {
			break
		}
		if binary.LittleEndian.Uint16(b[4:]) == nfnlSubsysULog<<8|nfulnlMsgPacket && size > 20 {
			out = append(out, packet(b[20:size]))
		}
		b = b[min((size+3)&^3, len(b)):]
	}
	return out
}

// packet reads the prefix and the header of one logged packet.
func packet(attrs []byte) Logged {
	var p Logged
	for len(attrs) >= 4 {
		n := int(binary.LittleEndian.Uint16(attrs[0:]))
		typ := binary.LittleEndian.Uint16(attrs[2:]) & 0x3fff
		if n < 4 || n > len(attrs) {
			break
		}
		switch typ {
		case nfulaPrefix:
			p.Prefix = strings.TrimRight(string(attrs[4:n]), "\x00")
		case nfulaPayload:
			p.Packet = summary(attrs[4:n])
		}
		attrs = attrs[min((n+3)&^3, len(attrs)):]
	}
	return p
}

// summary describes an IPv4 or IPv6 header and, for ICMP, IGMP and
// ICMPv6, the message type: "ipv6 fe80::1 > ff02::16 next 58 hl 1 type 143".
func summary(b []byte) string {
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		src, _ := netip.AddrFromSlice(b[12:16])
		dst, _ := netip.AddrFromSlice(b[16:20])
		s := fmt.Sprintf("ipv4 %s > %s proto %d ttl %d", src, dst, b[9], b[8])
		// ICMP and IGMP: the message type.
		if hl := int(b[0]&0xf) * 4; (b[9] == 1 || b[9] == 2) && len(b) > hl {
			s += fmt.Sprintf(" type %d", b[hl])
		}
		return s
	case len(b) >= 40 && b[0]>>4 == 6:
		src, _ := netip.AddrFromSlice(b[8:24])
		dst, _ := netip.AddrFromSlice(b[24:40])
		next, rest := b[6], b[40:]
		// A hop-by-hop header (MLD carries one) comes before ICMPv6.
		if next == 0 && len(rest) >= 8 && len(rest) >= 8*(int(rest[1])+1) {
			next, rest = rest[0], rest[8*(int(rest[1])+1):]
		}
		s := fmt.Sprintf("ipv6 %s > %s next %d hl %d", src, dst, next, b[7])
		if next == 58 && len(rest) > 0 {
			s += fmt.Sprintf(" type %d", rest[0])
		}
		return s
	}
	return fmt.Sprintf("%d bytes", len(b))
}

// Packets returns what was logged so far.
func (l *NFLog) Packets() []Logged { return l.rec.all() }

// Prefixes returns the prefixes logged so far.
func (l *NFLog) Prefixes() []string {
	var out []string
	for _, p := range l.Packets() {
		out = append(out, p.Prefix)
	}
	return out
}

// Wait reports whether a line with prefix arrives within timeout.
func (l *NFLog) Wait(prefix string, timeout time.Duration) bool {
	return l.rec.wait(func(p Logged) bool { return p.Prefix == prefix }, timeout)
}

// Close stops listening; call it once.
func (l *NFLog) Close() error { return l.rec.close() }
