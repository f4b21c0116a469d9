package nft

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// Listing is the whole ruleset as `nft -j list ruleset` prints it, every
// table's (tapfw's and others'), decoded into typed values. It is the one
// reader of that format: the operator's explain, show and metrics use it;
// the CNI verbs never run nft to read.
//
// Everything is in listing order. A Listing is read-only once parsed.
type Listing struct {
	Tables []TableInfo
	Chains []*ChainInfo // each with its rules, in order
	Sets   []*SetInfo   // sets and maps
	chains map[[3]string]*ChainInfo
	sets   map[[3]string]*SetInfo
}

// TableInfo is a table: its family (ip, ip6, inet, arp, bridge, netdev)
// and name.
type TableInfo struct {
	Family, Name string
}

// ChainInfo is a chain and its rules. Type, Hook and Policy are empty for
// a regular (non-base) chain.
type ChainInfo struct {
	Family, Table, Name string
	Type, Hook          string // e.g. "filter", "prerouting"
	Priority            int
	Policy              string // "accept" or "drop"
	Rules               []*RuleInfo
}

// Base reports whether the chain is attached to a hook.
func (c *ChainInfo) Base() bool { return c.Hook != "" }

// RuleInfo is one rule: where it is, its handle and comment, its
// expressions in order, and its counter (nil without a counter
// statement; the first one when it has several).
type RuleInfo struct {
	Family, Table, Chain string
	Handle               int
	Comment              string
	Exprs                []Expr
	Counter              *Counter
}

// Counter is a counter's packets and bytes.
type Counter struct {
	Packets, Bytes uint64
}

// SetInfo is a named set or map. Type has one entry per part of the key
// (two for "ifname . ipv4_addr"); DataType is a map's data type
// ("verdict" for a verdict map), empty for a set. Counter says that each
// element has its own counter (the set's "counter" statement).
type SetInfo struct {
	Family, Table, Name string
	Map                 bool
	Type                []string
	DataType            string
	Flags               []string // e.g. "interval", "constant"
	Counter             bool
	Elements            []Element
}

// Element is an element of a named or an anonymous set or map: its key,
// one part per part of a concatenation (a part is a string, a number, a
// prefix or a range), its data in a map (a verdict in a verdict map), and
// its counter in a set with counters.
type Element struct {
	Key     []Value
	Data    *Value
	Counter *Counter
}

// Expr is one expression of a rule: exactly one of its pointers is set,
// or, for one this reader does not know, Unknown names it (Raw holds its
// JSON).
type Expr struct {
	Match   *Match
	Verdict *Verdict
	VMap    *VMap
	Counter *Counter
	// NamedCounter is a "counter name X" reference.
	NamedCounter string
	Limit        *Limit
	// SetUpdate is a statement adding to or updating a named set.
	SetUpdate *SetUpdate
	Log       *Log
	Reject    *Reject
	Mangle    *Mangle
	Unknown   string
	Raw       json.RawMessage
}

// Match is a relational expression: Left Op Right, with Op one of ==,
// !=, <, >, <=, >=, and "in" (flags: any of Right's bits). A lookup in a
// set is a match whose Right is a set (a reference or an anonymous one).
type Match struct {
	Op          string
	Left, Right Value
}

// Verdict kinds, as in Verdict.Kind.
const (
	VerdictAccept   = "accept"
	VerdictDrop     = "drop"
	VerdictReturn   = "return"
	VerdictContinue = "continue"
	VerdictJump     = "jump"
	VerdictGoto     = "goto"
	VerdictQueue    = "queue"
)

// Verdict is a verdict statement; Target is the chain of a jump or goto.
type Verdict struct {
	Kind, Target string
}

// VMap is "Key vmap Data": Data is a set reference or an anonymous map.
type VMap struct {
	Key, Data Value
}

// Limit is a rate limit: Rate per Per (second, minute, ...), with its
// burst; Unit is "bytes" for a byte rate, empty for packets. Over
// inverts it.
type Limit struct {
	Rate, Burst uint64
	Per, Unit   string
	Over        bool
}

// SetUpdate adds the packet's Elem to Set, or updates it (Op "add",
// "update"), with Limit, when there is one, as the element's own limit:
// the rule goes on while the element is within it.
type SetUpdate struct {
	Op, Set string
	Elem    Value
	Limit   *Limit
}

