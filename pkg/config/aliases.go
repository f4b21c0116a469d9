package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Aliases are named addresses ("aliases": {"db": "198.51.100.10"}),
// usable wherever an address or network goes: a rule's source and dest
// (alone or in a list), a set's entries, dhcpServers and the host's
// addresses. They never reach the kernel: a rule holds the address.
type aliases map[string]netip.Prefix

// MaxAliasName is how long an alias name may be, as in Proxmox VE.
const MaxAliasName = 64

// aliasRE is what an alias name looks like: a letter, then letters,
// digits, '-' and '_', as Proxmox VE names them. No address, network or
// range looks like one.
var aliasRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

// parseAliases reads the aliases: names as aliasRE, values an address or
// a network.
func parseAliases(in map[string]string) (aliases, error) {
	out := aliases{}
	for name, v := range in {
		f := "aliases." + name
		if !aliasRE.MatchString(name) || len(name) > MaxAliasName {
			return nil, fieldErr("aliases", "%q is no alias name: a letter, then letters, digits, - and _, at most %d characters", name, MaxAliasName)
		}
		p, err := parseNet(strings.TrimSpace(v), false)
		if err != nil {
			return nil, &Error{Field: f, Err: err}
		}
		out[strings.ToLower(name)] = p
	}
	if len(out) != len(in) {
		return nil, fieldErr("aliases", "two names differ only in case (aliases are matched in any case, as in Proxmox VE)")
	}
	return out, nil
}

// net reads an address or network, or an alias's (in any case).
func (al aliases) net(s string, allowAny bool) (netip.Prefix, error) {
	if !aliasRE.MatchString(s) {
		return parseNet(s, allowAny)
	}
	if p, ok := al[strings.ToLower(s)]; ok {
		return p, nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 or IPv6 address or CIDR, nor an alias defined in aliases", s)
}
