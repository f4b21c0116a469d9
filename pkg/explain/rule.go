package explain

import (
	"fmt"
	"net/netip"
	"strings"
)

// token is one word of a rule spec, unquoted, with where it was in the spec
// (quotes included).
type token struct {
	val        string
	start, end int
}

// tokenize splits a rule spec into words as iptables-restore does: on
// blanks, except inside double quotes; a backslash escapes the next
// character (iptables-save writes \" and \\ inside quoted values).
func tokenize(spec string) ([]token, error) {
	var toks []token
	for i := 0; i < len(spec); {
		if spec[i] == ' ' || spec[i] == '\t' {
			i++
			continue
		}
		start := i
		var b strings.Builder
		quoted := false
	word:
		for ; i < len(spec); i++ {
			switch c := spec[i]; {
			case c == '\\' && i+1 < len(spec):
				i++
				b.WriteByte(spec[i])
			case c == '"':
				quoted = !quoted
			case !quoted && (c == ' ' || c == '\t'):
				break word
			default:
				b.WriteByte(c)
			}
		}
		if quoted {
			return nil, fmt.Errorf("unterminated quote in %q", spec)
		}
		toks = append(toks, token{val: b.String(), start: start, end: i})
	}
	return toks, nil
}

// rule is a compiled rule spec.
type rule struct {
	spec       string
	comment    string
	matches    []match
	target     string // "" for a rule without target
	isGoto     bool
	rejectWith string    // REJECT's --reject-with
	logPrefix  string    // LOG's --log-prefix or NFLOG's --nflog-prefix
	xmark      [2]uint32 // MARK's --set-xmark value/mask
}

// match is one condition of a rule with its text, for messages.
type match struct {
	text string
	m    matcher
}

// tri is the value of a match: it holds, it does not, or it cannot be
// known.
type tri int8

const (
	no tri = iota
	yes
	unknown
)

// outcome is the value of a match or a rule, with the assumptions made
// (notes, when it holds) or why it cannot be known.
type outcome struct {
	v     tri
	notes []string
	why   []string
}

// matcher is a condition of a rule.
type matcher interface {
	eval(e *env) outcome
}

// env is what the matchers test: the packet and the ipsets.
type env struct {
	p     Packet
	proto int
	sets  map[string][]netip.Prefix
	mark  uint32 // the packet's mark, as MARK rules on the way set it
}

// eval tests every match of the rule: it matches when all hold; it does
// not when any does not, whatever the others; otherwise it is unknown.
func (r *rule) eval(e *env) outcome {
	out := outcome{v: yes}
	for _, m := range r.matches {
		o := m.m.eval(e)
		switch o.v {
		case no:
			return outcome{v: no}
		case unknown:
			out.v = unknown
			for _, w := range o.why {
				out.why = append(out.why, fmt.Sprintf("%s: %s", m.text, w))
			}
		default:
			out.notes = append(out.notes, o.notes...)
		}
	}
	if out.v == unknown {
		out.notes = nil
	}
	return out
}

// harmless reports whether the rule cannot change the verdict: it only
// logs or counts.
func (r *rule) harmless() bool {
	return r.target == "" || r.target == "LOG" || r.target == "NFLOG"
}

// parser walks the tokens of one spec.
type parser struct {
	spec string
	toks []token
	i    int
}

func (p *parser) more() bool { return p.i < len(p.toks) }

func (p *parser) next() string {
	t := p.toks[p.i].val
	p.i++
	return t
}

// arg returns the value of option opt.
func (p *parser) arg(opt string) (string, error) {
	if !p.more() {
		return "", fmt.Errorf("%s: missing value", opt)
	}
	return p.next(), nil
}

// skipValues skips the values of an option it does not know: the words up
// to the next option or negation.
func (p *parser) skipValues() {
	for p.more() {
		v := p.toks[p.i].val
		if v == "!" || len(v) > 1 && v[0] == '-' {
			return
		}
		p.i++
	}
}

