package nft

import (
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// A bridge's own rules live in shared chains, one group per bridge (the
// comments start with its name): a call replaces its bridge's group when
// it differs and leaves the other bridges' alone.
const (
	// ChainUnmanagedOut and ChainUnmanagedIn (bridge table) drop the
	// packets of ports named like a fail-closed bridge's taps that have no
	// chains: their ADD failed, was killed or has not run yet.
	ChainUnmanagedOut = "tfw-unmanaged-out"
	ChainUnmanagedIn  = "tfw-unmanaged-in"
	// ChainRouted (inet table) holds what each bridge says of routed
	// packets: none, when it does not allow routing, or no DHCP replies.
	ChainRouted = "tfw-routed"
	// SetBridged (inet table) holds "bridge . bridge" for each bridge
	// whose name no VLAN device pattern can match: a packet the bridge
	// forwards meets the inet forward hook with that bridge as both its
	// devices, and none of ChainRouted's rules can drop it (they drop a
	// packet with another device on one side, or one by a VLAN device
	// "<bridge>.*"), so it skips the chain in one lookup. Without its
	// element a bridge's packets walk the chain, with the same verdict.
	SetBridged = "tfw-bridged"
	// SetPorts holds the name of every port that has a tap's chains.
	SetPorts = "tfw-ports"
	// SetDropIn and SetDropOut hold every tap's port with a counter: each
	// DROP or REJECT of a tap's chains (and the groups they jump to) looks
	// the port up, so a port's element counts what its chains dropped in
	// that direction, and the dispatch maps' elements what they saw.
	SetDropIn  = "tfw-drop-in"
	SetDropOut = "tfw-drop-out"
)

// Member is one owner's rules in a shared chain.
type Member struct {
	Table, Chain, Owner string
	Rules               []Rule
}

// bridgeMembers are bridge b's rules in the shared chains. Without meta
// ibrname (this kernel lacks it) a rule cannot name the bridge a port is
// in: a fail-closed bridge's rule holds for ports of its prefix on every
// bridge.
func bridgeMembers(b model.Bridge) []Member {
	own := b.Name + ": "
	out := Member{Table: "bridge", Chain: ChainUnmanagedOut, Owner: b.Name}
	in := Member{Table: "bridge", Chain: ChainUnmanagedIn, Owner: b.Name}
	if b.FailClosed {
		for _, m := range []*Member{&out, &in} {
			word := "iifname"
			if m == &in {
				word = "oifname"
			}
			r := &builder{}
			r.iface(word, b.ManagedPrefix+"*", false)
			r.ifaceSet(word, SetPorts, true)
			r.counter()
			r.verdict(expr.VerdictDrop, "")
			m.Rules = []Rule{r.rule(m.Chain, own+"port without chains, fail closed")}
		}
	}
	routed := Member{Table: "inet", Chain: ChainRouted, Owner: b.Name, Rules: routedRules(b)}
	return []Member{out, in, routed}
}

// routedRules: a bridged packet meets the inet forward hook too (through
// br_netfilter), with the bridge as both its devices, or a VLAN device on
// top of the bridge as its input; a routed packet has another device on
// one side.
func routedRules(b model.Bridge) []Rule {
	own := b.Name + ": "
	ifaces := ruleset.BridgeIfaces(b.Name)
	vlan := ""
	if len(ifaces) > 1 {
		vlan = strings.TrimSuffix(ifaces[1], "+") + "*"
	}
	// Routed out by the bridge, and out by a VLAN device on top of it.
	outBr := func(b2 *builder) {
		b2.iface("oifname", b.Name, false)
		b2.iface("iifname", b.Name, true)
		if vlan != "" {
			b2.iface("iifname", vlan, true)
		}
	}
	outVLAN := func(b2 *builder) { b2.iface("oifname", vlan, false) }
	var rs []Rule
	add := func(match func(*builder), extra func(*builder), comment string) {
		r := &builder{}
		match(r)
		if extra != nil {
			extra(r)
		}
		r.counter()
		r.verdict(expr.VerdictDrop, "")
		rs = append(rs, r.rule(ChainRouted, own+comment))
	}
	outs := []func(*builder){outBr}
	if vlan != "" {
		outs = append(outs, outVLAN)
	}
	if b.AllowRouting {
		// A DHCP server answers on its client's link, never routed.
		for _, o := range outs {
			add(o, dhcpReply(IPv4), "no routed dhcp replies")
			add(o, dhcpReply(IPv6), "no routed dhcp replies")
		}
		return rs
	}
	ins := []string{b.Name}
	if vlan != "" {
		ins = append(ins, vlan)
	}
	for _, o := range outs {
		add(o, nil, "no inter-bridge routing")
	}
	for _, i := range ins {
		add(func(r *builder) { r.iface("iifname", i, false); r.iface("oifname", b.Name, true) }, nil, "no inter-bridge routing")
	}
	return rs
}

// bridgedKey is b's element of SetBridged, if its packets may skip
// ChainRouted: a name with a dot might be a VLAN device of another
// bridge, whose rules drop what it routes.
func bridgedKey(bridge string) ([]byte, bool) {
	if bridge == "" || strings.Contains(bridge, ".") {
		return nil, false
	}
	return append(ifKey(bridge), ifKey(bridge)...), true
}

var bridgedSet = &nftables.Set{Table: inetTable, Name: SetBridged, KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIFName), Concatenation: true}

// bridged adds the bridge's element of SetBridged where it is missing.
func (tx *txn) bridged(b string) error {
	key, ok := bridgedKey(b)
	if !ok {
		return nil
	}
	tx.note("add element inet %s %s { %q . %q } (where missing)", Table, SetBridged, b, b)
	if err := tx.c.SetAddElements(bridgedSet, []nftables.SetElement{{Key: key}}); err != nil {
		return fmt.Errorf("set %s: %w", SetBridged, err)
	}
	return nil
}

func dhcpReply(f Family) func(*builder) {
	return func(r *builder) {
		r.nfproto(f)
		_ = r.l4proto("udp")
		s, d := uint16(67), uint16(68)
		if f == IPv6 {
			s, d = 547, 546
		}
		r.add(portPairText(s, d), load(expr.PayloadBaseTransportHeader, 0, 4), eq(append(be16(s), be16(d)...)))
	}
}

func portPairText(s, d uint16) string { return fmt.Sprintf("udp sport %d udp dport %d", s, d) }
