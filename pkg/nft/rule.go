package nft

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/ruleset"
	"golang.org/x/sys/unix"
)

// Rule is one nftables rule as data: its text, in nft's syntax, and the
// expressions that go to the kernel, made side by side by one builder so
// that they cannot say different things (a kernel test loads the text
// with nft and compares what the kernel holds with the expressions).
type Rule struct {
	Chain   string
	Text    string
	Exprs   []expr.Any
	Comment string
	// Sets are the rule's anonymous sets (port lists), which go to the
	// kernel in the rule's transaction.
	Sets []AnonSet
}

// AnonSet is an anonymous constant set of ports.
type AnonSet struct {
	Interval bool
	Elements []nftables.SetElement
}

// String is the rule as "add rule" takes it: text and comment.
func (r Rule) String() string {
	if r.Comment == "" {
		return r.Text
	}
	return r.Text + " comment " + strconv.Quote(r.Comment)
}

// UserData is the rule's comment as nft stores it.
func (r Rule) UserData() []byte {
	if r.Comment == "" {
		return nil
	}
	return userdata.AppendString(nil, userdata.TypeComment, r.Comment)
}

// builder appends a rule's matches and statements to its text and its
// expressions at once.
type builder struct {
	text []string
	ex   []expr.Any
	sets []AnonSet
}

func (b *builder) add(text string, ex ...expr.Any) {
	b.text = append(b.text, text)
	b.ex = append(b.ex, ex...)
}

func (b *builder) rule(chain, comment string) Rule {
	return Rule{Chain: chain, Text: strings.Join(b.text, " "), Exprs: b.ex, Comment: comment, Sets: b.sets}
}

func load(base expr.PayloadBase, off, n uint32) *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n}
}

func eq(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }

func cmpOp(neg bool) expr.CmpOp {
	if neg {
		return expr.CmpOpNeq
	}
	return expr.CmpOpEq
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func ne32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// nfproto matches the family in an inet table: the dependency of every
// match on an IP or transport header there.
func (b *builder) nfproto(f Family) {
	b.add("meta nfproto "+f.nfprotoName(), &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, eq([]byte{f.nfproto()}))
}

// ctState matches conntrack states (inet tables only).
func (b *builder) ctState(text string, bits uint32) {
	b.add("ct state "+text,
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(bits), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ne32(0)})
}

// reject answers the packet (inet tables only): a TCP reset, or an ICMP
// port unreachable of the packet's family.
func (b *builder) reject(tcp bool) {
	if tcp {
		b.add("reject with tcp reset", &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
		return
	}
	b.add("reject with icmpx port-unreachable", &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH})
}

// protocol matches the frame's network protocol: the dependency of every
// match on an IP or transport header. meta protocol, not ether type: it
// is the protocol inside a VLAN tag as well.
func (b *builder) protocol(f Family) {
	et := uint16(unix.ETH_P_IP)
	if f == IPv6 {
		et = unix.ETH_P_IPV6
	}
	b.add("meta protocol "+string(f), &expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1}, eq(be16(et)))
}

// markTest matches packets whose mark has bit set.
func (b *builder) markTest(bit uint32) {
	b.add(fmt.Sprintf("meta mark & %#08x == %#08x", bit, bit),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(bit), Xor: ne32(0)},
		eq(ne32(bit)))
}

// markSet sets (on) or clears bits of the packet's mark, keeping the rest.
func (b *builder) markSet(bits uint32, on bool) {
	mask, xor, text := ^bits, bits, fmt.Sprintf("meta mark set meta mark | %#08x", bits)
	if !on {
		xor, text = 0, fmt.Sprintf("meta mark set meta mark & %#08x", ^bits)
	}
	b.add(text,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(mask), Xor: ne32(xor)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
}

func (b *builder) etherSrc(mac string, neg bool) error {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("mac %q: %w", mac, err)
	}
	op := ""
	if neg {
		op = "!= "
	}
	b.add("ether saddr "+op+hw.String(), load(expr.PayloadBaseLLHeader, 6, 6), &expr.Cmp{Op: cmpOp(neg), Register: 1, Data: hw})
	return nil
}