// text is the spec's text of tokens [from, to).
func (p *parser) text(from, to int) string {
	if from >= to {
		return ""
	}
	return p.spec[p.toks[from].start:p.toks[to-1].end]
}

// compile parses a rule spec (the text after "-A CHAIN") of a table of the
// family.
func compile(spec string, family int) (*rule, error) {
	toks, err := tokenize(spec)
	if err != nil {
		return nil, err
	}
	c := &compiler{p: &parser{spec: spec, toks: toks}, r: &rule{spec: spec}, family: family}
	for c.p.more() {
		if err := c.option(); err != nil {
			return nil, err
		}
	}
	c.endModule(c.p.i)
	return c.r, nil
}

// compiler reads the options of one spec into a rule: each built-in match
// (-s, -d, -i, -o, -p, -f) is a match of its own; a module (-m NAME) with
// the options after it, up to the next option that is not one of them, is
// one match; the target and its options come last.
type compiler struct {
	p      *parser
	r      *rule
	family int
	proto  string // the -p of the rule, for options without -m

	// The module being read, nil between modules.
	mod         module
	modName     string
	modStart    int      // its first token
	unsupported []string // its options that are not simulated
}

// option compiles the next option, negated or not, with its values.
func (c *compiler) option() error {
	start := c.p.i
	opt, neg := c.p.next(), false
	if opt == "!" {
		if !c.p.more() {
			return fmt.Errorf("%q: ! at the end", c.p.spec)
		}
		opt, neg = c.p.next(), true
	}
	switch opt {
	case "-s", "--source", "-d", "--destination", "-i", "--in-interface", "-o", "--out-interface",
		"-p", "--protocol", "-f", "--fragment":
		c.endModule(start)
		m, err := c.builtin(opt, neg)
		if err != nil {
			return err
		}
		c.r.matches = append(c.r.matches, match{text: c.p.text(start, c.p.i), m: m})
		return nil
	case "-m", "--match":
		c.endModule(start)
		return c.startModule(start, opt, neg)
	case "-j", "--jump", "-g", "--goto":
		c.endModule(start)
		return c.target(opt, neg)
	default:
		return c.moduleOption(start, opt, neg)
	}
}

// builtin reads a match iptables has without -m: an address, an
// interface, the protocol or the fragment flag.
func (c *compiler) builtin(opt string, neg bool) (matcher, error) {
	if opt == "-f" || opt == "--fragment" {
		return fragMatch{neg: neg}, nil
	}
	v, err := c.p.arg(opt)
	if err != nil {
		return nil, err
	}
	switch opt {
	case "-s", "--source", "-d", "--destination":
		m, err := parseAddrMatch(v, c.family, opt == "-d" || opt == "--destination", neg)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", opt, v, err)
		}
		return m, nil
	case "-i", "--in-interface", "-o", "--out-interface":
		return ifaceMatch{out: opt == "-o" || opt == "--out-interface", neg: neg, pattern: v}, nil
	default: // -p, --protocol
		n, err := protoNumber(v)
		if err != nil {
			return nil, fmt.Errorf("-p: %w", err)
		}
		c.proto = strings.ToLower(v)
		return protoMatch{neg: neg, num: n}, nil
	}
}

// startModule begins the module of "-m NAME" at token start; its options
// follow.
func (c *compiler) startModule(start int, opt string, neg bool) error {
	if neg {
		return fmt.Errorf("! before %s", opt)
	}
	v, err := c.p.arg(opt)
	if err != nil {
		return err
	}
	c.mod, c.modName, c.modStart = newModule(v, c.family), v, start
	return nil
}

