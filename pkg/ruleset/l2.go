package ruleset

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
)

// Layer 2: what a VM sends is checked again in the nftables bridge family,
// in table "bridge tapfw", before the bridge forwards or delivers a frame.
// iptables sees only IP packets; the bridge family sees every frame, so it
// is where ARP, neighbour discovery, router advertisements and the source
// MAC of any protocol are checked.
//
// The table holds one chain of static rules and sets keyed by tap name
// ("tap110i0" . 02:00:00:00:01:10): a frame costs a few set lookups
// whatever the number of taps, and adding or removing a tap changes set
// elements only, never a rule, so no commit re-validates the table. (A
// verdict map with a chain per tap was measured first: with 4000 taps one
// element add took 18 s, the kernel validating every chain of the map.)
const (
	L2Family = "bridge"
	L2Table  = "tapfw"
	L2Pre    = "tfw-pre"
	// The chains tfw-pre sends a frame to by its ethertype, so a frame
	// meets only its own protocol's checks.
	L2PreARP = "tfw-pre-arp"
	L2PreIP6 = "tfw-pre-ip6"
	// The chains of taps with allowed pairs: tfw-pre-pairs for all their
	// frames, tfw-pre-pmac for those from a pair's MAC.
	L2PrePairs = "tfw-pre-pairs"
	L2PrePMAC  = "tfw-pre-pmac"
	// L2PreExtra is where a tap with an ethertype allowlist or allowed
	// pairs goes, through L2Extra: one lookup for the taps with neither.
	L2PreExtra = "tfw-pre-extra"
	L2Extra    = "tfw-extra" // ifname : verdict: jump L2PreExtra

	L2Taps   = "tfw-taps"   // ifname: every tap with checks
	L2MACF   = "tfw-macf"   // ifname: taps with macFilter
	L2IPF    = "tfw-ipf"    // ifname: taps with ipFilter
	L2NDPOff = "tfw-ndpoff" // ifname: taps with ndp off
	L2RAdv   = "tfw-radv"   // ifname: taps allowed to send router advertisements
	L2Proto  = "tfw-l2p"    // ifname: taps with an ethertype allowlist
	L2Types  = "tfw-etypes" // ifname . ether_type: their allowed ethertypes
	L2Pairs  = "tfw-pairs"  // ifname: taps with allowed pairs of another MAC
	L2PMAC   = "tfw-pmac"   // ifname . ether_addr: the pairs' MACs
	L2Pair4  = "tfw-pair4"  // ifname . ether_addr . ipv4_addr: the pairs
	L2Pair6  = "tfw-pair6"  // ifname . ether_addr . ipv6_addr
	L2PIP4   = "tfw-pip4"   // ifname . ipv4_addr: the pairs' addresses
	L2PIP6   = "tfw-pip6"   // ifname . ipv6_addr
	L2MAC    = "tfw-mac"    // ifname . ether_addr
	L2IP4    = "tfw-ip4"    // ifname . ipv4_addr: addresses
	L2IP6    = "tfw-ip6"    // ifname . ipv6_addr: addresses
	L2ND     = "tfw-nd"     // ifname . 128-bit number (ND target): addresses
	// The same for networks, in interval sets. Interval sets of
	// concatenations (pipapo) rebuild their lookup table at every commit,
	// so only networks, which few taps have, go there: addresses stay in
	// hash sets, whose changes cost the same at any size.
	L2IP4Net = "tfw-ip4n"
	L2IP6Net = "tfw-ip6n"
	L2NDNet  = "tfw-ndn"
)

// L2AddrSet is the shared set p goes in: the address set or, for a
// network, its interval set.
func L2AddrSet(set string, p netip.Prefix) string {
	if p.IsSingleIP() {
		return set
	}
	return map[string]string{L2IP4: L2IP4Net, L2IP6: L2IP6Net, L2ND: L2NDNet}[set]
}

// L2 flags: the tap's membership in the flag sets.
const (
	FlagMAC    = "macf"
	FlagIP     = "ipf"
	FlagNDPOff = "ndpoff"
	FlagRAdv   = "radv"
	FlagL2P    = "l2p"
	FlagPairs  = "pairs"
)

