package netfilter

import (
	"net/netip"
	"sort"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// RemoveChanges returns what removes every trace of tap in the family's
// table: its leaves in the tries (its addresses are those of its set),
// nodes left empty, its chains and its address set. Nothing installed
// gives no changes.
func RemoveChanges(fam *ruleset.Family, r Reader, sets map[string][]netip.Prefix, tap string) (*Changes, error) {
	x := newTxn(r)
	paths := []ruleset.Path{
		ruleset.TrieIn.PathFor(tap, ruleset.TapOut(tap), ""),
		ruleset.TrieOut.PathFor(tap, ruleset.TapIn(tap), ""),
	}
	for _, ip := range sets[fam.TapSet(tap)] {
		paths = append(paths, ruleset.HostPath(fam, tap, ip))
	}
	for _, path := range paths {
		if err := x.removeLeaves(path, tap, nil); err != nil {
			return nil, err
		}
	}
	own := []string{ruleset.TapIn(tap), ruleset.TapOut(tap)}
	if err := x.exist(own...); err != nil {
		return nil, err
	}
	for _, ch := range own {
		if x.exists[ch] {
			x.flushRemove(ch)
		}
	}
	c := &Changes{Restore: x.changes()}
	for _, name := range []string{fam.TapSet(tap), ruleset.TempSet(fam.TapSet(tap))} {
		if _, ok := sets[name]; ok {
			c.Destroy = append(c.Destroy, name)
		}
	}
	return c, nil
}

// RemoveEverywhere is RemoveChanges from the whole table: it deletes every
// rule of tap in any of tapfw's chains, wherever it is (a leaf left at an
// address the tap's set no longer holds, say), and the trie nodes left
// empty. DEL falls back to it when the quick way fails.
func RemoveEverywhere(fam *ruleset.Family, t *Table, sets map[string][]netip.Prefix, tap string) (*Changes, error) {
	r := TableReader{T: t}
	x := newTxn(r)
	var tfw []string
	for _, chain := range t.Order {
		if strings.HasPrefix(chain, ruleset.ChainPrefix) {
			tfw = append(tfw, chain)
		}
	}
	if err := x.load(tfw...); err != nil {
		return nil, err
	}
	own := map[string]bool{ruleset.TapIn(tap): true, ruleset.TapOut(tap): true}
	for _, chain := range tfw {
		if !own[chain] {
			x.deleteWhere(chain, ownerIs(tap))
		}
	}
	roots := map[string]bool{}
	for _, tr := range fam.Tries {
		roots[tr.Root] = true
	}
	for pruned := true; pruned; {
		pruned = false
		for _, node := range tfw {
			rs, ok := x.chains[node]
			if !ok || len(rs) > 0 || roots[node] || !ruleset.IsTrieChain(node) {
				continue
			}
			for _, parent := range tfw {
				if _, ok := x.chains[parent]; ok && ruleset.IsTrieChain(parent) {
					x.deleteWhere(parent, func(in Installed) bool { return strings.HasSuffix(in.Spec, " -g "+node) })
				}
			}
			x.remove(node)
			pruned = true
		}
	}
	for _, chain := range tfw {
		if own[chain] {
			x.flushRemove(chain)
		}
	}
	c := &Changes{Restore: x.changes()}
	if _, ok := sets[fam.TapSet(tap)]; ok {
		c.Destroy = append(c.Destroy, fam.TapSet(tap))
	}
	return c, nil
}

// Attachments lists the taps installed, read back from the comments of
// their leaves in the trie of bridge ports in.
func Attachments(t *Table) []model.Attachment {
	var out []model.Attachment
	for _, chain := range t.Order {
		if chain != ruleset.TrieIn.Root && !strings.HasPrefix(chain, ruleset.TrieIn.Root+"-") {
			continue
		}
		for _, s := range t.Chains[chain] {
			if a, ok := ruleset.ParseDispatchComment(ruleset.StripHash(Comment(s))); ok {
				out = append(out, a)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tap < out[j].Tap })
	return out
}

// InstalledTaps lists, sorted and once each, every tap that has anything
// installed: chains or trie leaves in any of the tables, an address set,
// or layer-2 elements (l2, from Bridge.Taps). It is the one answer to
// "which taps are there", for GC and for the operator's list alike.
func InstalledTaps(tables []*Table, sets map[string][]netip.Prefix, l2 []string) []string {
	seen := map[string]bool{}
	for _, t := range tables {
		for _, chain := range t.Order {
			if tap, ok := ruleset.IsTapChain(chain); ok {
				seen[tap] = true
			}
			if ruleset.IsTrieChain(chain) {
				for _, s := range t.Chains[chain] {
					if o := Owner(s); o != "" && o != ruleset.EdgeOwner {
						seen[o] = true
					}
				}
			}
		}
	}
	for name := range sets {
		if fam, ok := ruleset.FamilyOfSet(name); ok {
			if tap, ok := fam.TapOfSet(name); ok {
				seen[tap] = true
			}
		}
	}
	for _, tap := range l2 {
		seen[tap] = true
	}
	out := make([]string, 0, len(seen))
	for tap := range seen {
		out = append(out, tap)
	}
	sort.Strings(out)
	return out
}
