package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/vishvananda/netlink"

	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Conntrack lets a connection's packets through once its first packet
// passed (the established rule every chain starts with), so a rule that
// goes would go on allowing the connections it let in. After the firewall
// of a tap is replaced, its connections that the installed rules would
// not let start now are cut: their conntrack entries are deleted, and
// their next packet meets the rules as a new one (and is dropped). A
// connection still allowed keeps its entry and flows on without a gap.
//
// The conntrack table is read and cut over netlink with the netlink
// package tapfw already uses for links (its dump and per-entry delete are
// all this needs; no other library). Each flow's first packet is walked
// through the installed ruleset by the code that answers tapfw explain.

// flowJudge decides, for the flows of some taps, which the installed
// rules no longer allow.
type flowJudge struct {
	j    *judge
	taps []ownedTap
	// byAddr finds the taps holding an address (by index into taps);
	// nets are the taps holding networks, checked one by one.
	byAddr map[netip.Addr][]int
	nets   []int
	// denied counts the flows cut; errs what could not be judged.
	denied int
	errs   []error
}

// add indexes a tap with addresses.
func (f *flowJudge) add(t ownedTap) {
	i := len(f.taps)
	f.taps = append(f.taps, t)
	if f.byAddr == nil {
		f.byAddr = map[netip.Addr][]int{}
	}
	routed := false
	for _, p := range t.own {
		if p.IsSingleIP() {
			f.byAddr[p.Addr()] = append(f.byAddr[p.Addr()], i)
		} else {
			routed = true
		}
	}
	if routed {
		f.nets = append(f.nets, i)
	}
}

// candidates are the taps that may hold one end of the flow, each once:
// whatever the number of taps, a flow costs two lookups and a check of
// the taps with routed networks.
func (f *flowJudge) candidates(flow *netlink.ConntrackFlow) []int {
	var out []int
	for _, ip := range []net.IP{flow.Forward.SrcIP, flow.Forward.DstIP} {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, f.byAddr[a.Unmap()]...)
		}
	}
	out = append(out, f.nets...)
	slices.Sort(out)
	return slices.Compact(out)
}

// ownedTap is a tap and its addresses and networks.
type ownedTap struct {
	tap inspect.Tap
	own []netip.Prefix
}

// MatchConntrackFlow implements netlink.CustomConntrackFilter: it says
// whether the flow is one of the taps' and its first packet would now be
// refused by one of them, with certainty (a flow the walk is unsure
// about stays).
func (f *flowJudge) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	for _, i := range f.candidates(flow) {
		q, ok := f.taps[i].query(flow)
		if !ok {
			continue
		}
		res, _, err := f.j.explain(q)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("flow %s: %w", flow.Forward.SrcIP, err))
			return false
		}
		if res.Verdict != "ACCEPT" && len(res.Uncertain) == 0 {
			f.denied++
			return true
		}
	}
	return false
}

// query is the flow's first packet as tapfw explain takes it: from the
// tap (out) when the tap's address started it, to it (in) otherwise.
func (t ownedTap) query(flow *netlink.ConntrackFlow) (query, bool) {
	fw := flow.Forward
	src, ok1 := netip.AddrFromSlice(fw.SrcIP)
	dst, ok2 := netip.AddrFromSlice(fw.DstIP)
	if !ok1 || !ok2 {
		return query{}, false
	}
	src, dst = src.Unmap(), dst.Unmap()
	q := query{tap: t.tap.Name, src: src.String(), dst: dst.String(), state: "NEW", hopLimit: 64}
	switch mine := t.holds(src); {
	case mine && !t.holds(dst):
		q.dir = "out"
	case !mine && t.holds(dst):
		q.dir = "in"
	default:
		return query{}, false
	}
	switch fw.Protocol {
	case 6, 17:
		q.proto = map[uint8]string{6: "tcp", 17: "udp"}[fw.Protocol]
		q.sport, q.dport = int(fw.SrcPort), int(fw.DstPort)
	case 1:
		// Conntrack follows ICMP queries only; echo is the one in use.
		q.proto, q.icmp = "icmp", "8/0"
	case 58:
		q.proto, q.icmp = "icmpv6", "128/0"
	default:
		q.proto = strconv.Itoa(int(fw.Protocol))
	}
	return q, true
}

func (t ownedTap) holds(a netip.Addr) bool {
	for _, p := range t.own {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// cutFlows deletes the conntrack entries of the taps' connections that
// their installed rules no longer allow, and returns how many went. It
// holds the lock; the ruleset and the conntrack table are read once,
// whatever the number of taps, and the ruleset only when the conntrack
// table holds a flow to or from one of near (nil: any unicast address),
// so a host without such connections pays one dump of the table.
func (p *plugin) cutFlows(near []netip.Prefix, taps ...string) (int, error) {
	// Under the lock: a call changing the ruleset meanwhile would have
	// the read see half of it (iptables-save fails on a set it lists
	// being gone), and a tap it installs meanwhile is judged by its own
	// call.
	unlock, err := p.fw.Lock.Lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	if some, err := anyFlow(near); err != nil || !some {
		return 0, err
	}
	j, err := p.readJudge()
	if err != nil {
		return 0, fmt.Errorf("reading the installed firewall: %w", err)
	}
	f := &flowJudge{j: j}
	for _, name := range taps {
		t, ok := j.tap(name)
		if !ok {
			continue
		}
		ot := ownedTap{tap: t}
		for _, ip := range t.IPs {
			if pr, err := netip.ParsePrefix(ip); err == nil {
				ot.own = append(ot.own, pr)
			} else if a, err := netip.ParseAddr(ip); err == nil {
				ot.own = append(ot.own, netip.PrefixFrom(a, a.BitLen()))
			}
		}
		if len(ot.own) > 0 {
			f.add(ot)
		}
	}
	if len(f.taps) == 0 {
		return 0, nil
	}
	var errs []error
	for _, fam := range []netlink.InetFamily{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f); err != nil {
			errs = append(errs, fmt.Errorf("conntrack table: %w", err))
		}
	}
	return f.denied, errors.Join(append(errs, f.errs...)...)
}

// anyFlow says whether the conntrack table holds a flow whose source or
// destination is in one of near; nil near is any unicast address (a
// tap's are: the host's own multicast reports, always there, are no
// tap's flow).
func anyFlow(near []netip.Prefix) (bool, error) {
	if near != nil && len(near) == 0 {
		return false, nil
	}
	for _, fam := range []netlink.InetFamily{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			return false, fmt.Errorf("conntrack table: %w", err)
		}
		for _, fl := range flows {
			for _, ip := range []net.IP{fl.Forward.SrcIP, fl.Forward.DstIP} {
				a, ok := netip.AddrFromSlice(ip)
				if !ok {
					continue
				}
				if a = a.Unmap(); near == nil && (a.IsGlobalUnicast() || a.IsLinkLocalUnicast()) ||
					slices.ContainsFunc(near, func(p netip.Prefix) bool { return p.Contains(a) }) {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// cutAfterAdd cuts the connections an ADD took the permission from: when
// it replaced a firewall the tap had, unless the config keeps them.
func (p *plugin) cutAfterAdd(t model.Tap, replaced bool) error {
	if !replaced || t.KeepEstablished {
		return nil
	}
	near := append(slices.Clone(t.IPs), t.IPs6...)
	if t.MAC != nil {
		near = append(near, netip.PrefixFrom(ruleset.LinkLocal(t.MAC), 128))
	}
	if _, err := p.cutFlows(near, t.Name); err != nil {
		return fmt.Errorf("cutting the connections the new rules do not allow: %w", err)
	}
	return nil
}
