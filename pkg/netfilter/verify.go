package netfilter

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Verify compares a plan with the whole table and the sets and returns one
// line per difference, naming table, chain and rule, or ipset and entries.
func Verify(t *Table, sets map[string][]netip.Prefix, p *ruleset.Plan) []string {
	v := &verifier{t: t, tn: TableName(p.Fam())}
	v.chains(p)
	v.members(p.Members)
	for _, r := range p.Hooks {
		if !v.has(r.Chain, r) {
			v.add(", chain %s: rule %q missing", r.Chain, r.String())
		}
	}
	v.tails(p.Tails)
	for _, path := range p.Paths {
		v.path(path)
	}
	return append(v.diffs, verifySets(sets, p)...)
}

// verifier collects the differences between a plan and a table.
type verifier struct {
	t     *Table
	tn    string // the table's name in messages
	diffs []string
}

func (v *verifier) add(format string, a ...any) {
	v.diffs = append(v.diffs, fmt.Sprintf(v.tn+format, a...))
}

func (v *verifier) has(chain string, r ruleset.Rule) bool {
	return slices.ContainsFunc(v.t.Chains[chain], func(s string) bool { return Normalize(s) == Normalize(r.Spec()) })
}

// chains: base chains exist, shared and owned chains hold exactly their
// rules.
func (v *verifier) chains(p *ruleset.Plan) {
	for _, ch := range p.Base {
		if !v.t.Has(ch.Name) {
			v.add(", chain %s: missing", ch.Name)
		}
	}
	for _, chs := range [][]ruleset.Chain{p.Shared, p.Owned} {
		for _, ch := range chs {
			if !v.t.Has(ch.Name) {
				v.add(", chain %s: missing", ch.Name)
				continue
			}
			v.diffs = append(v.diffs, compareChain(v.tn, ch.Name, specs(ch.Rules), v.t.Chains[ch.Name])...)
		}
	}
}

// members: each owner's rules in a shared chain are there, and no others
// of that owner.
func (v *verifier) members(members []ruleset.Rule) {
	for _, g := range groups(members) {
		for _, r := range g.rules {
			if !v.has(g.chain, r) {
				v.add(", chain %s: rule %q missing", g.chain, r.String())
			}
		}
		for _, s := range v.t.Chains[g.chain] {
			if Owner(s) == g.owner && !slices.ContainsFunc(g.rules, func(r ruleset.Rule) bool { return Normalize(s) == Normalize(r.Spec()) }) {
				v.add(", chain %s: unexpected rule %q", g.chain, "-A "+g.chain+" "+s)
			}
		}
	}
}

// tails: each chain ends with its tail rules, and holds them once.
func (v *verifier) tails(tails []ruleset.Rule) {
	for _, g := range groups(tails) {
		var in []Installed
		for _, s := range v.t.Chains[g.chain] {
			in = append(in, Installed{Comment: Comment(s), Spec: s})
		}
		if !endsWith(in, g.rules) {
			v.add(", chain %s: does not end with %q, once", g.chain, strings.Join(specs(g.rules), "; "))
		}
	}
}

// path: the nodes, edges, miss rules and leaf of a dispatch path.
func (v *verifier) path(path ruleset.Path) {
	for i, node := range path.Nodes {
		if !v.t.Has(node) {
			v.add(", chain %s (dispatch %s %s): missing", node, path.Trie.Name, path.Key)
			break
		}
		if i < len(path.Edges) && !v.has(node, path.Edges[i]) {
			v.add(", chain %s: rule %q missing", node, path.Edges[i].String())
		}
		if miss, ok := path.Trie.MissRule(node); ok {
			rs := v.t.Chains[node]
			if len(rs) == 0 || Normalize(rs[len(rs)-1]) != Normalize(miss.Spec()) {
				v.add(", chain %s: last rule is not %q", node, miss.String())
			}
		}
	}
	if last := path.Nodes[len(path.Nodes)-1]; v.t.Has(last) && !v.has(last, path.Leaf) {
		v.add(", chain %s: rule %q missing", last, path.Leaf.String())
	}
}

// verifySets compares the plan's sets with the installed ones.
func verifySets(sets map[string][]netip.Prefix, p *ruleset.Plan) []string {
	var diffs []string
	for _, s := range p.BaseSets {
		if _, ok := sets[s.Name]; !ok {
			diffs = append(diffs, fmt.Sprintf("ipset %s: missing", s.Name))
		}
	}
	for _, s := range p.Sets {
		cur, ok := sets[s.Name]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("ipset %s: missing", s.Name))
		case !samePrefixes(cur, s.Entries):
			diffs = append(diffs, fmt.Sprintf("ipset %s: entries are [%s], want [%s]", s.Name, prefixList(cur), prefixList(s.Entries)))
		}
	}
	return diffs
}

// TableName names the family's filter table in messages: "table filter"
// for iptables, "table ip6 filter" for ip6tables.
func TableName(fam *ruleset.Family) string {
	if fam.V6 {
		return "table ip6 filter"
	}
	return "table filter"
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = entryString(p)
	}
	return strings.Join(s, " ")
}

func compareChain(tn, chain string, want, got []string) []string {
	if sameSpecs(want, got) {
		return nil
	}
	var diffs []string
	norm := func(ss []string) map[string]bool {
		m := map[string]bool{}
		for _, s := range ss {
			m[Normalize(s)] = true
		}
		return m
	}
	w, g := norm(want), norm(got)
	for i, s := range want {
		if !g[Normalize(s)] {
			diffs = append(diffs, fmt.Sprintf(tn+", chain %s, rule %d: missing %q", chain, i+1, "-A "+chain+" "+s))
		}
	}
	for i, s := range got {
		if !w[Normalize(s)] {
			diffs = append(diffs, fmt.Sprintf(tn+", chain %s, rule %d: unexpected %q", chain, i+1, "-A "+chain+" "+s))
		}
	}
	if len(diffs) == 0 {
		diffs = append(diffs, fmt.Sprintf(tn+", chain %s: rules are out of order", chain))
	}
	return diffs
}
