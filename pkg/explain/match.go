package explain

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
)

// Matches of the rule's IP header part (-s, -d, -i, -o, -p, -f), as
// ip_packet_match and ip6_packet_match test them.

// addrMatch is -s or -d: (addr & mask) == (net & mask), for any mask.
type addrMatch struct {
	dst, neg  bool
	net, mask []byte
}

// parseAddrMatch parses "addr/len", "addr/mask" (e.g. ::5/::f) or a bare
// address.
func parseAddrMatch(s string, family int, dst, neg bool) (addrMatch, error) {
	a, m, hasMask := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(a)
	if err != nil {
		return addrMatch{}, err
	}
	if addr.Zone() != "" {
		return addrMatch{}, fmt.Errorf("address with a zone")
	}
	if err := checkFamily(addr, family); err != nil {
		return addrMatch{}, err
	}
	bits := addr.BitLen()
	mask := make([]byte, bits/8)
	switch {
	case !hasMask:
		for i := range mask {
			mask[i] = 0xff
		}
	default:
		if n, err := strconv.Atoi(m); err == nil {
			if n < 0 || n > bits {
				return addrMatch{}, fmt.Errorf("prefix length %d", n)
			}
			for i := 0; i < n; i++ {
				mask[i/8] |= 0x80 >> (i % 8)
			}
			break
		}
		ma, err := netip.ParseAddr(m)
		if err != nil {
			return addrMatch{}, fmt.Errorf("mask %q: neither a length nor an address", m)
		}
		if err := checkFamily(ma, family); err != nil {
			return addrMatch{}, fmt.Errorf("mask: %w", err)
		}
		mask = ma.AsSlice()
	}
	n := addr.AsSlice()
	for i := range n {
		n[i] &= mask[i]
	}
	return addrMatch{dst: dst, neg: neg, net: n, mask: mask}, nil
}

// checkFamily checks that a rule's address is of the table's family.
func checkFamily(a netip.Addr, family int) error {
	if family == 4 && !a.Is4() || family == 6 && !a.Is6() {
		return fmt.Errorf("%s is not an IPv%d address", a, family)
	}
	return nil
}

func (m addrMatch) eval(e *env) outcome {
	a := e.p.Src
	if m.dst {
		a = e.p.Dst
	}
	b := a.AsSlice()
	eq := len(b) == len(m.net)
	for i := 0; eq && i < len(b); i++ {
		eq = b[i]&m.mask[i] == m.net[i]
	}
	return is(eq != m.neg)
}

// is turns a bool into an outcome.
func is(b bool) outcome {
	if b {
		return outcome{v: yes}
	}
	return outcome{v: no}
}

// ifaceMatch is -i or -o. The kernel compares names up to the pattern's
// length plus its terminating NUL, or without the NUL after a '+': a
// trailing '+' makes the pattern a prefix.
type ifaceMatch struct {
	out, neg bool
	pattern  string
}

func (m ifaceMatch) eval(e *env) outcome {
	name := e.p.InIface
	if m.out {
		name = e.p.OutIface
	}
	return is(ifnameMatch(name, m.pattern) != m.neg)
}

// ifnameMatch reports whether an interface name matches a pattern of -i,
// -o, --physdev-in or --physdev-out.
func ifnameMatch(name, pattern string) bool {
	if p, ok := strings.CutSuffix(pattern, "+"); ok {
		return strings.HasPrefix(name, p)
	}
	return name == pattern
}

// protoMatch is -p; protocol 0 ("all") matches every packet, negated or
// not.
type protoMatch struct {
	neg bool
	num int
}

func (m protoMatch) eval(e *env) outcome {
	if m.num == 0 {
		return outcome{v: yes}
	}
	return is((e.proto == m.num) != m.neg)
}

// fragMatch is -f: second and later fragments. The packet explained is
// whole (or a first fragment: it has ports).
type fragMatch struct{ neg bool }

