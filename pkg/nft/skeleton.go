package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// StaticRule is one rule of the skeleton, with a comment whose installed
// form ends in a hash of the rule and the marks, so a call sees at once
// whether the skeleton is the one it would write.
type StaticRule struct {
	Family, Chain, Expr, Comment string
}

// InstalledComment is the comment as installed: text, " #", 8 hex digits.
func (r StaticRule) InstalledComment() string {
	sum := sha256.Sum256([]byte(r.Family + "\x00" + r.Chain + "\x00" + r.Expr + "\x00" + r.Comment))
	return r.Comment + " #" + hex.EncodeToString(sum[:4])
}

// StaticChain is a base chain of the skeleton.
type StaticChain struct {
	Family, Name, Hook string
	Priority           int
}

// StaticChains are the skeleton's chains. The bridge chains run after
// br_netfilter has run the inet prerouting chains (so the marks are set:
// prerouting at 200, after br_netfilter's 0; forward and output come
// later anyway) and before its forward hook runs the inet forward chains
// (which answer the rejects). The inet mark chains run after conntrack.
var StaticChains = []StaticChain{
	{"inet", ChainCtPre, "prerouting", -150},
	{"inet", ChainCtOut, "output", -150},
	{"inet", ChainRejectFwd, "forward", 0},
	{"inet", ChainInput, "input", 0},
	{"inet", ChainOutput, "output", 0},
	{"inet", HostChain("in", IPv4), "", 0},
	{"inet", HostChain("out", IPv4), "", 0},
	{"inet", HostChain("in", IPv6), "", 0},
	{"inet", HostChain("out", IPv6), "", 0},
	{"bridge", ChainFromPort, "prerouting", 200},
	{"bridge", ChainForward, "forward", -200},
	{"bridge", ChainLocalOut, "output", -200},
	{"bridge", ChainRejected, "", 0},
	{"bridge", ChainUnmanagedOut, "", 0},
	{"bridge", ChainUnmanagedIn, "", 0},
	{"bridge", ChainAnchor, "", 0},
	{"inet", ChainRouted, "", 0},
}

// Static says whether the skeleton holds the chain's rules; the host
// chains are made empty and the config's host section fills them.
func (c StaticChain) Static() bool { return c.Hook != "" || c.Name == ChainRejected }

// Members says whether bridges keep their own rules in the chain.
func (c StaticChain) Members() bool {
	return c.Name == ChainUnmanagedOut || c.Name == ChainUnmanagedIn || c.Name == ChainRouted
}

// StaticRules are the skeleton's rules, in order per chain.
func StaticRules(m Marks) []StaticRule {
	o := ruleset.OwnerHooks + ": "
	marks := func(chain string) []StaticRule {
		return []StaticRule{
			{"inet", chain, fmt.Sprintf("meta mark set meta mark & %#08x", ^m.All()), o + "clear tapfw's mark bits"},
			{"inet", chain, fmt.Sprintf("ct state established,related meta mark set meta mark | %#08x", m.Established), o + "established"},
			{"inet", chain, fmt.Sprintf("ct state invalid meta mark set meta mark | %#08x", m.Invalid), o + "invalid"},
		}
	}
	rejects := func(chain string) []StaticRule {
		return []StaticRule{
			{"inet", chain, fmt.Sprintf("meta mark & %#08x == %#08x meta l4proto tcp reject with tcp reset", m.RejectTCP, m.RejectTCP), o + "reject with tcp reset"},
			{"inet", chain, fmt.Sprintf("meta mark & %#08x != 0 reject with icmpx port-unreachable", m.Rejects()), o + "reject"},
		}
	}
	var rs []StaticRule
	rs = append(rs, marks(ChainCtPre)...)
	rs = append(rs, marks(ChainCtOut)...)
	rs = append(rs, rejects(ChainRejectFwd)...)
	rs = append(rs, StaticRule{"inet", ChainRejectFwd, "iifname . oifname != @" + SetBridged + " jump " + ChainRouted, o + "routed"})
	// The host firewall, as the iptables backend's INPUT and OUTPUT
	// chains: what a tap's chain rejected, then established, then the
	// host's own addresses to its chains (a packet from a tap has met
	// the tap's OUT chain in the bridge table already). Loopback is the
	// host talking to itself: not the host firewall's to filter.
	rs = append(rs, rejects(ChainInput)...)
	est := "ct state established,related accept"
	rs = append(rs,
		StaticRule{"inet", ChainInput, est, o + "established"},
		StaticRule{"inet", ChainInput, `iifname != "lo" ip daddr @` + HostSet(IPv4) + " jump " + HostChain("in", IPv4), o + "to host"},
		StaticRule{"inet", ChainInput, `iifname != "lo" ip6 daddr @` + HostSet(IPv6) + " jump " + HostChain("in", IPv6), o + "to host"},
		StaticRule{"inet", ChainOutput, est, o + "established"},
		StaticRule{"inet", ChainOutput, `oifname != "lo" ip saddr @` + HostSet(IPv4) + " jump " + HostChain("out", IPv4), o + "from host"},
		StaticRule{"inet", ChainOutput, `oifname != "lo" ip6 saddr @` + HostSet(IPv6) + " jump " + HostChain("out", IPv6), o + "from host"},
	)
	out := "meta protocol . iifname vmap @" + MapOut
	in := "meta protocol . oifname vmap @" + MapIn
	// A port without a tap's element falls through its map to the
	// bridges' fail-closed rules.
	uout, uin := "jump "+ChainUnmanagedOut, "jump "+ChainUnmanagedIn
	rs = append(rs,
		StaticRule{"bridge", ChainFromPort, out, o + "from a tap"},
		StaticRule{"bridge", ChainFromPort, uout, o + "from a port without chains"},
		// A packet a tap's OUT chain rejected skips the receiver's IN
		// chain (whose drop would swallow the answer) for the inet
		// forward chain that rejects it, as the iptables backend's REJECT
		// answers before the receiver's chain is met.
		StaticRule{"bridge", ChainForward, fmt.Sprintf("meta mark & %#08x != 0 accept", m.Rejects()), o + "rejected: answered by the inet chains"},
		StaticRule{"bridge", ChainForward, in, o + "to a tap"},
		StaticRule{"bridge", ChainForward, uin, o + "to a port without chains"},
		StaticRule{"bridge", ChainLocalOut, in, o + "to a tap"},
		StaticRule{"bridge", ChainLocalOut, uin, o + "to a port without chains"},
		// Only a packet that came in by a port has an input device (an
		// ethernet one); for any other the match cannot be made and the
		// next rule drops it.
		StaticRule{"bridge", ChainRejected, "meta iiftype ether accept", o + "rejected: answered by the inet chains"},
		StaticRule{"bridge", ChainRejected, "drop", o + "rejected: the host's own"},
	)
	return rs
}