// addr matches the source or destination address against p as nft does:
// a prefix of whole bytes loads only those bytes, any other loads the
// whole address and masks it.
func (b *builder) addr(f Family, dir string, p netip.Prefix, neg bool) {
	if !p.IsValid() || p.Bits() == 0 {
		return
	}
	off, size := addrField(f, dir)
	raw := p.Masked().Addr().AsSlice()
	var ex []expr.Any
	if p.Bits()%8 == 0 {
		n := uint32(p.Bits() / 8)
		ex = []expr.Any{load(expr.PayloadBaseNetworkHeader, off, n), &expr.Cmp{Op: cmpOp(neg), Register: 1, Data: raw[:n]}}
	} else {
		mask := make([]byte, size)
		for i := 0; i < p.Bits(); i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		ex = []expr.Any{load(expr.PayloadBaseNetworkHeader, off, size),
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: mask, Xor: make([]byte, size)},
			&expr.Cmp{Op: cmpOp(neg), Register: 1, Data: raw}}
	}
	text := ruleset.PrefixString(p)
	if p.IsSingleIP() {
		text = p.Addr().String()
	}
	op := ""
	if neg {
		op = "!= "
	}
	b.add(string(f)+" "+dir+" "+op+text, ex...)
}

// fibSaddrType matches the type of the source address as the routing
// table has it (-m addrtype --src-type): BROADCAST.
func (b *builder) fibSaddrType(typ string) error {
	if typ != "BROADCAST" {
		return fmt.Errorf("address type %q", typ)
	}
	b.add("fib saddr type broadcast", &expr.Fib{Register: 1, FlagSADDR: true, ResultADDRTYPE: true}, eq(ne32(unix.RTN_BROADCAST)))
	return nil
}

// tcpFlagBits are TCP's flags as iptables names them.
var tcpFlagBits = []struct {
	name string
	bit  byte
}{{"FIN", 0x01}, {"SYN", 0x02}, {"RST", 0x04}, {"PSH", 0x08}, {"ACK", 0x10}, {"URG", 0x20}}

// tcpFlags matches the TCP flags under mask against comp, flag names as
// iptables writes them (NONE for none): tcp flags & (fin | syn) == syn.
func (b *builder) tcpFlags(mask, comp string) error {
	bits := func(list string) (byte, []string, error) {
		if list == "NONE" {
			return 0, nil, nil
		}
		var n byte
		var words []string
		for _, f := range strings.Split(list, ",") {
			i := slices.IndexFunc(tcpFlagBits, func(t struct {
				name string
				bit  byte
			}) bool {
				return t.name == f
			})
			if i < 0 {
				return 0, nil, fmt.Errorf("tcp flag %q", f)
			}
			n |= tcpFlagBits[i].bit
			words = append(words, strings.ToLower(f))
		}
		return n, words, nil
	}
	m, mw, err := bits(mask)
	if err != nil {
		return err
	}
	c, cw, err := bits(comp)
	if err != nil {
		return err
	}
	want := strings.Join(cw, " | ")
	if c == 0 {
		want = "0x0"
	}
	b.add(fmt.Sprintf("tcp flags & (%s) == %s", strings.Join(mw, " | "), want), load(expr.PayloadBaseTransportHeader, 13, 1),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{m}, Xor: []byte{0}}, eq([]byte{c}))
	return nil
}

// addrRange matches the source or destination address against a range:
// not below its first address, not above its last, as nft makes it
// (big-endian data compares as numbers).
func (b *builder) addrRange(f Family, dir string, r model.Range) {
	if !r.IsValid() {
		return
	}
	off, size := addrField(f, dir)
	b.add(string(f)+" "+dir+" "+r.String(), load(expr.PayloadBaseNetworkHeader, off, size),
		&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: r.First.AsSlice()},
		&expr.Cmp{Op: expr.CmpOpLte, Register: 1, Data: r.Last.AsSlice()})
}

