package config

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
)

func parseSetEntries(field string, entries []string, al aliases) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, e := range entries {
		p, err := al.net(e, false)
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
	aliases aliases
	// groups are the security groups the config defines; inGroup is
	// set while a group's own rules are read (they cannot check one).
	groups  map[string]RuleLists
	inGroup bool
	// host is set while the host's rules are read: only they match an
	// interface.
	host bool
}

func parseRules(field string, rs []Rule, sets namedSets) ([]model.Rule, error) {
	if len(rs) > MaxRules {
		return nil, fieldErr(field, "more than %d rules", MaxRules)
	}
	var out []model.Rule
	for i, r := range rs {
		us, err := parseRule(r, sets)
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.Field = fmt.Sprintf("%s[%d].%s", field, i, e.Field)
				return nil, e
			}
			return nil, &Error{Field: fmt.Sprintf("%s[%d]", field, i), Err: err}
		}
		if r.Enable != nil && !*r.Enable {
			continue // checked, kept in the config, not installed
		}
		for j := range us {
			us[j].Num = i + 1
			if len(us) > 1 {
				us[j].Part = j + 1
			}
		}
		out = append(out, us...)
	}
	return out, nil
}

// parseRule reads one config rule into the rules it stands for: one, or
// one per part of its macro, source and destination (a macro part of
// another family than the rule's addresses is left out, as Proxmox VE
// does, and so is a source and destination of two families).
func parseRule(r Rule, sets namedSets) ([]model.Rule, error) {
	if r.Group != "" {
		return parseGroupRule(r, sets)
	}
	parts, macro, err := expandMacro(r)
	if err != nil {
		return nil, err
	}
	srcs, err := parseAddrList(r.Source, sets)
	if err != nil {
		return nil, &Error{Field: "source", Err: err}
	}
	dsts, err := parseAddrList(r.Dest, sets)
	if err != nil {
		return nil, &Error{Field: "dest", Err: err}
	}
	if n := len(parts) * len(srcs) * len(dsts); n > MaxParts {
		return nil, fmt.Errorf("stands for %d rules (its macro's parts times its sources times its destinations), more than %d", n, MaxParts)
	}
	var out []model.Rule
	var famErr error
	for _, p := range parts {
		u, err := parseOne(p.rule, sets)
		if err != nil {
			return nil, err
		}
		u.Macro, u.Family = macro, p.family
		for _, src := range srcs {
			for _, dst := range dsts {
				u.Source, u.Dest = src, dst
				err := sameFamily(u)
				var fe *familyError
				if (macro != "" || len(srcs)*len(dsts) > 1) && errors.As(err, &fe) {
					famErr = err
					continue
				}
				if err != nil {
					return nil, err
				}
				out = append(out, u)
			}
		}
	}
	if len(out) == 0 {
		return nil, famErr
	}
	return out, nil
}

var protoNumbers = map[string]int{
	"tcp": 6, "udp": 17, "icmp": 1, "igmp": 2, "gre": 47, "esp": 50, "ah": 51,
	"icmpv6": 58, model.ProtoICMPv6: 58,
	"ospf": 89, "pim": 103, "vrrp": 112, "l2tp": 115, "sctp": 132, "udplite": 136,
}

// parseGroupRule reads a rule that checks a security group in place: it
// names a group the config defines, and nothing else but its comment.
func parseGroupRule(r Rule, sets namedSets) ([]model.Rule, error) {
	if sets.inGroup {
		return nil, fieldErr("group", "a security group cannot check another")
	}
	if _, ok := sets.groups[r.Group]; !ok {
		return nil, fieldErr("group", "%q is not defined in securityGroups", r.Group)
	}
	for _, f := range []struct{ name, v string }{
		{"action", r.Action}, {"proto", r.Proto}, {"source", r.Source}, {"dest", r.Dest}, {"sport", r.SPort},
		{"dport", r.DPort}, {"icmpType", r.ICMPType}, {"macro", r.Macro}, {"iface", r.Iface}, {"log", strings.TrimPrefix(string(r.Log), "false")},
	} {
		if f.v != "" {
			return nil, fieldErr(f.name, "given with group: a group's own rules say what it matches and does")
		}
	}
	if err := model.ValidateComment(r.Comment); err != nil {
		return nil, &Error{Field: "comment", Err: err}
	}
	return []model.Rule{{Group: r.Group, Comment: r.Comment}}, nil
}