func (m fragMatch) eval(*env) outcome { return is(m.neg) }

// unknownMatch is a match that is not simulated.
type unknownMatch struct{ why string }

func (m unknownMatch) eval(*env) outcome { return outcome{v: unknown, why: []string{m.why}} }

// module is a match loaded with -m, and its options.
type module interface {
	matcher
	// option parses one option of the module (its name already read);
	// known is false for an option that is not simulated.
	option(name string, neg bool, p *parser) (known bool, err error)
}

// newModule returns the module of -m name; an unknownModule when it is not
// simulated.
func newModule(name string, family int) module {
	switch name {
	case "tcp":
		return &portsModule{proto: 6}
	case "udp":
		return &portsModule{proto: 17}
	case "multiport":
		return &multiportModule{}
	case "icmp":
		if family == 4 {
			return &icmpModule{proto: 1, typ: 0xff, codeHi: 0xff, anyType: true}
		}
	case "icmp6":
		if family == 6 {
			return &icmpModule{proto: 58, codeHi: 0xff}
		}
	case "conntrack":
		return &stateModule{ctstate: true}
	case "state":
		return &stateModule{}
	case "mac":
		return &macModule{}
	case "set":
		return &setModule{}
	case "iprange":
		return &iprangeModule{}
	case "addrtype":
		return &addrtypeModule{}
	case "physdev":
		return &physdevModule{}
	case "limit":
		return &limitModule{}
	case "comment":
		return &commentModule{}
	case "mark":
		return &markModule{}
	case "hl":
		if family == 6 {
			return &hlModule{}
		}
	case "ttl":
		if family == 4 {
			return &hlModule{ttl: true}
		}
	}
	return unknownModule{}
}

// markModule is -m mark --mark value[/mask]: the packet's mark, which the
// walk starts at Packet.Mark and MARK rules change.
type markModule struct {
	vm  [2]uint32
	neg bool
}

func (m *markModule) option(name string, neg bool, p *parser) (bool, error) {
	if name != "--mark" {
		return false, nil
	}
	v, err := p.arg(name)
	if err != nil {
		return true, err
	}
	m.neg = neg
	m.vm, err = parseMark(v)
	return true, err
}

func (m *markModule) eval(e *env) outcome { return is(e.mark&m.vm[1] == m.vm[0] != m.neg) }

// hlModule is ip6tables' -m hl, or iptables' -m ttl: the packet's hop
// limit or TTL (Packet.HopLimit; 0 is unknown).
type hlModule struct {
	ttl bool
	op  string // eq, lt or gt
	n   int
	neg bool
}

func (m *hlModule) option(name string, neg bool, p *parser) (bool, error) {
	ops := map[string]string{"--hl-eq": "eq", "--hl-lt": "lt", "--hl-gt": "gt"}
	if m.ttl {
		ops = map[string]string{"--ttl-eq": "eq", "--ttl-lt": "lt", "--ttl-gt": "gt"}
	}
	op, ok := ops[name]
	if !ok {
		return false, nil
	}
	v, err := p.arg(name)
	if err != nil {
		return true, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 255 {
		return true, fmt.Errorf("%q is not a hop limit", v)
	}
	m.op, m.n, m.neg = op, n, neg
	return true, nil
}

func (m *hlModule) eval(e *env) outcome {
	hl := e.p.HopLimit
	if hl == 0 {
		what := "hop limit"
		if m.ttl {
			what = "TTL"
		}
		return outcome{v: unknown, why: []string{"the packet's " + what + " is not given"}}
	}
	var ok bool
	switch m.op {
	case "eq":
		ok = hl == m.n
	case "lt":
		ok = hl < m.n
	default:
		ok = hl > m.n
	}
	return is(ok != m.neg)
}

// parseMark reads value[/mask] (hexadecimal or decimal, as iptables-save
// prints it); a missing mask is all ones.
func parseMark(s string) ([2]uint32, error) {
	v, m, hasMask := strings.Cut(s, "/")
	val, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return [2]uint32{}, fmt.Errorf("%q is not a mark", s)
	}
	mask := uint64(0xffffffff)
	if hasMask {
		if mask, err = strconv.ParseUint(m, 0, 32); err != nil {
			return [2]uint32{}, fmt.Errorf("%q is not a mark", s)
		}
	}
	return [2]uint32{uint32(val), uint32(mask)}, nil
}

