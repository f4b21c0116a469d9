package netfilter

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Changes is what a call must do to the kernel: set operations first (a
// rule can only reference a set that exists), then one restore
// transaction, then set destructions (a set can only go once no rule
// references it).
type Changes struct {
	Sets    []SetChange
	Restore []string // restore lines, without "*filter" and "COMMIT"
	Destroy []string
}

// SetChange makes a set hold exactly Entries. Exists tells whether the set
// is there already (then it is rebuilt aside and swapped in).
type SetChange struct {
	Name    string
	Entries []netip.Prefix
	Exists  bool
}

// Empty reports whether nothing needs to change.
func (c *Changes) Empty() bool {
	return len(c.Sets) == 0 && len(c.Restore) == 0 && len(c.Destroy) == 0
}

// RestoreFile renders the restore transaction, or nil when there is none.
func (c *Changes) RestoreFile() []byte {
	if len(c.Restore) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("*filter\n")
	for _, l := range c.Restore {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	return []byte(b.String())
}

// String renders the changes for people: set changes, then the restore file.
func (c *Changes) String() string {
	var b strings.Builder
	for _, s := range c.Sets {
		verb := "create"
		if s.Exists {
			verb = "replace"
		}
		family := "inet"
		if f, ok := ruleset.FamilyOfSet(s.Name); ok && f.V6 {
			family = "inet6"
		}
		fmt.Fprintf(&b, "# ipset %s %s hash:net family %s:", verb, s.Name, family)
		for _, e := range s.Entries {
			b.WriteString(" " + entryString(e))
		}
		b.WriteByte('\n')
	}
	b.Write(c.RestoreFile())
	for _, d := range c.Destroy {
		fmt.Fprintf(&b, "# ipset destroy %s\n", d)
	}
	return b.String()
}

func entryString(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

func specs(rs []ruleset.Rule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Spec()
	}
	return out
}

func sameSpecs(want, got []string) bool {
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if Normalize(want[i]) != Normalize(got[i]) {
			return false
		}
	}
	return true
}

func samePrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	as, bs := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		as[i] = a[i].String()
	}
	for i := range b {
		bs[i] = b[i].String()
	}
	sort.Strings(as)
	sort.Strings(bs)
	return slices.Equal(as, bs)
}

// group is an owner's rules in one shared chain.
type group struct {
	chain, owner string
	rules        []ruleset.Rule
}

func groups(rs []ruleset.Rule) []group {
	var gs []group
	idx := map[[2]string]int{}
	for _, r := range rs {
		k := [2]string{r.Chain, r.Owner()}
		i, ok := idx[k]
		if !ok {
			i = len(gs)
			idx[k] = i
			gs = append(gs, group{chain: r.Chain, owner: r.Owner()})
		}
		gs[i].rules = append(gs[i].rules, r)
	}
	return gs
}

// matches tells whether an installed rule is the wanted one: by the whole
// rule where the reader saw it, else by the comment, which ends in a hash
// of the whole rule.
func matches(in Installed, want ruleset.Rule) bool {
	if in.Spec != "" {
		return Normalize(in.Spec) == Normalize(want.Spec())
	}
	return in.Comment == want.InstalledComment()
}

func sameRules(in []Installed, want []ruleset.Rule) bool {
	if len(in) != len(want) {
		return false
	}
	for i := range in {
		if !matches(in[i], want[i]) {
			return false
		}
	}
	return true
}

// txn builds one restore transaction against a model of the chains it has
// read, so rule numbers stay right as it deletes and inserts.
type txn struct {
	r      Reader
	chains map[string][]Installed // read (and then changed in the model)
	exists map[string]bool
	decl   []string // chain declarations: create, or flush to rewrite
	ops    []string // rule changes, in order
	drops  []string // chains deleted at the end
}

func newTxn(r Reader) *txn {
	return &txn{r: r, chains: map[string][]Installed{}, exists: map[string]bool{}}
}

// load reads the chains not read yet.
func (x *txn) load(names ...string) error {
	var need []string
	for _, n := range names {
		if _, ok := x.chains[n]; !ok && !x.known(n) {
			need = append(need, n)
		}
	}
	if len(need) == 0 {
		return nil
	}
	got, err := x.r.Chains(need...)
	if err != nil {
		return err
	}
	for _, n := range need {
		rs, ok := got[n]
		x.exists[n] = ok
		if ok {
			x.chains[n] = rs
		}
	}
	return nil
}

// known reports whether the model already knows the chain is missing.
func (x *txn) known(n string) bool {
	e, ok := x.exists[n]
	return ok && !e
}

// exist reads which chains exist, without their rules.
func (x *txn) exist(names ...string) error {
	var need []string
	for _, n := range names {
		if _, ok := x.exists[n]; !ok {
			need = append(need, n)
		}
	}
	if len(need) == 0 {
		return nil
	}
	got, err := x.r.Exist(need...)
	if err != nil {
		return err
	}
	for _, n := range need {
		x.exists[n] = got[n]
	}
	return nil
}

// create makes a new, empty chain.
func (x *txn) create(chain string) {
	x.decl = append(x.decl, ":"+chain+" - [0:0]")
	x.exists[chain] = true
	x.chains[chain] = []Installed{}
}

// rewrite flushes (or creates) chain and fills it with rules.
func (x *txn) rewrite(chain string, rules []ruleset.Rule) {
	x.create(chain)
	for _, r := range rules {
		x.append(r)
	}
}

func (x *txn) append(r ruleset.Rule) {
	x.ops = append(x.ops, r.String())
	x.chains[r.Chain] = append(x.chains[r.Chain], Installed{Comment: r.InstalledComment(), Spec: r.Spec()})
}

