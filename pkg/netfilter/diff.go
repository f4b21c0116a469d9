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
		fmt.Fprintf(&b, "# ipset %s %s hash:net family inet:", verb, s.Name)
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
	rules        []string
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
		gs[i].rules = append(gs[i].rules, r.Spec())
	}
	return gs
}

func ownedBy(t *Table, chain, owner string) []string {
	var out []string
	for _, s := range t.Chains[chain] {
		if Owner(s) == owner {
			out = append(out, s)
		}
	}
	return out
}

// PlanChanges compares a plan with the installed table and sets and
// returns what must change. A second call after the changes landed
// returns no changes.
func PlanChanges(t *Table, sets map[string][]netip.Prefix, p *ruleset.Plan) *Changes {
	c := &Changes{}
	for _, s := range p.BaseSets {
		if _, ok := sets[s.Name]; !ok {
			c.Sets = append(c.Sets, SetChange{Name: s.Name, Entries: s.Entries})
		}
	}
	for _, s := range p.Sets {
		cur, ok := sets[s.Name]
		if !ok || !samePrefixes(cur, s.Entries) {
			c.Sets = append(c.Sets, SetChange{Name: s.Name, Entries: s.Entries, Exists: ok})
		}
	}

	var decl, body []string
	for _, ch := range p.Base {
		if !t.Has(ch.Name) {
			decl = append(decl, ":"+ch.Name+" - [0:0]")
			body = append(body, ruleLines(ch.Rules)...)
		}
	}
	for _, chs := range [][]ruleset.Chain{p.Shared, p.Owned} {
		for _, ch := range chs {
			if t.Has(ch.Name) && sameSpecs(specs(ch.Rules), t.Chains[ch.Name]) {
				continue
			}
			// Declaring an existing chain with --noflush flushes it: the
			// chain is rewritten whole, in the same transaction.
			decl = append(decl, ":"+ch.Name+" - [0:0]")
			body = append(body, ruleLines(ch.Rules)...)
		}
	}
	for _, g := range groups(p.Members) {
		cur := ownedBy(t, g.chain, g.owner)
		if sameSpecs(g.rules, cur) {
			continue
		}
		for _, s := range cur {
			body = append(body, "-D "+g.chain+" "+s)
		}
		for _, s := range g.rules {
			body = append(body, "-A "+g.chain+" "+s)
		}
	}
	for _, g := range groups(p.Hooks) {
		cur := ownedBy(t, g.chain, g.owner)
		if sameSpecs(g.rules, cur) {
			continue
		}
		for _, s := range cur {
			body = append(body, "-D "+g.chain+" "+s)
		}
		for i := len(g.rules) - 1; i >= 0; i-- {
			body = append(body, "-I "+g.chain+" 1 "+g.rules[i])
		}
	}
	c.Restore = append(decl, body...)
	return c
}