// unknownModule is a match module that is not simulated (hashlimit, recent, ...): every option of it is unknown.
type unknownModule struct{}

func (unknownModule) eval(*env) outcome                          { return outcome{v: unknown} }
func (unknownModule) option(string, bool, *parser) (bool, error) { return false, nil }

// portRange is a port or a range a:b of a tcp or udp match.
type portRange struct{ lo, hi uint16 }

func (r portRange) has(port uint16) bool { return port >= r.lo && port <= r.hi }

// parsePortRange parses "22", "1000:2000", ":1023" or "1024:".
func parsePortRange(s string) (portRange, error) {
	lo, hi, isRange := strings.Cut(s, ":")
	r := portRange{0, 0xffff}
	var err error
	if lo != "" || !isRange {
		if r.lo, err = parsePort(lo); err != nil {
			return r, err
		}
	}
	if !isRange {
		r.hi = r.lo
		return r, nil
	}
	if hi != "" {
		if r.hi, err = parsePort(hi); err != nil {
			return r, err
		}
	}
	return r, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q: not a number from 0 to 65535", s)
	}
	return uint16(n), nil
}

// portsModule is -m tcp or -m udp (tcp_mt, udp_mt): each of --sport and
// --dport holds when the port is in its range, negated by its own '!'.
type portsModule struct {
	proto          int
	sport, dport   *portRange
	sneg, dneg     bool
	hasSrc, hasDst bool
}

func (m *portsModule) option(name string, neg bool, p *parser) (bool, error) {
	switch name {
	case "--sport", "--source-port", "--dport", "--destination-port":
	default:
		return false, nil // --tcp-flags, --syn, --tcp-option: no flags in a Packet
	}
	v, err := p.arg(name)
	if err != nil {
		return true, err
	}
	r, err := parsePortRange(v)
	if err != nil {
		return true, err
	}
	if name == "--sport" || name == "--source-port" {
		m.sport, m.sneg = &r, neg
	} else {
		m.dport, m.dneg = &r, neg
	}
	return true, nil
}

func (m *portsModule) eval(e *env) outcome {
	if e.proto != m.proto {
		return outcome{v: no}
	}
	if m.sport != nil && m.sport.has(e.p.SPort) == m.sneg {
		return outcome{v: no}
	}
	if m.dport != nil && m.dport.has(e.p.DPort) == m.dneg {
		return outcome{v: no}
	}
	return outcome{v: yes}
}

// multiportModule is -m multiport (revision 1): it holds when a port is in
// one of the list's ports or ranges, negated by '!'.
type multiportModule struct {
	neg      bool
	src, dst bool // --sports: src; --dports: dst; --ports: both (either)
	ports    []portRange
}

func (m *multiportModule) option(name string, neg bool, p *parser) (bool, error) {
	switch name {
	case "--sports", "--source-ports":
		m.src = true
	case "--dports", "--destination-ports":
		m.dst = true
	case "--ports":
		m.src, m.dst = true, true
	default:
		return false, nil
	}
	v, err := p.arg(name)
	if err != nil {
		return true, err
	}
	m.neg = neg
	for _, s := range strings.Split(v, ",") {
		r, err := parsePortRange(s)
		if err != nil {
			return true, err
		}
		m.ports = append(m.ports, r)
	}
	return true, nil
}

// portProtos are the protocols multiport accepts.
var portProtos = map[int]bool{6: true, 17: true, 33: true, 132: true, 136: true}

