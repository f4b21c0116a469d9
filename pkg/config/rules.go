package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
)

func parseSetEntries(field string, entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, e := range entries {
		p, err := parseNet(e, false)
		if err != nil {
			return nil, &Error{Field: fmt.Sprintf("%s[%d]", field, i), Err: err}
		}
		out = append(out, p)
	}
	return out, nil
}

// namedSets are the sets a config defines, and the longest name the
// backend takes, for checking the rules that name them.
type namedSets struct {
	entries map[string][]netip.Prefix
	maxName int
}

func parseRules(field string, rs []Rule, sets namedSets) ([]model.Rule, error) {
	if len(rs) > MaxRules {
		return nil, fieldErr(field, "more than %d rules", MaxRules)
	}
	var out []model.Rule
	for i, r := range rs {
		u, err := parseRule(r, sets)
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.Field = fmt.Sprintf("%s[%d].%s", field, i, e.Field)
				return nil, e
			}
			return nil, &Error{Field: fmt.Sprintf("%s[%d]", field, i), Err: err}
		}
		out = append(out, u)
	}
	return out, nil
}

var protoNumbers = map[string]int{
	"tcp": 6, "udp": 17, "icmp": 1, "igmp": 2, "gre": 47, "esp": 50, "ah": 51,
	"icmpv6": 58, model.ProtoICMPv6: 58,
	"ospf": 89, "pim": 103, "vrrp": 112, "l2tp": 115, "sctp": 132, "udplite": 136,
}

func parseRule(r Rule, sets namedSets) (model.Rule, error) {
	u := model.Rule{Log: r.Log, Comment: r.Comment}
	switch r.Action {
	case "ACCEPT", "DROP", "REJECT":
		u.Action = model.Action(r.Action)
	case "":
		return u, fieldErr("action", "required: ACCEPT, DROP or REJECT")
	default:
		return u, fieldErr("action", "%q is not ACCEPT, DROP or REJECT", r.Action)
	}
	if r.Proto != "" {
		p := strings.ToLower(r.Proto)
		if n, ok := protoNumbers[p]; ok {
			switch {
			case n == 58:
				p = model.ProtoICMPv6
			case p != "tcp" && p != "udp" && p != "icmp":
				p = strconv.Itoa(n)
			}
		} else {
			n, err := strconv.Atoi(r.Proto)
			if err != nil || n < 1 || n > 255 || strconv.Itoa(n) != r.Proto {
				return u, fieldErr("proto", "%q is not tcp, udp, icmp, icmpv6, a known protocol name or a number 1-255", r.Proto)
			}
			switch n {
			case 6:
				p = "tcp"
			case 17:
				p = "udp"
			case 1:
				p = "icmp"
			case 58:
				p = model.ProtoICMPv6
			}
		}
		u.Proto = p
	}
	var err error
	if u.Source, err = parseAddr(r.Source, sets); err != nil {
		return u, &Error{Field: "source", Err: err}
	}
	if u.Dest, err = parseAddr(r.Dest, sets); err != nil {
		return u, &Error{Field: "dest", Err: err}
	}
	if err := sameFamily(u); err != nil {
		return u, err
	}
	if r.SPort != "" || r.DPort != "" {
		if u.Proto != "tcp" && u.Proto != "udp" {
			f := "sport"
			if r.SPort == "" {
				f = "dport"
			}
			return u, fieldErr(f, "ports need proto tcp or udp")
		}
	}
	if u.SPort, err = parsePorts(r.SPort); err != nil {
		return u, &Error{Field: "sport", Err: err}
	}
	if u.DPort, err = parsePorts(r.DPort); err != nil {
		return u, &Error{Field: "dport", Err: err}
	}
	if r.ICMPType != "" {
		switch u.Proto {
		case "icmp":
			u.ICMPType, err = parseICMPType(r.ICMPType, icmpTypes)
		case model.ProtoICMPv6:
			u.ICMPType, err = parseICMPType(r.ICMPType, icmp6Types)
		default:
			return u, fieldErr("icmpType", "needs proto icmp or icmpv6")
		}
		if err != nil {
			return u, &Error{Field: "icmpType", Err: err}
		}
	}
	if err := model.ValidateComment(r.Comment); err != nil {
		return u, &Error{Field: "comment", Err: err}
	}
	return u, nil
}

func parseAddr(s string, sets namedSets) (model.Addr, error) {
	if s == "" {
		return model.Addr{}, nil
	}
	if name, ok := strings.CutPrefix(s, "+"); ok {
		if err := model.ValidateName(name, sets.maxName); err != nil {
			return model.Addr{}, fmt.Errorf("ipset name %w", err)
		}
		if _, ok := sets.entries[name]; !ok {
			return model.Addr{}, fmt.Errorf("ipset %q is not defined in ipsets", name)
		}
		return model.Addr{Set: name}, nil
	}
	p, err := parseNet(s, true)
	if err != nil {
		return model.Addr{}, err
	}
	if p.Bits() == 0 { // 0.0.0.0/0 or ::/0: any address of the family
		if p.Addr().Is6() {
			return model.Addr{Family: model.IPv6}, nil
		}
		return model.Addr{Family: model.IPv4}, nil
	}
	return model.Addr{Prefix: p}, nil
}

