package explain

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/nft"
)

// act carries out what the matched rule did, step being its step; it
// reports whether the base chain is done, and whether the packet was
// dropped.
func (w *nwalker) act(a action, step Step, entered map[string]bool) (done, dropped bool, err error) {
	if a.reject != nil {
		step.What, step.Target, step.Detail = WhatVerdict, Reject, w.rejectWith(a.reject)
		w.end(step, Reject)
		w.res.RejectWith = step.Detail
		return true, true, nil
	}
	if a.verdict == nil {
		step.What, step.Detail = a.what, a.detail
		w.res.Steps = append(w.res.Steps, step)
		return false, false, nil
	}
	if a.vmapKey != "" {
		step.Notes = append(step.Notes, "element "+a.vmapKey)
	}
	switch v := a.verdict; v.Kind {
	case nft.VerdictAccept:
		step.What, step.Target = WhatVerdict, Accept
		w.res.Steps = append(w.res.Steps, step)
		s := step
		w.accepted = &s
		return true, false, nil
	case nft.VerdictDrop:
		step.What, step.Target = WhatVerdict, Drop
		w.end(step, Drop)
		return true, true, nil
	case nft.VerdictContinue:
		step.What = WhatNoTarget
		w.res.Steps = append(w.res.Steps, step)
		return false, false, nil
	case nft.VerdictReturn:
		step.What, step.Target = WhatReturn, "RETURN"
		w.res.Steps = append(w.res.Steps, step)
		if w.ret() {
			return false, false, nil
		}
		return w.policy()
	case nft.VerdictJump, nft.VerdictGoto:
		return false, false, w.enter(v, step, entered)
	}
	step.What, step.Target = WhatUnknownTarget, a.verdict.Kind
	w.res.Steps = append(w.res.Steps, step)
	w.uncertain(fmt.Sprintf("%s rule %d: verdict %s is not simulated; assumed to let the packet go on", step.Chain, step.Index, a.verdict.Kind))
	return false, false, nil
}

// end ends the walk with a drop or reject of step. When the rule acts on
// mark bits an earlier rule set (a profile's REJECT marks the packet and
// the inet chains answer it), that earlier rule is the decisive one.
func (w *nwalker) end(step Step, verdict string) {
	w.res.Steps = append(w.res.Steps, step)
	d := step
	if w.marker != nil && markTested(w.chain.Rules[w.i-1])&w.markBits != 0 {
		d = *w.marker
		d.What, d.Target = WhatVerdict, verdict
		d.Notes = append(d.Notes, fmt.Sprintf("carried out by %s rule %d, which acts on the mark this rule set", step.Chain, step.Index))
	}
	w.res.Decisive, w.res.Verdict = &d, verdict
}

// markTested is the mark bits a rule's matches test (meta mark & MASK).
func markTested(r *nft.RuleInfo) uint32 {
	var bits uint32
	for _, e := range r.Exprs {
		m := e.Match
		if m == nil || m.Left.Kind != nft.ValBinop || m.Left.Op != "&" || len(m.Left.Parts) != 2 {
			continue
		}
		key, mask := m.Left.Parts[0], m.Left.Parts[1]
		if key.Kind != nft.ValMeta || key.Key != "mark" {
			continue
		}
		switch mask.Kind {
		case nft.ValNumber:
			bits |= uint32(mask.Num)
		case nft.ValString:
			if n, err := strconv.ParseUint(mask.Str, 0, 32); err == nil {
				bits |= uint32(n)
			}
		}
	}
	return bits
}

// rejectWith names what a reject answers with, the family's default when
// the rule does not say.
func (w *nwalker) rejectWith(r *nft.Reject) string {
	switch {
	case r.Type == "tcp reset":
		return r.Type
	case r.Type != "" && r.Code != "":
		return r.Type + " " + r.Code
	case r.Type != "":
		return r.Type + " port-unreachable"
	case w.family == "ip":
		return "icmp port-unreachable"
	case w.family == "ip6":
		return "icmpv6 port-unreachable"
	}
	return "icmpx port-unreachable"
}

// enter takes the packet into the chain a jump or goto names; a jump
// pushes the return address. It refuses a missing chain and a loop.
func (w *nwalker) enter(v *nft.Verdict, step Step, entered map[string]bool) error {
	c := w.l.Chain(w.family, w.table, v.Target)
	if c == nil {
		return fmt.Errorf("explain: %s rule %d: %s to missing chain %s", step.Chain, step.Index, v.Kind, v.Target)
	}
	step.Target = chainName(c)
	if v.Kind == nft.VerdictGoto {
		step.What = WhatGoto
	} else {
		step.What = WhatJump
		if c == w.chain || w.onStack(c) {
			return fmt.Errorf("explain: %s rule %d: loop through chain %s", step.Chain, step.Index, step.Target)
		}
		w.stack = append(w.stack, nframe{chain: w.chain, next: w.i})
	}
	w.res.Steps = append(w.res.Steps, step)
	var key strings.Builder
	key.WriteString(step.Target)
	for _, f := range w.stack {
		fmt.Fprintf(&key, " %s:%d", f.chain.Name, f.next)
	}
	if entered[key.String()] {
		return fmt.Errorf("explain: %s rule %d: loop through chain %s", step.Chain, step.Index, step.Target)
	}
	entered[key.String()] = true
	w.chain, w.i = c, 0
	return nil
}

func (w *nwalker) onStack(c *nft.ChainInfo) bool {
	for _, f := range w.stack {
		if f.chain == c {
			return true
		}
	}
	return false
}

// uncertain adds msg to Result.Uncertain, once.
func (w *nwalker) uncertain(msg string) {
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	if !w.seen[msg] {
		w.seen[msg] = true
		w.res.Uncertain = append(w.res.Uncertain, msg)
	}
}

// unknownRule records rule r, which cannot be evaluated, as assumed not
// to match, with why and what would follow if it did match.
func (w *nwalker) unknownRule(r *nft.RuleInfo, step Step, why []string) {
	step.What = WhatUnknown
	w.res.Steps = append(w.res.Steps, step)
	then := ruleVerdict(r)
	for _, y := range why {
		msg := fmt.Sprintf("%s rule %d: %s; assumed not to match", step.Chain, step.Index, y)
		if then == "" {
			msg += " (it only logs, counts or marks nothing that decides: the verdict does not depend on it)"
		} else {
			msg += " (if it does: " + then + ")"
		}
		w.uncertain(msg)
	}
}

// ruleVerdict is what the rule does to the packet's path when it
// matches, as nft prints it; empty for a rule that only logs or counts.
func ruleVerdict(r *nft.RuleInfo) string {
	var out []string
	for _, e := range r.Exprs {
		switch {
		case e.Verdict != nil, e.Reject != nil, e.VMap != nil, e.Mangle != nil:
			out = append(out, e.String())
		}
	}
	return strings.Join(out, " ")
}
