package explain

import (
	"fmt"
	"net/netip"
	"strings"
)

var (
	zero4  = netip.AddrFrom4([4]byte{})
	bcast4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// addrType is the type the kernel gives address a (inet_addr_type: its
// route type in the local table), upper case as iptables names it:
// BROADCAST for 0.0.0.0 and 255.255.255.255, MULTICAST for a multicast
// address, else what Packet.LocalTable says, UNICAST for an address not
// in it. ok is false when the table is needed and was not read.
func (p *Packet) addrType(a netip.Addr) (typ string, ok bool) {
	switch {
	case a == zero4 || a == bcast4:
		return "BROADCAST", true
	case a.IsMulticast():
		return "MULTICAST", true
	case p.LocalTable == nil:
		return "", false
	}
	if t, in := p.LocalTable[a]; in {
		return strings.ToUpper(t), true
	}
	return "UNICAST", true
}

// addrtypeModule is -m addrtype --src-type and --dst-type, each a list
// of types (UNICAST, LOCAL, BROADCAST, MULTICAST); --limit-iface-in and
// -out are not simulated.
type addrtypeModule struct {
	src, dst       []string
	srcNeg, dstNeg bool
}

func (m *addrtypeModule) option(name string, neg bool, p *parser) (bool, error) {
	var types *[]string
	switch name {
	case "--src-type":
		types, m.srcNeg = &m.src, neg
	case "--dst-type":
		types, m.dstNeg = &m.dst, neg
	default:
		return false, nil
	}
	v, err := p.arg(name)
	if err != nil {
		return true, err
	}
	*types = strings.Split(v, ",")
	return true, nil
}

func (m *addrtypeModule) eval(e *env) outcome {
	out := outcome{v: yes}
	for _, c := range []struct {
		what  string
		a     netip.Addr
		types []string
		neg   bool
	}{{"source", e.p.Src, m.src, m.srcNeg}, {"destination", e.p.Dst, m.dst, m.dstNeg}} {
		if c.types == nil {
			continue
		}
		typ, ok := e.p.addrType(c.a)
		if !ok {
			out = outcome{v: unknown, why: []string{fmt.Sprintf("the type of the %s %s is not known (the host's local routing table was not read)", c.what, c.a)}}
			continue
		}
		if match := contains(c.types, typ); match == c.neg {
			return outcome{v: no}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// fibTypes are the route types nft's fib type result names.
var fibTypes = map[string]uint64{"unspec": 0, "unicast": 1, "local": 2, "broadcast": 3, "anycast": 4,
	"multicast": 5, "blackhole": 6, "unreachable": 7, "prohibit": 8}

// fib evaluates nft's fib saddr type or fib daddr type: the address's
// type in the local table (addrType), as a route type number. Other
// results and flags (an interface, iif or oif) are not simulated.
func (w *nwalker) fib(key string, flags []string) field {
	if key != "type" || len(flags) != 1 || (flags[0] != "saddr" && flags[0] != "daddr") {
		return unknownField("fib %s %s is not simulated", strings.Join(flags, " . "), key)
	}
	a := w.p.Src
	if flags[0] == "daddr" {
		a = w.p.Dst
	}
	typ, ok := w.p.addrType(a)
	if !ok {
		return unknownField("the type of %s is not known (the host's local routing table was not read)", a)
	}
	return num(fibTypes[strings.ToLower(typ)], 4, fibTypes)
}