// l4proto matches the transport protocol.
func (b *builder) l4proto(proto string) error {
	n, name, err := protoNumber(proto)
	if err != nil {
		return err
	}
	b.add("meta l4proto "+name, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, eq([]byte{n}))
	return nil
}

func protoNumber(proto string) (byte, string, error) {
	switch proto {
	case "tcp":
		return unix.IPPROTO_TCP, "tcp", nil
	case "udp":
		return unix.IPPROTO_UDP, "udp", nil
	case "icmp":
		return unix.IPPROTO_ICMP, "icmp", nil
	case model.ProtoICMPv6, "icmpv6":
		return unix.IPPROTO_ICMPV6, "ipv6-icmp", nil
	}
	n, err := strconv.Atoi(proto)
	if err != nil || n < 0 || n > 255 {
		return 0, "", fmt.Errorf("protocol %q", proto)
	}
	return byte(n), strconv.Itoa(n), nil
}

// portRange is one item of a port list: lo-hi, or lo alone.
type portRange struct{ lo, hi uint16 }

func parsePorts(list string) ([]portRange, error) {
	var out []portRange
	for _, item := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(item, ":")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		c := a
		var err2 error
		if isRange {
			c, err2 = strconv.ParseUint(hi, 10, 16)
		}
		if err1 != nil || err2 != nil || c < a {
			return nil, fmt.Errorf("port list %q", list)
		}
		out = append(out, portRange{uint16(a), uint16(c)})
	}
	return out, nil
}

// mergePorts sorts ranges and joins those that overlap or touch: the
// kernel keeps an interval set that way, and a set compared with what it
// keeps must be written so.
func mergePorts(ps []portRange) []portRange {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b portRange) int { return cmp.Compare(a.lo, b.lo) })
	out := ps[:0]
	for _, p := range ps {
		if n := len(out); n > 0 && uint32(p.lo) <= uint32(out[n-1].hi)+1 {
			out[n-1].hi = max(out[n-1].hi, p.hi)
			continue
		}
		out = append(out, p)
	}
	return out
}

func (p portRange) String() string {
	if p.lo == p.hi {
		return strconv.Itoa(int(p.lo))
	}
	return fmt.Sprintf("%d-%d", p.lo, p.hi)
}

// ports matches a transport header port (offset 0: source, 2:
// destination) against a list: one port, one range, or an anonymous set.
func (b *builder) ports(proto, which string, off uint32, list string) error {
	ps, err := parsePorts(list)
	if err != nil {
		return err
	}
	ps = mergePorts(ps)
	text := proto + " " + which + " "
	ld := load(expr.PayloadBaseTransportHeader, off, 2)
	switch {
	case len(ps) == 1 && ps[0].lo == ps[0].hi:
		b.add(text+ps[0].String(), ld, eq(be16(ps[0].lo)))
	case len(ps) == 1:
		b.add(text+ps[0].String(), ld, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: be16(ps[0].lo), ToData: be16(ps[0].hi)})
	default:
		items := make([]string, len(ps))
		for i, p := range ps {
			items[i] = p.String()
		}
		set := portSet(ps)
		b.sets = append(b.sets, set)
		b.add(text+"{ "+strings.Join(items, ", ")+" }", ld, &expr.Lookup{SourceRegister: 1, SetName: anonName(len(b.sets) - 1)})
	}
	return nil
}

// anonName stands for the rule's i-th anonymous set until the kernel
// names it.
func anonName(i int) string { return fmt.Sprintf("__set%%d#%d", i) }

// portSet is the anonymous set of ps; an interval set when a range is in
// it, whose elements are each range's start and the end after it.
func portSet(ps []portRange) AnonSet {
	s := AnonSet{}
	for _, p := range ps {
		if p.lo != p.hi {
			s.Interval = true
		}
	}
	for _, p := range ps {
		s.Elements = append(s.Elements, nftables.SetElement{Key: be16(p.lo)})
		if s.Interval && p.hi != 0xffff {
			s.Elements = append(s.Elements, nftables.SetElement{Key: be16(p.hi + 1), IntervalEnd: true})
		}
	}
	return s
}

