package config

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
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

// AllowedPair is one of allowedPairs: a MAC (the tap's when empty) and
// the addresses the guest may send from it.
type AllowedPair struct {
	MAC string   `json:"mac,omitempty"`
	IPs []string `json:"ips"`
}

// Limits of allowedPairs.
const (
	MaxPairs   = 16
	MaxPairIPs = 16
)

// resolvePairs reads allowedPairs into t: a pair's addresses join the
// tap's own (its anti-spoofing, its dispatch); a pair of another MAC is a
// pair the layer-2 table enforces. They need macFilter and ipFilter,
// without which nothing is checked.
func resolvePairs(t *model.Tap, pairs []AllowedPair) error {
	if len(pairs) == 0 {
		return nil
	}
	if !t.MACFilter || !t.IPFilter {
		return fieldErr("allowedPairs", "needs macFilter and ipFilter on: without them any MAC and address passes")
	}
	if len(pairs) > MaxPairs {
		return fieldErr("allowedPairs", "more than %d pairs", MaxPairs)
	}
	for i, pr := range pairs {
		f := fmt.Sprintf("allowedPairs[%d]", i)
		mac := t.MAC
		if pr.MAC != "" {
			hw, err := net.ParseMAC(pr.MAC)
			if err != nil || len(hw) != 6 || hw[0]&1 == 1 {
				return fieldErr(f+".mac", "%q is not a unicast Ethernet MAC address", pr.MAC)
			}
			mac = hw
		}
		if len(pr.IPs) == 0 || len(pr.IPs) > MaxPairIPs {
			return fieldErr(f+".ips", "needs 1-%d addresses", MaxPairIPs)
		}
		p := model.Pair{MAC: mac}
		for j, s := range pr.IPs {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" || a.Is4In6() || a.IsMulticast() || a.IsUnspecified() {
				return fieldErr(fmt.Sprintf("%s.ips[%d]", f, j), "%q is not a unicast IPv4 or IPv6 address", s)
			}
			p.IPs = append(p.IPs, a)
			pfx := netip.PrefixFrom(a, a.BitLen())
			if a.Is4() && !slices.Contains(t.IPs, pfx) {
				t.IPs = append(t.IPs, pfx)
			} else if a.Is6() && !slices.Contains(t.IPs6, pfx) {
				t.IPs6 = append(t.IPs6, pfx)
			}
		}
		if !bytes.Equal(mac, t.MAC) {
			t.Pairs = append(t.Pairs, p)
		}
	}
	return nil
}

// parseHelpers reads the conntrack helpers a tap's connections get.
func parseHelpers(t *model.Tap, names []string) error {
	for i, h := range names {
		f := fmt.Sprintf("helpers[%d]", i)
		if !slices.Contains(model.Helpers, h) {
			return fieldErr(f, "%q is not a helper tapfw attaches: ftp, tftp or sip", h)
		}
		if slices.Contains(t.Helpers, h) {
			return fieldErr(f, "%q is named twice", h)
		}
		t.Helpers = append(t.Helpers, h)
	}
	if len(t.Helpers) > 0 && !t.IPFilter {
		return fieldErr("helpers", "needs ipFilter: a helper is attached by the tap's addresses")
	}
	return nil
}
