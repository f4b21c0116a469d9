package pve

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Proxmox VE checks each rule as it reads it (Firewall.pm's verify_rule)
// and installs nothing of a rule with errors. tapfw takes some of those
// rules (an address list with an alias in it, a CIDR with host bits), so
// the import checks them the same way first: a rule Proxmox VE refuses
// is reported and left out, as it is left out there.

// icmpName is an ICMP type name of iptables (which Proxmox VE takes) as
// tapfw writes it: the name where tapfw knows it, else type[/code].
type icmpName struct {
	num   string
	tapfw bool
}

// icmpNames are iptables' ICMP type names ("any" is every type).
var icmpNames = map[string]icmpName{
	"any": {"", false}, "echo-reply": {"0", true}, "destination-unreachable": {"3", true},
	"network-unreachable": {"3/0", true}, "host-unreachable": {"3/1", true}, "protocol-unreachable": {"3/2", true},
	"port-unreachable": {"3/3", true}, "fragmentation-needed": {"3/4", true}, "source-route-failed": {"3/5", false},
	"network-unknown": {"3/6", false}, "host-unknown": {"3/7", false}, "network-prohibited": {"3/9", false},
	"host-prohibited": {"3/10", false}, "TOS-network-unreachable": {"3/11", false}, "TOS-host-unreachable": {"3/12", false},
	"communication-prohibited": {"3/13", false}, "host-precedence-violation": {"3/14", false}, "precedence-cutoff": {"3/15", false},
	"source-quench": {"4", true}, "redirect": {"5", true}, "network-redirect": {"5/0", false}, "host-redirect": {"5/1", false},
	"TOS-network-redirect": {"5/2", false}, "TOS-host-redirect": {"5/3", false}, "echo-request": {"8", true},
	"router-advertisement": {"9", true}, "router-solicitation": {"10", true}, "time-exceeded": {"11", true},
	"ttl-zero-during-transit": {"11/0", true}, "ttl-zero-during-reassembly": {"11/1", false}, "parameter-problem": {"12", true},
	"ip-header-bad": {"12/0", false}, "required-option-missing": {"12/1", false}, "timestamp-request": {"13", true},
	"timestamp-reply": {"14", true}, "address-mask-request": {"17", false}, "address-mask-reply": {"18", false},
}

// icmp6Names are ip6tables' ICMPv6 type names.
var icmp6Names = map[string]icmpName{
	"destination-unreachable": {"1", true}, "no-route": {"1/0", true}, "communication-prohibited": {"1/1", true},
	"beyond-scope": {"1/2", false}, "address-unreachable": {"1/3", true}, "port-unreachable": {"1/4", true},
	"failed-policy": {"1/5", false}, "reject-route": {"1/6", false}, "packet-too-big": {"2", true},
	"time-exceeded": {"3", true}, "ttl-zero-during-transit": {"3/0", true}, "ttl-zero-during-reassembly": {"3/1", false},
	"parameter-problem": {"4", true}, "bad-header": {"4/0", false}, "unknown-header-type": {"4/1", false},
	"unknown-option": {"4/2", false}, "echo-request": {"128", true}, "echo-reply": {"129", true},
	"router-solicitation": {"133", true}, "router-advertisement": {"134", true}, "neighbor-solicitation": {"135", true},
	"neighbour-solicitation": {"135", true}, "neighbor-advertisement": {"136", true}, "neighbour-advertisement": {"136", true},
	"redirect": {"137", true},
}

// portProtos are the protocols Proxmox VE lets a rule give ports for.
var portProtos = map[string]bool{"tcp": true, "6": true, "udp": true, "17": true, "udplite": true, "136": true,
	"dccp": true, "33": true, "sctp": true, "132": true}

// icmpFamily is 4 for icmp, 6 for icmpv6 (or ipv6-icmp), 0 for another
// protocol: Proxmox VE knows ICMP by these names only.
func icmpFamily(proto string) int {
	switch proto {
	case "icmp":
		return 4
	case "icmpv6", "ipv6-icmp":
		return 6
	}
	return 0
}

// aliasRE is a name Proxmox VE reads as an alias, with its scope, and
// netIfaceRE the interface of a guest's rule.
var (
	aliasRE    = regexp.MustCompile(`^(dc/|guest/)?[A-Za-z][A-Za-z0-9_-]+$`)
	netIfaceRE = regexp.MustCompile(`^net\d+$`)
)

// pveRuleError is why Proxmox VE refuses rule r (nil if it takes it);
// guest says the rule is a guest's, whose -i names a netN.
func pveRuleError(r Rule, guest bool) error {
	if guest && r.Iface != "" && !netIfaceRE.MatchString(r.Iface) {
		return fmt.Errorf("-i %s: a guest's rule names its interface net<N>", r.Iface)
	}
	if r.Type == "group" {
		return nil
	}
	if r.Log != "" && !logLevels[r.Log] {
		return fmt.Errorf("-log %s: not a log level", r.Log)
	}
	if err := pveProtoPorts(r); err != nil {
		return err
	}
	family := icmpFamily(r.Proto)
	for _, a := range []struct{ opt, v string }{{"-source", r.Source}, {"-dest", r.Dest}} {
		f, err := pveAddressList(a.v)
		if err != nil {
			return fmt.Errorf("%s %s: %w", a.opt, a.v, err)
		}
		if f != 0 && family != 0 && f != family {
			return fmt.Errorf("%s %s: mixes IPv4 and IPv6 in one rule", a.opt, a.v)
		}
		if f != 0 {
			family = f
		}
	}
	return nil
}

// pveProtoPorts checks a rule's protocol, ports and ICMP type as
// verify_rule does.
func pveProtoPorts(r Rule) error {
	if _, ok := etcProtocols[r.Proto]; r.Proto != "" && !ok && r.Proto != "icmpv6" && !isProtoNumber(r.Proto) {
		return fmt.Errorf("-p %s: not a protocol of /etc/protocols (its first names, or numbers)", r.Proto)
	}
	icmp := icmpFamily(r.Proto)
	for _, p := range []struct{ opt, v string }{{"-dport", r.DPort}, {"-sport", r.SPort}} {
		switch {
		case p.v == "":
		case r.Proto == "":
			return fmt.Errorf("%s needs -p", p.opt)
		case icmp != 0 && p.opt == "-dport":
			if r.ICMPType != "" {
				return fmt.Errorf("-icmp-type with -dport")
			}
			if _, err := icmpType(r.Proto, p.v, true); err != nil {
				return fmt.Errorf("-dport %s: %w", p.v, err)
			}
		case !portProtos[r.Proto]:
			return fmt.Errorf("%s: protocol %s has no ports", p.opt, r.Proto)
		default:
			if _, err := ports(p.v); err != nil {
				return fmt.Errorf("%s: %w", p.opt, err)
			}
		}
	}
	if r.ICMPType == "" {
		return nil
	}
	if icmp == 0 {
		return fmt.Errorf("-icmp-type needs -p icmp, icmpv6 or ipv6-icmp")
	}
	_, err := icmpType(r.Proto, r.ICMPType, false)
	return err
}

// isProtoNumber reports whether v is the number of a protocol of
// /etc/protocols.
func isProtoNumber(v string) bool {
	n, err := strconv.Atoi(v)
	if err != nil || strconv.Itoa(n) != v {
		return false
	}
	for _, m := range etcProtocols {
		if m == n {
			return true
		}
	}
	return false
}

// icmpType is the tapfw icmpType of a Proxmox VE ICMP type for proto
// ("" for any type): a name, or (number set: given as -dport, the form
// Proxmox VE still reads) a type number.
func icmpType(proto, name string, number bool) (string, error) {
	names, kind := icmpNames, "icmp"
	if icmpFamily(proto) == 6 {
		names, kind = icmp6Names, "icmpv6"
	}
	if n, err := strconv.Atoi(name); number && err == nil && strconv.Itoa(n) == name && n <= 255 {
		return name, nil
	}
	t, ok := names[name]
	if !ok {
		return "", fmt.Errorf("%q is not an %s type name Proxmox VE knows", name, kind)
	}
	if t.tapfw {
		return name, nil
	}
	return t.num, nil
}

// pveAddressList checks a rule's -source or -dest as parse_address_list
// does: one +ipset, one alias, or a list of addresses, networks (without
// host bits) and ranges, all of one family and a range only alone. It
// returns the list's family (0 for a set or an alias).
func pveAddressList(v string) (int, error) {
	if v == "" || (strings.HasPrefix(v, "+") && !strings.Contains(v, ",")) || aliasRE.MatchString(v) {
		return 0, nil
	}
	items := strings.Split(v, ",")
	family, ranges := 0, false
	for _, item := range items {
		f, isRange, err := pveAddress(item)
		if err != nil {
			return 0, err
		}
		if family != 0 && f != family {
			return 0, fmt.Errorf("a list mixes IPv4 and IPv6")
		}
		family, ranges = f, ranges || isRange
	}
	if ranges && len(items) > 1 {
		return 0, fmt.Errorf("a range in a list")
	}
	return family, nil
}

// pveAddress checks one item of an address list: its family, whether it
// is a range.
func pveAddress(item string) (int, bool, error) {
	family := func(a netip.Addr) int {
		if a.Is4() {
			return 4
		}
		return 6
	}
	if first, last, ok := strings.Cut(item, "-"); ok {
		a, errA := netip.ParseAddr(first)
		b, errB := netip.ParseAddr(last)
		if errA != nil || errB != nil || a.Is4() != b.Is4() {
			return 0, false, fmt.Errorf("%q is not an address range", item)
		}
		return family(a), true, nil
	}
	if a, err := netip.ParseAddr(item); err == nil {
		return family(a), false, nil
	}
	p, err := netip.ParsePrefix(item)
	switch {
	case err != nil:
		return 0, false, fmt.Errorf("%q is no address (a list holds addresses, networks and ranges only, no alias or +ipset)", item)
	case p.Masked() != p:
		return 0, false, fmt.Errorf("%s has host bits set (write %s)", item, p.Masked())
	}
	return family(p.Addr()), false, nil
}

// pveSetEntry checks an ipset entry as Proxmox VE reads it: an alias, an
// address or a network, not a range, and not a whole family (a zero
// prefix).
func pveSetEntry(v string) error {
	if aliasRE.MatchString(v) || isAddr(v) {
		return nil
	}
	p, err := netip.ParsePrefix(v)
	switch {
	case err != nil:
		return fmt.Errorf("%q is no address, network or alias", v)
	case p.Bits() == 0:
		return fmt.Errorf("%s: a zero prefix is not allowed in an ipset", v)
	}
	return nil
}