func ruleLines(rs []ruleset.Rule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// RemoveChanges returns what removes every trace of the given taps: their
// rules in shared chains, their chains and their address sets. Taps with
// nothing installed contribute nothing.
func RemoveChanges(t *Table, sets map[string][]netip.Prefix, taps ...string) *Changes {
	c := &Changes{}
	want := map[string]bool{}
	for _, tap := range taps {
		want[tap] = true
	}
	var decl, body, del []string
	for _, chain := range t.Order {
		if tap, ok := ruleset.IsTapChain(chain); ok {
			if want[tap] {
				decl = append(decl, ":"+chain+" - [0:0]")
				del = append(del, "-X "+chain)
			}
			continue
		}
		if !strings.HasPrefix(chain, ruleset.ChainPrefix) {
			continue // taps own no rules in chains that are not tapfw's
		}
		for _, s := range t.Chains[chain] {
			if want[Owner(s)] {
				body = append(body, "-D "+chain+" "+s)
			}
		}
	}
	c.Restore = append(append(decl, body...), del...)
	for _, tap := range taps {
		if _, ok := sets[ruleset.TapSet(tap)]; ok {
			c.Destroy = append(c.Destroy, ruleset.TapSet(tap))
		}
	}
	return c
}

// Attachments lists the taps installed, read back from the comments of
// their dispatch rules.
func Attachments(t *Table) []ruleset.Attachment {
	var out []ruleset.Attachment
	for _, chain := range t.Order {
		if !ruleset.IsBridgeDispatch(chain) || !strings.HasSuffix(chain, "-OUT") {
			continue
		}
		for _, s := range t.Chains[chain] {
			if a, ok := ruleset.ParseDispatchComment(Comment(s)); ok {
				out = append(out, a)
			}
		}
	}
	return out
}

// InstalledTaps lists every tap that has anything in the kernel: chains,
// rules in shared chains, or an address set.
func InstalledTaps(t *Table, sets map[string][]netip.Prefix) []string {
	seen := map[string]bool{}
	for _, chain := range t.Order {
		if tap, ok := ruleset.IsTapChain(chain); ok {
			seen[tap] = true
		}
	}
	for _, a := range Attachments(t) {
		seen[a.Tap] = true
	}
	for name := range sets {
		if tap, ok := strings.CutPrefix(name, "tfw-t-"); ok {
			seen[tap] = true
		}
	}
	out := make([]string, 0, len(seen))
	for tap := range seen {
		out = append(out, tap)
	}
	sort.Strings(out)
	return out
}

// Verify compares a plan with what is installed and returns one line per
// difference, naming table, chain and rule, or ipset and entries.
func Verify(t *Table, sets map[string][]netip.Prefix, p *ruleset.Plan) []string {
	var diffs []string
	add := func(format string, a ...any) { diffs = append(diffs, fmt.Sprintf(format, a...)) }
	for _, ch := range p.Base {
		if !t.Has(ch.Name) {
			add("table filter, chain %s: missing", ch.Name)
		}
	}
	for _, chs := range [][]ruleset.Chain{p.Shared, p.Owned} {
		for _, ch := range chs {
			if !t.Has(ch.Name) {
				add("table filter, chain %s: missing", ch.Name)
				continue
			}
			diffs = append(diffs, compareChain(ch.Name, specs(ch.Rules), t.Chains[ch.Name])...)
		}
	}
	for _, rs := range [][]ruleset.Rule{p.Members, p.Hooks} {
		for _, g := range groups(rs) {
			if !t.Has(g.chain) {
				add("table filter, chain %s: missing", g.chain)
				continue
			}
			cur := ownedBy(t, g.chain, g.owner)
			for _, want := range g.rules {
				if !slices.ContainsFunc(cur, func(s string) bool { return Normalize(s) == Normalize(want) }) {
					add("table filter, chain %s: rule %q missing", g.chain, "-A "+g.chain+" "+want)
				}
			}
			for _, s := range cur {
				if !slices.ContainsFunc(g.rules, func(w string) bool { return Normalize(s) == Normalize(w) }) {
					add("table filter, chain %s: unexpected rule %q", g.chain, "-A "+g.chain+" "+s)
				}
			}
		}
	}
	for _, s := range p.BaseSets {
		if _, ok := sets[s.Name]; !ok {
			add("ipset %s: missing", s.Name)
		}
	}
	for _, s := range p.Sets {
		cur, ok := sets[s.Name]
		switch {
		case !ok:
			add("ipset %s: missing", s.Name)
		case !samePrefixes(cur, s.Entries):
			add("ipset %s: entries are [%s], want [%s]", s.Name, prefixList(cur), prefixList(s.Entries))
		}
	}
	return diffs
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = entryString(p)
	}
	return strings.Join(s, " ")
}

func compareChain(chain string, want, got []string) []string {
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
			diffs = append(diffs, fmt.Sprintf("table filter, chain %s, rule %d: missing %q", chain, i+1, "-A "+chain+" "+s))
		}
	}
	for i, s := range got {
		if !w[Normalize(s)] {
			diffs = append(diffs, fmt.Sprintf("table filter, chain %s, rule %d: unexpected %q", chain, i+1, "-A "+chain+" "+s))
		}
	}
	if len(diffs) == 0 {
		diffs = append(diffs, fmt.Sprintf("table filter, chain %s: rules are out of order", chain))
	}
	return diffs
}