// parsePorts reads "22", "1000:2000" or "22,80,443" (at most 15 ports, a
// range counting two, as multiport allows) and returns it canonical: as
// iptables-save prints it back. A range whose ends are equal is the port
// ("22:22" is "22": iptables prints it so, and multiport refuses it in a
// list), and the range of every port alone is no match at all.
func parsePorts(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	parts := strings.Split(s, ",")
	slots := 0
	var out []string
	for _, part := range parts {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := parsePort(lo)
		if err != nil {
			return "", fmt.Errorf("%q: %w", s, err)
		}
		if !isRange {
			out = append(out, strconv.Itoa(a))
			slots++
			continue
		}
		b, err := parsePort(hi)
		if err != nil {
			return "", fmt.Errorf("%q: %w", s, err)
		}
		if a > b {
			return "", fmt.Errorf("%q: range %d:%d is backwards", s, a, b)
		}
		if a == b {
			out = append(out, strconv.Itoa(a))
			slots++
			continue
		}
		out = append(out, fmt.Sprintf("%d:%d", a, b))
		slots += 2
	}
	if len(parts) > 1 && slots > 15 {
		return "", fmt.Errorf("%q: at most 15 ports in a list (a range counts two)", s)
	}
	if len(out) == 1 && out[0] == "0:65535" {
		return "", nil // every port: no port match (iptables prints none)
	}
	return strings.Join(out, ","), nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(n) != s || n < 0 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number 0-65535", s)
	}
	return n, nil
}

var icmpTypes = map[string]string{
	"echo-reply": "0", "destination-unreachable": "3", "network-unreachable": "3/0",
	"host-unreachable": "3/1", "protocol-unreachable": "3/2", "port-unreachable": "3/3",
	"fragmentation-needed": "3/4", "source-quench": "4", "redirect": "5",
	"echo-request": "8", "router-advertisement": "9", "router-solicitation": "10",
	"time-exceeded": "11", "ttl-zero-during-transit": "11/0", "parameter-problem": "12",
	"timestamp-request": "13", "timestamp-reply": "14",
}

// icmp6Types are ICMPv6's type names as ip6tables knows them.
var icmp6Types = map[string]string{
	"destination-unreachable": "1", "no-route": "1/0", "communication-prohibited": "1/1",
	"address-unreachable": "1/3", "port-unreachable": "1/4", "packet-too-big": "2",
	"time-exceeded": "3", "ttl-zero-during-transit": "3/0", "parameter-problem": "4",
	"echo-request": "128", "echo-reply": "129", "router-solicitation": "133",
	"router-advertisement": "134", "neighbour-solicitation": "135", "neighbor-solicitation": "135",
	"neighbour-advertisement": "136", "neighbor-advertisement": "136", "redirect": "137",
}

// sameFamily checks that a rule's addresses and protocol name one family
// at most: a rule is rendered in the chains of its family.
func sameFamily(u model.Rule) error {
	type claim struct{ field, fam string }
	var claims []claim
	if f := u.Source.FamilyName(); f != "" {
		claims = append(claims, claim{"source", f})
	}
	if f := u.Dest.FamilyName(); f != "" {
		claims = append(claims, claim{"dest", f})
	}
	switch u.Proto {
	case "icmp":
		claims = append(claims, claim{"proto", model.IPv4})
	case model.ProtoICMPv6:
		claims = append(claims, claim{"proto", model.IPv6})
	}
	for _, c := range claims[min(1, len(claims)):] {
		if c.fam != claims[0].fam {
			return fieldErr(c.field, "is %s but %s is %s: a rule matches one address family", c.fam, claims[0].field, claims[0].fam)
		}
	}
	return nil
}

func parseICMPType(s string, names map[string]string) (string, error) {
	if v, ok := names[s]; ok {
		return v, nil
	}
	t, c, hasCode := strings.Cut(s, "/")
	n, err := strconv.Atoi(t)
	if err != nil || strconv.Itoa(n) != t || n < 0 || n > 255 {
		return "", fmt.Errorf("%q is not a known ICMP type name or type[/code] number", s)
	}
	if n == 255 {
		return "", fmt.Errorf("%q means any ICMP type: leave icmpType out", s)
	}
	if !hasCode {
		return t, nil
	}
	m, err := strconv.Atoi(c)
	if err != nil || strconv.Itoa(m) != c || m < 0 || m > 255 {
		return "", fmt.Errorf("%q: bad ICMP code", s)
	}
	return t + "/" + c, nil
}
