package testnet

import (
	"encoding/binary"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Hand-made layer-2 frames for the anti-spoofing tests: ARP, ICMPv6
// neighbour and router advertisements, and UDP over IPv6, each with valid
// checksums, sent raw so the sender's stack cannot correct them.

// BroadcastMAC is ff:ff:ff:ff:ff:ff.
var BroadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ARPFrame is an Ethernet ARP packet (op 1 request, 2 reply).
func ARPFrame(src, dst net.HardwareAddr, op uint16, senderMAC net.HardwareAddr, senderIP net.IP, targetMAC net.HardwareAddr, targetIP net.IP) []byte {
	b := make([]byte, 60)
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:14], unix.ETH_P_ARP)
	a := b[14:]
	binary.BigEndian.PutUint16(a[0:2], 1) // Ethernet
	binary.BigEndian.PutUint16(a[2:4], unix.ETH_P_IP)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	copy(a[8:14], senderMAC)
	copy(a[14:18], senderIP.To4())
	copy(a[18:24], targetMAC)
	copy(a[24:28], targetIP.To4())
	return b
}

// IPv6Frame is an Ethernet frame with an IPv6 header (hop limit 255, as
// neighbour discovery requires) and payload of protocol next, whose
// checksum field (at csum within the payload) is filled in.
func IPv6Frame(src, dst net.HardwareAddr, srcIP, dstIP net.IP, next byte, payload []byte, csum int) []byte {
	b := make([]byte, max(14+40+len(payload), 60))
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:14], unix.ETH_P_IPV6)
	ip := b[14:54]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(payload)))
	ip[6], ip[7] = next, 255
	copy(ip[8:24], srcIP.To16())
	copy(ip[24:40], dstIP.To16())
	p := b[54 : 54+len(payload)]
	copy(p, payload)
	pseudo := make([]byte, 0, 40)
	pseudo = append(append(pseudo, srcIP.To16()...), dstIP.To16()...)
	pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(payload)))
	pseudo = append(pseudo, 0, 0, 0, next)
	binary.BigEndian.PutUint16(p[csum:csum+2], Checksum(Sum16(0, pseudo), p))
	return b
}

// NeighborAdvert is an ICMPv6 neighbour advertisement for target with the
// override flag and a target link-layer address option.
func NeighborAdvert(target net.IP, lladdr net.HardwareAddr) []byte {
	m := make([]byte, 32)
	m[0] = 136
	m[4] = 0x20 // override
	copy(m[8:24], target.To16())
	m[24], m[25] = 2, 1 // target link-layer address, 8 bytes
	copy(m[26:32], lladdr)
	return m
}

// RouterAdvert is an ICMPv6 router advertisement (lifetime 1800 s) with a
// source link-layer option and an on-link, autonomous prefix option.
func RouterAdvert(lladdr net.HardwareAddr, prefix *net.IPNet) []byte {
	m := make([]byte, 16+8+32)
	m[0] = 134
	m[4] = 64                                // cur hop limit
	binary.BigEndian.PutUint16(m[6:8], 1800) // router lifetime
	m[16], m[17] = 1, 1                      // source link-layer address
	copy(m[18:24], lladdr)
	o := m[24:]
	ones, _ := prefix.Mask.Size()
	o[0], o[1], o[2], o[3] = 3, 4, byte(ones), 0xc0 // prefix information, L and A
	binary.BigEndian.PutUint32(o[4:8], 86400)
	binary.BigEndian.PutUint32(o[8:12], 14400)
	copy(o[16:32], prefix.IP.To16())
	return m
}

// UDP6 is a UDP header and payload (checksum left for IPv6Frame, at 6).
func UDP6(srcPort, dstPort uint16, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:2], srcPort)
	binary.BigEndian.PutUint16(u[2:4], dstPort)
	binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
	copy(u[8:], payload)
	return u
}

// packetSocket opens an AF_PACKET socket bound to ifname of the calling
// thread's namespace for protocol proto (0: none, it only sends), and
// returns it with the interface's index.
func packetSocket(ifname string, proto uint16) (fd, index int, err error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return -1, 0, err
	}
	// Opened with protocol 0, it queues nothing before the bind.
	fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("bind packet socket: %w", err)
	}
	return fd, ifi.Index, nil
}

