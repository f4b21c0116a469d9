package explain

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/nft"
)

// The evaluation of one nftables rule: its expressions in order, as
// nft_do_chain runs them. A match that fails ends the rule; statements
// before it (a counter, a mark set) have been done; a verdict ends it.

// matchKeys loads the key of a match: one field per part of a
// concatenation.
func (w *nwalker) matchKeys(v nft.Value) []field {
	if v.Kind == nft.ValConcat {
		out := make([]field, len(v.Parts))
		for i, p := range v.Parts {
			out[i] = w.load(p)
		}
		return out
	}
	return []field{w.load(v)}
}

// keysOK checks that every part of a key is known; it returns the
// outcome of the match when one is not.
func keysOK(keys []field) (outcome, bool) {
	var why []string
	var notes []string
	for _, k := range keys {
		if k.absent {
			return outcome{v: no}, false
		}
		if k.why != "" {
			why = append(why, k.why)
		}
		if k.note != "" {
			notes = append(notes, k.note)
		}
	}
	if len(why) > 0 {
		return outcome{v: unknown, why: why}, false
	}
	return outcome{v: yes, notes: notes}, true
}

// evalMatch is one relational expression.
func (w *nwalker) evalMatch(m *nft.Match) outcome {
	keys := w.matchKeys(m.Left)
	out, ok := keysOK(keys)
	if !ok {
		return out
	}
	in, err := w.member(keys, m.Right)
	if err != nil {
		return outcome{v: unknown, why: []string{err.Error()}}
	}
	var hit bool
	switch m.Op {
	case "==", "in":
		hit = in
	case "!=":
		hit = !in
	case "<", ">", "<=", ">=":
		if len(keys) != 1 || m.Right.Kind != nft.ValNumber && m.Right.Kind != nft.ValString {
			return outcome{v: unknown, why: []string{m.Op + " of a set is not simulated"}}
		}
		c, err := constant(keys[0], m.Right)
		if err != nil {
			return outcome{v: unknown, why: []string{err.Error()}}
		}
		hit = compare(keys[0].b, c.lo, m.Op)
	default:
		return outcome{v: unknown, why: []string{"operator " + m.Op + " is not simulated"}}
	}
	if !hit {
		return outcome{v: no}
	}
	return out
}

func compare(a, b []byte, op string) bool {
	c := strings.Compare(string(a), string(b))
	switch op {
	case "<":
		return c < 0
	case ">":
		return c > 0
	case "<=":
		return c <= 0
	}
	return c >= 0
}

// member says whether the key is in r: a named set, an anonymous one, a
// list of flags or one constant.
func (w *nwalker) member(keys []field, r nft.Value) (bool, error) {
	switch r.Kind {
	case nft.ValSetRef:
		s := w.l.Set(w.family, w.table, r.Str)
		if s == nil {
			return false, fmt.Errorf("set @%s is not in the listing", r.Str)
		}
		_, ok, err := lookup(keys, s.Elements)
		return ok, err
	case nft.ValSet:
		_, ok, err := lookup(keys, r.Elements)
		return ok, err
	case nft.ValList:
		if len(keys) == 1 && keys[0].kind == kCtState {
			return flagsIn(keys[0], r.Parts)
		}
		return false, fmt.Errorf("a list %s is not simulated", r)
	}
	if len(keys) == 1 && keys[0].kind == kCtState {
		return flagsIn(keys[0], []nft.Value{r})
	}
	if r.Kind == nft.ValConcat {
		_, ok, err := lookup(keys, []nft.Element{{Key: r.Parts}})
		return ok, err
	}
	_, ok, err := lookup(keys, []nft.Element{{Key: []nft.Value{r}}})
	return ok, err
}

// flagsIn says whether a state bit of k is among the flags.
func flagsIn(k field, flags []nft.Value) (bool, error) {
	for _, f := range flags {
		c, err := constant(k, f)
		if err != nil {
			return false, err
		}
		for i := range c.lo {
			if c.lo[i]&k.b[i] != 0 {
				return true, nil
			}
		}
	}
	return false, nil
}

// lookup finds the element whose every key part holds the key's.
func lookup(keys []field, els []nft.Element) (*nft.Element, bool, error) {
	for i := range els {
		e := &els[i]
		if len(e.Key) != len(keys) {
			return nil, false, fmt.Errorf("element %s has %d parts, the key %d", e, len(e.Key), len(keys))
		}
		all := true
		for j, part := range e.Key {
			c, err := constant(keys[j], part)
			if err != nil {
				return nil, false, err
			}
			if len(c.lo) != len(keys[j].b) || !c.contains(keys[j].b) {
				all = false
				break
			}
		}
		if all {
			return e, true, nil
		}
	}
	return nil, false, nil
}