func (m *multiportModule) eval(e *env) outcome {
	if !portProtos[e.proto] {
		return outcome{v: no}
	}
	hit := false
	for _, r := range m.ports {
		if m.src && r.has(e.p.SPort) || m.dst && r.has(e.p.DPort) {
			hit = true
			break
		}
	}
	return is(hit != m.neg)
}

// icmpModule is -m icmp --icmp-type or -m icmp6 --icmpv6-type: the type
// equals and the code is in range, or (IPv4 only) the type is "any";
// negated by '!'.
type icmpModule struct {
	proto          int
	neg, anyType   bool
	typ            int
	codeLo, codeHi int
}

func (m *icmpModule) option(name string, neg bool, p *parser) (bool, error) {
	if m.proto == 1 && name != "--icmp-type" || m.proto == 58 && name != "--icmpv6-type" {
		return false, nil
	}
	v, err := p.arg(name)
	if err != nil {
		return true, err
	}
	m.neg, m.anyType = neg, false
	m.codeLo, m.codeHi = 0, 0xff
	if v == "any" && m.proto == 1 {
		m.anyType = true
		return true, nil
	}
	t, c, hasCode := strings.Cut(v, "/")
	n, ok := icmpNames(m.proto)[t]
	if !ok {
		x, err := strconv.ParseUint(t, 10, 8)
		if err != nil {
			return true, fmt.Errorf("icmp type %q", v)
		}
		n = int(x)
	}
	m.typ = n
	if hasCode {
		x, err := strconv.ParseUint(c, 10, 8)
		if err != nil {
			return true, fmt.Errorf("icmp code %q", v)
		}
		m.codeLo, m.codeHi = int(x), int(x)
	}
	return true, nil
}

// icmpNames are the commonest names iptables accepts for icmp types;
// iptables-save prints numbers.
func icmpNames(proto int) map[string]int {
	if proto == 1 {
		return map[string]int{
			"echo-reply": 0, "destination-unreachable": 3, "redirect": 5,
			"echo-request": 8, "time-exceeded": 11, "parameter-problem": 12,
		}
	}
	return map[string]int{
		"destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3,
		"parameter-problem": 4, "echo-request": 128, "echo-reply": 129,
		"router-solicitation": 133, "router-advertisement": 134,
		"neighbour-solicitation": 135, "neighbor-solicitation": 135,
		"neighbour-advertisement": 136, "neighbor-advertisement": 136, "redirect": 137,
	}
}

func (m *icmpModule) eval(e *env) outcome {
	if e.proto != m.proto {
		return outcome{v: no}
	}
	if m.anyType {
		return is(!m.neg)
	}
	if e.p.ICMPType < 0 {
		return outcome{v: unknown, why: []string{"the packet's icmp type is not given"}}
	}
	hit := e.p.ICMPType == m.typ
	if hit && (m.codeLo > 0 || m.codeHi < 0xff) {
		if e.p.ICMPCode < 0 {
			return outcome{v: unknown, why: []string{"the packet's icmp code is not given"}}
		}
		hit = e.p.ICMPCode >= m.codeLo && e.p.ICMPCode <= m.codeHi
	}
	return is(hit != m.neg)
}

// stateModule is -m conntrack --ctstate or -m state --state: the packet's
// state is one of the list, negated by '!'. SNAT and DNAT (ctstate only)
// are whether the connection is NATed, which a Packet does not tell.
type stateModule struct {
	ctstate bool
	set     bool
	neg     bool
	states  map[string]bool
}

func (m *stateModule) option(name string, neg bool, p *parser) (bool, error) {
	if m.ctstate && name != "--ctstate" || !m.ctstate && name != "--state" {
		return false, nil // --ctstatus, --ctorigsrc, ...
	}
	v, err := p.arg(name)
	if err != nil {
		return true, err
	}
	m.set, m.neg, m.states = true, neg, map[string]bool{}
	for _, s := range strings.Split(v, ",") {
		s = strings.ToUpper(s)
		if !ctStates[s] && !(m.ctstate && (s == "SNAT" || s == "DNAT")) {
			return true, fmt.Errorf("state %q", s)
		}
		m.states[s] = true
	}
	return true, nil
}