// insertBefore inserts r at 1-based position pos of its chain.
func (x *txn) insertBefore(r ruleset.Rule, pos int) {
	x.ops = append(x.ops, fmt.Sprintf("-I %s %d %s", r.Chain, pos, r.Spec()))
	rs := x.chains[r.Chain]
	x.chains[r.Chain] = append(rs[:pos-1:pos-1], append([]Installed{{Comment: r.InstalledComment(), Spec: r.Spec()}}, rs[pos-1:]...)...)
}

// ensureMiss makes the trie's miss rule the last rule of node, which the
// model must have read or created.
func (x *txn) ensureMiss(t ruleset.Trie, node string) {
	if miss, ok := t.MissRule(node); ok {
		x.ensureLast(miss)
	}
}

// ensureLast makes r the last rule of its chain, which the model must have
// read or created, and its only copy (a copy is a rule with r's comment).
func (x *txn) ensureLast(r ruleset.Rule) { x.ensureTail(r.Chain, []ruleset.Rule{r}) }

// ensureTail makes tail, in order, the last rules of chain and their only
// copies.
func (x *txn) ensureTail(chain string, tail []ruleset.Rule) {
	if endsWith(x.chains[chain], tail) {
		return
	}
	x.deleteWhere(chain, func(in Installed) bool { return isCopy(in, tail) })
	for _, r := range tail {
		x.append(r)
	}
}

// endsWith reports whether rs ends with tail and holds no other copy of
// its rules.
func endsWith(rs []Installed, tail []ruleset.Rule) bool {
	n := len(rs) - len(tail)
	if n < 0 || slices.ContainsFunc(rs[:n], func(in Installed) bool { return isCopy(in, tail) }) {
		return false
	}
	return sameRules(rs[n:], tail)
}

func isCopy(in Installed, rs []ruleset.Rule) bool {
	return slices.ContainsFunc(rs, func(r ruleset.Rule) bool { return isMiss(in, r) })
}

// appendEdge adds a wildcard edge at the end of a node, above its miss rule.
func (x *txn) appendEdge(t ruleset.Trie, e ruleset.Rule) {
	rs := x.chains[e.Chain]
	if miss, ok := t.MissRule(e.Chain); ok && len(rs) > 0 && matches(rs[len(rs)-1], miss) {
		x.insertBefore(e, len(rs))
		return
	}
	x.append(e)
}

// isMiss reports whether in is a copy of miss, a rule kept last: it has
// miss's comment, whatever its hash.
func isMiss(in Installed, miss ruleset.Rule) bool {
	return in.Comment != "" && ruleset.StripHash(in.Comment) == miss.Comment
}

// nodeEmpty reports whether a trie node holds no edge and no leaf.
func nodeEmpty(t ruleset.Trie, rs []Installed) bool {
	miss, ok := t.MissRule("")
	for _, in := range rs {
		if !ok || !isMiss(in, miss) {
			return false
		}
	}
	return true
}

func (x *txn) insertTop(r ruleset.Rule) {
	x.ops = append(x.ops, "-I "+r.Chain+" 1 "+r.Spec())
	x.chains[r.Chain] = append([]Installed{{Comment: r.InstalledComment(), Spec: r.Spec()}}, x.chains[r.Chain]...)
}

// deleteWhere deletes the rules of chain for which drop is true.
func (x *txn) deleteWhere(chain string, drop func(Installed) bool) {
	rs := x.chains[chain]
	for i := len(rs) - 1; i >= 0; i-- {
		if drop(rs[i]) {
			x.ops = append(x.ops, fmt.Sprintf("-D %s %d", chain, i+1))
			rs = append(rs[:i:i], rs[i+1:]...)
		}
	}
	x.chains[chain] = rs
}

// remove deletes a chain whose rules are all deleted in the model.
func (x *txn) remove(chain string) {
	x.drops = append(x.drops, "-X "+chain)
	x.exists[chain] = false
	delete(x.chains, chain)
}

// flushRemove deletes a whole chain (a tap's own): flushed by its
// declaration, deleted at the end.
func (x *txn) flushRemove(chain string) {
	x.decl = append(x.decl, ":"+chain+" - [0:0]")
	x.remove(chain)
}

func (x *txn) changes() []string {
	out := append(append([]string{}, x.decl...), x.ops...)
	return append(out, x.drops...)
}

func ownerIs(owner string) func(Installed) bool {
	return func(in Installed) bool { return ruleset.CommentOwner(in.Comment) == owner }
}

// PlanChanges compares a plan with what r reads of the kernel, and sets
// with the plan's sets, and returns what must change. It reads only the
// chains the plan touches. A second call after the changes landed returns
// no changes.
func PlanChanges(r Reader, sets map[string][]netip.Prefix, p *ruleset.Plan) (*Changes, error) {
	c := &Changes{Sets: setChanges(sets, p)}
	x := newTxn(r)
	if err := x.read(p); err != nil {
		return nil, err
	}
	x.chainsWanted(p)
	x.membersWanted(p.Members)
	for _, g := range groups(p.Tails) {
		x.ensureTail(g.chain, g.rules)
	}
	x.hooksWanted(p.Hooks)
	if err := x.dispatchWanted(p, sets); err != nil {
		return nil, err
	}
	c.Restore = x.changes()
	return c, nil
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

// InstalledTaps lists every tap that has anything in the kernel: chains,
// leaves in the tries, or an address set.
func InstalledTaps(t *Table, sets map[string][]netip.Prefix) []string {
	seen := map[string]bool{}
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
	for name := range sets {
		if fam, ok := ruleset.FamilyOfSet(name); ok {
			if tap, ok := fam.TapOfSet(name); ok {
				seen[tap] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for tap := range seen {
		out = append(out, tap)
	}
	sort.Strings(out)
	return out
}

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
