package ruleset

import (
	"net/netip"
	"slices"

	"github.com/tapfw/tapfw/pkg/model"
)

// ICMPv6 types of neighbour discovery (RFC 4861).
const (
	icmp6RouterSolicit = "133"
	icmp6RouterAdvert  = "134"
	icmp6NeighSolicit  = "135"
	icmp6NeighAdvert   = "136"
	icmp6Redirect      = "137"
)

// ndp is a neighbour discovery rule: a hop limit of 255 proves the packet
// was not routed (RFC 4861 receivers drop any other), so the exemption
// cannot carry anything past the link.
func ndp(chain, typ, comment string, v Verdict) Rule {
	return Rule{Chain: chain, Proto: model.ProtoICMPv6, ICMPType: typ, HopLimit: 255, Comment: comment, Verdict: v}
}

// ICMPv6 types of multicast listener discovery (RFC 2710, RFC 3810).
const (
	icmp6MLDQuery    = "130"
	icmp6MLDReport   = "131"
	icmp6MLDDone     = "132"
	icmp6MLDv2Report = "143"
)

// protoIGMP is rendered as a number, as user rules render it.
const protoIGMP = "2"

// mld is a multicast listener discovery rule: MLD is sent with a hop limit
// of 1 (receivers drop any other), so it never leaves the link.
func mld(chain, typ, comment string, v Verdict) Rule {
	return Rule{Chain: chain, Proto: model.ProtoICMPv6, ICMPType: typ, HopLimit: 1, Comment: comment, Verdict: v}
}

// mldListener is what a listener sends: reports and done messages, always
// to a multicast address. Queries (130) are a querier's, and from a guest
// they meet its own rules.
var mldListener = []string{icmp6MLDReport, icmp6MLDDone, icmp6MLDv2Report}

// mldFrom is a listener message from a link-local address (RFC 3810 5.2.13)
// to a multicast one: so scoped, it carries nothing to a unicast address.
func mldFrom(chain, typ, comment string, v Verdict) Rule {
	r := mld(chain, typ, comment, v)
	r.Src, r.Dst = linkLocal, multicast6
	return r
}

// igmp is group membership over IPv4: sent with TTL 1 (RFC 2236, 3376) to
// a multicast address.
func igmp(chain, comment string, v Verdict) Rule {
	return Rule{Chain: chain, Dst: multicast4, Proto: protoIGMP, TTL: 1, Comment: comment, Verdict: v}
}

func icmp6(chain, typ, comment string, v Verdict) Rule {
	return Rule{Chain: chain, Proto: model.ProtoICMPv6, ICMPType: typ, Comment: comment, Verdict: v}
}

var (
	linkLocal  = netip.MustParsePrefix("fe80::/10")
	dhcpv6Srvs = netip.MustParsePrefix("ff02::1:2/128") // All_DHCP_Relay_Agents_and_Servers
	mldv2Rtrs  = netip.MustParsePrefix("ff02::16/128")  // All_MLDv2-capable_Routers
	unspec6    = netip.MustParsePrefix("::/128")
	multicast4 = netip.MustParsePrefix("224.0.0.0/4")
	multicast6 = netip.MustParsePrefix("ff00::/8")
)

// tapOut is the chain for packets from the VM. Allowed packets RETURN so
// that the IN chain of the receiving tap still runs. Anti-spoofing comes
// before the conntrack shortcut, so a VM cannot forge its way into
// another's connection.
func tapOut(t model.Tap, fam *Family) (Chain, error) {
	c := TapOut(t.Name)
	rs := outBeforeIPCheck(t, fam, c)
	if t.IPFilter {
		rs = append(rs, Rule{Chain: c, SetSrc: fam.TapSet(t.Name), SetSrcNeg: true, Comment: t.Name + ": ip anti-spoof", Verdict: Verdict{Target: "DROP"}})
	}
	rs = append(rs, outAfterIPCheck(t, fam, c)...)
	rs = append(rs, Rule{Chain: c, CtState: "RELATED,ESTABLISHED", Comment: t.Name + ": established", Verdict: Verdict{Target: "ACCEPT"}})
	rs = append(rs, outGroups(t, c)...)
	return tapChain(t, fam, c, "out", Verdict{Target: "RETURN"}, rs)
}

// tapChain ends the tap's chain c for dir, after its own rules rs: the
// tap's rules of that direction (allow is what an allowed packet gets),
// then its policy.
func tapChain(t model.Tap, fam *Family, c, dir string, allow Verdict, rs []Rule) (Chain, error) {
	rules, policy, level := t.In, t.PolicyIn, t.LogLevelIn
	if dir == "out" {
		rules, policy, level = t.Out, t.PolicyOut, t.LogLevelOut
	}
	logName := ""
	if t.LogPerTap {
		logName = t.Name
	}
	cx := chainCtx{chain: c, fam: fam, owner: t.Name, logName: logName, dir: dir, allow: allow, limit: t.LogLimit, log: logTo{t.LogTarget, t.NFLogGroup}}
	user, err := cx.userRules(rules)
	if err != nil {
		return Chain{}, err
	}
	rs = append(rs, user...)
	rs = append(rs, cx.policy(policy, model.PolicyLogLevel(level, t.LogDropped))...)
	return Chain{Name: c, Rules: rs}, nil
}

