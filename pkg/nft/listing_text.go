package nft

import (
	"fmt"
	"strconv"
	"strings"
)

// Text prints the rule in nft syntax, close to what `nft list` prints
// (without the handle): its expressions, then its comment.
func (r *RuleInfo) Text() string {
	var words []string
	for _, e := range r.Exprs {
		words = append(words, e.String())
	}
	if r.Comment != "" {
		words = append(words, "comment "+strconv.Quote(r.Comment))
	}
	return strings.Join(words, " ")
}

// String prints the expression in nft syntax.
func (e Expr) String() string {
	switch {
	case e.Match != nil:
		return e.Match.String()
	case e.Verdict != nil:
		return e.Verdict.String()
	case e.VMap != nil:
		c := contextOf(e.VMap.Key)
		return e.VMap.Key.format(c) + " vmap " + e.VMap.Data.format(c)
	case e.Counter != nil:
		return fmt.Sprintf("counter packets %d bytes %d", e.Counter.Packets, e.Counter.Bytes)
	case e.NamedCounter != "":
		return "counter name " + strconv.Quote(e.NamedCounter)
	case e.Limit != nil:
		return e.Limit.String()
	case e.SetUpdate != nil:
		return e.SetUpdate.String()
	case e.Log != nil:
		return e.Log.String()
	case e.Reject != nil:
		return e.Reject.String()
	case e.Mangle != nil:
		c := contextOf(e.Mangle.Key)
		return e.Mangle.Key.format(c) + " set " + e.Mangle.Value.format(c)
	}
	return fmt.Sprintf("<%s %s>", e.Unknown, e.Raw)
}

// String prints the match as nft does: "==" and "in" are left out,
// except after a binary operation.
func (m *Match) String() string {
	c := contextOf(m.Left)
	l, r := m.Left.format(c), m.Right.format(c)
	switch {
	case m.Op == "in" || m.Op == "==" && m.Left.Kind != ValBinop:
		return l + " " + r
	}
	return l + " " + m.Op + " " + r
}

func (v *Verdict) String() string {
	if v.Target != "" {
		return v.Kind + " " + v.Target
	}
	return v.Kind
}

func (l *Limit) String() string {
	s := "limit rate "
	if l.Over {
		s += "over "
	}
	unit := ""
	if l.Unit != "" {
		unit = " " + l.Unit
	}
	s += fmt.Sprintf("%d%s/%s", l.Rate, unit, l.Per)
	if l.Burst != 0 && l.Burst != 5 {
		s += fmt.Sprintf(" burst %d packets", l.Burst)
	}
	return s
}

func (u *SetUpdate) String() string {
	s := u.Op + " @" + u.Set + " { " + u.Elem.format(contextOf(u.Elem))
	if u.Limit != nil {
		s += " " + u.Limit.String()
	}
	return s + " }"
}

func (l *Log) String() string {
	s := "log"
	if l.Prefix != "" {
		s += " prefix " + strconv.Quote(l.Prefix)
	}
	if l.Level != "" {
		s += " level " + l.Level
	}
	if l.Group >= 0 {
		s += fmt.Sprintf(" group %d", l.Group)
	}
	return s
}

func (r *Reject) String() string {
	switch {
	case r.Type == "tcp reset":
		return "reject with tcp reset"
	case r.Type == "" || r.Code == "port-unreachable" && r.Type == "icmpx":
		return "reject"
	}
	return strings.TrimSpace("reject with " + r.Type + " " + r.Code)
}

// valueContext is how the values compared with a key print: marks in
// hex, interface names quoted; a concatenation has one per part.
type valueContext struct {
	hex, quote bool
	parts      []valueContext
}

// contextOf is the context of the values a key is compared with.
func contextOf(key Value) valueContext {
	switch key.Kind {
	case ValMeta, ValCt:
		switch key.Key {
		case "mark":
			return valueContext{hex: true}
		case "iifname", "oifname", "ibrname", "obrname":
			return valueContext{quote: true}
		}
	case ValBinop:
		return contextOf(key.Parts[0])
	case ValConcat:
		var c valueContext
		for _, p := range key.Parts {
			c.parts = append(c.parts, contextOf(p))
		}
		return c
	}
	return valueContext{}
}

// part is the context of the i-th part of a concatenation.
func (c valueContext) part(i int) valueContext {
	if i < len(c.parts) {
		return c.parts[i]
	}
	return valueContext{}
}

// String prints the value in nft syntax, without the key it goes with.
func (v Value) String() string { return v.format(valueContext{}) }

func (v Value) format(c valueContext) string {
	switch v.Kind {
	case ValString:
		if c.quote {
			return strconv.Quote(v.Str)
		}
		return v.Str
	case ValNumber:
		if c.hex {
			return fmt.Sprintf("0x%08x", v.Num)
		}
		return strconv.FormatUint(v.Num, 10)
	case ValList:
		return joinValues(v.Parts, ",", func(int) valueContext { return c })
	case ValMeta:
		switch v.Key {
		case "iif", "oif", "iifname", "oifname", "iifgroup", "oifgroup":
			return v.Key
		}
		return "meta " + v.Key
	case ValCt:
		if v.Dir != "" {
			return "ct " + v.Dir + " " + v.Key
		}
		return "ct " + v.Key
	case ValPayload:
		return v.Protocol + " " + v.Field
	case ValRaw:
		return fmt.Sprintf("@%s,%d,%d", v.Base, v.Offset, v.Len)
	case ValConcat:
		return joinValues(v.Parts, " . ", c.part)
	case ValBinop:
		return v.Parts[0].format(c) + " " + v.Op + " " + v.Parts[1].format(c)
	}
	return v.formatOther(c)
}

func (v Value) formatOther(c valueContext) string {
	switch v.Kind {
	case ValSetRef:
		return "@" + v.Str
	case ValSet:
		var els []string
		for _, e := range v.Elements {
			els = append(els, e.format(c))
		}
		return "{ " + strings.Join(els, ", ") + " }"
	case ValPrefix:
		return v.Str + "/" + strconv.Itoa(v.Len)
	case ValRange:
		return v.Parts[0].format(c) + "-" + v.Parts[1].format(c)
	case ValVerdict:
		return v.Verdict.String()
	case ValFib:
		return "fib " + joinValues(v.Parts, " . ", func(int) valueContext { return c }) + " " + v.Key
	}
	return fmt.Sprintf("<%s>", v.Raw)
}

func joinValues(vs []Value, sep string, ctx func(int) valueContext) string {
	s := make([]string, len(vs))
	for i, p := range vs {
		s[i] = p.format(ctx(i))
	}
	return strings.Join(s, sep)
}

// String prints the element as nft lists it: its key's parts joined by
// " . ", then " : " and its data in a map. Parts are printed without
// their set's types (interface names unquoted); Set.ElementText quotes
// them.
func (e Element) String() string { return e.format(valueContext{}) }

func (e Element) format(c valueContext) string {
	var s string
	if len(c.parts) == 0 && len(e.Key) == 1 {
		s = e.Key[0].format(c)
	} else {
		s = joinValues(e.Key, " . ", c.part)
	}
	if e.Data != nil {
		s += " : " + e.Data.String()
	}
	return s
}

// ElementText prints element i of the set as nft lists it, interface
// names quoted.
func (s *SetInfo) ElementText(i int) string {
	var c valueContext
	for _, t := range s.Type {
		c.parts = append(c.parts, valueContext{quote: t == "ifname"})
	}
	if len(c.parts) == 1 {
		c = c.parts[0]
	}
	return s.Elements[i].format(c)
}
