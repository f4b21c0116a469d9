package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// etherTypes are the ethertypes l2Protocols may name, by the names nft
// and Proxmox VE use.
var etherTypes = map[string]uint16{
	"ip": 0x0800, "arp": 0x0806, "ip6": 0x86dd, "8021q": 0x8100, "vlan": 0x8100,
	"rarp": 0x8035, "ipx": 0x8137, "mpls": 0x8847, "pppoe-discovery": 0x8863, "pppoe": 0x8864,
	"lldp": 0x88cc, "8021x": 0x888e, "macsec": 0x88e5, "ptp": 0x88f7,
}

// MaxL2Protocols is how many ethertypes l2Protocols may list.
const MaxL2Protocols = 32

// parseL2Protocols reads the ethertype allowlist: names ("ip", "arp",
// "ip6", "8021q", ...) or numbers ("0x88cc", at least 0x0600: below it
// the field is a length).
func parseL2Protocols(list []string) ([]uint16, error) {
	if len(list) > MaxL2Protocols {
		return nil, fieldErr("l2Protocols", "more than %d entries", MaxL2Protocols)
	}
	var out []uint16
	for i, s := range list {
		e, ok := etherTypes[strings.ToLower(s)]
		if !ok {
			n, err := strconv.ParseUint(s, 0, 16)
			if err != nil || !strings.HasPrefix(s, "0x") || n < 0x0600 {
				return nil, fieldErr(fmt.Sprintf("l2Protocols[%d]", i), "%q is not an ethertype name (ip, arp, ip6, 8021q, lldp, ...) or a number 0x0600-0xffff", s)
			}
			e = uint16(n)
		}
		if slices.Contains(out, e) {
			return nil, fieldErr(fmt.Sprintf("l2Protocols[%d]", i), "%q: ethertype 0x%04x is named twice", s, e)
		}
		out = append(out, e)
	}
	return out, nil
}