// icmp matches an ICMP or ICMPv6 type, and code when given ("3/3"); both
// from one load, as nft does.
func (b *builder) icmp(f Family, typ string) error {
	t, c, hasCode := strings.Cut(typ, "/")
	tn, err := strconv.ParseUint(t, 10, 8)
	if err != nil {
		return fmt.Errorf("icmp type %q", typ)
	}
	word := "icmp"
	if f == IPv6 {
		word = "icmpv6"
	}
	if !hasCode {
		b.add(fmt.Sprintf("%s type %d", word, tn), load(expr.PayloadBaseTransportHeader, 0, 1), eq([]byte{byte(tn)}))
		return nil
	}
	cn, err := strconv.ParseUint(c, 10, 8)
	if err != nil {
		return fmt.Errorf("icmp code %q", typ)
	}
	b.add(fmt.Sprintf("%s type %d %s code %d", word, tn, word, cn), load(expr.PayloadBaseTransportHeader, 0, 2), eq([]byte{byte(tn), byte(cn)}))
	return nil
}

// hops matches the IPv4 TTL or the IPv6 hop limit.
func (b *builder) hops(f Family, n int) {
	if f == IPv6 {
		b.add("ip6 hoplimit "+strconv.Itoa(n), load(expr.PayloadBaseNetworkHeader, 7, 1), eq([]byte{byte(n)}))
		return
	}
	b.add("ip ttl "+strconv.Itoa(n), load(expr.PayloadBaseNetworkHeader, 8, 1), eq([]byte{byte(n)}))
}

// limit is iptables' limit match: a rate per second, minute, hour or day
// and a burst (iptables' default is 5, as nft's).
func (b *builder) limit(rate string, burst int) error {
	lim, text, err := limitExpr(rate, burst)
	if err != nil {
		return err
	}
	b.add(text, lim)
	return nil
}

// portLimit is a limit of the port's own: the port's element in the rate
// set holds its bucket (made by the first packet, then updated).
func (b *builder) portLimit(word string, key expr.MetaKey, set, rate string, burst int) error {
	lim, text, err := limitExpr(rate, burst)
	if err != nil {
		return err
	}
	b.add("update @"+set+" { "+word+" "+text+" }",
		&expr.Meta{Key: key, Register: 1},
		&expr.Dynset{SrcRegKey: 1, SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: []expr.Any{lim}})
	return nil
}

// rateUnits are the units of a rate as the config and ruleset write them.
var rateUnits = map[string]expr.LimitTime{"s": expr.LimitTimeSecond, "sec": expr.LimitTimeSecond, "second": expr.LimitTimeSecond,
	"m": expr.LimitTimeMinute, "min": expr.LimitTimeMinute, "minute": expr.LimitTimeMinute,
	"h": expr.LimitTimeHour, "hour": expr.LimitTimeHour, "d": expr.LimitTimeDay, "day": expr.LimitTimeDay}

// parseRate reads a rate ("5/min") and the burst (0 is nft's default, 5).
func parseRate(rate string, burst int) (n uint64, unit expr.LimitTime, b int, err error) {
	num, name, ok := strings.Cut(rate, "/")
	n, err = strconv.ParseUint(num, 10, 32)
	if !ok || err != nil || n == 0 {
		return 0, 0, 0, fmt.Errorf("limit %q", rate)
	}
	unit, ok = rateUnits[name]
	if !ok {
		return 0, 0, 0, fmt.Errorf("limit %q: unit", rate)
	}
	if burst == 0 {
		burst = 5
	}
	return n, unit, burst, nil
}

// limitExpr is a limit of rate and burst, and how nft writes it.
func limitExpr(rate string, burst int) (*expr.Limit, string, error) {
	n, u, burst, err := parseRate(rate, burst)
	if err != nil {
		return nil, "", err
	}
	names := map[expr.LimitTime]string{expr.LimitTimeSecond: "second", expr.LimitTimeMinute: "minute", expr.LimitTimeHour: "hour", expr.LimitTimeDay: "day"}
	text := fmt.Sprintf("limit rate %d/%s", n, names[u])
	if burst != 5 {
		text += fmt.Sprintf(" burst %d packets", burst)
	}
	return &expr.Limit{Type: expr.LimitTypePkts, Rate: n, Unit: u, Burst: uint32(burst)}, text, nil
}

