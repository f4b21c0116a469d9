package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/ruleset"
	"golang.org/x/sys/unix"
)

// Shown is one rule of a tap's profile, or of a group's chain the profile
// jumps to, read back from the kernel: its comment, its matches in the
// config's words, what it does and what it counted (for every tap that
// shares the profile or the group).
type Shown struct {
	Dir    string // in or out
	Family Family
	// Comment is the rule's comment; Group, for a group's rule, the
	// group (its comment then starts with "+group: ").
	Comment, Group string
	Match          string
	// Action is ACCEPT (whatever lets the packet on: accept, return, a
	// group's allow), DROP, REJECT, a chain it jumps to, or "" for a rule
	// that only logs (Log) or marks.
	Action string
	Log    bool
	// LogLevel is the level it logs at when not warning (a log line
	// of the tap's own log chain reads as warning).
	LogLevel string
	netfilter.Counter
}

// TapRules lists the rules of the tap's profiles in order: IN then OUT,
// IPv4 then IPv6 in each, a group's rules right after the jump to it.
// A tap without a record has none.
func (k Kernel) TapRules(tap string) ([]Shown, error) {
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	_, rec, err := readRecord(netfilter.ConnReader{C: c}, tap)
	if err != nil {
		return nil, err
	}
	rd := &ruleReader{c: c, marks: k.Marks, anon: map[string]string{}}
	var out []Shown
	for _, dir := range []string{"in", "out"} {
		for _, f := range []Family{IPv4, IPv6} {
			for _, d := range rec.dispatch {
				if d.Family != f || (d.Map == MapIn) != (dir == "in") {
					continue
				}
				rs, err := rd.chain(d.Chain, dir, f, "")
				if err != nil {
					return nil, err
				}
				out = append(out, rs...)
			}
		}
	}
	return out, nil
}

// ruleReader reads chains of the bridge table into Shown rules.
type ruleReader struct {
	c     *nftables.Conn
	marks Marks
	// anon holds the anonymous sets' elements as words, by name.
	anon map[string]string
}

// chain lists a chain's rules, and after each jump to a group's chain
// that chain's rules.
func (rd *ruleReader) chain(name, dir string, f Family, group string) ([]Shown, error) {
	rules, err := rd.c.GetRules(bridgeTable, &nftables.Chain{Name: name, Table: bridgeTable})
	if err != nil {
		return nil, fmt.Errorf("reading chain %s: %w", name, err)
	}
	var out []Shown
	for _, r := range rules {
		s := Shown{Dir: dir, Family: f, Comment: comment(r), Group: group}
		target, err := rd.describe(&s, r.Exprs)
		if err != nil {
			return nil, fmt.Errorf("chain %s: %w", name, err)
		}
		out = append(out, s)
		if g, ok := groupOfChain(target); ok && group == "" {
			rs, err := rd.chain(target, dir, f, g)
			if err != nil {
				return nil, err
			}
			out = append(out, rs...)
		}
	}
	return out, nil
}

// groupOfChain is the group whose chain name is, as chainName writes it
// (tfw-g4-web-in).
func groupOfChain(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "tfw-g")
	if !ok || len(rest) < 3 || (rest[0] != '4' && rest[0] != '6') || rest[1] != '-' {
		return "", false
	}
	g := rest[2:]
	for _, suf := range []string{"-in", "-out"} {
		if n, ok := strings.CutSuffix(g, suf); ok && n != "" {
			return n, true
		}
	}
	return "", false
}

// loaded is what a register holds: a meta key or a payload field.
type loaded struct {
	meta    expr.MetaKey
	payload *expr.Payload
	mask    []byte // a bitwise mask applied to it
	icmp    bool   // the rule matched ICMP or ICMPv6 before
}

