package nflog

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nlmsg is a netlink message of type typ with body.
func nlmsg(typ uint16, seq uint32, body []byte) []byte {
	b := make([]byte, nlmsgHdrLen, align(nlmsgHdrLen+len(body)))
	b = append(b, body...)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint32(b[8:], seq)
	return append(b, make([]byte, cap(b)-len(b))...)
}

// packetMsg is an NFULNL_MSG_PACKET of group 5 with attrs.
func packetMsg(attrs ...[]byte) []byte {
	body := []byte{unix.AF_INET, 0, 0, 5}
	for _, a := range attrs {
		body = append(body, a...)
	}
	return nlmsg(nfnlSubsysULog<<8|nfulnlMsgPacket, 0, body)
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func ipv4(proto, ttl byte, src, dst string, rest ...byte) []byte {
	h := make([]byte, 20)
	h[0], h[8], h[9] = 0x45, ttl, proto
	copy(h[12:], netip.MustParseAddr(src).AsSlice())
	copy(h[16:], netip.MustParseAddr(dst).AsSlice())
	return append(h, rest...)
}

func ipv6(next, hl byte, src, dst string, rest ...byte) []byte {
	h := make([]byte, 40)
	h[0], h[6], h[7] = 0x60, next, hl
	copy(h[8:], netip.MustParseAddr(src).AsSlice())
	copy(h[24:], netip.MustParseAddr(dst).AsSlice())
	return append(h, rest...)
}

func TestSummary(t *testing.T) {
	hopByHop := []byte{58, 0, 5, 2, 0, 0, 1, 0} // next ICMPv6, 8 bytes, router alert
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"ipv4 tcp", ipv4(6, 64, "192.0.2.1", "192.0.2.2"), "ipv4 192.0.2.1 > 192.0.2.2 proto 6 ttl 64"},
		{"ipv4 icmp", ipv4(1, 63, "198.51.100.1", "203.0.113.7", 8, 0), "ipv4 198.51.100.1 > 203.0.113.7 proto 1 ttl 63 type 8"},
		{"ipv4 icmp without its header", ipv4(1, 63, "198.51.100.1", "203.0.113.7"), "ipv4 198.51.100.1 > 203.0.113.7 proto 1 ttl 63"},
		{"ipv6 udp", ipv6(17, 64, "2001:db8::1", "2001:db8::2", 0, 53), "ipv6 2001:db8::1 > 2001:db8::2 next 17 hl 64"},
		{"icmpv6", ipv6(58, 255, "2001:db8::1", "2001:db8::2", 135, 0), "ipv6 2001:db8::1 > 2001:db8::2 next 58 hl 255 type 135"},
		{"icmpv6 after hop-by-hop", ipv6(0, 1, "2001:db8::1", "2001:db8::16", append(hopByHop, 143, 0)...), "ipv6 2001:db8::1 > 2001:db8::16 next 58 hl 1 type 143"},
		{"hop-by-hop cut short", ipv6(0, 1, "2001:db8::1", "2001:db8::16", hopByHop[:6]...), "ipv6 2001:db8::1 > 2001:db8::16 next 0 hl 1"},
		{"ipv4 cut short", ipv4(6, 64, "192.0.2.1", "192.0.2.2")[:19], "19 bytes"},
		{"not ip", []byte{0x10, 0, 0}, "3 bytes"},
		{"empty", nil, "0 bytes"},
	} {
		if got := Summary(c.b); got != c.want {
			t.Errorf("%s: Summary = %q, want %q", c.name, got, c.want)
		}
	}
}