// SendRaw writes a whole Ethernet frame out of ifname inside ns through an
// AF_PACKET raw socket, bypassing the sender's IP stack, routing, ARP and
// netfilter.
func SendRaw(ns *NS, ifname string, frame []byte) error {
	err := ns.Do(func() error {
		// Protocol 0: the socket only sends and never queues received packets.
		fd, index, err := packetSocket(ifname, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		proto := binary.BigEndian.Uint16(frame[12:14])
		sa := &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: index, Halen: 6}
		copy(sa.Addr[:], frame[0:6])
		return unix.Sendto(fd, frame, 0, sa)
	})
	if err != nil {
		return fmt.Errorf("send raw frame on %s in %s: %w", ifname, ns.Name, err)
	}
	return nil
}

// IGMP is an IGMPv2 message of type typ (0x11 query, 0x16 report) about
// group (nil: a general query, maximum response time 1 s) from srcIP to
// dstIP with the given TTL (1, as the protocol requires, unless a test
// wants otherwise) and the router alert option.
func IGMP(src net.HardwareAddr, srcIP, dstIP net.IP, typ byte, group net.IP, ttl byte) []byte {
	b := make([]byte, 14+24+8)
	d := dstIP.To4()
	copy(b[0:6], net.HardwareAddr{0x01, 0x00, 0x5e, d[1] & 0x7f, d[2], d[3]})
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:14], unix.ETH_P_IP)
	ip := b[14:38]
	ip[0] = 0x46 // version 4, 6 words: one of options
	binary.BigEndian.PutUint16(ip[2:4], 24+8)
	ip[8], ip[9] = ttl, 2 // IGMP
	copy(ip[12:16], srcIP.To4())
	copy(ip[16:20], d)
	ip[20], ip[21] = 0x94, 4 // router alert
	binary.BigEndian.PutUint16(ip[10:12], Checksum(0, ip))
	m := b[38:46]
	m[0] = typ
	if typ == 0x11 {
		m[1] = 10 // tenths of a second
	}
	if group != nil {
		copy(m[4:8], group.To4())
	}
	binary.BigEndian.PutUint16(m[2:4], Checksum(0, m))
	return b
}

// MLD is a multicast listener discovery message of type typ (130 query,
// 131 report, 143 MLDv2 report) from srcIP to dstIP, with hop limit 1 and a
// hop-by-hop router alert, as RFC 2710 and 3810 have it. A query is
// general, with a maximum response delay of 1 s; a report names dstIP;
// an MLDv2 report has no records.
func MLD(src net.HardwareAddr, srcIP, dstIP net.IP, typ byte) []byte {
	b := make([]byte, 14+40+8+24)
	copy(b[0:6], net.HardwareAddr{0x33, 0x33, dstIP[12], dstIP[13], dstIP[14], dstIP[15]})
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:14], unix.ETH_P_IPV6)
	ip := b[14:54]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:6], 8+24)
	ip[6], ip[7] = 0, 1 // hop-by-hop options follow; hop limit 1
	copy(ip[8:24], srcIP.To16())
	copy(ip[24:40], dstIP.To16())
	hbh := b[54:62]
	hbh[0], hbh[1] = 58, 0 // ICMPv6 next, 8 bytes
	hbh[2], hbh[3] = 5, 2  // router alert: MLD (value 0)
	hbh[6] = 1             // PadN of 0 bytes
	m := b[62:86]
	m[0] = typ
	switch typ {
	case 130:
		binary.BigEndian.PutUint16(m[4:6], 1000) // maximum response delay, ms
	case 131:
		copy(m[8:24], dstIP.To16())
	}
	pseudo := make([]byte, 0, 40)
	pseudo = append(append(pseudo, srcIP.To16()...), dstIP.To16()...)
	pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(m)))
	pseudo = append(pseudo, 0, 0, 0, 58)
	binary.BigEndian.PutUint16(m[2:4], Checksum(Sum16(0, pseudo), m))
	return b
}