// outBeforeIPCheck are the OUT chain's rules before the address check:
// INVALID, the MAC check, what a guest may never send (server replies,
// router advertisements) and what it sends before it has an address.
func outBeforeIPCheck(t model.Tap, fam *Family, c string) []Rule {
	own := t.Name + ": "
	ret, drop := Verdict{Target: "RETURN"}, Verdict{Target: "DROP"}
	rs := []Rule{{Chain: c, CtState: "INVALID", Comment: own + "invalid", Verdict: drop}}
	if t.MACFilter && len(t.Pairs) == 0 {
		// With allowed pairs the guest sends from more than one MAC:
		// the layer-2 table, which both backends install, checks them
		// (with the pairs' addresses) before this chain.
		rs = append(rs, Rule{Chain: c, MACSource: t.MAC.String(), MACNegate: true, Comment: own + "mac anti-spoof", Verdict: drop})
	}
	if !fam.V6 {
		rs = append(rs, Rule{Chain: c, Proto: "udp", SPort: "67", DPort: "68", Comment: own + "no dhcp server", Verdict: drop})
		if t.DHCP {
			// A client without an address asks from 0.0.0.0 to the
			// broadcast address: that, and only that, passes before the
			// IP check.
			rs = append(rs, Rule{Chain: c, Src: anyAddr, Dst: broadcast, Proto: "udp", SPort: "68", DPort: "67", Comment: own + "dhcp discover", Verdict: ret})
		}
		return rs
	}
	if !t.RAdv {
		rs = append(rs,
			icmp6(c, icmp6RouterAdvert, own+"no router advertisements", drop),
			icmp6(c, icmp6Redirect, own+"no redirects", drop))
	}
	rs = append(rs, Rule{Chain: c, Proto: "udp", SPort: "547", DPort: "546", Comment: own + "no dhcpv6 server", Verdict: drop})
	if t.NDP && t.IPFilter {
		// Duplicate address detection asks from the unspecified
		// address, before the VM has one.
		rs = append(rs, Rule{Chain: c, Src: unspec6, Proto: model.ProtoICMPv6, ICMPType: icmp6NeighSolicit, HopLimit: 255, Comment: own + "ndp dad", Verdict: ret})
	}
	if t.IGMP && t.IPFilter {
		// So do its first MLD reports, for the solicited-node groups
		// of the addresses it is about to check (RFC 3590).
		r := mld(c, icmp6MLDv2Report, own+"mld before dad", ret)
		r.Src, r.Dst = unspec6, mldv2Rtrs
		rs = append(rs, r)
	}
	return rs
}

// outAfterIPCheck are the protocols a guest needs from its own addresses
// that conntrack does not track: neighbour discovery, group membership,
// DHCP renewals and DHCPv6 requests.
func outAfterIPCheck(t model.Tap, fam *Family, c string) []Rule {
	own, ret := t.Name+": ", Verdict{Target: "RETURN"}
	var rs []Rule
	if !fam.V6 {
		if t.IGMP {
			// Group membership from the guest's own address; IGMP is
			// never routed.
			rs = append(rs, igmp(c, own+"igmp", ret))
		}
		if t.DHCP {
			// Renewals come from the guest's own address.
			rs = append(rs, Rule{Chain: c, Proto: "udp", SPort: "68", DPort: "67", Comment: own + "dhcp renew", Verdict: ret})
		}
		return rs
	}
	if t.NDP {
		// Their targets are checked in the bridge table.
		for _, typ := range []string{icmp6RouterSolicit, icmp6NeighSolicit, icmp6NeighAdvert} {
			rs = append(rs, ndp(c, typ, own+"ndp", ret))
		}
	}
	if t.IGMP {
		// Group membership, without which a snooping bridge or switch
		// stops sending the guest its solicited-node multicast.
		for _, typ := range mldListener {
			rs = append(rs, mldFrom(c, typ, own+"mld", ret))
		}
	}
	if t.DHCP {
		// Clients ask the link's servers and relays, by multicast.
		rs = append(rs, Rule{Chain: c, Dst: dhcpv6Srvs, Proto: "udp", SPort: "546", DPort: "547", Comment: own + "dhcpv6 request", Verdict: ret})
	}
	return rs
}

// outGroups send the packet through the tap's security groups. What a
// group allows comes back marked and returns from the tap's chain;
// anything else falls through to the next group and the tap's own rules.
func outGroups(t model.Tap, c string) []Rule {
	if len(t.Groups) == 0 && !slices.ContainsFunc(t.Out, func(u model.Rule) bool { return u.Group != "" }) {
		return nil
	}
	own := t.Name + ": "
	// The mark bit says "a group allowed it" only if it starts clear: a
	// packet that arrives with it set would skip the tap's rules.
	rs := []Rule{{Chain: c, Comment: own + "groups: clear mark", Verdict: Verdict{Target: "MARK", XMark: groupMarkOff}}}
	for _, g := range t.Groups {
		rs = append(rs,
			Rule{Chain: c, Comment: own + "out group " + g, Verdict: Verdict{Target: GroupChain(g, "out")}},
			Rule{Chain: c, Mark: GroupMark, Comment: own + "out group " + g + " allowed", Verdict: Verdict{Goto: true, Target: ChainGroupAllowed}})
	}
	return rs
}