// Log is a log statement: its prefix, and Group >= 0 for nflog (-1
// without a group).
type Log struct {
	Prefix string
	Group  int
	Level  string
}

// Reject is a reject statement: Type is "tcp reset", "icmpx", "icmp" or
// "icmpv6" (empty: the family's default), Code what follows it
// ("port-unreachable").
type Reject struct {
	Type, Code string
}

// Mangle sets Key (meta mark, ct mark, ...) to Value.
type Mangle struct {
	Key, Value Value
}

// Kinds of Value.
const (
	ValString  = "string"  // Str: a name, an address, a symbolic constant
	ValNumber  = "number"  // Num
	ValList    = "list"    // Parts: a list of flags (ct state established,related)
	ValMeta    = "meta"    // Key: iifname, mark, l4proto, ...
	ValCt      = "ct"      // Key: state, mark, ...; Dir: original or reply
	ValPayload = "payload" // Protocol and Field: ip saddr, tcp dport
	ValRaw     = "raw"     // Base (ll, nh, th), Offset and Len in bits: @th,64,128
	ValConcat  = "concat"  // Parts joined by " . "
	ValBinop   = "binop"   // Op (&, |, ^, <<, >>) of Parts[0] and Parts[1]
	ValSetRef  = "setref"  // Str: the named set's name, without the @
	ValSet     = "set"     // Elements: an anonymous set or map
	ValPrefix  = "prefix"  // Str: the address, Len: the prefix length
	ValRange   = "range"   // Parts[0] to Parts[1], both included
	ValVerdict = "verdict" // Verdict: the data of a verdict map's element
	ValFib     = "fib"     // Key: the result (type, oif, oifname); Parts: the flags (saddr, daddr, iif, ...)
	ValUnknown = "unknown" // Raw: JSON this reader does not decode
)

// Value is an operand of an expression, or a part of a set element.
type Value struct {
	Kind     string
	Str      string
	Num      uint64
	Key, Dir string
	Protocol string
	Field    string
	Base     string
	Offset   int
	Len      int
	Op       string
	Parts    []Value
	Elements []Element
	Verdict  *Verdict
	Raw      json.RawMessage
}

// ReadListing runs `nft -j list ruleset` in the caller's network
// namespace and parses it.
func ReadListing() (*Listing, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("nft", "-j", "list", "ruleset")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("running nft -j list ruleset: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return ParseListing(stdout.Bytes())
}

// Chain is the chain family table name, or nil.
func (l *Listing) Chain(family, table, name string) *ChainInfo {
	return l.chains[[3]string{family, table, name}]
}

// Set is the set or map family table name, or nil.
func (l *Listing) Set(family, table, name string) *SetInfo {
	return l.sets[[3]string{family, table, name}]
}

// Rules are the rules of the chain family table name, in order; none
// when there is no such chain.
func (l *Listing) Rules(family, table, name string) []*RuleInfo {
	if c := l.Chain(family, table, name); c != nil {
		return c.Rules
	}
	return nil
}

// BaseChains are the base chains of every table at hook in family, in
// listing order (not sorted by priority).
func (l *Listing) BaseChains(family, hook string) []*ChainInfo {
	var out []*ChainInfo
	for _, c := range l.Chains {
		if c.Family == family && c.Hook == hook {
			out = append(out, c)
		}
	}
	return out
}

// ParseListing decodes the output of `nft -j list ruleset`. Objects it
// does not model (flowtables, counters, quotas, ...) are skipped; an
// expression it does not know becomes an Expr with Unknown set, so a
// caller can say what it cannot evaluate.
func ParseListing(data []byte) (*Listing, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("nft json: %w", err)
	}
	l := &Listing{chains: map[[3]string]*ChainInfo{}, sets: map[[3]string]*SetInfo{}}
	var rules []*RuleInfo
	for i, obj := range doc.Nftables {
		for kind, raw := range obj {
			r, err := l.object(kind, raw)
			if err != nil {
				return nil, fmt.Errorf("nft json: object %d (%s): %w", i, kind, err)
			}
			if r != nil {
				rules = append(rules, r)
			}
		}
	}
	// nft lists a table's chains before their rules; a rule may also
	// come before its chain in hand-made input.
	for _, r := range rules {
		c := l.Chain(r.Family, r.Table, r.Chain)
		if c == nil {
			return nil, fmt.Errorf("nft json: rule %d in missing chain %s %s %s", r.Handle, r.Family, r.Table, r.Chain)
		}
		c.Rules = append(c.Rules, r)
	}
	return l, nil
}

