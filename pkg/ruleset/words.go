package ruleset

import (
	"fmt"
	"net/netip"
	"strings"
)

// What a change to the installed firewall changes, in the config's words,
// for tapfw apply: both backends name their chains and sets with these.

// HostRulesChanged says the host section's rules of a direction changed.
func HostRulesChanged(dir string) string { return "host: rules " + dir }

// GroupRulesChanged says a security group's rules of a direction changed.
func GroupRulesChanged(group, dir string) string {
	return "securityGroups." + group + ": rules " + dir
}

// TapRulesChanged says a tap's own firewall changed.
func TapRulesChanged(tap string) string { return "tap " + tap + ": its firewall" }

// SetHolds says what a set of the config (its field, such as
// "ipsets.admins" or "host: addresses") holds now, in one family.
func SetHolds(field string, v6 bool, entries []netip.Prefix) string {
	items := make([]string, len(entries))
	for i, e := range entries {
		if e.IsSingleIP() {
			items[i] = AddrString(e.Addr())
		} else {
			items[i] = PrefixString(e)
		}
	}
	held := "nothing"
	if len(items) > 0 {
		held = strings.Join(items, ", ")
	}
	v := "IPv4"
	if v6 {
		v = "IPv6"
	}
	return fmt.Sprintf("%s (%s) now holds %s", field, v, held)
}

// DescribeChain names a change to one of this package's chains in the
// config's words; "" for a chain that is no part of the config by itself
// (hooks, dispatch, a group's verdict carriers).
func DescribeChain(chain string) string {
	switch chain {
	case ChainHostIn:
		return HostRulesChanged("in")
	case ChainHostOut:
		return HostRulesChanged("out")
	}
	if g, ok := IsGroupChain(chain); ok {
		dir := "out"
		if strings.HasSuffix(chain, "-IN") {
			dir = "in"
		}
		return GroupRulesChanged(g, dir)
	}
	if tap, ok := IsTapChain(chain); ok {
		return TapRulesChanged(tap)
	}
	return ""
}

// DescribeSet names one of this package's ipsets, now holding entries, in
// the config's words; "" for a set of no config field (a tap's own
// addresses).
func DescribeSet(name string, entries []netip.Prefix) string {
	fam, ok := FamilyOfSet(name)
	if !ok {
		return ""
	}
	field := ""
	switch {
	case name == fam.SetHost():
		field = "host: addresses"
	case name == fam.SetCluster():
		field = "host: clusterHosts"
	case strings.HasPrefix(name, fam.UserSet("")):
		field = "ipsets." + strings.TrimPrefix(name, fam.UserSet(""))
	default:
		return ""
	}
	return SetHolds(field, fam.V6, entries)
}