func (m *stateModule) eval(e *env) outcome {
	if !m.set {
		return outcome{v: yes}
	}
	if !m.states[e.p.CtState] && (m.states["SNAT"] || m.states["DNAT"]) {
		return outcome{v: unknown, why: []string{"whether the connection is NATed is not known"}}
	}
	return is(m.states[e.p.CtState] != m.neg)
}

// macModule is -m mac --mac-source (mac_mt): the Ethernet source of a
// received frame. A locally generated packet has no MAC header: the match
// fails, even negated.
type macModule struct {
	set bool
	neg bool
	mac net.HardwareAddr
}

func (m *macModule) option(name string, neg bool, p *parser) (bool, error) {
	if name != "--mac-source" {
		return false, nil
	}
	v, err := p.arg(name)
	if err != nil {
		return true, err
	}
	mac, err := net.ParseMAC(v)
	if err != nil || len(mac) != 6 {
		return true, fmt.Errorf("mac %q", v)
	}
	m.set, m.neg, m.mac = true, neg, mac
	return true, nil
}

func (m *macModule) eval(e *env) outcome {
	if !m.set {
		return outcome{v: yes}
	}
	if e.p.Hook == "OUTPUT" {
		return outcome{v: no}
	}
	if e.p.SrcMAC == nil {
		return outcome{v: unknown, why: []string{"the packet's source MAC is not given"}}
	}
	return is(bytes.Equal(e.p.SrcMAC, m.mac) != m.neg)
}

// iprangeModule is -m iprange --src-range A-B --dst-range C-D, each
// negated by '!'.
type iprangeModule struct {
	src, dst       model.Range
	srcNeg, dstNeg bool
}

func (m *iprangeModule) option(name string, neg bool, p *parser) (bool, error) {
	if name != "--src-range" && name != "--dst-range" {
		return false, nil
	}
	v, err := p.arg(name)
	if err != nil {
		return true, err
	}
	a, b, _ := strings.Cut(v, "-")
	first, err1 := netip.ParseAddr(a)
	last, err2 := netip.ParseAddr(b)
	if err1 != nil || err2 != nil || first.Is4() != last.Is4() {
		return true, fmt.Errorf("range %q", v)
	}
	r := model.Range{First: first, Last: last}
	if name == "--src-range" {
		m.src, m.srcNeg = r, neg
	} else {
		m.dst, m.dstNeg = r, neg
	}
	return true, nil
}

func (m *iprangeModule) eval(e *env) outcome {
	if m.src.IsValid() && m.src.Contains(e.p.Src) == m.srcNeg {
		return outcome{v: no}
	}
	if m.dst.IsValid() && m.dst.Contains(e.p.Dst) == m.dstNeg {
		return outcome{v: no}
	}
	return outcome{v: yes}
}

// setModule is -m set --match-set NAME src|dst: the address is in one of
// the set's networks, negated by '!'. A hash:net set has one dimension:
// the kernel reads only the first direction of "src,dst".
type setModule struct {
	name string
	neg  bool
	dst  bool
}

func (m *setModule) option(name string, neg bool, p *parser) (bool, error) {
	if name != "--match-set" {
		return false, nil // --return-nomatch, counters
	}
	set, err := p.arg(name)
	if err != nil {
		return true, err
	}
	dirs, err := p.arg(name)
	if err != nil {
		return true, err
	}
	dir, _, _ := strings.Cut(dirs, ",")
	if dir != "src" && dir != "dst" {
		return true, fmt.Errorf("direction %q", dirs)
	}
	m.name, m.neg, m.dst = set, neg, dir == "dst"
	return true, nil
}