// object decodes one object of the listing into l; a rule is returned
// for the caller to put in its chain.
func (l *Listing) object(kind string, raw json.RawMessage) (*RuleInfo, error) {
	switch kind {
	case "table":
		var t TableInfo
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, err
		}
		l.Tables = append(l.Tables, t)
	case "chain":
		c, err := parseChain(raw)
		if err != nil {
			return nil, err
		}
		l.Chains = append(l.Chains, c)
		l.chains[[3]string{c.Family, c.Table, c.Name}] = c
	case "set", "map":
		s, err := parseSet(raw, kind == "map")
		if err != nil {
			return nil, err
		}
		l.Sets = append(l.Sets, s)
		l.sets[[3]string{s.Family, s.Table, s.Name}] = s
	case "rule":
		return parseRule(raw)
	}
	return nil, nil
}

// priorities are the names nft may print for a base chain's priority.
var priorities = map[string]int{"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100, "out": 100}

func parseChain(raw json.RawMessage) (*ChainInfo, error) {
	var j struct {
		Family, Table, Name, Type, Hook, Policy string
		Prio                                    json.RawMessage
	}
	if err := unmarshal(raw, &j); err != nil {
		return nil, err
	}
	c := &ChainInfo{Family: j.Family, Table: j.Table, Name: j.Name, Type: j.Type, Hook: j.Hook, Policy: j.Policy}
	if len(j.Prio) > 0 {
		var n json.Number
		var s string
		switch {
		case json.Unmarshal(j.Prio, &n) == nil:
			p, err := n.Int64()
			if err != nil {
				return nil, fmt.Errorf("chain %s: priority %s", j.Name, n)
			}
			c.Priority = int(p)
		case json.Unmarshal(j.Prio, &s) == nil && hasKey(priorities, s):
			c.Priority = priorities[s]
		default:
			return nil, fmt.Errorf("chain %s: priority %s", j.Name, j.Prio)
		}
	}
	return c, nil
}

func hasKey(m map[string]int, k string) bool { _, ok := m[k]; return ok }

// unmarshal decodes JSON keeping numbers exact.
func unmarshal(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

func parseRule(raw json.RawMessage) (*RuleInfo, error) {
	var j struct {
		Family, Table, Chain, Comment string
		Handle                        int
		Expr                          []map[string]json.RawMessage
	}
	if err := unmarshal(raw, &j); err != nil {
		return nil, err
	}
	r := &RuleInfo{Family: j.Family, Table: j.Table, Chain: j.Chain, Handle: j.Handle, Comment: j.Comment}
	for i, obj := range j.Expr {
		for kind, body := range obj {
			e, err := parseExpr(kind, body)
			if err != nil {
				return nil, fmt.Errorf("rule %d of %s, expression %d (%s): %w", j.Handle, j.Chain, i+1, kind, err)
			}
			if e.Counter != nil && r.Counter == nil {
				r.Counter = e.Counter
			}
			r.Exprs = append(r.Exprs, e)
		}
	}
	return r, nil
}

func parseSet(raw json.RawMessage, isMap bool) (*SetInfo, error) {
	var j struct {
		Family, Table, Name string
		Type                json.RawMessage
		Map                 json.RawMessage
		Flags               []string
		Elem                []json.RawMessage
		Stmt                []map[string]json.RawMessage
	}
	if err := unmarshal(raw, &j); err != nil {
		return nil, err
	}
	s := &SetInfo{Family: j.Family, Table: j.Table, Name: j.Name, Map: isMap, Flags: j.Flags}
	var err error
	if s.Type, err = typeNames(j.Type); err != nil {
		return nil, fmt.Errorf("set %s: type: %w", j.Name, err)
	}
	if isMap {
		dt, err := typeNames(j.Map)
		if err != nil {
			return nil, fmt.Errorf("map %s: data type: %w", j.Name, err)
		}
		s.DataType = strings.Join(dt, " . ")
	}
	for _, st := range j.Stmt {
		if _, ok := st["counter"]; ok {
			s.Counter = true
		}
	}
	for _, e := range j.Elem {
		el, err := parseElement(e)
		if err != nil {
			return nil, fmt.Errorf("set %s: element %s: %w", j.Name, e, err)
		}
		s.Elements = append(s.Elements, el)
	}
	return s, nil
}

// typeNames reads a set's type: a name, or a list of them for a
// concatenation.
func typeNames(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, err
	}
	return many, nil
}

// parseElement reads a set element: a value, {"elem": {"val": ...,
// "counter": ...}}, or a map's [key, data] pair.
func parseElement(raw json.RawMessage) (Element, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return Element{}, fmt.Errorf("empty element")
	}
	var pair []json.RawMessage
	if raw[0] == '[' && json.Unmarshal(raw, &pair) == nil && len(pair) == 2 {
		el, err := parseElement(pair[0])
		if err != nil {
			return el, err
		}
		d, err := parseValue(pair[1])
		if err != nil {
			return el, fmt.Errorf("data: %w", err)
		}
		el.Data = &d
		return el, nil
	}
	var wrapped struct {
		Elem *struct {
			Val     json.RawMessage
			Counter *jsonCounter
		}
	}
	if raw[0] == '{' && unmarshal(raw, &wrapped) == nil && wrapped.Elem != nil {
		el, err := parseElement(wrapped.Elem.Val)
		if err == nil && wrapped.Elem.Counter != nil {
			el.Counter = wrapped.Elem.Counter.counter()
		}
		return el, err
	}
	v, err := parseValue(raw)
	if err != nil {
		return Element{}, err
	}
	if v.Kind == ValConcat {
		return Element{Key: v.Parts}, nil
	}
	return Element{Key: []Value{v}}, nil
}