// inlineGroups replaces each rule of rs that checks a group with the
// group's rules for dir, numbered as parts of it: for the host's rules,
// whose chains do not jump to a group's.
func inlineGroups(rs []model.Rule, groups map[string]model.Group, dir string) []model.Rule {
	var out []model.Rule
	for _, u := range rs {
		if u.Group == "" {
			out = append(out, u)
			continue
		}
		g := groups[u.Group].In
		if dir == "out" {
			g = groups[u.Group].Out
		}
		for j, x := range g {
			x.Num, x.Part, x.InGroup = u.Num, 0, u.Group
			if len(g) > 1 {
				x.Part = j + 1
			}
			out = append(out, x)
		}
	}
	return out
}

// parseProto reads a rule's protocol: tcp, udp, icmp and ipv6-icmp by
// name, any other by its number ("" for none).
func parseProto(proto string) (string, error) {
	if proto == "" {
		return "", nil
	}
	p := strings.ToLower(proto)
	if n, ok := protoNumbers[p]; ok {
		switch {
		case n == 58:
			p = model.ProtoICMPv6
		case p != "tcp" && p != "udp" && p != "icmp":
			p = strconv.Itoa(n)
		}
	} else {
		n, err := strconv.Atoi(proto)
		if err != nil || n < 1 || n > 255 || strconv.Itoa(n) != proto {
			return "", fieldErr("proto", "%q is not tcp, udp, icmp, icmpv6, a known protocol name or a number 1-255", proto)
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
	return p, nil
}

// parseOne reads a rule without a macro.
func parseOne(r Rule, sets namedSets) (model.Rule, error) {
	u := model.Rule{Comment: r.Comment}
	var err error
	if u.Log, u.LogLevel, err = parseLogOption(r.Log); err != nil {
		return u, &Error{Field: "log", Err: err}
	}
	switch r.Action {
	case "ACCEPT", "DROP", "REJECT":
		u.Action = model.Action(r.Action)
	case "":
		return u, fieldErr("action", "required: ACCEPT, DROP or REJECT")
	default:
		return u, fieldErr("action", "%q is not ACCEPT, DROP or REJECT", r.Action)
	}
	if u.Proto, err = parseProto(r.Proto); err != nil {
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
	if r.Iface != "" {
		if !sets.host {
			return u, fieldErr("iface", "only the host's rules match an interface (a tap's rules are its own)")
		}
		if err := model.ValidateIfName(r.Iface); err != nil {
			return u, &Error{Field: "iface", Err: err}
		}
		u.Iface = r.Iface
	}
	return u, nil
}

// MaxListItems is how many items an address list (a rule's source or
// dest) may hold, and MaxParts how many rules one config rule may stand
// for: its macro's parts times its sources times its destinations.
const (
	MaxListItems = 32
	MaxParts     = 64
)

// parseAddrList reads a rule's source or dest: one item, or a list of
// them separated by commas ("198.51.100.1-198.51.100.9,203.0.113.0/24,+web"),
// each an address, a network, a range, an alias or a +set, of either
// family. One that matches every address of a family (0.0.0.0/0) stands
// alone.
func parseAddrList(s string, sets namedSets) ([]model.Addr, error) {
	if !strings.Contains(s, ",") {
		a, err := parseAddr(s, sets)
		return []model.Addr{a}, err
	}
	items := strings.Split(s, ",")
	if len(items) > MaxListItems {
		return nil, fmt.Errorf("%q: more than %d items in a list", s, MaxListItems)
	}
	var out []model.Addr
	for _, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("%q: an empty item in the list", s)
		}
		a, err := parseAddr(item, sets)
		if err != nil {
			return nil, err
		}
		if a.Family != "" {
			return nil, fmt.Errorf("%q: %s matches every %s address; it cannot be in a list", s, item, a.Family)
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// parseAddr reads one address item: "", an address, a network, a range
// "A-B", an alias, or a +set.
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
	if first, last, ok := strings.Cut(s, "-"); ok && !aliasRE.MatchString(s) {
		return parseRange(s, first, last)
	}
	p, err := sets.aliases.net(s, true)
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

// parseRange reads "A-B", two addresses of one family, A not after B. A
// range that is a prefix is that prefix, as iptables and nft would match.
func parseRange(s, first, last string) (model.Addr, error) {
	a, errA := netip.ParseAddr(first)
	b, errB := netip.ParseAddr(last)
	switch {
	case errA != nil || errB != nil || a.Zone() != "" || b.Zone() != "" || a.Is4In6() || b.Is4In6():
		return model.Addr{}, fmt.Errorf("%q is not a range of two addresses A-B", s)
	case a.Is4() != b.Is4():
		return model.Addr{}, fmt.Errorf("%q mixes IPv4 and IPv6", s)
	case b.Less(a):
		return model.Addr{}, fmt.Errorf("%q is backwards", s)
	}
	if p, ok := rangePrefix(a, b); ok {
		if p.Bits() == 0 {
			return model.Addr{}, fmt.Errorf("%q is every address: write 0.0.0.0/0 or ::/0", s)
		}
		return model.Addr{Prefix: p}, nil
	}
	return model.Addr{Range: model.Range{First: a, Last: b}}, nil
}

// rangePrefix is the prefix whose addresses are first to last, if there
// is one.
func rangePrefix(first, last netip.Addr) (netip.Prefix, bool) {
	for bits := 0; bits <= first.BitLen(); bits++ {
		p := netip.PrefixFrom(first, bits).Masked()
		if p.Addr() == first && lastAddr(p) == last {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As16()
	off := 16 - p.Addr().BitLen()/8 // an IPv4 address is the last 4 bytes
	for i := p.Bits(); i < p.Addr().BitLen(); i++ {
		b[off+i/8] |= 0x80 >> (i % 8)
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		return a.Unmap()
	}
	return a
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

// parseLogOption reads a rule's log field: whether it logs, and at which
// level ("" for the default, warning).
func parseLogOption(l LogOption) (bool, string, error) {
	switch l {
	case "", "false", model.NoLog:
		return false, "", nil
	case "true", model.DefaultLogLevel:
		return true, "", nil
	}
	if model.LogLevelNumber(string(l)) < 0 {
		return false, "", fmt.Errorf("%q is not true, false, nolog or a level: %s", string(l), strings.Join(model.LogLevels, ", "))
	}
	return true, string(l), nil
}

// parseLogLevel reads a policy's log level: "" (logDropped decides),
// nolog or a level.
func parseLogLevel(field, s string) (string, error) {
	if s == "" || s == model.NoLog || model.LogLevelNumber(s) >= 0 {
		return s, nil
	}
	return "", fieldErr(field, "%q is not nolog or a level: %s", s, strings.Join(model.LogLevels, ", "))
}

// familyError is a rule whose addresses, protocol or macro part name two
// families.
type familyError struct{ field, fam, other, otherField string }

func (e *familyError) Error() string {
	return fmt.Sprintf("is %s but %s is %s: a rule matches one address family", e.fam, e.otherField, e.other)
}

// sameFamily checks that a rule's addresses, protocol and family name one
// family at most: a rule is rendered in the chains of its family.
func sameFamily(u model.Rule) error {
	type claim struct{ field, fam string }
	var claims []claim
	if u.Family != "" {
		claims = append(claims, claim{"macro", u.Family})
	}
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
			return &Error{Field: c.field, Err: &familyError{c.field, c.fam, claims[0].fam, claims[0].field}}
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
