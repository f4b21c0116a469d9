package netfilter

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

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

// Said lists what the changes change, in the config's words, each once.
func (c *Changes) Said() []string {
	var out []string
	add := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, s := range c.Sets {
		add(ruleset.DescribeSet(s.Name, s.Entries))
		if fam, ok := ruleset.FamilyOfSet(s.Name); ok {
			if tap, ok := fam.TapOfSet(s.Name); ok {
				add(ruleset.TapRulesChanged(tap))
			}
		}
	}
	for _, line := range c.Restore {
		chain := ""
		if rest, ok := strings.CutPrefix(line, ":"); ok {
			chain, _, _ = strings.Cut(rest, " ")
		} else if f := strings.Fields(line); len(f) >= 2 {
			chain = f[1]
		}
		add(ruleset.DescribeChain(chain))
	}
	return out
}
