// Package netfilter applies tapfw's rulesets to the kernel: iptables through
// one iptables-restore transaction per call, ipsets over netlink, all under
// a host-wide lock. It also compares wanted against installed state.
package netfilter

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Table is the filter table as iptables-save prints it: chains in order of
// declaration, each with its rules as specs (the text after "-A CHAIN ").
type Table struct {
	Order  []string
	Chains map[string][]string
}

// Has reports whether the chain exists.
func (t *Table) Has(chain string) bool {
	_, ok := t.Chains[chain]
	return ok
}

// ParseSave reads the output of `iptables-save -t filter`. It is the one
// place that parses that format.
func ParseSave(data []byte) (*Table, error) {
	t := &Table{Chains: map[string][]string{}}
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
			name, _, _ := strings.Cut(line[1:], " ")
			if _, ok := t.Chains[name]; !ok {
				t.Order = append(t.Order, name)
				t.Chains[name] = nil
			}
		case strings.HasPrefix(line, "-A "):
			chain, spec, ok := strings.Cut(line[3:], " ")
			if !ok {
				return nil, fmt.Errorf("iptables-save line %d: rule without spec: %q", n, line)
			}
			if _, ok := t.Chains[chain]; !ok {
				return nil, fmt.Errorf("iptables-save line %d: rule in undeclared chain %q", n, chain)
			}
			t.Chains[chain] = append(t.Chains[chain], spec)
		default:
			return nil, fmt.Errorf("iptables-save line %d: unexpected %q", n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading iptables-save output: %w", err)
	}
	return t, nil
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
