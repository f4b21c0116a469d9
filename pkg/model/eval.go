package model

import (
	"net/netip"
	"strconv"
	"strings"
)

// Packet is what a user rule can look at: the reference for what every
// backend's rendering of a rule list must decide.
type Packet struct {
	Family string // IPv4 or IPv6
	// Proto is the IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6).
	Proto        int
	Src, Dst     netip.Addr
	SPort, DPort int // tcp and udp
	// ICMPType and ICMPCode of an icmp or icmpv6 packet.
	ICMPType, ICMPCode int
}

// Decide is the verdict of a first-match rule list: the action of the
// first rule that matches p (and its index), or policy (and -1). sets
// gives the named sets' contents. This is what the rules mean, whatever a
// backend renders them into.
func Decide(rules []Rule, policy Action, p Packet, sets map[string][]netip.Prefix) (Action, int) {
	for i, r := range rules {
		if r.Matches(p, sets) {
			return r.Action, i
		}
	}
	return policy, -1
}

// Matches reports whether the rule matches p. A rule limited to one
// family (by an address, an ICMP protocol or its Family) matches no
// packet of the other. A rule that checks a group matches nothing here:
// the group's rules say what it does.
func (r Rule) Matches(p Packet, sets map[string][]netip.Prefix) bool {
	if r.Group != "" || r.Family != "" && r.Family != p.Family {
		return false
	}
	return r.protoMatches(p) &&
		r.Source.contains(p.Family, p.Src, sets) && r.Dest.contains(p.Family, p.Dst, sets) &&
		portsMatch(r.SPort, p.SPort) && portsMatch(r.DPort, p.DPort) &&
		icmpMatches(r.ICMPType, p)
}

func (r Rule) protoMatches(p Packet) bool {
	switch r.Proto {
	case "":
		return true
	case "tcp":
		return p.Proto == 6
	case "udp":
		return p.Proto == 17
	case "icmp":
		return p.Proto == 1 && p.Family == IPv4
	case ProtoICMPv6:
		return p.Proto == 58 && p.Family == IPv6
	}
	n, err := strconv.Atoi(r.Proto)
	return err == nil && n == p.Proto
}

// contains reports whether the address a of the family is in the rule's
// source or destination.
func (a Addr) contains(family string, addr netip.Addr, sets map[string][]netip.Prefix) bool {
	switch {
	case a.Family != "":
		return a.Family == family
	case a.Prefix.IsValid():
		return a.FamilyName() == family && a.Prefix.Contains(addr)
	case a.Range.IsValid():
		return a.FamilyName() == family && a.Range.Contains(addr)
	case a.Set != "":
		for _, p := range sets[a.Set] {
			if p.Contains(addr) {
				return true
			}
		}
		return false
	}
	return true
}

// portsMatch reports whether port is in a canonical port list ("22",
// "1000:2000", "22,80,1000:2000"); an empty list matches any port.
func portsMatch(list string, port int) bool {
	if list == "" {
		return true
	}
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, _ := strconv.Atoi(lo)
		b := a
		if isRange {
			b, _ = strconv.Atoi(hi)
		}
		if port >= a && port <= b {
			return true
		}
	}
	return false
}

// icmpMatches reports whether p has the canonical ICMP type ("8") or type
// and code ("3/3"); an empty one matches any packet.
func icmpMatches(typ string, p Packet) bool {
	if typ == "" {
		return true
	}
	t, c, hasCode := strings.Cut(typ, "/")
	if strconv.Itoa(p.ICMPType) != t {
		return false
	}
	return !hasCode || strconv.Itoa(p.ICMPCode) == c
}