type jsonCounter struct {
	Packets, Bytes json.Number
}

func (c jsonCounter) counter() *Counter {
	p, _ := strconvUint(c.Packets)
	b, _ := strconvUint(c.Bytes)
	return &Counter{Packets: p, Bytes: b}
}

func strconvUint(n json.Number) (uint64, error) { return strconv.ParseUint(string(n), 0, 64) }

// parseExpr decodes one expression of a rule, {kind: body}.
func parseExpr(kind string, body json.RawMessage) (Expr, error) {
	switch kind {
	case "match":
		return parseMatch(body)
	case VerdictAccept, VerdictDrop, VerdictReturn, VerdictContinue, VerdictJump, VerdictGoto:
		v, err := parseVerdict(kind, body)
		return Expr{Verdict: v}, err
	case "vmap":
		var j struct{ Key, Data json.RawMessage }
		if err := unmarshal(body, &j); err != nil {
			return Expr{}, err
		}
		k, err := parseValue(j.Key)
		if err != nil {
			return Expr{}, err
		}
		d, err := parseValue(j.Data)
		return Expr{VMap: &VMap{Key: k, Data: d}}, err
	case "counter":
		var name string
		if body[0] == '"' && json.Unmarshal(body, &name) == nil {
			return Expr{NamedCounter: name}, nil
		}
		var c jsonCounter
		if string(body) != "null" {
			if err := unmarshal(body, &c); err != nil {
				return Expr{}, err
			}
		}
		return Expr{Counter: c.counter()}, nil
	case "limit":
		return parseLimit(body)
	case "set":
		return parseSetUpdate(body)
	case "log":
		return parseLog(body)
	case "reject":
		var j struct{ Type, Expr string }
		if string(body) != "null" {
			if err := unmarshal(body, &j); err != nil {
				return Expr{}, err
			}
		}
		return Expr{Reject: &Reject{Type: j.Type, Code: j.Expr}}, nil
	case "mangle":
		var j struct{ Key, Value json.RawMessage }
		if err := unmarshal(body, &j); err != nil {
			return Expr{}, err
		}
		k, err := parseValue(j.Key)
		if err != nil {
			return Expr{}, err
		}
		v, err := parseValue(j.Value)
		return Expr{Mangle: &Mangle{Key: k, Value: v}}, err
	}
	return Expr{Unknown: kind, Raw: body}, nil
}

func parseMatch(body json.RawMessage) (Expr, error) {
	var j struct {
		Op          string
		Left, Right json.RawMessage
	}
	if err := unmarshal(body, &j); err != nil {
		return Expr{}, err
	}
	l, err := parseValue(j.Left)
	if err != nil {
		return Expr{}, fmt.Errorf("left: %w", err)
	}
	r, err := parseValue(j.Right)
	if err != nil {
		return Expr{}, fmt.Errorf("right: %w", err)
	}
	return Expr{Match: &Match{Op: j.Op, Left: l, Right: r}}, nil
}