// describe fills in s's match words, action, log and counter from the
// rule's expressions, as the builder writes them; it returns the chain a
// jump or goto names.
func (rd *ruleReader) describe(s *Shown, exprs []expr.Any) (string, error) {
	var words []string
	var loads []loaded
	target, icmp := "", false
	var first []byte // a range's first address, until its last
	// Set lookups follow the transport matches in the kernel (they cost
	// more), but read as addresses: before the protocol, as the config
	// and the iptables backend put them.
	protoAt := -1
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Meta:
			if !e.SourceRegister {
				loads = append(loads, loaded{meta: e.Key})
			}
		case *expr.Payload:
			loads = append(loads, loaded{payload: e, icmp: icmp})
		case *expr.Bitwise:
			if n := len(loads); n > 0 {
				loads[n-1].mask = e.Mask
			}
		case *expr.Cmp:
			if e.Op == expr.CmpOpGte && len(loads) > 0 {
				first = e.Data // a range: its last address follows
				continue
			}
			if e.Op == expr.CmpOpLte && first != nil && len(loads) > 0 {
				words = append(words, rangeWords(fieldWord(s.Family, loads[len(loads)-1]), &expr.Range{FromData: first, ToData: e.Data}))
				first, loads = nil, nil
				continue
			}
			if n := len(loads); n > 0 {
				if loads[n-1].meta == expr.MetaKeyL4PROTO && protoAt < 0 {
					protoAt = len(words)
				}
				w := rd.cmpWords(s.Family, loads[n-1], e.Op == expr.CmpOpNeq, e.Data)
				icmp = icmp || (len(w) == 1 && (w[0] == "icmp" || w[0] == "ipv6-icmp"))
				words = append(words, w...)
			}
			loads = nil
		case *expr.Range:
			if n := len(loads); n > 0 {
				words = append(words, rangeWords(fieldWord(s.Family, loads[n-1]), e))
			}
			loads = nil
		case *expr.Lookup:
			if e.IsDestRegSet {
				s.Log = true // a log map's jump to the tap's log chain
			} else if w, err := rd.lookupWords(s.Family, loads, e); err != nil {
				return "", err
			} else if w != "" && protoAt >= 0 && !transportLoad(loads) {
				words = slices.Insert(words, protoAt, w)
				protoAt++
			} else if w != "" {
				words = append(words, w)
			}
			loads = nil
		case *expr.Dynset:
			loads = nil // a log rule's rate set: the port's own limit
		case *expr.Counter:
			s.Counter = netfilter.Counter{Packets: e.Packets, Bytes: e.Bytes}
		case *expr.Log:
			s.Log = true
			if e.Key&(1<<unix.NFTA_LOG_LEVEL) != 0 && e.Level != expr.LogLevelWarning && int(e.Level) < len(model.LogLevels) {
				s.LogLevel = model.LogLevels[e.Level]
			}
		case *expr.Verdict:
			target = e.Chain
			s.Action = verdictAction(e)
		}
	}
	// A negated match on the tap's own addresses is two lookups, one in
	// each of the layer-2 sets of addresses and of networks.
	s.Match = strings.Join(slices.Compact(words), " ")
	return target, nil
}

// rangeWords reads a range of ports ("dport 1000:2000") or of
// addresses ("from 198.51.100.1-198.51.100.9").
func rangeWords(field string, e *expr.Range) string {
	if len(e.FromData) == 2 && len(e.ToData) == 2 {
		return field + " " + strconv.Itoa(int(binary.BigEndian.Uint16(e.FromData))) + ":" + strconv.Itoa(int(binary.BigEndian.Uint16(e.ToData)))
	}
	first, ok1 := netip.AddrFromSlice(e.FromData)
	last, ok2 := netip.AddrFromSlice(e.ToData)
	if !ok1 || !ok2 {
		return field + " ?"
	}
	return field + " " + model.Range{First: first, Last: last}.String()
}

// transportLoad reports whether a lookup's key reads the transport
// header (a port set) rather than addresses.
func transportLoad(loads []loaded) bool {
	return slices.ContainsFunc(loads, func(l loaded) bool {
		return l.payload != nil && l.payload.Base == expr.PayloadBaseTransportHeader
	})
}

// protoName is a transport protocol as the config names it.
func protoName(n byte) string {
	for _, name := range []string{"tcp", "udp", "icmp", "ipv6-icmp"} {
		if m, _, _ := protoNumber(name); m == n {
			return name
		}
	}
	return netfilter.ProtoName(strconv.Itoa(int(n)))
}

// verdictAction is what a verdict does in the config's words.
func verdictAction(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept, expr.VerdictReturn:
		return "ACCEPT"
	case expr.VerdictDrop:
		return "DROP"
	}
	switch {
	case v.Chain == ChainRejected:
		return "REJECT"
	case strings.HasSuffix(v.Chain, "-allow"), strings.HasSuffix(v.Chain, "-allowed"):
		return "ACCEPT" // a group's allow
	}
	return v.Chain
}

// fieldWord names a loaded field as the config does.
func fieldWord(f Family, l loaded) string {
	if l.payload == nil {
		return ""
	}
	p := l.payload
	switch p.Base {
	case expr.PayloadBaseTransportHeader:
		switch {
		case l.icmp && p.Offset == 0:
			return "type"
		case p.Offset == 0 && p.Len == 2:
			return "sport"
		case p.Offset == 2 && p.Len == 2:
			return "dport"
		case p.Offset == 0 && p.Len == 4:
			return "ports"
		}
	case expr.PayloadBaseNetworkHeader:
		src, _ := addrField(f, "saddr")
		dst, _ := addrField(f, "daddr")
		switch p.Offset {
		case src:
			return "from"
		case dst:
			return "to"
		}
	case expr.PayloadBaseLLHeader:
		if p.Offset == 6 {
			return "mac"
		}
	}
	return ""
}

