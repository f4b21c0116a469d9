package ruleset

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
)

// Family is what differs between the IPv4 ruleset (iptables, ipsets of
// family inet) and the IPv6 one (ip6tables, family inet6). Both have the
// same chains under the same names, each in its own table; their ipsets
// live in one namespace and so have different prefixes.
type Family struct {
	Name      string // "ipv4" or "ipv6"
	V6        bool
	SetPrefix string // every ipset of the family starts with it
	// TrieHost dispatches the host's packets to a tap by destination.
	TrieHost Trie
	// Tries lists the family's tries.
	Tries []Trie
}

// The two families.
var (
	IPv4 = &Family{Name: "ipv4", SetPrefix: SetPrefix, TrieHost: TrieHost, Tries: Tries}
	IPv6 = &Family{Name: "ipv6", V6: true, SetPrefix: SetPrefix6, TrieHost: TrieHost6, Tries: []Trie{TrieIn, TrieOut, TrieHost6}}
)

// Families lists both, IPv4 first: the order calls apply them in.
var Families = []*Family{IPv4, IPv6}

// SetPrefix6 starts the name of every IPv6 ipset; it does not start with
// SetPrefix, so each family's sets are found by prefix alone.
const SetPrefix6 = "tfw6-"

// FamilyOfSet returns the family an ipset of tapfw belongs to by its name.
func FamilyOfSet(name string) (*Family, bool) {
	switch {
	case strings.HasPrefix(name, SetPrefix6):
		return IPv6, true
	case strings.HasPrefix(name, SetPrefix):
		return IPv4, true
	}
	return nil, false
}

// TapSet is the ipset holding the tap's own addresses of the family.
func (f *Family) TapSet(tap string) string { return f.SetPrefix + "t-" + tap }

// UserSet is the kernel name of the family's part of the named ipset.
func (f *Family) UserSet(name string) string { return f.SetPrefix + "s-" + name }

// SetHost holds the host's addresses of the family.
func (f *Family) SetHost() string { return f.SetPrefix + "host" }

// SetCluster holds the cluster's hosts of the family.
func (f *Family) SetCluster() string { return f.SetPrefix + "cluster" }

// TapOfSet returns the tap whose address set name is.
func (f *Family) TapOfSet(name string) (string, bool) {
	return strings.CutPrefix(name, f.SetPrefix+"t-")
}

// HostKey is the key of a tap's address in TrieHost.
func (f *Family) HostKey(p netip.Prefix) string {
	if f.V6 {
		return IPKey6(p)
	}
	return IPKey(p)
}

// Has reports whether p is of the family.
func (f *Family) Has(p netip.Prefix) bool { return p.Addr().Is6() == f.V6 }

// Of returns the prefixes of ps that are of the family.
func (f *Family) Of(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if f.Has(p) {
			out = append(out, p)
		}
	}
	return out
}

// RejectWith is the default REJECT answer.
func (f *Family) RejectWith() string {
	if f.V6 {
		return "icmp6-port-unreachable"
	}
	return "icmp-port-unreachable"
}

// ICMP is the protocol name of the family's ICMP.
func (f *Family) ICMP() string {
	if f.V6 {
		return model.ProtoICMPv6
	}
	return "icmp"
}

// Renders reports whether a user rule belongs in the family's chains: a
// rule with an address or an ICMP protocol of one family only is rendered
// in that family; any other rule in both.
func (f *Family) Renders(u model.Rule) bool {
	if u.Family != "" && u.Family != f.Name {
		return false
	}
	for _, a := range []model.Addr{u.Source, u.Dest} {
		if n := a.FamilyName(); n != "" && n != f.Name {
			return false
		}
	}
	switch u.Proto {
	case "icmp":
		return !f.V6
	case model.ProtoICMPv6:
		return f.V6
	}
	return true
}