// tapIn is the chain for packets to the VM. Allowed packets are ACCEPTed.
func tapIn(t model.Tap, fam *Family, blacklist bool) (Chain, error) {
	c := TapIn(t.Name)
	own := t.Name + ": "
	acc := Verdict{Target: "ACCEPT"}
	var rs []Rule
	if blacklist {
		// Before anything else, established connections included.
		rs = append(rs, Rule{Chain: c, SetSrc: fam.UserSet(model.SetBlacklist), Comment: own + "blacklist", Verdict: Verdict{Target: "DROP"}})
	}
	rs = append(rs, []Rule{
		{Chain: c, CtState: "INVALID", Comment: own + "invalid", Verdict: Verdict{Target: "DROP"}},
		{Chain: c, CtState: "RELATED,ESTABLISHED", Comment: own + "established", Verdict: acc},
	}...)
	if fam.V6 {
		// Conntrack does not track neighbour discovery, so nothing of it
		// is ever established.
		if t.NDP {
			for _, typ := range []string{icmp6RouterSolicit, icmp6RouterAdvert, icmp6NeighSolicit, icmp6NeighAdvert} {
				rs = append(rs, ndp(c, typ, own+"ndp", acc))
			}
		}
		if t.IGMP {
			// Queries, and other members' reports (MLDv1 listeners hold
			// back their own on hearing one), from link-local addresses
			// as MLD requires: conntrack does not track MLD either.
			q := mld(c, icmp6MLDQuery, own+"mld", acc)
			q.Src = linkLocal // a query may be unicast
			rs = append(rs, q)
			for _, typ := range mldListener {
				rs = append(rs, mldFrom(c, typ, own+"mld", acc))
			}
		}
	} else if t.IGMP {
		// Queries, and the reports of other members (IGMPv1 and v2
		// listeners hold back their own on hearing one).
		rs = append(rs, igmp(c, own+"igmp", acc))
	}
	if t.DHCP {
		rs = append(rs, dhcpReplies(c, t, fam, acc)...)
	}
	for _, g := range t.Groups {
		rs = append(rs, Rule{Chain: c, Comment: own + "in group " + g, Verdict: Verdict{Target: GroupChain(g, "in")}})
	}
	return tapChain(t, fam, c, "in", acc, rs)
}

// dhcpReplies let the answers of DHCP servers in, which conntrack cannot
// relate to the request: a client asks from 0.0.0.0 (or, for DHCPv6, from
// its link-local address to a multicast one), and the server answers from
// its own address. A DHCPv4 server answers to the broadcast address or by
// unicast to the address it offers, which with ipFilter on must be one of
// the tap's own; a DHCPv6 server or relay on the link answers from its
// link-local address. With dhcpServers, only those sources.
func dhcpReplies(c string, t model.Tap, fam *Family, v Verdict) []Rule {
	proto := Rule{Chain: c, Proto: "udp", SPort: "67", DPort: "68", Comment: t.Name + ": dhcp reply", Verdict: v}
	if fam.V6 {
		proto.SPort, proto.DPort, proto.Comment = "547", "546", t.Name+": dhcpv6 reply"
	}
	var dsts []Rule
	switch {
	case fam.V6 || !t.IPFilter:
		dsts = []Rule{proto}
	default:
		bcast, own := proto, proto
		bcast.Dst, own.SetDst = broadcast, fam.TapSet(t.Name)
		dsts = []Rule{bcast, own}
	}
	var rs []Rule
	for _, src := range dhcpSources(t, fam) {
		for _, r := range dsts {
			r.Src, r.SetSrc = src.prefix, src.set
			rs = append(rs, r)
		}
	}
	return rs
}

// ruleSrc is a rule's source: a prefix, a set's kernel name, or neither
// (any).
type ruleSrc struct {
	prefix netip.Prefix
	set    string
}

// dhcpSources are the sources DHCP replies of the family may come from.
func dhcpSources(t model.Tap, fam *Family) []ruleSrc {
	if len(t.DHCPServers) == 0 {
		if fam.V6 {
			return []ruleSrc{{prefix: linkLocal}}
		}
		return []ruleSrc{{}}
	}
	var out []ruleSrc
	for _, a := range t.DHCPServers {
		switch {
		case a.Set != "":
			out = append(out, ruleSrc{set: fam.UserSet(a.Set)})
		case a.Family == fam.Name:
			out = append(out, ruleSrc{})
		case a.Prefix.IsValid() && fam.Has(a.Prefix):
			out = append(out, ruleSrc{prefix: a.Prefix})
		}
	}
	return out
}