// action is what a matched rule did to the packet.
type action struct {
	verdict *nft.Verdict // nil: the packet goes on to the next rule
	reject  *nft.Reject
	what    string // for a rule without verdict: WhatLog, WhatMark, WhatNoTarget
	detail  string
	vmapKey string // the element a vmap found
	marked  uint32 // the mark bits the rule set
}

// evalRule runs the rule's expressions; the action is valid when the
// outcome is yes.
func (w *nwalker) evalRule(r *nft.RuleInfo) (outcome, action) {
	out := outcome{v: yes}
	act := action{what: WhatNoTarget}
	for _, e := range r.Exprs {
		o := w.evalExpr(e, &act)
		switch o.v {
		case no:
			return outcome{v: no}, act
		case unknown:
			return o, act
		}
		out.notes = append(out.notes, o.notes...)
		if act.verdict != nil || act.reject != nil {
			break
		}
	}
	return out, act
}

// evalExpr runs one expression; statements change act.
func (w *nwalker) evalExpr(e nft.Expr, act *action) outcome {
	switch {
	case e.Match != nil:
		return w.evalMatch(e.Match)
	case e.Verdict != nil:
		act.verdict = e.Verdict
	case e.VMap != nil:
		return w.evalVMap(e.VMap, act)
	case e.Counter != nil || e.NamedCounter != "":
	case e.Limit != nil:
		return outcome{v: yes, notes: []string{"limit " + strings.TrimPrefix(e.Limit.String(), "limit ") + " assumed to match"}}
	case e.SetUpdate != nil:
		if l := e.SetUpdate.Limit; l != nil {
			return outcome{v: yes, notes: []string{"limit " + strings.TrimPrefix(l.String(), "limit ") + " per " + e.SetUpdate.Elem.String() + " assumed to match"}}
		}
	case e.Log != nil:
		act.what, act.detail = WhatLog, e.Log.Prefix
	case e.Reject != nil:
		act.reject = e.Reject
	case e.Mangle != nil:
		return w.evalMangle(e.Mangle, act)
	default:
		return outcome{v: unknown, why: []string{"statement " + e.String() + " is not simulated"}}
	}
	return outcome{v: yes}
}

// evalVMap looks the key up in the verdict map: no element ends the rule.
func (w *nwalker) evalVMap(m *nft.VMap, act *action) outcome {
	keys := w.matchKeys(m.Key)
	if out, ok := keysOK(keys); !ok {
		return out
	}
	els := m.Data.Elements
	if m.Data.Kind == nft.ValSetRef {
		s := w.l.Set(w.family, w.table, m.Data.Str)
		if s == nil {
			return outcome{v: unknown, why: []string{"map @" + m.Data.Str + " is not in the listing"}}
		}
		els = s.Elements
	}
	e, ok, err := lookup(keys, els)
	if err != nil {
		return outcome{v: unknown, why: []string{err.Error()}}
	}
	if !ok {
		return outcome{v: no}
	}
	if e.Data == nil || e.Data.Verdict == nil {
		return outcome{v: unknown, why: []string{"map element " + e.String() + " has no verdict"}}
	}
	act.verdict = e.Data.Verdict
	act.vmapKey = elementText(keys, e)
	return outcome{v: yes}
}

func elementText(keys []field, e *nft.Element) string {
	parts := make([]string, len(e.Key))
	for i, k := range e.Key {
		parts[i] = k.String()
		if keys[i].kind == kIfname && k.Kind == nft.ValString {
			parts[i] = strconv.Quote(k.Str)
		}
	}
	return strings.Join(parts, " . ")
}

// evalMangle sets the packet's mark (meta mark set EXPR).
func (w *nwalker) evalMangle(m *nft.Mangle, act *action) outcome {
	if m.Key.Kind != nft.ValMeta || m.Key.Key != "mark" {
		return outcome{v: unknown, why: []string{"setting " + m.Key.String() + " is not simulated"}}
	}
	var f field
	if m.Value.Kind == nft.ValNumber {
		f = num(m.Value.Num, 4, nil)
	} else {
		f = w.load(m.Value)
	}
	if !f.ok() {
		return outcome{v: unknown, why: []string{"meta mark set " + m.Value.String() + ": " + f.why}}
	}
	old := w.mark
	w.mark = uint32(f.b[0])<<24 | uint32(f.b[1])<<16 | uint32(f.b[2])<<8 | uint32(f.b[3])
	act.marked |= w.mark &^ old
	act.what, act.detail = WhatMark, fmt.Sprintf("mark now %#x", w.mark)
	return outcome{v: yes}
}
