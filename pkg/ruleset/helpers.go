package ruleset

import (
	"fmt"
	"strings"
)

// Conntrack helpers: a tap with "helpers": ["ftp"] gets the kernel's FTP
// helper on its control connections, so the data connections it opens
// (or is asked to open) are RELATED and pass the tap's chains as its
// established traffic does. The helper is attached in table inet
// tapfw-helpers, which both backends install with the layer-2 table: a
// bridged packet (br_netfilter) meets inet prerouting after conntrack,
// and a chain there attaches a connection's helper on its first packet,
// by the tap's addresses (no inet hook sees the bridge port). A tap's
// addresses are elements of the helper's sets, recorded in its record
// chain like its layer-2 elements.

// HelperTable is the helpers' table (family inet); HelperChain its
// chain.
const (
	HelperTable = "tapfw-helpers"
	HelperChain = "tfw-helpers"
)

// Helper is one conntrack helper a tap may use: its kernel name and the
// protocols and ports of its control connections (one ct helper object
// each).
type Helper struct {
	Name  string
	Ports []HelperPort
}

// HelperPort is a control connection's protocol and server port.
type HelperPort struct {
	Proto string
	Port  int
}

// Object is the ct helper object of the port: "ftp-tcp".
func (h Helper) Object(p HelperPort) string { return h.Name + "-" + p.Proto }

// Helpers are the helpers a tap may name.
var Helpers = []Helper{
	{"ftp", []HelperPort{{"tcp", 21}}},
	{"tftp", []HelperPort{{"udp", 69}}},
	{"sip", []HelperPort{{"udp", 5060}, {"tcp", 5060}}},
}

// HelperSet is the set of the addresses of the taps with helper h, in
// family 4 or 6.
func HelperSet(h string, family int) string { return fmt.Sprintf("tfw-%s%d", h, family) }

// HelperChains are the helpers' table's chains: HelperChain, then one
// per ct helper object, which HelperChain sends a new connection to by
// its protocol and port.
func HelperChains() []string {
	out := []string{HelperChain}
	for _, h := range Helpers {
		for _, p := range h.Ports {
			out = append(out, "tfw-hlp-"+h.Object(p))
		}
	}
	return out
}

// HelperRules are the rules of the helpers' chains: nothing but a
// connection's first packet goes on, by one lookup of its protocol and
// port to the chain of that helper; there one to or from a tap with the
// helper gets it.
func HelperRules() []L2Rule {
	o := OwnerHooks + ": "
	var jumps []string
	var rs []L2Rule
	for _, h := range Helpers {
		for _, p := range h.Ports {
			ch := "tfw-hlp-" + h.Object(p)
			jumps = append(jumps, fmt.Sprintf("%s . %d : jump %s", p.Proto, p.Port, ch))
			for _, f := range []struct {
				n    int
				word string
			}{{4, "ip"}, {6, "ip6"}} {
				for _, dir := range []string{"daddr", "saddr"} {
					rs = append(rs, L2Rule{ch, fmt.Sprintf("%s %s @%s ct helper set %q", f.word, dir, HelperSet(h.Name, f.n), h.Object(p)), o + h.Name + " helper"})
				}
			}
		}
	}
	return append([]L2Rule{
		{HelperChain, "ct state != new accept", o + "not a new connection"},
		{HelperChain, "meta l4proto . th dport vmap { " + strings.Join(jumps, ", ") + " }", o + "a helper's port"},
	}, rs...)
}

// helperSkeleton is the helpers' part of L2Skeleton: the table, its ct
// helper objects and sets, and its chains' rules.
func helperSkeleton(b *strings.Builder) {
	tb := "inet " + HelperTable
	fmt.Fprintf(b, "add table %s\n", tb)
	for _, h := range Helpers {
		for _, p := range h.Ports {
			fmt.Fprintf(b, "add ct helper %s %s { type %q protocol %s ; }\n", tb, h.Object(p), h.Name, p.Proto)
		}
		fmt.Fprintf(b, "add set %s %s { type ipv4_addr ; }\n", tb, HelperSet(h.Name, 4))
		fmt.Fprintf(b, "add set %s %s { type ipv6_addr ; }\n", tb, HelperSet(h.Name, 6))
	}
	chains := HelperChains()
	for _, ch := range chains[1:] {
		fmt.Fprintf(b, "add chain %s %s\nflush chain %s %s\n", tb, ch, tb, ch)
	}
	fmt.Fprintf(b, "add chain %s %s { type filter hook prerouting priority filter ; policy accept ; }\n", tb, HelperChain)
	fmt.Fprintf(b, "flush chain %s %s\n", tb, HelperChain)
	for _, ch := range chains {
		for _, r := range HelperRules() {
			if r.Chain == ch {
				fmt.Fprintf(b, "add rule %s %s %s comment \"%s\"\n", tb, ch, r.Expr, r.InstalledComment())
			}
		}
	}
}
