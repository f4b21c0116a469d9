package explain

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/nft"
)

// The values of an nftables rule's expressions, as nft_do_chain loads
// them into registers: every key is a byte string of a fixed width, big
// endian (the mark too: only its bits matter here), and a constant is
// turned into the same form by the key's type.

// kind is how a key's constants are read.
type kind int

const (
	kInt     kind = iota // a number, or a name from names
	kIfname              // an interface name: 16 bytes, NUL padded; "tap*" is a prefix
	kAddr                // an IPv4 or IPv6 address
	kMAC                 // an Ethernet address
	kCtState             // conntrack state bits
)

// field is a key loaded from the packet: its bytes, or why it cannot be
// (why set), or absent when the kernel would end the rule there (a
// header the packet does not have, a device it has none of).
type field struct {
	b      []byte
	kind   kind
	names  map[string]uint64
	why    string
	absent bool
	note   string
}

func (f field) ok() bool { return f.why == "" && !f.absent }

var (
	etherTypes = map[string]uint64{"ip": 0x0800, "ip6": 0x86dd, "arp": 0x0806, "8021q": 0x8100, "8021ad": 0x88a8, "vlan": 0x8100}
	l4Protos   = map[string]uint64{"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "icmpv6": 58, "esp": 50, "ah": 51, "sctp": 132, "gre": 47}
	nfProtos   = map[string]uint64{"ipv4": 2, "ipv6": 10, "bridge": 7, "arp": 3, "inet": 1}
	ifTypes    = map[string]uint64{"ether": 1, "loopback": 772}
	icmpTypes  = map[string]uint64{"echo-reply": 0, "destination-unreachable": 3, "redirect": 5, "echo-request": 8,
		"router-advertisement": 9, "router-solicitation": 10, "time-exceeded": 11, "parameter-problem": 12}
	icmp6Types = map[string]uint64{"destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3, "parameter-problem": 4,
		"echo-request": 128, "echo-reply": 129, "mld-listener-query": 130, "mld-listener-report": 131, "mld-listener-done": 132,
		"mld-listener-reduction": 132, "nd-router-solicit": 133, "nd-router-advert": 134, "nd-neighbor-solicit": 135,
		"nd-neighbor-advert": 136, "nd-redirect": 137, "mld2-listener-report": 143}
	// The code names nft prints (its icmp_code and icmpv6_code types).
	icmpCodes = map[string]uint64{"net-unreachable": 0, "host-unreachable": 1, "prot-unreachable": 2, "port-unreachable": 3,
		"frag-needed": 4, "net-prohibited": 9, "host-prohibited": 10, "admin-prohibited": 13}
	icmp6Codes = map[string]uint64{"no-route": 0, "admin-prohibited": 1, "addr-unreachable": 3, "port-unreachable": 4,
		"policy-fail": 5, "reject-route": 6}
	ctStateBits = map[string]uint64{"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}
)

func num(v uint64, width int, names map[string]uint64) field {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return field{b: b[8-width:], kind: kInt, names: names}
}

func ifname(name string) field {
	b := make([]byte, 16)
	copy(b, name)
	return field{b: b, kind: kIfname}
}

func unknownField(format string, a ...any) field { return field{why: fmt.Sprintf(format, a...)} }

var absent = field{absent: true}

// meta loads a meta key.
func (w *nwalker) meta(key string) field {
	p, st := w.p, w.at
	switch key {
	case "iifname":
		return ifname(st.in)
	case "oifname":
		return ifname(st.out)
	case "iiftype", "oiftype":
		dev := st.in
		if key == "oiftype" {
			dev = st.out
		}
		if dev == "" {
			return absent // NFT_BREAK: no device
		}
		f := num(ifTypes["ether"], 2, ifTypes)
		f.note = dev + " taken to be an Ethernet device"
		return f
	case "protocol":
		return num(etherType(p.Family), 2, etherTypes)
	case "nfproto":
		if st.family == "bridge" {
			return num(nfProtos["bridge"], 1, nfProtos)
		}
		return num(nfProtos[map[int]string{4: "ipv4", 6: "ipv6"}[p.Family]], 1, nfProtos)
	case "l4proto":
		return num(uint64(w.proto), 1, l4Protos)
	case "mark":
		return num(uint64(w.mark), 4, nil)
	}
	return unknownField("meta %s is not simulated", key)
}

func etherType(family int) uint64 {
	if family == 6 {
		return 0x86dd
	}
	return 0x0800
}

// ct loads a conntrack key; the bridge family has no conntrack of its own
// (without nf_conntrack_bridge what it sees depends on the kernel).
func (w *nwalker) ct(v nft.Value) field {
	if w.at.family == "bridge" {
		return unknownField("ct %s in the bridge family is not simulated", v.Key)
	}
	if v.Key != "state" || v.Dir != "" {
		return unknownField("ct %s is not simulated", v.Key)
	}
	f := num(ctStateBits[strings.ToLower(w.p.CtState)], 4, ctStateBits)
	f.kind = kCtState
	return f
}

// payload loads a header field; a header the packet has not makes the
// rule fail, as the dependency nft adds does.
func (w *nwalker) payload(v nft.Value) field {
	p := w.p
	switch v.Protocol {
	case "ether":
		return w.ether(v.Field)
	case "ip", "ip6":
		if p.Family != map[string]int{"ip": 4, "ip6": 6}[v.Protocol] {
			return absent
		}
		return w.ipField(v.Field)
	case "tcp", "udp", "th":
		if v.Protocol != "th" && w.proto != int(l4Protos[v.Protocol]) || v.Protocol == "th" && w.proto != 6 && w.proto != 17 {
			return absent
		}
		switch v.Field {
		case "sport":
			return num(uint64(p.SPort), 2, nil)
		case "dport":
			return num(uint64(p.DPort), 2, nil)
		}
	case "icmp", "icmpv6":
		if w.proto != int(l4Protos[v.Protocol]) {
			return absent
		}
		names, codes := icmpTypes, icmpCodes
		if v.Protocol == "icmpv6" {
			names, codes = icmp6Types, icmp6Codes
		}
		return icmpField(v.Field, p.ICMPType, p.ICMPCode, names, codes)
	case "arp", "vlan":
		return absent // an IP packet has neither header
	}
	return unknownField("%s %s is not simulated", v.Protocol, v.Field)
}

func icmpField(name string, typ, code int, names, codes map[string]uint64) field {
	switch {
	case name == "type" && typ >= 0:
		return num(uint64(typ), 1, names)
	case name == "code" && code >= 0:
		return num(uint64(code), 1, codes)
	case name == "type" || name == "code":
		return unknownField("the packet's ICMP %s is not set", name)
	}
	return unknownField("icmp %s is not simulated", name)
}

func (w *nwalker) ether(name string) field {
	switch name {
	case "type":
		return num(etherType(w.p.Family), 2, etherTypes)
	case "saddr":
		if w.at.in == "" || w.p.SrcMAC == nil {
			return unknownField("the packet's source MAC is not known")
		}
		return field{b: append([]byte(nil), w.p.SrcMAC...), kind: kMAC}
	}
	return unknownField("ether %s is not simulated", name)
}

func (w *nwalker) ipField(name string) field {
	p := w.p
	switch name {
	case "saddr":
		return field{b: p.Src.AsSlice(), kind: kAddr}
	case "daddr":
		return field{b: p.Dst.AsSlice(), kind: kAddr}
	case "protocol", "nexthdr":
		return num(uint64(w.proto), 1, l4Protos)
	case "ttl", "hoplimit":
		if p.HopLimit == 0 {
			return unknownField("the packet's %s is not set", name)
		}
		return num(uint64(p.HopLimit), 1, nil)
	}
	return unknownField("ip %s is not simulated", name)
}

// raw loads @base,offset,len: only the target of a neighbour
// solicitation or advertisement (@th,64,128), which a Packet does not
// carry.
func (w *nwalker) raw(v nft.Value) field {
	if v.Base == "th" && v.Offset == 64 && v.Len == 128 && w.proto == 58 && (w.p.ICMPType == 135 || w.p.ICMPType == 136) {
		return unknownField("the neighbour discovery target (@th,64,128) is not part of the packet described")
	}
	return unknownField("raw payload @%s,%d,%d is not simulated", v.Base, v.Offset, v.Len)
}

// load evaluates a key expression.
func (w *nwalker) load(v nft.Value) field {
	switch v.Kind {
	case nft.ValMeta:
		return w.meta(v.Key)
	case nft.ValCt:
		return w.ct(v)
	case nft.ValPayload:
		return w.payload(v)
	case nft.ValRaw:
		return w.raw(v)
	case nft.ValBinop:
		return w.binop(v)
	case nft.ValFib:
		var flags []string
		for _, f := range v.Parts {
			flags = append(flags, f.Str)
		}
		return w.fib(v.Key, flags)
	}
	return unknownField("expression %s is not simulated", v)
}

// binop is a bitwise operation of a key with a constant.
func (w *nwalker) binop(v nft.Value) field {
	f := w.load(v.Parts[0])
	if !f.ok() {
		return f
	}
	c, err := constant(f, v.Parts[1])
	if err != nil || c.lo == nil {
		return unknownField("%s: %v", v, err)
	}
	out := make([]byte, len(f.b))
	for i := range out {
		switch v.Op {
		case "&":
			out[i] = f.b[i] & c.lo[i]
		case "|":
			out[i] = f.b[i] | c.lo[i]
		case "^":
			out[i] = f.b[i] ^ c.lo[i]
		default:
			return unknownField("operation %s is not simulated", v.Op)
		}
	}
	f.b = out
	return f
}

// span is a constant as the key compares it: one value (hi nil), a
// range lo-hi, or, for an interface name, a prefix of n bytes.
type span struct {
	lo, hi []byte
	prefix int // bytes of an interface-name prefix ("tap*"), 0 for none
}

func (s span) contains(b []byte) bool {
	switch {
	case s.prefix > 0:
		return bytes.Equal(b[:s.prefix], s.lo[:s.prefix])
	case s.hi != nil:
		return bytes.Compare(b, s.lo) >= 0 && bytes.Compare(b, s.hi) <= 0
	}
	return bytes.Equal(b, s.lo)
}

// constant reads v as a constant of the key f.
func constant(f field, v nft.Value) (span, error) {
	switch v.Kind {
	case nft.ValPrefix:
		a, err := netip.ParseAddr(v.Str)
		if err != nil {
			return span{}, err
		}
		p := netip.PrefixFrom(a, v.Len).Masked()
		lo, hi := p.Addr().AsSlice(), p.Addr().AsSlice()
		for i := v.Len; i < len(hi)*8; i++ {
			hi[i/8] |= 0x80 >> (i % 8)
		}
		return span{lo: lo, hi: hi}, nil
	case nft.ValRange:
		lo, err := constant(f, v.Parts[0])
		if err != nil {
			return span{}, err
		}
		hi, err := constant(f, v.Parts[1])
		return span{lo: lo.lo, hi: hi.lo}, err
	case nft.ValNumber:
		return span{lo: num(v.Num, len(f.b), nil).b}, nil
	case nft.ValString:
		return stringConstant(f, v.Str)
	}
	return span{}, fmt.Errorf("constant %s is not simulated", v)
}

func stringConstant(f field, s string) (span, error) {
	switch {
	case f.kind == kIfname:
		if p, ok := strings.CutSuffix(s, "*"); ok && !strings.HasSuffix(p, `\`) {
			// A key holds at most IFNAMSIZ bytes; so does the prefix.
			return span{lo: ifname(p).b, prefix: min(len(p), len(f.b))}, nil
		}
		return span{lo: ifname(strings.ReplaceAll(s, `\*`, "*")).b}, nil
	case strings.HasPrefix(s, "0x"):
		n, ok := new(big.Int).SetString(s[2:], 16)
		if !ok {
			return span{}, fmt.Errorf("%q is not a number", s)
		}
		return span{lo: n.FillBytes(make([]byte, len(f.b)))}, nil
	case f.kind == kAddr:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return span{}, err
		}
		return span{lo: a.AsSlice()}, nil
	case f.kind == kMAC:
		m, err := net.ParseMAC(s)
		return span{lo: m}, err
	}
	if n, ok := f.names[s]; ok {
		return span{lo: num(n, len(f.b), nil).b}, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return span{lo: num(n, len(f.b), nil).b}, nil
	}
	if len(f.b) == 16 && strings.Contains(s, ":") {
		if a, err := netip.ParseAddr(s); err == nil {
			return span{lo: a.AsSlice()}, nil
		}
	}
	return span{}, fmt.Errorf("constant %q is not simulated", s)
}
