package nft

import (
	"fmt"
	"strings"

	"github.com/tapfw/tapfw/pkg/ruleset"
	"golang.org/x/sys/unix"
)

// Table is the name of both of the backend's tables: "bridge tapfw" (the
// layer-2 checks, which both backends share, and the per-tap dispatch) and
// "inet tapfw" (conntrack state into mark bits, and rejects).
const Table = "tapfw"

// Chains and maps of the static skeleton.
const (
	// Bridge family: the hooks a tap's packet meets, by port. A frame
	// from a port meets its tap's OUT chain once, at prerouting, before
	// the bridge floods or delivers it (after br_netfilter, which runs the
	// inet prerouting chains that set the marks); a frame to a port meets
	// its tap's IN chain in forward (bridged) or output (from the host,
	// or routed to it).
	ChainFromPort = "tfw-from" // prerouting 200: the sender's OUT
	ChainForward  = "tfw-fwd"  // forward -200: the receiver's IN
	ChainLocalOut = "tfw-lout" // output -200: the receiver's IN
	// MapOut and MapIn send a packet to its tap's chain by the port it
	// comes in or goes out by and its protocol (meta protocol . ifname).
	MapOut = "tfw-out"
	MapIn  = "tfw-in"
	// MapAnchors holds an element per installed tap, each a jump to
	// ChainAnchor, which nothing else refers to: the chain's use count
	// is the number of taps, read in one request.
	MapAnchors  = "tfw-anchors"
	ChainAnchor = "tfw-anchor"
	// ChainVersion (in both tables) holds one rule without expressions
	// whose comment is a hash of the skeleton: a call checks the
	// skeleton by reading that rule only.
	ChainVersion = "tfw-version"
	// Inet family.
	ChainCtPre     = "tfw-ct-pre"  // prerouting: conntrack state into the marks
	ChainCtOut     = "tfw-ct-out"  // output: the same for the host's packets
	ChainRejectFwd = "tfw-rej-fwd" // forward: the rejects the bridge chains asked for
	ChainInput     = "tfw-input"   // input: those rejects, then the host firewall
	ChainOutput    = "tfw-output"  // output: the host firewall
)

// HostChain is the host firewall's chain for a direction and family.
func HostChain(dir string, f Family) string { return "tfw-h" + f.digit() + "-" + dir }

// HostSet holds the host's addresses, ClusterSet its cluster's hosts.
func HostSet(f Family) string    { return "tfw-host" + f.digit() }
func ClusterSet(f Family) string { return "tfw-cluster" + f.digit() }

// SynSet is the family's set of sources the host's SYN flood limit
// counts: the iptables backend's hashlimit table.
func SynSet(f Family) string { return "tfw-syn" + f.digit() }

// SynSetTimeout is how long a source without SYNs stays in SynSet.
const SynSetTimeout = "60s"

// Marks are the packet mark bits the backend uses. The bridge family has
// no conntrack on kernels without nf_conntrack_bridge, and cannot reject:
// the inet chains copy the conntrack state into Established and Invalid
// before the bridge chains run, and answer the packets the bridge chains
// mark with Reject (an ICMP port unreachable) or RejectTCP (a TCP reset).
// Group carries a security group's "allowed" back to the tap's OUT chain.
// Only these bits are changed; every other bit of a packet's mark is kept.
type Marks struct {
	Established, Invalid, Reject, RejectTCP, Group uint32
}

// DefaultMarks are the bits used unless configured otherwise.
var DefaultMarks = Marks{Established: 0x01000000, Invalid: 0x02000000, Reject: 0x04000000, RejectTCP: 0x08000000, Group: 0x10000000}

// MarksFromMask gives the bits of mask, lowest first, to Established,
// Invalid, Reject, RejectTCP and Group: DefaultMarks is 0x1f000000.
func MarksFromMask(mask uint32) (Marks, error) {
	var bits []uint32
	for b := uint32(1); b != 0; b <<= 1 {
		if mask&b != 0 {
			bits = append(bits, b)
		}
	}
	if len(bits) != 5 {
		return Marks{}, fmt.Errorf("marks: %#08x is not five bits", mask)
	}
	return Marks{Established: bits[0], Invalid: bits[1], Reject: bits[2], RejectTCP: bits[3], Group: bits[4]}, nil
}

// All is every bit of m.
func (m Marks) All() uint32 { return m.Established | m.Invalid | m.Reject | m.RejectTCP | m.Group }

// Rejects are the two reject bits.
func (m Marks) Rejects() uint32 { return m.Reject | m.RejectTCP }

// Validate refuses marks that are not five distinct single bits.
func (m Marks) Validate() error {
	seen := uint32(0)
	for _, b := range []uint32{m.Established, m.Invalid, m.Reject, m.RejectTCP, m.Group} {
		if b == 0 || b&(b-1) != 0 || seen&b != 0 {
			return fmt.Errorf("marks: %#x is not five distinct single bits", m.All())
		}
		seen |= b
	}
	return nil
}

// Family is "ip" or "ip6", as nftables names the protocols.
type Family string

const (
	IPv4 Family = "ip"
	IPv6 Family = "ip6"
)

func (f Family) digit() string {
	if f == IPv6 {
		return "6"
	}
	return "4"
}

// nfproto is the family's number, as meta nfproto says it in an inet
// table.
func (f Family) nfproto() byte {
	if f == IPv6 {
		return unix.NFPROTO_IPV6
	}
	return unix.NFPROTO_IPV4
}

func (f Family) nfprotoName() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

func (f Family) addrType() string {
	if f == IPv6 {
		return "ipv6_addr"
	}
	return "ipv4_addr"
}

// GroupChain is a security group's chain for one direction and family.
func GroupChain(group, dir string, f Family) string {
	return "tfw-g" + f.digit() + "-" + group + "-" + dir
}

// chainName is the nftables name of a chain of package ruleset's plan.
func chainName(c string, f Family) (string, error) {
	switch c {
	case ruleset.ChainGroupAllow:
		return "tfw-g" + f.digit() + "-allow", nil
	case ruleset.ChainGroupAllowed:
		return "tfw-g" + f.digit() + "-allowed", nil
	}
	switch c {
	case ruleset.ChainHostIn:
		return HostChain("in", f), nil
	case ruleset.ChainHostOut:
		return HostChain("out", f), nil
	}
	if g, ok := ruleset.IsGroupChain(c); ok {
		dir := "out"
		if strings.HasSuffix(c, "-IN") {
			dir = "in"
		}
		return GroupChain(g, dir, f), nil
	}
	return "", fmt.Errorf("no nftables chain for %s", c)
}

// UserSet is the nftables set of a named set for one family.
func UserSet(name string, f Family) string { return "tfw-s" + f.digit() + "-" + name }

// describeChain names a shared chain in the config's words: the host
// firewall's rules or a security group's, one direction. The chains
// that only carry a group's verdict are no part of the config ("").
func describeChain(name string) string {
	for _, f := range []Family{IPv4, IPv6} {
		for _, dir := range []string{"in", "out"} {
			if name == HostChain(dir, f) {
				return ruleset.HostRulesChanged(dir)
			}
			prefix := "tfw-g" + f.digit() + "-"
			if g, ok := strings.CutSuffix(strings.TrimPrefix(name, prefix), "-"+dir); ok && strings.HasPrefix(name, prefix) {
				return ruleset.GroupRulesChanged(g, dir)
			}
		}
	}
	return ""
}
