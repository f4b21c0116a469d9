package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Named sets are interval sets of addresses, one per family. A changed
// set is changed in place, element by element, in the call's transaction:
// the rules that use it see the old content or the new, never a mix.

func kernelSet(s Set) *nftables.Set {
	kt := nftables.TypeIPAddr
	if s.Family == IPv6 {
		kt = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: tableOf(s.Table), Name: s.Name, KeyType: kt, Interval: true}
}

// intervals are a set's entries as the kernel holds them: merged ranges,
// each its first address and, unless it runs to the end of the address
// space, the address after its last marked as an interval end.
func intervals(entries []netip.Prefix) []nftables.SetElement {
	type span struct{ lo, hi netip.Addr }
	var spans []span
	for _, p := range entries {
		spans = append(spans, span{p.Masked().Addr(), ruleset.LastAddr(p)})
	}
	slices.SortFunc(spans, func(a, b span) int { return a.lo.Compare(b.lo) })
	var merged []span
	for _, s := range spans {
		if n := len(merged); n > 0 && (s.lo.Compare(merged[n-1].hi) <= 0 || s.lo == merged[n-1].hi.Next()) {
			if s.hi.Compare(merged[n-1].hi) > 0 {
				merged[n-1].hi = s.hi
			}
			continue
		}
		merged = append(merged, s)
	}
	var out []nftables.SetElement
	for _, s := range merged {
		out = append(out, nftables.SetElement{Key: s.lo.AsSlice()})
		if next := s.hi.Next(); next.IsValid() {
			out = append(out, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

// sets makes each named set exist and hold exactly its entries.
func (tx *txn) sets(sets []Set) error {
	c := tx.c
	for _, s := range sets {
		if !tx.first("set " + s.Table + " " + s.Name) {
			continue
		}
		ks := kernelSet(s)
		want := intervals(s.Entries)
		have, err := c.GetSetElements(ks)
		switch {
		case isNotFound(err):
			tx.change(describeSet(s))
			tx.note("add set %s %s %s { type %s ; flags interval ; }%s", s.Table, Table, s.Name, s.Family.addrType(), entriesText(s))
			if err := c.AddSet(ks, want); err != nil {
				return fmt.Errorf("set %s: %w", s.Name, err)
			}
			continue
		case err != nil:
			return fmt.Errorf("reading set %s: %w", s.Name, err)
		}
		if sameElements(withoutZeroEnd(have), want) {
			continue
		}
		tx.change(describeSet(s))
		tx.note("flush set %s %s %s%s", s.Table, Table, s.Name, entriesText(s))
		c.FlushSet(ks)
		if len(want) > 0 {
			if err := c.SetAddElements(ks, want); err != nil {
				return fmt.Errorf("set %s: %w", s.Name, err)
			}
		}
	}
	return nil
}

// withoutZeroEnd drops the interval end at the first address that nft
// puts in an interval set whose first range does not start there.
func withoutZeroEnd(els []nftables.SetElement) []nftables.SetElement {
	var out []nftables.SetElement
	for _, e := range els {
		if a, ok := netip.AddrFromSlice(e.Key); ok && e.IntervalEnd && a.IsUnspecified() {
			continue
		}
		out = append(out, e)
	}
	return out
}

// entriesText is the set's entries as the element command that follows
// its creation (or its flush), on a line of its own.
func entriesText(s Set) string {
	if len(s.Entries) == 0 {
		return ""
	}
	items := make([]string, len(s.Entries))
	for i, e := range s.Entries {
		items[i] = ruleset.PrefixString(e)
	}
	return fmt.Sprintf("\nadd element %s %s %s { %s }", s.Table, Table, s.Name, strings.Join(items, ", "))
}

// describeSet names a set in the config's words, with what it holds.
func describeSet(s Set) string {
	var field string
	switch {
	case s.Name == HostSet(s.Family):
		field = "host: addresses"
	case s.Name == ClusterSet(s.Family):
		field = "host: clusterHosts"
	case strings.HasPrefix(s.Name, UserSet("", s.Family)):
		field = "ipsets." + strings.TrimPrefix(s.Name, UserSet("", s.Family))
	default:
		return ""
	}
	return ruleset.SetHolds(field, s.Family == IPv6, s.Entries)
}