func parseVerdict(kind string, body json.RawMessage) (*Verdict, error) {
	v := &Verdict{Kind: kind}
	if kind == VerdictJump || kind == VerdictGoto {
		var j struct{ Target string }
		if err := unmarshal(body, &j); err != nil {
			return nil, err
		}
		if j.Target == "" {
			return nil, fmt.Errorf("%s without a target", kind)
		}
		v.Target = j.Target
	}
	return v, nil
}

// parseSetUpdate reads {"op", "elem", "set": "@name", "stmt": [...]}; a
// statement in it other than one limit leaves the whole one unknown.
func parseSetUpdate(body json.RawMessage) (Expr, error) {
	var j struct {
		Op, Set string
		Elem    json.RawMessage
		Stmt    []map[string]json.RawMessage
	}
	if err := unmarshal(body, &j); err != nil {
		return Expr{}, err
	}
	el, err := parseValue(j.Elem)
	if err != nil {
		return Expr{}, fmt.Errorf("elem: %w", err)
	}
	u := &SetUpdate{Op: j.Op, Set: strings.TrimPrefix(j.Set, "@"), Elem: el}
	for _, st := range j.Stmt {
		lim, ok := st["limit"]
		if !ok || len(st) != 1 || u.Limit != nil {
			return Expr{Unknown: "set", Raw: body}, nil
		}
		e, err := parseLimit(lim)
		if err != nil {
			return Expr{}, err
		}
		u.Limit = e.Limit
	}
	return Expr{SetUpdate: u}, nil
}

func parseLimit(body json.RawMessage) (Expr, error) {
	var j struct {
		Rate, Burst json.Number
		Per         string
		RateUnit    string `json:"rate_unit"`
		Inv         bool
	}
	if err := unmarshal(body, &j); err != nil {
		return Expr{}, err
	}
	lim := &Limit{Per: j.Per, Over: j.Inv, Unit: j.RateUnit}
	if lim.Unit == "packets" {
		lim.Unit = ""
	}
	var err error
	if lim.Rate, err = strconvUint(j.Rate); err != nil {
		return Expr{}, fmt.Errorf("rate %q", j.Rate)
	}
	if j.Burst != "" {
		if lim.Burst, err = strconvUint(j.Burst); err != nil {
			return Expr{}, fmt.Errorf("burst %q", j.Burst)
		}
	}
	return Expr{Limit: lim}, nil
}

func parseLog(body json.RawMessage) (Expr, error) {
	var j struct {
		Prefix, Level string
		Group         *int
	}
	if string(body) != "null" {
		if err := unmarshal(body, &j); err != nil {
			return Expr{}, err
		}
	}
	lg := &Log{Prefix: j.Prefix, Level: j.Level, Group: -1}
	if j.Group != nil {
		lg.Group = *j.Group
	}
	return Expr{Log: lg}, nil
}

// binops are the JSON keys of binary operations.
var binops = map[string]bool{"&": true, "|": true, "^": true, "<<": true, ">>": true}

// parseValue decodes an operand: a string (a set reference when it
// starts with @), a number, a list of flags, or an object.
func parseValue(raw json.RawMessage) (Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return Value{}, fmt.Errorf("empty value")
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return Value{}, err
		}
		if name, ok := strings.CutPrefix(s, "@"); ok {
			return Value{Kind: ValSetRef, Str: name}, nil
		}
		return Value{Kind: ValString, Str: s}, nil
	case '[':
		parts, err := parseValues(raw)
		return Value{Kind: ValList, Parts: parts}, err
	case '{':
		return parseObject(raw)
	case 't', 'f':
		return Value{Kind: ValString, Str: string(raw)}, nil
	}
	n, err := strconvUint(json.Number(raw))
	if err != nil {
		return Value{}, fmt.Errorf("value %s: not a string, number, list or object", raw)
	}
	return Value{Kind: ValNumber, Num: n}, nil
}