// L2FlagSet is the set a flag puts the tap in.
func L2FlagSet(flag string) string {
	return map[string]string{FlagMAC: L2MACF, FlagIP: L2IPF, FlagNDPOff: L2NDPOff, FlagRAdv: L2RAdv, FlagL2P: L2Proto, FlagPairs: L2Pairs}[flag]
}

// L2Flags lists every flag.
var L2Flags = []string{FlagMAC, FlagIP, FlagNDPOff, FlagRAdv, FlagL2P, FlagPairs}

// RecordChain is the tap's record: a chain no rule jumps to, whose rules
// carry in their comments what the tap put in the shared sets and maps,
// so a later call takes exactly that out without reading the shared sets.
// A chain is found by name through a hash table (a set by walking the
// table's list of sets), and an unreachable rule without expressions
// costs no commit a validation.
func RecordChain(tap string) string { return "tfw-r-" + tap }

// L2Tap is what one tap puts in the shared sets.
type L2Tap struct {
	Tap   string
	MAC   net.HardwareAddr // with macFilter only
	Flags []string
	IP4   []netip.Prefix // with ipFilter only
	IP6   []netip.Prefix // with ipFilter only; its link-local address included
	// EtherTypes, with FlagL2P, are the only ethertypes its frames may
	// have.
	EtherTypes []uint16
	// Pairs, with FlagPairs, are the MAC and address pairs of another MAC
	// than the tap's that its frames may have (allowedPairs).
	Pairs []L2Pair
	// Helpers are the conntrack helpers its connections get; its
	// addresses (IP4, IP6) are in each helper's sets.
	Helpers []string
}

// L2Pair is one allowed pair: a MAC and one address.
type L2Pair struct {
	MAC net.HardwareAddr
	IP  netip.Addr
}

// L2Rule is one static rule of a chain, with a comment whose installed
// form ends in a hash of the rule.
type L2Rule struct {
	Chain   string
	Expr    string
	Comment string
}

// InstalledComment is the comment as installed: text, " #", 8 hex digits.
func (r L2Rule) InstalledComment() string {
	sum := sha256.Sum256([]byte(r.Expr + "\x00" + r.Comment))
	return r.Comment + " #" + hex.EncodeToString(sum[:4])
}

// L2Chains are the layer-2 chains, those tfw-pre jumps to first.
var L2Chains = []string{L2PreARP, L2PreIP6, L2PrePMAC, L2PrePairs, L2PreExtra, L2Pre}