// Everything is every address of the family, as networks a hash:net
// set holds (it holds no /0).
func (f *Family) Everything() []netip.Prefix {
	if f.V6 {
		return []netip.Prefix{netip.MustParsePrefix("::/1"), netip.MustParsePrefix("8000::/1")}
	}
	return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/1"), netip.MustParsePrefix("128.0.0.0/1")}
}

// TempSet is the name a set is built under before it is swapped in: the
// set's family prefix, "x-" and a hash.
func TempSet(set string) string {
	sum := sha256.Sum256([]byte(set))
	prefix := SetPrefix
	if strings.HasPrefix(set, SetPrefix6) {
		prefix = SetPrefix6
	}
	return prefix + "x-" + hex.EncodeToString(sum[:8])
}

// IsTempSet reports whether name is a temporary set of either family.
func IsTempSet(name string) bool {
	return strings.HasPrefix(name, SetPrefix+"x-") || strings.HasPrefix(name, SetPrefix6+"x-")
}

// TrieHost6 dispatches the host's IPv6 packets by destination. Its keys
// are an address's 32 nibbles from the last to the first, so the levels
// split on the interface identifier, which is where the addresses of taps
// differ (dispatching on the leading nibbles would put every tap of a /64
// in one node). A node's edges match the low nibbles with a mask,
// "-d ::5/::f"; networks have their leaf in the root, matched exactly.
var TrieHost6 = Trie{Name: "DH", Root: "TFW-DH", symbols: symbols6, match: func(r *Rule, p string, exact bool) {
	if exact {
		r.Dst = key6Prefix(p)
		return
	}
	var a, m [16]byte
	for i := 0; i < len(p); i++ {
		n := 31 - i
		v, _ := hex.DecodeString("0" + p[i:i+1])
		shift := 0
		if n%2 == 0 {
			shift = 4
		}
		a[n/2] |= v[0] << shift
		m[n/2] |= 0xf << shift
	}
	r.Dst = netip.PrefixFrom(netip.AddrFrom16(a), 128)
	r.DstMask = netip.AddrFrom16(m)
}}

// netKeyPrefix starts the key of a network in TrieHost6.
const netKeyPrefix = "net="

// IPKey6 is the key of an IPv6 address or network in TrieHost6: the
// address's nibbles last first, or "net=" and the network.
func IPKey6(p netip.Prefix) string {
	if !p.IsSingleIP() {
		return netKeyPrefix + p.Masked().String()
	}
	h := hex.EncodeToString(p.Addr().AsSlice())
	b := []byte(h)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

func symbols6(key string) string {
	if strings.HasPrefix(key, netKeyPrefix) {
		return ""
	}
	return key
}

func key6Prefix(key string) netip.Prefix {
	if s, ok := strings.CutPrefix(key, netKeyPrefix); ok {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			panic(fmt.Sprintf("ruleset: bad trie key %q", key))
		}
		return p
	}
	b := []byte(key)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	raw, err := hex.DecodeString(string(b))
	if err != nil || len(raw) != 16 {
		panic(fmt.Sprintf("ruleset: bad trie key %q", key))
	}
	return netip.PrefixFrom(netip.AddrFrom16([16]byte(raw)), 128)
}

// AddrString prints an address as iptables-save does (glibc's
// inet_ntop): like netip, except that an IPv6 address whose first 96
// bits are zero and whose seventh group is not is printed with its last
// 32 bits as IPv4 ("::0.15.0.0").
func AddrString(a netip.Addr) string {
	if !a.Is6() || a.Is4In6() {
		return a.String()
	}
	b := a.As16()
	for _, x := range b[:12] {
		if x != 0 {
			return a.String()
		}
	}
	if b[12] == 0 && b[13] == 0 {
		return a.String()
	}
	return "::" + netip.AddrFrom4([4]byte(b[12:])).String()
}

// PrefixString prints a prefix as iptables-save does.
func PrefixString(p netip.Prefix) string {
	return fmt.Sprintf("%s/%d", AddrString(p.Addr()), p.Bits())
}