func parseValues(raw json.RawMessage) ([]Value, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	out := make([]Value, 0, len(items))
	for _, it := range items {
		v, err := parseValue(it)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// parseObject decodes an operand that is an object: {kind: body}.
func parseObject(raw json.RawMessage) (Value, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return Value{}, err
	}
	if len(obj) != 1 {
		return Value{Kind: ValUnknown, Raw: raw}, nil
	}
	for kind, body := range obj {
		switch {
		case kind == "meta" || kind == "ct":
			var j struct{ Key, Dir string }
			err := unmarshal(body, &j)
			return Value{Kind: kind, Key: j.Key, Dir: j.Dir}, err
		case kind == "payload":
			var j struct {
				Protocol, Field, Base string
				Offset, Len           int
			}
			if err := unmarshal(body, &j); err != nil {
				return Value{}, err
			}
			if j.Base != "" {
				return Value{Kind: ValRaw, Base: j.Base, Offset: j.Offset, Len: j.Len}, nil
			}
			return Value{Kind: ValPayload, Protocol: j.Protocol, Field: j.Field}, nil
		case kind == ValFib:
			var j struct {
				Result string
				Flags  []string
			}
			if err := unmarshal(body, &j); err != nil {
				return Value{}, err
			}
			v := Value{Kind: ValFib, Key: j.Result}
			for _, f := range j.Flags {
				v.Parts = append(v.Parts, Value{Kind: ValString, Str: f})
			}
			return v, nil
		case kind == "concat" || kind == "range" || binops[kind]:
			parts, err := parseValues(body)
			if err != nil {
				return Value{}, err
			}
			if kind != ValConcat && len(parts) != 2 {
				return Value{}, fmt.Errorf("%s of %d operands", kind, len(parts))
			}
			switch {
			case kind == ValConcat || kind == ValRange:
				return Value{Kind: kind, Parts: parts}, nil
			default:
				return Value{Kind: ValBinop, Op: kind, Parts: parts}, nil
			}
		}
		return parseOtherObject(kind, body, raw)
	}
	panic("unreachable")
}

// parseOtherObject decodes the operands that are neither a key nor an
// operation: a prefix, an anonymous set or map, a verdict, an element.
func parseOtherObject(kind string, body, raw json.RawMessage) (Value, error) {
	switch kind {
	case "prefix":
		var j struct {
			Addr json.RawMessage
			Len  int
		}
		if err := unmarshal(body, &j); err != nil {
			return Value{}, err
		}
		a, err := parseValue(j.Addr)
		if err != nil || a.Kind != ValString {
			return Value{}, fmt.Errorf("prefix %s", body)
		}
		return Value{Kind: ValPrefix, Str: a.Str, Len: j.Len}, nil
	case "set":
		var items []json.RawMessage
		if body[0] != '[' {
			items = []json.RawMessage{body}
		} else if err := json.Unmarshal(body, &items); err != nil {
			return Value{}, err
		}
		v := Value{Kind: ValSet}
		for _, it := range items {
			el, err := parseElement(it)
			if err != nil {
				return Value{}, err
			}
			v.Elements = append(v.Elements, el)
		}
		return v, nil
	case VerdictAccept, VerdictDrop, VerdictReturn, VerdictContinue, VerdictJump, VerdictGoto:
		vd, err := parseVerdict(kind, body)
		return Value{Kind: ValVerdict, Verdict: vd}, err
	}
	return Value{Kind: ValUnknown, Raw: raw}, nil
}

// Contains says whether an address set holds a: an element that is the
// address, a prefix holding it, or a range from one address to another.
func (s *SetInfo) Contains(a netip.Addr) bool {
	for _, e := range s.Elements {
		if len(e.Key) == 1 && valueHolds(e.Key[0], a) {
			return true
		}
	}
	return false
}

func valueHolds(v Value, a netip.Addr) bool {
	switch v.Kind {
	case ValString:
		b, err := netip.ParseAddr(v.Str)
		return err == nil && b.Unmap() == a.Unmap()
	case ValPrefix:
		b, err := netip.ParseAddr(v.Str)
		return err == nil && netip.PrefixFrom(b.Unmap(), v.Len).Contains(a.Unmap())
	case ValRange:
		lo, err1 := netip.ParseAddr(v.Parts[0].Str)
		hi, err2 := netip.ParseAddr(v.Parts[1].Str)
		a = a.Unmap()
		return err1 == nil && err2 == nil && lo.Unmap().Compare(a) <= 0 && a.Compare(hi.Unmap()) <= 0
	}
	return false
}
