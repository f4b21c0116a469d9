package ruleset

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
)

// bridgeChain: from a tap, its OUT chain runs first (anti-spoofing before
// the conntrack shortcut, so a VM cannot forge its way into another's
// connection); then established traffic passes; then the IN chain of the
// tap the packet leaves by.
func bridgeChain(br string) Chain {
	c := BridgeChain(br)
	own := br + ": "
	return Chain{Name: c, Rules: []Rule{
		{Chain: c, Physdev: Physdev{Present: true, IsIn: true, IsBridged: true}, Comment: own + "from port", Verdict: Verdict{Target: TrieIn.Root}},
		{Chain: c, CtState: "RELATED,ESTABLISHED", Comment: own + "established", Verdict: Verdict{Target: "ACCEPT"}},
		{Chain: c, Physdev: Physdev{Present: true, IsOut: true, IsBridged: true}, Comment: own + "to port", Verdict: Verdict{Target: TrieOut.Root}},
		{Chain: c, Comment: own + "default", Verdict: Verdict{Target: "ACCEPT"}},
	}}
}

// forwardRules are the bridge's rules in FORWARD: its bridged packets go
// to its bridge chain; routed ones are dropped or, when the bridge allows
// routing, meet the taps' chains as bridged ones do (routedTails, and the
// bridge's rules in ChainRouted).
func forwardRules(b model.Bridge, fam *Family) []Rule {
	c, own := ChainForward, b.Name+": "
	// A bridged packet's output device is always the bridge, while its
	// input device is the VLAN device on top of it for tagged frames: one
	// jump on -o catches every bridged packet of the bridge.
	rs := []Rule{
		{Chain: c, OutIface: b.Name, Physdev: Physdev{Present: true, IsBridged: true}, Comment: own + "bridged", Verdict: Verdict{Target: BridgeChain(b.Name)}},
	}
	ifaces := BridgeIfaces(b.Name)
	if !b.AllowRouting {
		for _, i := range ifaces {
			rs = append(rs,
				Rule{Chain: c, InIface: i, Comment: own + "no inter-bridge routing", Verdict: Verdict{Target: "DROP"}},
				Rule{Chain: c, OutIface: i, Comment: own + "no inter-bridge routing", Verdict: Verdict{Target: "DROP"}})
		}
		// Explicit, so the choice shows in the ruleset and a bridge that
		// stops routing loses its rules there.
		return append(rs, Rule{Chain: ChainRouted, OutIface: b.Name, Comment: own + "routing off", Verdict: Verdict{Target: "RETURN"}})
	}
	// The port a routed packet leaves by is not known yet when it is
	// routed, so its destination address decides, as for the host's own
	// packets. A DHCP server answers on its client's link, never routed:
	// the taps' DHCP exemptions are for the link only.
	for _, i := range ifaces {
		dhcp := Rule{Chain: ChainRouted, OutIface: i, Proto: "udp", SPort: "67", DPort: "68", Comment: own + "no routed dhcp replies", Verdict: Verdict{Target: "DROP"}}
		if fam.V6 {
			dhcp.SPort, dhcp.DPort = "547", "546"
		}
		rs = append(rs, dhcp,
			Rule{Chain: ChainRouted, OutIface: i, Comment: own + "routed to taps", Verdict: Verdict{Target: fam.TrieHost.Root}})
	}
	return rs
}

// BridgeIfaces are the interfaces a routed packet of bridge br comes in or
// goes out by: the bridge, and the VLAN devices on top of it when they are
// named as Proxmox VE and ifupdown name them ("vmbr0.100", matched as
// "vmbr0.+"), which fit only while the bridge's name leaves room.
func BridgeIfaces(br string) []string {
	if len(br)+1 >= MaxIfName {
		return []string{br}
	}
	return []string{br, br + ".+"}
}

// routedTails are the last rules of FORWARD's chain, after every bridge's
// rules (so after the drops of bridges that do not allow routing, whatever
// order the bridges were added in): a routed packet that came in through
// a bridge port (on the bridge or a VLAN device on top of it) meets that
// port's tap's OUT chain (anti-spoofing, then its rules; a port without
// chains meets its bridge's fail-closed rule), then the rules of the
// bridge it goes out by, which send it to the IN chain of the tap that
// owns its destination.
func routedTails() []Rule {
	return []Rule{
		{Chain: ChainForward, Physdev: Physdev{Present: true, IsIn: true}, Comment: OwnerHooks + ": routed from a port", Verdict: Verdict{Target: TrieIn.Root}},
		hook(ChainForward, "routed", Verdict{Target: ChainRouted}),
	}
}