// L2Rules are the static rules of the layer-2 chains, in order per chain.
// Every frame from a tap meets the MAC check; an ARP frame then meets the
// ARP checks, an IPv6 packet the IPv6 and neighbour discovery checks, an
// IPv4 packet nothing more.
func L2Rules() []L2Rule {
	o := OwnerHooks + ": "
	return []L2Rule{
		{L2PreARP, "iifname @" + L2MACF + " iifname . arp saddr ether != @" + L2MAC + " drop", o + "arp sender mac"},
		{L2PreARP, "iifname @" + L2IPF + " arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @" + L2IP4 + " iifname . arp saddr ip != @" + L2IP4Net + " drop", o + "arp sender ip"},
		{L2PreIP6, "iifname @" + L2IPF + " ip6 saddr != :: iifname . ip6 saddr != @" + L2IP6 + " iifname . ip6 saddr != @" + L2IP6Net + " drop", o + "ipv6 anti-spoof"},
		{L2PreIP6, "iifname @" + L2NDPOff + " icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } drop", o + "no neighbour discovery"},
		{L2PreIP6, "iifname @" + L2IPF + " icmpv6 type nd-neighbor-advert iifname . @th,64,128 != @" + L2ND + " iifname . @th,64,128 != @" + L2NDNet + " drop", o + "nd target anti-spoof"},
		{L2PreIP6, "iifname != @" + L2RAdv + " icmpv6 type { nd-router-advert, nd-redirect } drop", o + "no router advertisements"},
		{L2PreIP6, "udp sport 547 udp dport 546 drop", o + "no dhcpv6 server"},
		// A frame from an allowed pair's MAC carries that pair's address,
		// or it stays here; the guest's own MAC never carries a pair's.
		{L2PrePMAC, "iifname != @" + L2RAdv + " icmpv6 type { nd-router-advert, nd-redirect } drop", o + "no router advertisements"},
		{L2PrePMAC, "udp sport 547 udp dport 546 drop", o + "no dhcpv6 server"},
		{L2PrePMAC, "iifname . arp saddr ether . arp saddr ip @" + L2Pair4 + " accept", o + "pair arp"},
		{L2PrePMAC, "iifname . ether saddr . ip saddr @" + L2Pair4 + " accept", o + "pair ipv4"},
		{L2PrePMAC, "iifname . ether saddr . ip6 saddr @" + L2Pair6 + " accept", o + "pair ipv6"},
		{L2PrePMAC, "drop", o + "not the pair's address"},
		{L2PrePairs, "iifname . ether saddr @" + L2PMAC + " jump " + L2PrePMAC, o + "from a pair's mac"},
		{L2PrePairs, "iifname . arp saddr ether @" + L2PMAC + " drop", o + "pair mac from the guest's own"},
		{L2PrePairs, "iifname . arp saddr ip @" + L2PIP4 + " drop", o + "pair address from the guest's own mac"},
		{L2PrePairs, "iifname . ip saddr @" + L2PIP4 + " drop", o + "pair address from the guest's own mac"},
		{L2PrePairs, "iifname . ip6 saddr @" + L2PIP6 + " drop", o + "pair address from the guest's own mac"},
		{L2Pre, "iifname != @" + L2Taps + " accept", o + "not a tap with checks"},
		{L2Pre, "ether type 8021ad drop", o + "no 802.1ad frames"},
		{L2Pre, "vlan type 8021q drop", o + "no double-tagged frames"},
		{L2PreExtra, "iifname @" + L2Proto + " iifname . ether type != @" + L2Types + " drop", o + "ethertype not allowed"},
		{L2PreExtra, "iifname @" + L2Pairs + " jump " + L2PrePairs, o + "allowed pairs"},
		{L2Pre, "iifname @" + L2MACF + " iifname . ether saddr != @" + L2MAC + " drop", o + "mac anti-spoof"},
		{L2Pre, "iifname vmap @" + L2Extra, o + "ethertypes and pairs"},
		{L2Pre, "ether type vmap { arp : jump " + L2PreARP + ", ip6 : jump " + L2PreIP6 + " }", o + "by protocol"},
	}
}

// L2Skeleton is the nft -f transaction that makes the table, its sets and
// its chain exist and sets the chain's rules. It leaves set elements alone.
func L2Skeleton() string {
	var b strings.Builder
	tb := L2Family + " " + L2Table
	fmt.Fprintf(&b, "add table %s\n", tb)
	for _, s := range []struct{ name, def string }{
		{L2Taps, "type ifname ;"}, {L2MACF, "type ifname ;"}, {L2IPF, "type ifname ;"},
		{L2NDPOff, "type ifname ;"}, {L2RAdv, "type ifname ;"}, {L2Proto, "type ifname ;"},
		{L2Types, "type ifname . ether_type ;"},
		{L2Pairs, "type ifname ;"}, {L2PMAC, "type ifname . ether_addr ;"},
		{L2Pair4, "type ifname . ether_addr . ipv4_addr ;"}, {L2Pair6, "type ifname . ether_addr . ipv6_addr ;"},
		{L2PIP4, "type ifname . ipv4_addr ;"}, {L2PIP6, "type ifname . ipv6_addr ;"},
		{L2MAC, "type ifname . ether_addr ;"},
		{L2IP4, "type ifname . ipv4_addr ;"},
		{L2IP6, "type ifname . ipv6_addr ;"},
		{L2ND, "typeof iifname . @th,64,128 ;"},
		{L2IP4Net, "type ifname . ipv4_addr ; flags interval ;"},
		{L2IP6Net, "type ifname . ipv6_addr ; flags interval ;"},
		{L2NDNet, "typeof iifname . @th,64,128 ; flags interval ;"},
	} {
		fmt.Fprintf(&b, "add set %s %s { %s }\n", tb, s.name, s.def)
	}
	fmt.Fprintf(&b, "add map %s %s { type ifname : verdict ; }\n", tb, L2Extra)
	for _, ch := range L2Chains {
		if ch == L2Pre {
			fmt.Fprintf(&b, "add chain %s %s { type filter hook prerouting priority -200 ; policy accept ; }\n", tb, ch)
		} else {
			fmt.Fprintf(&b, "add chain %s %s\n", tb, ch)
		}
		fmt.Fprintf(&b, "flush chain %s %s\n", tb, ch)
		for _, r := range L2Rules() {
			if r.Chain == ch {
				fmt.Fprintf(&b, "add rule %s %s %s comment \"%s\"\n", tb, ch, r.Expr, r.InstalledComment())
			}
		}
	}
	helperSkeleton(&b)
	return b.String()
}