// moduleOption reads an option of the module being read, or of the
// protocol's module when none is. An option the module does not simulate
// is skipped with its values and makes the module's match unknown.
func (c *compiler) moduleOption(start int, opt string, neg bool) error {
	if !strings.HasPrefix(opt, "--") {
		return fmt.Errorf("unexpected %q in %q", opt, c.p.spec)
	}
	if c.mod == nil {
		if err := c.protocolModule(start, opt); err != nil {
			return err
		}
	}
	known, err := c.mod.option(opt, neg, c.p)
	if err != nil {
		return fmt.Errorf("-m %s %s: %w", c.modName, opt, err)
	}
	if !known {
		c.p.skipValues()
		c.unsupported = append(c.unsupported, opt)
	}
	return nil
}

// protocolModule begins, at token start, the module of the rule's protocol
// for option opt given without -m: iptables loads it by itself ("-p tcp
// --dport 22"); iptables-save prints the -m.
func (c *compiler) protocolModule(start int, opt string) error {
	name := c.proto
	switch c.proto {
	case "tcp", "udp", "icmp":
	case "ipv6-icmp", "icmpv6":
		name = "icmp6"
	default:
		return fmt.Errorf("option %s without a match", opt)
	}
	c.mod, c.modName, c.modStart = newModule(name, c.family), name, start
	return nil
}

// endModule ends the module being read, if any, at token end: it becomes
// one match, unknown when the module or one of its options is not
// simulated. The first comment set is the rule's comment.
func (c *compiler) endModule(end int) {
	if c.mod == nil {
		return
	}
	var m matcher = c.mod
	if _, ok := c.mod.(unknownModule); ok {
		m = unknownMatch{why: "match not simulated"}
	} else if len(c.unsupported) > 0 {
		m = unknownMatch{why: strings.Join(c.unsupported, ", ") + " not simulated"}
	}
	if cm, ok := c.mod.(*commentModule); ok && c.r.comment == "" && cm.set {
		c.r.comment = cm.text
	}
	c.r.matches = append(c.r.matches, match{text: c.p.text(c.modStart, end), m: m})
	c.mod, c.unsupported = nil, nil
}

// target reads "-j TARGET" or "-g CHAIN" and the target's options, which
// iptables-save prints last.
func (c *compiler) target(opt string, neg bool) error {
	if neg {
		return fmt.Errorf("! before %s", opt)
	}
	v, err := c.p.arg(opt)
	if err != nil {
		return err
	}
	c.r.target, c.r.isGoto = v, opt == "-g" || opt == "--goto"
	if err := c.r.targetOptions(c.p, c.family); err != nil {
		return fmt.Errorf("-j %s: %w", v, err)
	}
	return nil
}

// targetOptions parses the options after -j TARGET, which iptables-save
// prints last.
func (r *rule) targetOptions(p *parser, family int) error {
	if r.target == Reject {
		r.rejectWith = "icmp-port-unreachable"
		if family == 6 {
			r.rejectWith = "icmp6-port-unreachable"
		}
	}
	for p.more() {
		opt := p.next()
		switch {
		case r.target == Reject && opt == "--reject-with",
			r.target == "MARK" && opt == "--set-xmark",
			r.target == "LOG" && (opt == "--log-prefix" || opt == "--log-level"),
			r.target == "NFLOG" && (opt == "--nflog-prefix" || opt == "--nflog-group" ||
				opt == "--nflog-range" || opt == "--nflog-size" || opt == "--nflog-threshold"):
			v, err := p.arg(opt)
			if err != nil {
				return err
			}
			switch opt {
			case "--set-xmark":
				if r.xmark, err = parseMark(v); err != nil {
					return fmt.Errorf("--set-xmark: %w", err)
				}
			case "--reject-with":
				r.rejectWith = v
			case "--log-prefix", "--nflog-prefix":
				r.logPrefix = v
			}
		case r.target == "LOG" || r.target == "NFLOG" || r.isGoto ||
			r.target != Accept && r.target != Drop && r.target != Reject && r.target != "RETURN":
			// Other options of LOG and NFLOG do not change the path;
			// those of other targets are not simulated anyway.
			p.skipValues()
		default:
			return fmt.Errorf("unexpected %q", opt)
		}
	}
	return nil
}