// unmanagedRules are the bridge's rules for packets of ports that no trie
// leaf matched, in FORWARD (out = the bridge) and INPUT (in = the bridge):
// DROP for ports named like its taps when the bridge fails closed, an
// explicit RETURN otherwise, so the choice shows in the ruleset.
func unmanagedRules(b model.Bridge) []Rule {
	v, what := Verdict{Target: "RETURN"}, "fail open"
	if b.FailClosed {
		v, what = Verdict{Target: "DROP"}, "fail closed"
	}
	prefix := b.ManagedPrefix + "+"
	cin, cout, own := ChainUnmanagedIn, ChainUnmanagedOut, b.Name+": "
	return []Rule{
		{Chain: cin, OutIface: b.Name, Physdev: Physdev{Present: true, In: prefix, IsBridged: true}, Comment: own + "port without chains, " + what, Verdict: v},
		{Chain: cin, InIface: b.Name, Physdev: Physdev{Present: true, In: prefix}, Comment: own + "port without chains, " + what, Verdict: v},
		{Chain: cout, OutIface: b.Name, Physdev: Physdev{Present: true, Out: prefix, IsBridged: true}, Comment: own + "port without chains, " + what, Verdict: v},
	}
}

// DispatchComment is the comment of a tap's rule in its bridge's OUT
// dispatch chain. It records who attached the tap, so DEL and GC can find
// it from the kernel alone; ParseDispatchComment reads it back.
func DispatchComment(t model.Tap) string {
	return fmt.Sprintf("%s: dispatch net=%s cid=%s if=%s", t.Name, dash(t.Network), dash(t.ContainerID), dash(t.IfName))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ParseDispatchComment reads back what DispatchComment wrote.
func ParseDispatchComment(c string) (model.Attachment, bool) {
	f := strings.Fields(c)
	if len(f) != 5 || f[1] != "dispatch" || !strings.HasSuffix(f[0], ":") {
		return model.Attachment{}, false
	}
	a := model.Attachment{Tap: strings.TrimSuffix(f[0], ":")}
	for _, kv := range f[2:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return model.Attachment{}, false
		}
		if v == "-" {
			v = ""
		}
		switch k {
		case "net":
			a.Network = v
		case "cid":
			a.ContainerID = v
		case "if":
			a.IfName = v
		default:
			return model.Attachment{}, false
		}
	}
	return a, true
}

// OutLeafComment is the comment of a tap's leaf in the OUT dispatch trie.
// It records the guest's MAC, when known, so the MAC can be read back from
// the kernel even when no rule matches it (macFilter off).
func OutLeafComment(t model.Tap) string {
	c := t.Name + ": dispatch out"
	if len(t.MAC) == 6 {
		c += " mac=" + t.MAC.String()
	}
	return c
}

// ParseOutLeafComment reads back the tap and MAC ("" when none) that
// OutLeafComment wrote.
func ParseOutLeafComment(c string) (tap, mac string, ok bool) {
	f := strings.Fields(c)
	if len(f) < 3 || len(f) > 4 || f[1] != "dispatch" || f[2] != "out" || !strings.HasSuffix(f[0], ":") {
		return "", "", false
	}
	if len(f) == 4 {
		v, found := strings.CutPrefix(f[3], "mac=")
		if hw, err := net.ParseMAC(v); !found || err != nil || len(hw) != 6 {
			return "", "", false
		}
		mac = v
	}
	return strings.TrimSuffix(f[0], ":"), mac, true
}

// dispatchPaths are the tap's leaves in the tries: by bridge port in (it
// also records who attached the tap), by bridge port out, and by each of
// its addresses for traffic from the host.
func dispatchPaths(t model.Tap, fam *Family, addrs []netip.Prefix) []Path {
	ps := []Path{
		TrieIn.PathFor(t.Name, TapOut(t.Name), DispatchComment(t)),
		TrieOut.PathFor(t.Name, TapIn(t.Name), OutLeafComment(t)),
	}
	for _, ip := range addrs {
		ps = append(ps, HostPath(fam, t.Name, ip))
	}
	return ps
}

// HostPath is the way from the host to tap for its address ip.
func HostPath(fam *Family, tap string, ip netip.Prefix) Path {
	return fam.TrieHost.PathFor(fam.HostKey(ip), TapIn(tap), tap+": from host "+ip.String())
}