// String is the pair as records and messages write it: "MAC IP".
func (p L2Pair) String() string { return p.MAC.String() + " " + p.IP.String() }

// SortPairs puts pairs in their record's order: by MAC, then address.
func SortPairs(ps []L2Pair) {
	slices.SortFunc(ps, func(a, b L2Pair) int {
		if c := strings.Compare(a.MAC.String(), b.MAC.String()); c != 0 {
			return c
		}
		return a.IP.Compare(b.IP)
	})
}

// EtherTypeString is an ethertype as a record line and messages write it:
// 0x0800.
func EtherTypeString(e uint16) string { return fmt.Sprintf("0x%04x", e) }

// LinkLocal is the EUI-64 link-local address a MAC gives (RFC 4291).
func LinkLocal(mac net.HardwareAddr) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	b[8], b[9], b[10] = mac[0]^2, mac[1], mac[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(b)
}

// LastAddr is the last address of p.
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= p.Bits() {
				b[i] |= 0x80 >> j
			}
		}
	}
	out, _ := netip.AddrFromSlice(b)
	return out
}

// BuildL2 works out what the tap puts in the shared sets. The config must
// be validated; the name is checked again.
func BuildL2(c model.Config) (*L2Tap, error) {
	t := c.Tap
	if err := model.ValidateIfName(t.Name); err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	if t.MACFilter && len(t.MAC) != 6 {
		return nil, fmt.Errorf("mac: required when macFilter is on")
	}
	p := &L2Tap{Tap: t.Name}
	if t.MACFilter {
		p.MAC = t.MAC
		p.Flags = append(p.Flags, FlagMAC)
	}
	if t.IPFilter {
		p.Flags = append(p.Flags, FlagIP)
		p.IP4 = sortedPrefixes(t.IPs)
		six := append([]netip.Prefix(nil), t.IPs6...)
		if len(t.MAC) == 6 {
			six = append(six, netip.PrefixFrom(LinkLocal(t.MAC), 128))
		}
		p.IP6 = sortedPrefixes(six)
	}
	if !t.NDP {
		p.Flags = append(p.Flags, FlagNDPOff)
	}
	if t.RAdv {
		p.Flags = append(p.Flags, FlagRAdv)
	}
	if len(t.Pairs) > 0 {
		p.Flags = append(p.Flags, FlagPairs)
		for _, pr := range t.Pairs {
			for _, ip := range pr.IPs {
				p.Pairs = append(p.Pairs, L2Pair{MAC: pr.MAC, IP: ip})
			}
		}
		SortPairs(p.Pairs)
	}
	if len(t.Helpers) > 0 {
		if !t.IPFilter {
			return nil, fmt.Errorf("helpers: need ipFilter (a helper is attached by the tap's addresses)")
		}
		p.Helpers = slices.Sorted(slices.Values(t.Helpers))
	}
	if len(t.L2Protocols) > 0 {
		p.Flags = append(p.Flags, FlagL2P)
		p.EtherTypes = slices.Sorted(slices.Values(t.L2Protocols))
	}
	return p, nil
}

// String renders what the tap puts in the sets, for golden files and
// messages.
func (p *L2Tap) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tap %s\n", p.Tap)
	fmt.Fprintf(&b, "flags %s\n", strings.Join(p.Flags, " "))
	if p.MAC != nil {
		fmt.Fprintf(&b, "mac %s\n", p.MAC)
	}
	for _, x := range p.IP4 {
		fmt.Fprintf(&b, "ip4 %s\n", x)
	}
	for _, x := range p.IP6 {
		fmt.Fprintf(&b, "ip6 %s\n", x)
	}
	for _, e := range p.EtherTypes {
		fmt.Fprintf(&b, "etype %s\n", EtherTypeString(e))
	}
	for _, x := range p.Pairs {
		fmt.Fprintf(&b, "pair %s\n", x)
	}
	for _, h := range p.Helpers {
		fmt.Fprintf(&b, "helper %s\n", h)
	}
	return b.String()
}