// Skeleton is the nft -f transaction that makes both tables, their
// chains and maps and the layer-2 skeleton exist, and sets the static
// chains' rules, then each table's version rule. It leaves map and set
// elements, the profiles and the taps' chains alone.
func Skeleton(m Marks) string {
	body := skeletonBody(m)
	var b strings.Builder
	b.WriteString(body)
	for _, fam := range []string{"bridge", "inet"} {
		fmt.Fprintf(&b, "add chain %s %s %s\nflush chain %s %s %s\n", fam, Table, ChainVersion, fam, Table, ChainVersion)
		fmt.Fprintf(&b, "add rule %s %s %s counter comment %q\n", fam, Table, ChainVersion, versionComment(body, m))
	}
	return b.String()
}

// versionComment is the comment of the version rule of a skeleton: a
// hash of everything else it makes, and the mark bits it uses.
func versionComment(body string, m Marks) string {
	sum := sha256.Sum256([]byte(body))
	return fmt.Sprintf("skeleton %s marks %#08x", hex.EncodeToString(sum[:8]), m.All())
}

// versionMarks reads the mark bits from a version rule's comment.
func versionMarks(comment string) (uint32, bool) {
	_, v, ok := strings.Cut(comment, " marks ")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 0, 32)
	return uint32(n), err == nil
}

func skeletonBody(m Marks) string {
	var b strings.Builder
	b.WriteString(ruleset.L2Skeleton())
	fmt.Fprintf(&b, "add table inet %s\n", Table)
	for _, f := range []Family{IPv4, IPv6} {
		for _, name := range []string{HostSet(f), ClusterSet(f)} {
			fmt.Fprintf(&b, "add set inet %s %s { type %s ; flags interval ; }\n", Table, name, f.addrType())
		}
	}
	for _, f := range []Family{IPv4, IPv6} {
		fmt.Fprintf(&b, "add set inet %s %s { type %s ; size 65536 ; flags dynamic,timeout ; timeout %s ; }\n", Table, SynSet(f), f.addrType(), SynSetTimeout)
	}
	for _, name := range []string{MapOut, MapIn} {
		fmt.Fprintf(&b, "add map bridge %s %s { type ether_type . ifname : verdict ; counter ; }\n", Table, name)
	}
	fmt.Fprintf(&b, "add set inet %s %s { type ifname . ifname ; }\n", Table, SetBridged)
	fmt.Fprintf(&b, "add set bridge %s %s { type ifname ; }\n", Table, SetPorts)
	for _, name := range []string{SetDropIn, SetDropOut} {
		fmt.Fprintf(&b, "add set bridge %s %s { type ifname ; counter ; }\n", Table, name)
	}
	for _, c := range StaticChains {
		if c.Hook == "" {
			fmt.Fprintf(&b, "add chain %s %s %s\n", c.Family, Table, c.Name)
		} else {
			fmt.Fprintf(&b, "add chain %s %s %s { type filter hook %s priority %d ; policy accept ; }\n", c.Family, Table, c.Name, c.Hook, c.Priority)
		}
		if c.Static() {
			fmt.Fprintf(&b, "flush chain %s %s %s\n", c.Family, Table, c.Name)
		}
	}
	fmt.Fprintf(&b, "add map bridge %s %s { type ifname : verdict ; }\n", Table, MapAnchors)
	for _, r := range StaticRules(m) {
		fmt.Fprintf(&b, "add rule %s %s %s %s comment %q\n", r.Family, Table, r.Chain, r.Expr, r.InstalledComment())
	}
	return b.String()
}
