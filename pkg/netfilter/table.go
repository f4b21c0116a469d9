package netfilter

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Counter is what a rule (or a built-in chain's policy) counted, as
// `iptables-save -c` prints it: "[packets:bytes]".
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Add adds o to c.
func (c *Counter) Add(o Counter) { c.Packets += o.Packets; c.Bytes += o.Bytes }

// Table is the filter table as iptables-save prints it: chains in order of
// declaration, each with its rules as specs (the text after "-A CHAIN "),
// the policies of the built-in chains and, when the output had them, the
// counters.
type Table struct {
	Order  []string
	Chains map[string][]string
	// Policies maps each declared built-in chain (INPUT, FORWARD, OUTPUT)
	// to its policy, ACCEPT or DROP; an undeclared one has policy ACCEPT.
	Policies map[string]string
	// Counters holds, per chain, the counters of its rules in order, and
	// PolicyCounters those of the built-in chains' policies. Both are
	// read from `iptables-save -c`; without -c they are empty. Read a
	// rule's with Counter, which counts a rule past the end as zero.
	Counters       map[string][]Counter
	PolicyCounters map[string]Counter
}

// Has reports whether the chain exists.
func (t *Table) Has(chain string) bool {
	_, ok := t.Chains[chain]
	return ok
}

// Counter returns the counter of rule i (0-based) of chain.
func (t *Table) Counter(chain string, i int) Counter {
	if c := t.Counters[chain]; i < len(c) {
		return c[i]
	}
	return Counter{}
}

// Builtin reports whether chain is a built-in chain of the filter table.
func Builtin(chain string) bool {
	return chain == "INPUT" || chain == "FORWARD" || chain == "OUTPUT"
}

// ParseSave reads the filter table from the output of `iptables-save`
// (with or without -c; other tables are skipped). It is the one place
// that parses that format.
func ParseSave(data []byte) (*Table, error) {
	t := &Table{Chains: map[string][]string{}, Policies: map[string]string{},
		Counters: map[string][]Counter{}, PolicyCounters: map[string]Counter{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	in := false
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			in = line == "*filter"
		case !in:
		case line == "COMMIT":
			in = false
		case strings.HasPrefix(line, ":"):
			if err := t.declare(line[1:]); err != nil {
				return nil, fmt.Errorf("iptables-save line %d: %w", n, err)
			}
		case strings.HasPrefix(line, "-A "), strings.HasPrefix(line, "["):
			if err := t.rule(line); err != nil {
				return nil, fmt.Errorf("iptables-save line %d: %w", n, err)
			}
		default:
			return nil, fmt.Errorf("iptables-save line %d: unexpected %q", n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading iptables-save output: %w", err)
	}
	return t, nil
}

// declare reads a chain line: ":NAME POLICY [packets:bytes]", where a
// user chain's policy is "-".
func (t *Table) declare(line string) error {
	f := strings.Fields(line)
	if len(f) == 0 {
		return fmt.Errorf("chain line without a name")
	}
	name := f[0]
	if _, ok := t.Chains[name]; !ok {
		t.Order = append(t.Order, name)
		t.Chains[name] = nil
	}
	if !Builtin(name) {
		return nil
	}
	if len(f) < 2 || (f[1] != "ACCEPT" && f[1] != "DROP") {
		return fmt.Errorf("chain %s: policy %q, want ACCEPT or DROP", name, strings.Join(f[1:], " "))
	}
	t.Policies[name] = f[1]
	if len(f) > 2 {
		c, err := parseCounter(f[2])
		if err != nil {
			return fmt.Errorf("chain %s: %w", name, err)
		}
		t.PolicyCounters[name] = c
	}
	return nil
}

// rule reads a rule line, "[packets:bytes] -A CHAIN SPEC" or without the
// counter.
func (t *Table) rule(line string) error {
	var c Counter
	counted := strings.HasPrefix(line, "[")
	if counted {
		head, rest, ok := strings.Cut(line, " ")
		if !ok {
			return fmt.Errorf("counter without a rule: %q", line)
		}
		var err error
		if c, err = parseCounter(head); err != nil {
			return err
		}
		line = rest
	}
	rest, ok := strings.CutPrefix(line, "-A ")
	if !ok {
		return fmt.Errorf("unexpected %q", line)
	}
	chain, spec, ok := strings.Cut(rest, " ")
	if !ok {
		return fmt.Errorf("rule without spec: %q", line)
	}
	if _, ok := t.Chains[chain]; !ok {
		return fmt.Errorf("rule in undeclared chain %q", chain)
	}
	t.Chains[chain] = append(t.Chains[chain], spec)
	if counted {
		// Without -c (every call's read of the table) there is nothing
		// to keep; Counter reads a rule past the end as zero.
		cs := t.Counters[chain]
		for len(cs) < len(t.Chains[chain])-1 {
			cs = append(cs, Counter{})
		}
		t.Counters[chain] = append(cs, c)
	}
	return nil
}

// parseCounter reads "[packets:bytes]".
func parseCounter(s string) (Counter, error) {
	in, ok := strings.CutPrefix(s, "[")
	if in, ok = strings.CutSuffix(in, "]"); !ok {
		return Counter{}, fmt.Errorf("counter %q: want [packets:bytes]", s)
	}
	p, b, ok := strings.Cut(in, ":")
	np, err1 := strconv.ParseUint(p, 10, 64)
	nb, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return Counter{}, fmt.Errorf("counter %q: want [packets:bytes]", s)
	}
	return Counter{Packets: np, Bytes: nb}, nil
}

// Comment returns the value of the first --comment in a rule spec, unquoted.
func Comment(spec string) string {
	const key = "--comment "
	i := strings.Index(spec, key)
	if i < 0 {
		return ""
	}
	rest := spec[i+len(key):]
	if strings.HasPrefix(rest, `"`) {
		var b strings.Builder
		for j := 1; j < len(rest); j++ {
			switch rest[j] {
			case '\\':
				if j+1 < len(rest) {
					j++
					b.WriteByte(rest[j])
				}
			case '"':
				return b.String()
			default:
				b.WriteByte(rest[j])
			}
		}
		return b.String()
	}
	v, _, _ := strings.Cut(rest, " ")
	return v
}

// Owner returns the owner named in a rule spec's comment.
func Owner(spec string) string { return ruleset.CommentOwner(Comment(spec)) }

// Normalize makes a spec comparable across machines: iptables-save prints
// a protocol by its /etc/protocols name where it has one, tapfw renders
// numbers (except tcp, udp and icmp).
func Normalize(spec string) string {
	f := strings.Split(spec, " ")
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "-p" {
			if n, ok := protoNames[f[i+1]]; ok {
				f[i+1] = n
			}
		}
	}
	return strings.Join(f, " ")
}

// ProtoName is the /etc/protocols name of a protocol given by name or
// number ("2": "igmp"), or p itself: what an operator reads, whether or not
// this machine's iptables-save printed names.
func ProtoName(p string) string {
	if _, ok := protoNames[p]; ok {
		return p
	}
	for name, n := range protoNames {
		if n == p {
			return name
		}
	}
	return p
}

// protoNames maps the names of netbase's /etc/protocols to numbers.
var protoNames = map[string]string{
	"igmp": "2", "ggp": "3", "ipencap": "4", "st": "5", "egp": "8", "igp": "9", "pup": "12",
	"hmp": "20", "xns-idp": "22", "rdp": "27", "iso-tp4": "29", "dccp": "33", "xtp": "36",
	"ddp": "37", "idpr-cmtp": "38", "ipv6": "41", "ipv6-route": "43", "ipv6-frag": "44",
	"idrp": "45", "rsvp": "46", "gre": "47", "esp": "50", "ah": "51", "skip": "57",
	"ipv6-icmp": "58", "ipv6-nonxt": "59", "ipv6-opts": "60", "rspf": "73", "vmtp": "81",
	"eigrp": "88", "ospf": "89", "ax.25": "93", "ipip": "94", "etherip": "97", "encap": "98",
	"pim": "103", "ipcomp": "108", "vrrp": "112", "l2tp": "115", "isis": "124", "sctp": "132",
	"fc": "133", "mobility-header": "135", "udplite": "136", "mpls-in-ip": "137",
	"manet": "138", "hip": "139", "shim6": "140", "wesp": "141", "rohc": "142", "ethernet": "143",
}
