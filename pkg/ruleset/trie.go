package ruleset

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Dispatch finds a packet's tap chain through a trie of chains instead of a
// list with one rule per tap, so a new packet is checked against a few rules
// per level whatever the number of taps.
//
// A trie has a key per tap (its name, or each of its addresses as
// hexadecimal nibbles). The node for prefix p is a chain holding, at its
// top, exact edges ("leaves") for keys one symbol longer than p that end
// there, and below them wildcard edges to the nodes for p+c. The shape
// follows from the keys alone, so adding a tap only adds chains and rules on
// its own path, and a call reads only the chains on that path.
type Trie struct {
	Name string // short name: DI, DO or DH
	Root string // root chain
	// Miss, when set, is where a packet goes that no rule of a node
	// matched: every node ends with a goto to it, so a packet of a port
	// without a leaf reaches it from whichever node it stopped in.
	Miss string
	// match fills r's match for a key prefix: exact for a whole key,
	// otherwise every key that starts with prefix.
	match func(r *Rule, prefix string, exact bool)
	// symbols, when set, returns the symbols of a key that place its leaf
	// (the default: the key, or for an IPv4 network its whole nibbles).
	symbols func(key string) string
}

// The tries: tap names by bridge port in (from the VM), by bridge port
// out (to the VM), and tap addresses by destination (host to VM).
var (
	TrieIn = Trie{Name: "DI", Root: "TFW-DI", Miss: ChainUnmanagedIn, match: func(r *Rule, p string, exact bool) {
		r.Physdev = Physdev{Present: true, In: wildcard(p, exact)}
	}}
	TrieOut = Trie{Name: "DO", Root: "TFW-DO", Miss: ChainUnmanagedOut, match: func(r *Rule, p string, exact bool) {
		r.Physdev = Physdev{Present: true, Out: wildcard(p, exact)}
	}}
	TrieHost = Trie{Name: "DH", Root: "TFW-DH", match: func(r *Rule, p string, exact bool) {
		r.Dst = nibblePrefix(p, exact)
	}}
)

func wildcard(p string, exact bool) string {
	if exact {
		return p
	}
	return p + "+"
}

// Node is the chain for key prefix p: "TFW-DI-tap11" holds the ways to
// taps whose names start with "tap11". Nodes exist for prefixes of at most
// 14 characters (names have at most 15), so the name fits 28 characters.
func (t Trie) Node(p string) string {
	if p == "" {
		return t.Root
	}
	return t.Root + "-" + p
}

// IsTrieChain reports whether chain is a node of one of the tries.
func IsTrieChain(chain string) bool {
	for _, t := range Tries {
		if chain == t.Root || strings.HasPrefix(chain, t.Root+"-") {
			return true
		}
	}
	return false
}

// Tries lists every trie.
var Tries = []Trie{TrieIn, TrieOut, TrieHost}

// Path is one key's way through a trie: the node chains from the root to
// the node that holds the leaf, the wildcard edge from each node to the
// next, and the leaf.
type Path struct {
	Trie  Trie
	Key   string
	Nodes []string
	Edges []Rule // Edges[i] is in Nodes[i] and leads to Nodes[i+1]
	Leaf  Rule   // in Nodes[len(Nodes)-1]
}

// MaxTrieDepth bounds the node levels: keys longer than MaxTrieDepth+1
// symbols have their leaf in the node of their first MaxTrieDepth. nf_tables
// refuses jumps more than 16 chains deep, and a tap chain sits four below
// the base chain plus one per level.
const MaxTrieDepth = 8

// EdgeOwner is the owner of wildcard edges, which all taps below share.
const EdgeOwner = "@dispatch"

// MissRule is the last rule of node when the trie has a Miss chain.
func (t Trie) MissRule(node string) (Rule, bool) {
	if t.Miss == "" {
		return Rule{}, false
	}
	return Rule{Chain: node, Comment: fmt.Sprintf("%s: %s no tap", EdgeOwner, t.Name), Verdict: Verdict{Goto: true, Target: t.Miss}}, true
}

// PathFor builds the path of key in trie t, whose leaf jumps to target.
func (t Trie) PathFor(key, target, leafComment string) Path {
	p := Path{Trie: t, Key: key}
	sym := key
	if t.symbols != nil {
		sym = t.symbols(key)
	} else if i := strings.IndexByte(key, '/'); i >= 0 { // an IP key that is not nibble-aligned
		bits, _ := strconv.Atoi(key[i+1:])
		sym = key[:bits/4]
	}
	last := min(max(len(sym)-1, 0), MaxTrieDepth)
	for i := 0; i <= last; i++ {
		p.Nodes = append(p.Nodes, t.Node(sym[:i]))
	}
	for i := 0; i < last; i++ {
		e := Rule{Chain: p.Nodes[i], Comment: fmt.Sprintf("%s: %s %s", EdgeOwner, t.Name, sym[:i+1]), Verdict: Verdict{Goto: true, Target: p.Nodes[i+1]}}
		t.match(&e, sym[:i+1], false)
		p.Edges = append(p.Edges, e)
	}
	p.Leaf = Rule{Chain: p.Nodes[last], Comment: leafComment, Verdict: Verdict{Goto: true, Target: target}}
	t.match(&p.Leaf, key, true)
	return p
}

// IPKey is the trie key of an address or network: the hexadecimal nibbles
// of its prefix; for a prefix length that is not a multiple of 4, one
// nibble more, "/" and the length. The leaf sits in the node of the last
// whole nibble but one and matches the network exactly.
func IPKey(p netip.Prefix) string {
	a := p.Addr().As4()
	hexs := hex.EncodeToString(a[:])
	if p.Bits()%4 == 0 {
		return hexs[:p.Bits()/4]
	}
	return hexs[:p.Bits()/4+1] + "/" + strconv.Itoa(p.Bits())
}

// nibblePrefix is the network a key prefix stands for.
func nibblePrefix(key string, exact bool) netip.Prefix {
	bits := 0
	if i := strings.IndexByte(key, '/'); i >= 0 {
		bits, _ = strconv.Atoi(key[i+1:])
		key = key[:i]
	} else {
		bits = 4 * len(key)
	}
	full := (key + "00000000")[:8]
	b, _ := hex.DecodeString(full)
	a := netip.AddrFrom4([4]byte(b))
	return netip.PrefixFrom(a, bits).Masked()
}
