package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netlink"

	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/model"
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

// flowJudge decides, for the flows of one tap, which the installed rules
// no longer allow.
type flowJudge struct {
	j   *judge
	tap inspect.Tap
	// own are the tap's addresses and networks.
	own []netip.Prefix
	// denied counts the flows cut; errs what could not be judged.
	denied int
	errs   []error
}

// MatchConntrackFlow implements netlink.CustomConntrackFilter: it says
// whether the flow is the tap's and its first packet would now be
// refused, with certainty (a flow the walk is unsure about stays).
func (f *flowJudge) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	q, ok := f.query(flow)
	if !ok {
		return false
	}
	res, _, err := f.j.explain(q)
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("flow %s: %w", flow.Forward.SrcIP, err))
		return false
	}
	if res.Verdict == "ACCEPT" || len(res.Uncertain) > 0 {
		return false
	}
	f.denied++
	return true
}

// query is the flow's first packet as tapfw explain takes it: from the
// tap (out) when the tap's address started it, to it (in) otherwise.
func (f *flowJudge) query(flow *netlink.ConntrackFlow) (query, bool) {
	fw := flow.Forward
	src, ok1 := netip.AddrFromSlice(fw.SrcIP)
	dst, ok2 := netip.AddrFromSlice(fw.DstIP)
	if !ok1 || !ok2 {
		return query{}, false
	}
	src, dst = src.Unmap(), dst.Unmap()
	q := query{tap: f.tap.Name, src: src.String(), dst: dst.String(), state: "NEW", hopLimit: 64}
	switch mine := f.holds(src); {
	case mine && !f.holds(dst):
		q.dir = "out"
	case !mine && f.holds(dst):
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

func (f *flowJudge) holds(a netip.Addr) bool {
	for _, p := range f.own {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// cutFlows deletes the conntrack entries of the tap's connections that
// its installed rules no longer allow, and returns how many went.
func (p *plugin) cutFlows(tap string) (int, error) {
	j, err := p.readJudge()
	if err != nil {
		return 0, fmt.Errorf("reading the installed firewall: %w", err)
	}
	t, ok := j.tap(tap)
	if !ok {
		return 0, nil
	}
	f := &flowJudge{j: j, tap: t}
	for _, ip := range t.IPs {
		if pr, err := netip.ParsePrefix(ip); err == nil {
			f.own = append(f.own, pr)
		} else if a, err := netip.ParseAddr(ip); err == nil {
			f.own = append(f.own, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	if len(f.own) == 0 {
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

// cutAfterAdd cuts the connections an ADD took the permission from: when
// it replaced a firewall the tap had, unless the config keeps them.
func (p *plugin) cutAfterAdd(t model.Tap, replaced bool) error {
	if !replaced || t.KeepEstablished {
		return nil
	}
	if _, err := p.cutFlows(t.Name); err != nil {
		return fmt.Errorf("cutting the connections the new rules do not allow: %w", err)
	}
	return nil
}
