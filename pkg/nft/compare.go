package nft

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// sameRules reports whether the installed rules are the wanted ones:
// the same expressions (counters' values aside), the same anonymous set
// contents and the same comments, in the same order.
func sameRules(have []Installed, want []Rule) bool {
	return len(diffRules(have, want)) == 0
}

// diffRules names the positions where have and want differ.
func diffRules(have []Installed, want []Rule) []string {
	var out []string
	for i := 0; i < len(have) || i < len(want); i++ {
		switch {
		case i >= len(have):
			out = append(out, fmt.Sprintf("rule %d missing: %s", i+1, want[i]))
		case i >= len(want):
			out = append(out, fmt.Sprintf("rule %d not wanted: %q", i+1, comment(have[i].Rule)))
		case !sameRule(have[i], want[i]):
			out = append(out, fmt.Sprintf("rule %d differs: want %s\n\thave %s\n\twant %s", i+1, want[i], dumpExprs(have[i].Rule.Exprs), dumpExprs(want[i].Exprs)))
		}
	}
	return out
}

func sameRule(h Installed, w Rule) bool {
	if comment(h.Rule) != w.Comment || len(h.Rule.Exprs) != len(w.Exprs) {
		return false
	}
	anon := 0
	for i, he := range h.Rule.Exprs {
		we := w.Exprs[i]
		if hl, ok := he.(*expr.Lookup); ok && strings.HasPrefix(hl.SetName, "__set") {
			wl, ok := we.(*expr.Lookup)
			if !ok || anon >= len(w.Sets) || !sameLookup(*hl, *wl) || !sameElements(h.Sets[hl.SetName], w.Sets[anon].Elements) {
				return false
			}
			anon++
			continue
		}
		if !sameExpr(he, we) {
			return false
		}
	}
	return true
}

func sameLookup(a, b expr.Lookup) bool {
	a.SetName, a.SetID, b.SetName, b.SetID = "", 0, "", 0
	return sameExpr(&a, &b)
}

func sameExpr(a, b expr.Any) bool {
	if ca, ok := a.(*expr.Counter); ok {
		_, ok := b.(*expr.Counter)
		return ok && ca != nil
	}
	// Equal values marshal the same; unequal ones may too (a field the
	// kernel does not echo), so only the marshalled forms can tell.
	if reflect.DeepEqual(a, b) {
		return true
	}
	ma, err1 := expr.Marshal(unix.NFPROTO_BRIDGE, a)
	mb, err2 := expr.Marshal(unix.NFPROTO_BRIDGE, b)
	return err1 == nil && err2 == nil && bytes.Equal(ma, mb)
}

// sameElements compares the keys of two anonymous sets, in any order.
func sameElements(a, b []nftables.SetElement) bool {
	key := func(e nftables.SetElement) string { return fmt.Sprintf("%x/%v", e.Key, e.IntervalEnd) }
	ka, kb := make([]string, 0, len(a)), make([]string, 0, len(b))
	// nft puts an interval end at the first key in an interval set
	// whose first range does not start there; it says nothing.
	zeroEnd := func(e nftables.SetElement) bool {
		return e.IntervalEnd && !slices.ContainsFunc(e.Key, func(b byte) bool { return b != 0 })
	}
	for _, e := range a {
		if !zeroEnd(e) {
			ka = append(ka, key(e))
		}
	}
	for _, e := range b {
		if !zeroEnd(e) {
			kb = append(kb, key(e))
		}
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

// dumpExprs shows expressions for a difference's message.
func dumpExprs(es []expr.Any) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = fmt.Sprintf("%T%+v", e, e)
	}
	return strings.Join(parts, " ")
}