// refill is how long an empty bucket of rate and burst takes to fill,
// rounded up to a second.
func refill(rate string, burst int) (time.Duration, error) {
	n, u, burst, err := parseRate(rate, burst)
	if err != nil {
		return 0, err
	}
	per := map[expr.LimitTime]time.Duration{expr.LimitTimeSecond: time.Second, expr.LimitTimeMinute: time.Minute, expr.LimitTimeHour: time.Hour, expr.LimitTimeDay: 24 * time.Hour}[u]
	d := per * time.Duration(burst) / time.Duration(n)
	return max((d + time.Second - 1).Truncate(time.Second), time.Second), nil
}

// iface matches the input or output interface by name, or by a prefix
// when the name ends in "*" (nft's wildcard), as iptables' "+".
func (b *builder) iface(word, name string, neg bool) {
	key := expr.MetaKeyIIFNAME
	if word == "oifname" {
		key = expr.MetaKeyOIFNAME
	}
	// An exact name is compared as the kernel holds it, NUL-padded to
	// 16 bytes; a wildcard compares its prefix only.
	data := make([]byte, 16)
	copy(data, name)
	if prefix, ok := strings.CutSuffix(name, "*"); ok {
		data = []byte(prefix)
	}
	op := ""
	if neg {
		op = "!= "
	}
	b.add(fmt.Sprintf("%s %s%q", word, op, name), &expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: cmpOp(neg), Register: 1, Data: data})
}

// ifaceSet matches the input or output interface against a set of names.
func (b *builder) ifaceSet(word, set string, neg bool) {
	key := expr.MetaKeyIIFNAME
	if word == "oifname" {
		key = expr.MetaKeyOIFNAME
	}
	op := ""
	if neg {
		op = "!= "
	}
	b.add(fmt.Sprintf("%s %s@%s", word, op, set), &expr.Meta{Key: key, Register: 1}, &expr.Lookup{SourceRegister: 1, SetName: set, Invert: neg})
}

func (b *builder) counter() { b.add("counter", &expr.Counter{}) }

// log writes to the kernel log at level ("" for warning), or to an NFLOG
// group when group is set.
func (b *builder) log(prefix, level string, group int, nflog bool) {
	if nflog {
		b.add(fmt.Sprintf("log prefix %s group %d", strconv.Quote(prefix), group),
			&expr.Log{Key: 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_GROUP, Data: []byte(prefix), Group: uint16(group)})
		return
	}
	// The kernel log at level warning by default, as iptables' LOG (nft
	// says so).
	text, n := "log prefix "+strconv.Quote(prefix), model.LogLevelNumber(level)
	if n < 0 {
		n = int(expr.LogLevelWarning)
	} else if level != model.DefaultLogLevel {
		text += " level " + level
	}
	b.add(text, &expr.Log{Key: 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_LEVEL, Level: expr.LogLevel(n), Data: []byte(prefix)})
}

func (b *builder) verdict(kind expr.VerdictKind, chain string) {
	words := map[expr.VerdictKind]string{expr.VerdictAccept: "accept", expr.VerdictDrop: "drop", expr.VerdictReturn: "return", expr.VerdictJump: "jump", expr.VerdictGoto: "goto"}
	text := words[kind]
	if chain != "" {
		text += " " + chain
	}
	b.add(text, &expr.Verdict{Kind: kind, Chain: chain})
}

// addrField is where the source or destination address is in the IP
// header, and its size.
func addrField(f Family, dir string) (off, size uint32) {
	switch {
	case f == IPv6 && dir == "daddr":
		return 24, 16
	case f == IPv6:
		return 8, 16
	case dir == "daddr":
		return 16, 4
	}
	return 12, 4
}