// cmpWords reads a comparison of a loaded field; the family, the
// protocol's number and the hop limits say nothing of their own beyond
// what the comment names, except the transport protocol.
func (rd *ruleReader) cmpWords(f Family, l loaded, neg bool, data []byte) []string {
	not := ""
	if neg {
		not = "not "
	}
	if l.payload == nil {
		switch l.meta {
		case expr.MetaKeyL4PROTO:
			if len(data) == 1 {
				return []string{not + protoName(data[0])}
			}
		case expr.MetaKeyMARK:
			return rd.markWords(l.mask)
		}
		return nil
	}
	w := fieldWord(f, l)
	switch w {
	case "ports": // both from one load
		return []string{not + "sport " + strconv.Itoa(int(binary.BigEndian.Uint16(data))) + " dport " + strconv.Itoa(int(binary.BigEndian.Uint16(data[2:])))}
	case "sport", "dport":
		return []string{not + w + " " + strconv.Itoa(int(binary.BigEndian.Uint16(data)))}
	case "type":
		v := strconv.Itoa(int(data[0]))
		if len(data) > 1 {
			v += "/" + strconv.Itoa(int(data[1]))
		}
		return []string{not + "type " + v}
	case "from", "to":
		a, ok := netip.AddrFromSlice(data)
		if !ok {
			return nil
		}
		bits := a.BitLen()
		if l.mask != nil {
			bits = maskBits(l.mask)
		}
		p := netip.PrefixFrom(a, bits)
		text := p.String()
		if p.IsSingleIP() {
			text = a.String()
		}
		return []string{not + w + " " + text}
	case "mac":
		return []string{not + "mac " + macText(data)}
	}
	return nil
}

// markWords reads a test of tapfw's mark bits: the conntrack state the
// inet chains copied in.
func (rd *ruleReader) markWords(mask []byte) []string {
	if len(mask) != 4 {
		return nil
	}
	switch binary.NativeEndian.Uint32(mask) {
	case rd.marks.Established:
		return []string{"ctstate RELATED,ESTABLISHED"}
	case rd.marks.Invalid:
		return []string{"ctstate INVALID"}
	}
	return nil
}

func maskBits(mask []byte) int {
	n := 0
	for _, b := range mask {
		for i := 7; i >= 0 && b&(1<<i) != 0; i-- {
			n++
		}
	}
	return n
}

func macText(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}

// lookupWords reads a set lookup: a port list, a named set, the tap's
// own addresses or MAC in the layer-2 sets, or tapfw's own port sets
// (which say nothing in the config's words).
func (rd *ruleReader) lookupWords(f Family, loads []loaded, e *expr.Lookup) (string, error) {
	not := ""
	if e.Invert {
		not = "not "
	}
	last := loaded{}
	if len(loads) > 0 {
		last = loads[len(loads)-1]
	}
	w := fieldWord(f, last)
	switch {
	case strings.HasPrefix(e.SetName, "__set"):
		items, err := rd.anonWords(e.SetName)
		if err != nil {
			return "", err
		}
		return not + w + " " + items, nil
	case e.SetName == ruleset.L2MAC:
		return not + "mac own", nil
	case len(loads) > 1: // the port . address sets of the layer 2
		return not + w + " own addresses", nil
	case e.SetName == HostSet(f), e.SetName == ClusterSet(f):
		return not + w + " " + strings.TrimPrefix(e.SetName, "tfw-"), nil
	}
	for _, fam := range []Family{IPv4, IPv6} {
		if name, ok := strings.CutPrefix(e.SetName, UserSet("", fam)); ok && name != "" {
			return not + w + " +" + name, nil
		}
	}
	return "", nil
}

// anonWords is an anonymous port set's elements as the config writes a
// port list: "80,443", a range "1000:2000".
func (rd *ruleReader) anonWords(name string) (string, error) {
	if w, ok := rd.anon[name]; ok {
		return w, nil
	}
	set, err := rd.c.GetSetByName(bridgeTable, name)
	if err != nil {
		return "", fmt.Errorf("reading set %s: %w", name, err)
	}
	els, err := rd.c.GetSetElements(set)
	if err != nil {
		return "", fmt.Errorf("reading set %s: %w", name, err)
	}
	port := func(k []byte) int { return int(binary.BigEndian.Uint16(k)) }
	slices.SortFunc(els, func(a, b nftables.SetElement) int { return port(a.Key) - port(b.Key) })
	var items []string
	if !set.Interval {
		for _, e := range els {
			items = append(items, strconv.Itoa(port(e.Key)))
		}
	} else {
		items = intervalWords(els, port)
	}
	rd.anon[name] = strings.Join(items, ",")
	return rd.anon[name], nil
}

// intervalWords reads an interval set's elements: each start, and the
// end after it (none for a range up to 65535).
func intervalWords(els []nftables.SetElement, port func([]byte) int) []string {
	var starts []int
	ends := map[int]bool{}
	for _, e := range els {
		if e.IntervalEnd {
			ends[port(e.Key)] = true
		} else {
			starts = append(starts, port(e.Key))
		}
	}
	var items []string
	for _, lo := range starts {
		hi := lo
		for hi < 0xffff && !ends[hi+1] {
			hi++
		}
		if hi == lo {
			items = append(items, strconv.Itoa(lo))
		} else {
			items = append(items, fmt.Sprintf("%d:%d", lo, hi))
		}
	}
	return items
}
