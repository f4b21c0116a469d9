package explain

import (
	"fmt"
	"strings"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Text renders the walk for a person: a line per step (chain, rule number,
// the rule without its comment, the comment in parentheses), then the
// verdict and what is uncertain. For example:
//
//	FORWARD 1  -j TFW-FORWARD  (@tapfw: hook)
//	TFW-FORWARD 1  -o vmbr0 -m physdev --physdev-is-bridged -j TFW-B-vmbr0  (vmbr0: bridged)
//	...
//	verdict DROP by TFW-T-tap110i0-IN rule 7 "tap110i0: policy drop"
//
// tapfw's rule hashes ("#1a2b3c4d") are left out of the comments.
func (r Result) Text() string {
	var b strings.Builder
	for _, s := range r.Steps {
		b.WriteString(s.line())
		b.WriteByte('\n')
	}
	verdict := r.Verdict
	if r.Verdict == Reject && r.RejectWith != "" {
		verdict += " (" + r.RejectWith + ")"
	}
	switch d := r.Decisive; {
	case d != nil:
		fmt.Fprintf(&b, "verdict %s by %s rule %d", verdict, d.Chain, d.Index)
		if c := ruleset.StripHash(d.Comment); c != "" {
			fmt.Fprintf(&b, " %q", c)
		}
		b.WriteByte('\n')
	case len(r.Steps) > 0 && r.Steps[len(r.Steps)-1].What == WhatPolicy:
		fmt.Fprintf(&b, "verdict %s by the %s policy\n", verdict, r.Steps[len(r.Steps)-1].Chain)
	default:
		fmt.Fprintf(&b, "verdict %s\n", verdict)
	}
	for _, u := range r.Uncertain {
		fmt.Fprintf(&b, "uncertain: %s\n", u)
	}
	return b.String()
}

// line renders one step.
func (s Step) line() string {
	switch s.What {
	case WhatPolicy:
		return fmt.Sprintf("%s  policy %s", s.Chain, s.Target)
	case WhatEnd:
		return fmt.Sprintf("%s  end of chain, return to %s", s.Chain, s.Target)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d  %s", s.Chain, s.Index, withoutComment(s.Spec))
	if c := ruleset.StripHash(s.Comment); c != "" {
		fmt.Fprintf(&b, "  (%s)", c)
	}
	var notes []string
	if s.What == WhatUnknown || s.What == WhatUnknownTarget {
		notes = append(notes, s.What)
	}
	notes = append(notes, s.Notes...)
	if len(notes) > 0 {
		fmt.Fprintf(&b, "  [%s]", strings.Join(notes, "; "))
	}
	return b.String()
}

// withoutComment returns spec without its "-m comment --comment ..."
// parts.
func withoutComment(spec string) string {
	toks, err := tokenize(spec)
	if err != nil {
		return spec
	}
	var b strings.Builder
	last := 0
	for i := 0; i+2 < len(toks); i++ {
		if toks[i].val == "-m" && toks[i+1].val == "comment" && toks[i+2].val == "--comment" && i+3 < len(toks) {
			b.WriteString(spec[last:toks[i].start])
			last = toks[i+3].end
			for last < len(spec) && spec[last] == ' ' {
				last++
			}
			i += 3
		}
	}
	b.WriteString(spec[last:])
	return strings.TrimSpace(b.String())
}
