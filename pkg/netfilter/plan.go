package netfilter

import (
	"net/netip"
	"slices"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// PlanChanges compares plans with what r reads of the kernel, and sets
// with the plans' sets, and returns what must change, in one
// transaction: each plan is worked out against the model the ones before
// it left, so a chain or set several plans share changes once. It reads
// only the chains the plans touch. A second call after the changes
// landed returns no changes.
func PlanChanges(r Reader, sets map[string][]netip.Prefix, plans ...*ruleset.Plan) (*Changes, error) {
	c := &Changes{}
	x := newTxn(r)
	seen := map[string]bool{}
	for _, p := range plans {
		for _, s := range setChanges(sets, p) {
			if !seen[s.Name] {
				seen[s.Name] = true
				c.Sets = append(c.Sets, s)
			}
		}
		if err := x.plan(p, sets); err != nil {
			return nil, err
		}
	}
	c.Restore = x.changes()
	return c, nil
}

// plan models what moves the kernel to p.
func (x *txn) plan(p *ruleset.Plan, sets map[string][]netip.Prefix) error {
	if err := x.read(p); err != nil {
		return err
	}
	x.chainsWanted(p)
	x.membersWanted(p.Members)
	for _, g := range groups(p.Tails) {
		x.ensureTail(g.chain, g.rules)
	}
	x.hooksWanted(p.Hooks)
	return x.dispatchWanted(p, sets)
}

// setChanges are the sets to create (base sets that are missing) and to
// create or refill (the plan's sets whose entries differ).
func setChanges(sets map[string][]netip.Prefix, p *ruleset.Plan) []SetChange {
	var out []SetChange
	for _, s := range p.BaseSets {
		if _, ok := sets[s.Name]; !ok {
			out = append(out, SetChange{Name: s.Name, Entries: s.Entries})
		}
	}
	for _, s := range p.Sets {
		cur, ok := sets[s.Name]
		if !ok || !samePrefixes(cur, s.Entries) {
			out = append(out, SetChange{Name: s.Name, Entries: s.Entries, Exists: ok})
		}
	}
	return out
}

// read reads which base chains exist, and the rules of every other chain
// the plan names.
func (x *txn) read(p *ruleset.Plan) error {
	var base, names []string
	for _, ch := range p.Base {
		base = append(base, ch.Name)
	}
	if err := x.exist(base...); err != nil {
		return err
	}
	for _, chs := range [][]ruleset.Chain{p.Shared, p.Owned} {
		for _, ch := range chs {
			names = append(names, ch.Name)
		}
	}
	for _, rs := range [][]ruleset.Rule{p.Members, p.Hooks, p.Tails} {
		for _, r := range rs {
			names = append(names, r.Chain)
		}
	}
	return x.load(names...)
}

// chainsWanted creates missing base chains and rewrites shared and owned
// chains that differ from the plan.
func (x *txn) chainsWanted(p *ruleset.Plan) {
	for _, ch := range p.Base {
		if !x.exists[ch.Name] {
			x.rewrite(ch.Name, ch.Rules)
		}
	}
	for _, chs := range [][]ruleset.Chain{p.Shared, p.Owned} {
		for _, ch := range chs {
			if x.exists[ch.Name] && sameRules(x.chains[ch.Name], ch.Rules) {
				continue
			}
			x.rewrite(ch.Name, ch.Rules)
		}
	}
}

// membersWanted replaces, as a group, an owner's rules in a shared chain
// that differ from the plan's.
func (x *txn) membersWanted(members []ruleset.Rule) {
	for _, g := range groups(members) {
		var cur []Installed
		for _, in := range x.chains[g.chain] {
			if ruleset.CommentOwner(in.Comment) == g.owner {
				cur = append(cur, in)
			}
		}
		if sameRules(cur, g.rules) {
			continue
		}
		x.deleteWhere(g.chain, ownerIs(g.owner))
		for _, r := range g.rules {
			x.append(r)
		}
	}
}

// hooksWanted keeps one hook at the top of each built-in chain. Others
// write to these chains too, without tapfw's lock, so rule numbers there
// are not to be trusted: a stale hook is deleted by its whole text, where
// the reader has it.
func (x *txn) hooksWanted(hooks []ruleset.Rule) {
	for _, g := range groups(hooks) {
		if len(g.rules) == 1 && slices.ContainsFunc(x.chains[g.chain], func(in Installed) bool { return matches(in, g.rules[0]) }) {
			continue
		}
		for _, in := range x.chains[g.chain] {
			if in.Spec != "" && ruleset.CommentOwner(in.Comment) == g.owner {
				x.ops = append(x.ops, "-D "+g.chain+" "+in.Spec)
			}
		}
		for i := len(g.rules) - 1; i >= 0; i-- {
			x.insertTop(g.rules[i])
		}
	}
}

// dispatchWanted adds what is missing on the tap's paths through the
// tries, and takes the tap's leaves off addresses it no longer has (those
// its set still holds).
func (x *txn) dispatchWanted(p *ruleset.Plan, sets map[string][]netip.Prefix) error {
	wantLeaf := map[string]bool{}
	for _, path := range p.Paths {
		wantLeaf[path.Leaf.InstalledComment()] = true
	}
	for _, path := range p.Paths {
		if err := x.addPath(path, wantLeaf); err != nil {
			return err
		}
	}
	fam := p.Fam()
	for _, old := range sets[fam.TapSet(p.Tap)] {
		if slices.ContainsFunc(p.Paths, func(path ruleset.Path) bool {
			return path.Trie.Name == fam.TrieHost.Name && path.Key == fam.HostKey(old)
		}) {
			continue
		}
		path := ruleset.HostPath(fam, p.Tap, old)
		if err := x.removeLeaves(path, p.Tap, wantLeaf); err != nil {
			return err
		}
	}
	return nil
}

// addPath makes sure the nodes and edges of path exist and its leaf is
// installed, and drops leaves of the same owner in the leaf's node that
// are not wanted (a changed attachment record, an old address).
func (x *txn) addPath(path ruleset.Path, wantLeaf map[string]bool) error {
	if err := x.exist(path.Nodes...); err != nil {
		return err
	}
	last := len(path.Nodes) - 1
	t := path.Trie
	for i := 1; i <= last; i++ {
		// The parent's rules are read: its edge to this node may have been
		// deleted by someone (then the whole subtree would be unreachable
		// and its taps unfiltered), and the model must know them before
		// the parent changes, so rule numbers stay right.
		if err := x.load(path.Nodes[i-1]); err != nil {
			return err
		}
		x.ensureMiss(t, path.Nodes[i-1])
		if !x.exists[path.Nodes[i]] {
			x.create(path.Nodes[i])
		}
		if !slices.ContainsFunc(x.chains[path.Nodes[i-1]], func(in Installed) bool { return matches(in, path.Edges[i-1]) }) {
			x.deleteWhere(path.Nodes[i-1], func(in Installed) bool {
				return in.Comment != "" && ruleset.StripHash(in.Comment) == path.Edges[i-1].Comment
			})
			x.appendEdge(t, path.Edges[i-1])
		}
	}
	leafNode := path.Nodes[last]
	if err := x.load(leafNode); err != nil {
		return err
	}
	x.ensureMiss(t, leafNode)
	owner := path.Leaf.Owner()
	x.deleteWhere(leafNode, func(in Installed) bool {
		return ruleset.CommentOwner(in.Comment) == owner && !wantLeaf[in.Comment]
	})
	if !slices.ContainsFunc(x.chains[leafNode], func(in Installed) bool { return matches(in, path.Leaf) }) {
		x.insertTop(path.Leaf)
	}
	return nil
}

// removeLeaves deletes owner's leaves (those keep does not list) from the
// node of path, then deletes nodes left empty, and their edges, upwards.
func (x *txn) removeLeaves(path ruleset.Path, owner string, keep map[string]bool) error {
	if err := x.exist(path.Nodes...); err != nil {
		return err
	}
	last := len(path.Nodes) - 1
	if !x.exists[path.Nodes[last]] {
		return nil
	}
	if err := x.load(path.Nodes[last]); err != nil {
		return err
	}
	x.deleteWhere(path.Nodes[last], func(in Installed) bool {
		return ruleset.CommentOwner(in.Comment) == owner && !keep[in.Comment]
	})
	for i := last; i > 0; i-- {
		node := path.Nodes[i]
		if !nodeEmpty(path.Trie, x.chains[node]) {
			break
		}
		parent := path.Nodes[i-1]
		if err := x.load(parent); err != nil {
			return err
		}
		edge := path.Edges[i-1]
		x.deleteWhere(parent, func(in Installed) bool { return in.Comment == edge.InstalledComment() })
		x.deleteWhere(node, func(Installed) bool { return true })
		x.remove(node)
	}
	return nil
}