// TestEntries: one read of two packet messages and a message of another
// type gives the two entries, with their prefix, header summary,
// interface indexes and, where the kernel sent one, timestamp.
func TestEntries(t *testing.T) {
	received := time.Unix(1700000000, 0)
	read := append(packetMsg(
		attr(nfulaPrefix, []byte("tapfw-in-drop\x00")),
		attr(nfulaIfindexIndev, be32(3)),
		attr(nfulaIfindexPhysindev, be32(7)),
		attr(nfulaPayload, ipv4(17, 64, "192.0.2.1", "192.0.2.9")),
	), nlmsg(unix.NLMSG_DONE, 0, make([]byte, 4))...)
	read = append(read, packetMsg(
		attr(nfulaTimestamp, append(binary.BigEndian.AppendUint64(nil, 1700000001), binary.BigEndian.AppendUint64(nil, 250000)...)),
		attr(nfulaIfindexOutdev, be32(4)),
		attr(nfulaIfindexPhysout, be32(9)),
		attr(nfulaPrefix|unix.NLA_F_NET_BYTEORDER, []byte("p2")), // flags do not hide the type
	)...)
	got := entries(read, received)
	want := []Entry{
		{Time: received, Prefix: "tapfw-in-drop", Packet: "ipv4 192.0.2.1 > 192.0.2.9 proto 17 ttl 64", InDev: 3, PhysInDev: 7},
		{Time: time.Unix(1700000001, 250000000), Prefix: "p2", OutDev: 4, PhysOutDev: 9},
	}
	if len(got) != len(want) {
		t.Fatalf("entries = %+v, want %+v", got, want)
	}
	for i := range want {
		if !got[i].Time.Equal(want[i].Time) {
			t.Errorf("entry %d: Time %v, want %v", i, got[i].Time, want[i].Time)
		}
		got[i].Time = want[i].Time
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestAck(t *testing.T) {
	errMsg := func(seq uint32, code int32) []byte {
		return nlmsg(unix.NLMSG_ERROR, seq, binary.NativeEndian.AppendUint32(make([]byte, 0, 20), uint32(code)))
	}
	for _, c := range []struct {
		name   string
		b      []byte
		ok     bool
		errno  error
		seq    uint32
		before int // entries kept from the same read
	}{
		{"success", errMsg(2, 0), true, nil, 2, 0},
		{"refused", errMsg(2, -int32(unix.EPERM)), true, unix.EPERM, 2, 0},
		{"another request", errMsg(1, 0), false, nil, 2, 0},
		{"after a packet", append(packetMsg(attr(nfulaPrefix, []byte("x"))), errMsg(2, 0)...), true, nil, 2, 1},
		{"no body", nlmsg(unix.NLMSG_ERROR, 2, nil), false, nil, 2, 0},
	} {
		ok, errno := ack(c.b, c.seq)
		if ok != c.ok || errno != c.errno {
			t.Errorf("%s: ack = %v, %v; want %v, %v", c.name, ok, errno, c.ok, c.errno)
		}
		if n := len(entries(c.b, time.Time{})); n != c.before {
			t.Errorf("%s: %d entries, want %d", c.name, n, c.before)
		}
	}
}

// TestGarbage: every cut of a valid read, and reads whose lengths lie,
// decode without a panic.
func TestGarbage(t *testing.T) {
	valid := packetMsg(
		attr(nfulaPrefix, []byte("tapfw\x00")),
		attr(nfulaTimestamp, make([]byte, 16)),
		attr(nfulaIfindexOutdev, be32(2)),
		attr(nfulaPayload, ipv6(0, 1, "2001:db8::1", "2001:db8::2", 58, 0, 0, 0, 0, 0, 0, 0, 143)),
	)
	for n := range len(valid) {
		cut := append([]byte(nil), valid[:n]...)
		entries(cut, time.Time{})
		if n >= 4 {
			binary.NativeEndian.PutUint32(cut, uint32(n)) // the message says it is whole
			entries(cut, time.Time{})
		}
	}
	for _, b := range [][]byte{
		nlmsg(nfnlSubsysULog<<8|nfulnlMsgPacket, 0, []byte{0, 0, 0, 5, 2, 0, 10, 0}), // attribute shorter than its header
		nlmsg(nfnlSubsysULog<<8|nfulnlMsgPacket, 0, []byte{0, 0, 0, 5, 0xff, 0xff, 10, 0}),
		nlmsg(nfnlSubsysULog<<8|nfulnlMsgPacket, 0, nil),
		{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		if got := entries(b, time.Time{}); len(got) > 1 {
			t.Errorf("entries(%x) = %+v", b, got)
		}
		ack(b, 0)
	}
}

// FuzzEntries: no read panics the decoder.
func FuzzEntries(f *testing.F) {
	f.Add(packetMsg(attr(nfulaPrefix, []byte("p")), attr(nfulaPayload, ipv4(1, 1, "192.0.2.1", "192.0.2.2", 3))))
	f.Add(nlmsg(unix.NLMSG_ERROR, 1, make([]byte, 4)))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries(b, time.Time{})
		ack(b, 1)
	})
}
