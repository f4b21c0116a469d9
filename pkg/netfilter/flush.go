package netfilter

import (
	"net/netip"
	"sort"
	"strings"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// FlushChanges returns what removes everything tapfw made in the family's
// table and nothing else: its hooks in other chains (deleted by their
// whole text), every chain named TFW-*, and every set of the family.
func FlushChanges(fam *ruleset.Family, t *Table, sets map[string][]netip.Prefix) *Changes {
	var decl, ops, drops []string
	for _, chain := range t.Order {
		if strings.HasPrefix(chain, ruleset.ChainPrefix) {
			decl = append(decl, ":"+chain+" - [0:0]")
			drops = append(drops, "-X "+chain)
			continue
		}
		for _, s := range t.Chains[chain] {
			if Owner(s) == ruleset.OwnerHooks {
				ops = append(ops, "-D "+chain+" "+s)
			}
		}
	}
	c := &Changes{Restore: append(append(decl, ops...), drops...)}
	for name := range sets {
		if f, ok := ruleset.FamilyOfSet(name); ok && f == fam {
			c.Destroy = append(c.Destroy, name)
		}
	}
	sort.Strings(c.Destroy)
	return c
}

// NoTaps reports, from the roots of the tries, whether no tap is attached
// any more: no root holds an edge or a leaf (a root may be missing: an ADD
// killed before its restore leaves only sets).
func NoTaps(r Reader) (bool, error) {
	var roots []string
	for _, t := range ruleset.Tries {
		roots = append(roots, t.Root)
	}
	got, err := r.Chains(roots...)
	if err != nil {
		return false, err
	}
	for _, t := range ruleset.Tries {
		if rs, ok := got[t.Root]; ok && !nodeEmpty(t, rs) {
			return false, nil
		}
	}
	return true, nil
}
