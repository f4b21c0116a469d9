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
	r := &rule{spec: spec}
	p := &parser{spec: spec, toks: toks}
	var (
		mod         module
		modName     string
		modStart    int
		unsupported []string
		proto       string // the -p of the rule, for options without -m
	)
	// flush ends the current module at token end.
	flush := func(end int) {
		if mod == nil {
			return
		}
		text := p.text(modStart, end)
		var m matcher = mod
		if _, ok := mod.(unknownModule); ok {
			m = unknownMatch{why: "match not simulated"}
		} else if len(unsupported) > 0 {
			m = unknownMatch{why: strings.Join(unsupported, ", ") + " not simulated"}
		}
		if c, ok := mod.(*commentModule); ok && r.comment == "" && c.set {
			r.comment = c.text
		}
		r.matches = append(r.matches, match{text: text, m: m})
		mod, unsupported = nil, nil
	}
	for p.more() {
		start := p.i
		neg := false
		opt := p.next()
		if opt == "!" {
			if !p.more() {
				return nil, fmt.Errorf("%q: ! at the end", spec)
			}
			neg = true
			opt = p.next()
		}
		switch opt {
		case "-s", "--source", "-d", "--destination":
			flush(start)
			v, err := p.arg(opt)
			if err != nil {
				return nil, err
			}
			m, err := parseAddrMatch(v, family, opt == "-d" || opt == "--destination", neg)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", opt, v, err)
			}
			r.matches = append(r.matches, match{text: p.text(start, p.i), m: m})
		case "-i", "--in-interface", "-o", "--out-interface":
			flush(start)
			v, err := p.arg(opt)
			if err != nil {
				return nil, err
			}
			out := opt == "-o" || opt == "--out-interface"
			r.matches = append(r.matches, match{text: p.text(start, p.i), m: ifaceMatch{out: out, neg: neg, pattern: v}})
		case "-p", "--protocol":
			flush(start)
			v, err := p.arg(opt)
			if err != nil {
				return nil, err
			}
			n, err := protoNumber(v)
			if err != nil {
				return nil, fmt.Errorf("-p: %w", err)
			}
			proto = strings.ToLower(v)
			r.matches = append(r.matches, match{text: p.text(start, p.i), m: protoMatch{neg: neg, num: n}})
		case "-f", "--fragment":
			flush(start)
			r.matches = append(r.matches, match{text: p.text(start, p.i), m: fragMatch{neg: neg}})
		case "-m", "--match":
			flush(start)
			if neg {
				return nil, fmt.Errorf("! before %s", opt)
			}
			v, err := p.arg(opt)
			if err != nil {
				return nil, err
			}
			mod, modName, modStart = newModule(v, family), v, start
		case "-j", "--jump", "-g", "--goto":
			flush(start)
			if neg {
				return nil, fmt.Errorf("! before %s", opt)
			}
			v, err := p.arg(opt)
			if err != nil {
				return nil, err
			}
			r.target, r.isGoto = v, opt == "-g" || opt == "--goto"
			if err := r.targetOptions(p, family); err != nil {
				return nil, fmt.Errorf("-j %s: %w", v, err)
			}
		default:
			if !strings.HasPrefix(opt, "--") {
				return nil, fmt.Errorf("unexpected %q in %q", opt, spec)
			}
			if mod == nil {
				// iptables loads the protocol's match by itself
				// ("-p tcp --dport 22"); iptables-save prints the -m.
				if proto != "tcp" && proto != "udp" && proto != "icmp" && proto != "ipv6-icmp" && proto != "icmpv6" {
					return nil, fmt.Errorf("option %s without a match", opt)
				}
				modName = proto
				if proto == "ipv6-icmp" || proto == "icmpv6" {
					modName = "icmp6"
				}
				mod, modStart = newModule(modName, family), start
			}
			known, err := mod.option(opt, neg, p)
			if err != nil {
				return nil, fmt.Errorf("-m %s %s: %w", modName, opt, err)
			}
			if !known {
				p.skipValues()
				unsupported = append(unsupported, opt)
			}
		}
	}
	flush(p.i)
	return r, nil
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
