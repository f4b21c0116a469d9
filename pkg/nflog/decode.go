package nflog

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// nfnetlink_log, from linux/netfilter/nfnetlink_log.h.
const (
	nfnlSubsysULog   = unix.NFNL_SUBSYS_ULOG
	nfulnlMsgPacket  = 0
	nfulnlMsgConfig  = 1
	nfulnlMsgMax     = 2 // the first type the kernel does not know
	nfulaCfgCmd      = 1
	nfulaCfgMode     = 2
	nfulnlCfgCmdBind = 1
	nfulnlCopyPacket = 2

	nfulaTimestamp        = 3
	nfulaIfindexIndev     = 4
	nfulaIfindexOutdev    = 5
	nfulaIfindexPhysindev = 6
	nfulaIfindexPhysout   = 7
	nfulaPayload          = 9
	nfulaPrefix           = 10

	nlmsgHdrLen = 16
	nfgenHdrLen = 4
	nlaHdrLen   = 4
	nlaTypeMask = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
)

// align rounds a message or attribute length up to the next 4 bytes.
func align(n int) int { return (n + 3) &^ 3 }

// attr is one netlink attribute, padded to 4 bytes.
func attr(typ uint16, data []byte) []byte {
	n := nlaHdrLen + len(data)
	b := make([]byte, align(n))
	binary.NativeEndian.PutUint16(b[0:], uint16(n))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[4:], data)
	return b
}

// messages calls f with the type, sequence number and body of each
// netlink message in b, stopping at the first malformed one.
func messages(b []byte, f func(typ uint16, seq uint32, body []byte)) {
	for len(b) >= nlmsgHdrLen {
		size := int(binary.NativeEndian.Uint32(b[0:]))
		if size < nlmsgHdrLen || size > len(b) {
			return
		}
		f(binary.NativeEndian.Uint16(b[4:]), binary.NativeEndian.Uint32(b[8:]), b[nlmsgHdrLen:size])
		b = b[min(align(size), len(b)):]
	}
}

// ack reports whether b holds the acknowledgement of request seq, and its
// errno (nil for success).
func ack(b []byte, seq uint32) (ok bool, err error) {
	messages(b, func(typ uint16, s uint32, body []byte) {
		if typ == unix.NLMSG_ERROR && s == seq && len(body) >= 4 {
			ok = true
			if code := int32(binary.NativeEndian.Uint32(body)); code != 0 {
				err = unix.Errno(-code)
			}
		}
	})
	return ok, err
}

// entries reads the packet messages of one read; received is their Time
// unless they carry a timestamp.
func entries(b []byte, received time.Time) []Entry {
	var out []Entry
	messages(b, func(typ uint16, _ uint32, body []byte) {
		if typ == nfnlSubsysULog<<8|nfulnlMsgPacket && len(body) >= nfgenHdrLen {
			out = append(out, entry(body[nfgenHdrLen:], received))
		}
	})
	return out
}

// entry reads the attributes of one logged packet.
func entry(attrs []byte, received time.Time) Entry {
	e := Entry{Time: received}
	for len(attrs) >= nlaHdrLen {
		n := int(binary.NativeEndian.Uint16(attrs[0:]))
		if n < nlaHdrLen || n > len(attrs) {
			break
		}
		typ, data := binary.NativeEndian.Uint16(attrs[2:])&nlaTypeMask, attrs[nlaHdrLen:n]
		index := func() uint32 {
			if len(data) < 4 {
				return 0
			}
			return binary.BigEndian.Uint32(data)
		}
		switch typ {
		case nfulaPrefix:
			e.Prefix = strings.TrimRight(string(data), "\x00")
		case nfulaPayload:
			e.Packet = Summary(data)
		case nfulaTimestamp:
			if len(data) >= 16 { // __be64 sec, __be64 usec
				sec, usec := binary.BigEndian.Uint64(data), binary.BigEndian.Uint64(data[8:])
				e.Time = time.Unix(int64(sec), int64(usec)*1000)
			}
		case nfulaIfindexIndev:
			e.InDev = index()
		case nfulaIfindexOutdev:
			e.OutDev = index()
		case nfulaIfindexPhysindev:
			e.PhysInDev = index()
		case nfulaIfindexPhysout:
			e.PhysOutDev = index()
		}
		attrs = attrs[min(align(n), len(attrs)):]
	}
	return e
}

// Summary describes the IPv4 or IPv6 header that starts b and, for ICMP,
// IGMP and ICMPv6 (also after a hop-by-hop header, as MLD has), the
// message type: "ipv4 192.0.2.1 > 192.0.2.2 proto 6 ttl 64", "ipv6
// fe80::1 > ff02::16 next 58 hl 1 type 143"; else "N bytes". Any input is
// safe.
func Summary(b []byte) string {
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
