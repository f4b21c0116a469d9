package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
)

// A named set's entries may exclude: "!198.51.100.128/25" takes those
// addresses out of a larger entry, as Proxmox VE's ipset entries do (with
// ipset's nomatch). The most specific entry that holds an address decides
// whether the set matches it, as hash:net with nomatch decides.
//
// tapfw resolves the exclusions here, into the disjoint networks that
// match: both backends load those (an nftables set has no nomatch; the
// netlink ipset library tapfw uses cannot add a nomatch entry), so the
// kernel's sets and every reader of them (explain, the model) agree on
// what matches. An exclusion of a /32 from a /8 is 24 networks.

// parseIPSetEntries reads a named set's entries, exclusions included,
// and returns the networks that match.
func parseIPSetEntries(field string, entries []string, al aliases) ([]netip.Prefix, error) {
	type entry struct {
		p       netip.Prefix
		exclude bool
	}
	var es []entry
	seen := map[netip.Prefix]int{}
	for i, e := range entries {
		s, exclude := strings.CutPrefix(strings.TrimSpace(e), "!")
		p, err := al.net(s, false)
		if err != nil {
			return nil, &Error{Field: fmt.Sprintf("%s[%d]", field, i), Err: err}
		}
		if j, ok := seen[p]; ok && es[j].exclude != exclude {
			return nil, fieldErr(fmt.Sprintf("%s[%d]", field, i), "%s is both an entry and an exclusion", p)
		}
		seen[p] = len(es)
		es = append(es, entry{p, exclude})
	}
	// Less specific first: each entry then overrides what it holds.
	slices.SortStableFunc(es, func(a, b entry) int { return a.p.Bits() - b.p.Bits() })
	var out []netip.Prefix
	for i, e := range es {
		holder := slices.IndexFunc(out, func(q netip.Prefix) bool { return q.Bits() <= e.p.Bits() && q.Contains(e.p.Addr()) })
		switch {
		case !e.exclude && holder >= 0:
			// Held already.
		case !e.exclude:
			out = append(out, e.p)
		case holder >= 0:
			q := out[holder]
			out = slices.Delete(out, holder, holder+1)
			out = append(out, without(q, e.p)...)
		case !slices.ContainsFunc(es[:i], func(x entry) bool { return !x.exclude && x.p.Overlaps(e.p) }):
			return nil, fieldErr(field, "!%s excludes nothing: no entry holds it", e.p)
		}
	}
	if len(out) > MaxSetEntries {
		return nil, fieldErr(field, "its exclusions make more than %d networks", MaxSetEntries)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out, nil
}

// without is q's addresses but p's, p inside q: the sibling of each
// half on the way from q down to p.
func without(q, p netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for bits := q.Bits() + 1; bits <= p.Bits(); bits++ {
		half := netip.PrefixFrom(p.Addr(), bits).Masked()
		out = append(out, netip.PrefixFrom(flipBit(half.Addr(), bits-1), bits))
	}
	return out
}

// flipBit flips bit i of a, counted from the most significant.
func flipBit(a netip.Addr, i int) netip.Addr {
	b := a.AsSlice()
	b[i/8] ^= 0x80 >> (i % 8)
	out, _ := netip.AddrFromSlice(b)
	return out
}

// MaxManagementPorts is how many entries managementPorts may hold.
const MaxManagementPorts = 32

// parseManagement reads the management ports: tcp/22 and each entry,
// "PORTS" (tcp) or "tcp/PORTS", "udp/PORTS", PORTS as a rule's dport;
// per protocol in lists of at most 15 ports (a range counting two), as a
// rule's port list.
func parseManagement(entries []string) ([]model.Ports, error) {
	if len(entries) > MaxManagementPorts {
		return nil, fieldErr("host.managementPorts", "more than %d entries", MaxManagementPorts)
	}
	type item struct {
		proto, ports string
		slots        int
	}
	items := []item{{model.DefaultManagement.Proto, model.DefaultManagement.Ports, 1}}
	for i, e := range entries {
		f := fmt.Sprintf("host.managementPorts[%d]", i)
		proto, ports, ok := strings.Cut(e, "/")
		if !ok {
			proto, ports = "tcp", e
		}
		if proto != "tcp" && proto != "udp" {
			return nil, fieldErr(f, "%q: the protocol is tcp or udp", e)
		}
		if strings.Contains(ports, ",") {
			return nil, fieldErr(f, "%q: one port or range an entry", e)
		}
		p, err := parsePorts(ports)
		if err != nil || p == "" {
			return nil, fieldErr(f, "%q is not PORT, LO:HI, tcp/PORT or udp/PORT", e)
		}
		it := item{proto, p, 1}
		if strings.Contains(p, ":") {
			it.slots = 2
		}
		if !slices.Contains(items, it) {
			items = append(items, it)
		}
	}
	var out []model.Ports
	for _, proto := range []string{"tcp", "udp"} {
		var list []string
		slots := 0
		for _, it := range items {
			if it.proto != proto {
				continue
			}
			if slots+it.slots > 15 {
				out = append(out, model.Ports{Proto: proto, Ports: strings.Join(list, ",")})
				list, slots = nil, 0
			}
			list, slots = append(list, it.ports), slots+it.slots
		}
		if len(list) > 0 {
			out = append(out, model.Ports{Proto: proto, Ports: strings.Join(list, ",")})
		}
	}
	return out, nil
}

// MaxSynFlood bounds the SYN flood limit's rate and burst.
const MaxSynFlood = 1000000

// parseSynFlood reads the SYN flood limit: nil when off; the rate and
// burst only with it on.
func parseSynFlood(h *Host) (*model.SynFlood, error) {
	if !h.SynFlood {
		for _, f := range []struct {
			name string
			v    int
		}{{"synFloodRate", h.SynFloodRate}, {"synFloodBurst", h.SynFloodBurst}} {
			if f.v != 0 {
				return nil, fieldErr("host."+f.name, "given while synFlood is off")
			}
		}
		return nil, nil
	}
	s := &model.SynFlood{Rate: model.DefaultSynFloodRate, Burst: model.DefaultSynFloodBurst}
	for _, f := range []struct {
		name string
		v    int
		to   *int
	}{{"synFloodRate", h.SynFloodRate, &s.Rate}, {"synFloodBurst", h.SynFloodBurst, &s.Burst}} {
		switch {
		case f.v == 0:
		case f.v < 1 || f.v > MaxSynFlood:
			return nil, fieldErr("host."+f.name, "%d is not 1-%d", f.v, MaxSynFlood)
		default:
			*f.to = f.v
		}
	}
	return s, nil
}