func (m *setModule) eval(e *env) outcome {
	if m.name == "" {
		return outcome{v: unknown, why: []string{"no --match-set"}}
	}
	entries, ok := e.sets[m.name]
	if !ok {
		return outcome{v: unknown, why: []string{fmt.Sprintf("the contents of ipset %s are not given", m.name)}}
	}
	a := e.p.Src
	if m.dst {
		a = e.p.Dst
	}
	hit := false
	for _, pfx := range entries {
		if pfx.Contains(a) {
			hit = true
			break
		}
	}
	return is(hit != m.neg)
}

// The options of -m physdev, as the kernel's bits.
const (
	physIn      = 1 << iota // --physdev-in
	physOut                 // --physdev-out
	physBridged             // --physdev-is-bridged
	physIsIn                // --physdev-is-in
	physIsOut               // --physdev-is-out
)

// physdevModule is -m physdev, tested as physdev_mt does.
type physdevModule struct {
	bitmask, invert int
	in, out         string
}

func (m *physdevModule) option(name string, neg bool, p *parser) (bool, error) {
	var bit int
	switch name {
	case "--physdev-in", "--physdev-out":
		v, err := p.arg(name)
		if err != nil {
			return true, err
		}
		if name == "--physdev-in" {
			bit, m.in = physIn, v
		} else {
			bit, m.out = physOut, v
		}
	case "--physdev-is-bridged":
		bit = physBridged
	case "--physdev-is-in":
		bit = physIsIn
	case "--physdev-is-out":
		bit = physIsOut
	default:
		return false, nil
	}
	m.bitmask |= bit
	if neg {
		m.invert |= bit
	}
	return true, nil
}

func (m *physdevModule) eval(e *env) outcome {
	has := func(bit int) bool { return m.bitmask&bit != 0 }
	inv := func(bit int) bool { return m.invert&bit != 0 }
	indev, outdev := e.p.PhysIn, e.p.PhysOut
	if indev == "" && outdev == "" {
		// Not bridged: it matches only when every option is negated.
		return is(m.bitmask&^m.invert == 0)
	}
	if has(physBridged) && (outdev != "") == inv(physBridged) {
		return outcome{v: no}
	}
	if has(physIsIn) && (indev == "") != inv(physIsIn) ||
		has(physIsOut) && (outdev == "") != inv(physIsOut) {
		return outcome{v: no}
	}
	// Without a physical in device, --physdev-in is not tested at all.
	if has(physIn) && indev != "" && ifnameMatch(indev, m.in) == inv(physIn) {
		return outcome{v: no}
	}
	if !has(physOut) {
		return outcome{v: yes}
	}
	// Without a physical out device, --physdev-out fails, even negated.
	if outdev == "" {
		return outcome{v: no}
	}
	return is(ifnameMatch(outdev, m.out) != inv(physOut))
}

// limitModule is -m limit: assumed to match, rates are not simulated.
type limitModule struct{ rate string }

func (m *limitModule) option(name string, _ bool, p *parser) (bool, error) {
	if name != "--limit" && name != "--limit-burst" {
		return false, nil
	}
	v, err := p.arg(name)
	if name == "--limit" {
		m.rate = v
	}
	return true, err
}

func (m *limitModule) eval(*env) outcome {
	rate := m.rate
	if rate == "" {
		rate = "3/hour" // the default
	}
	return outcome{v: yes, notes: []string{fmt.Sprintf("limit %s assumed to match", rate)}}
}

// commentModule is -m comment: it always matches.
type commentModule struct {
	set  bool
	text string
}

func (m *commentModule) option(name string, _ bool, p *parser) (bool, error) {
	if name != "--comment" {
		return false, nil
	}
	v, err := p.arg(name)
	m.set, m.text = true, v
	return true, err
}

func (m *commentModule) eval(*env) outcome { return outcome{v: yes} }
