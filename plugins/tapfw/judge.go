package main

import (
	"fmt"
	"net/netip"

	"github.com/tapfw/tapfw/pkg/explain"
	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/nft"
)

// judge walks packets through the installed ruleset, read once: tapfw
// explain asks it about one packet, the cut of connections about every
// flow of a tap.
type judge struct {
	// tap is an installed tap by name; false when it has no firewall.
	tap  func(name string) (inspect.Tap, bool)
	book book
	walk func(explain.Packet) (explain.Result, error)
	// local is the host's local routing table, for address type matches.
	local map[netip.Addr]string
	// hostSees says where the kernel's host hooks see a packet leave for
	// a bridge port: nftables names the port (oifname of the bridge
	// family), iptables only the bridge.
	hostSees bool
}

// readJudge reads the installed ruleset of the backend in use.
func (p *plugin) readJudge() (*judge, error) {
	if p.envErr != nil {
		return nil, p.envErr
	}
	local, err := inspect.LocalTable()
	if err != nil {
		return nil, err
	}
	j, err := p.readRuleset()
	if err != nil {
		return nil, err
	}
	j.local = local
	return j, nil
}

// readRuleset reads the ruleset of the backend in use and what places
// a packet: the taps and the host's addresses.
func (p *plugin) readRuleset() (*judge, error) {
	if b, ok := p.be.(*nftablesBackend); ok {
		return readJudgeNFT(b, p.bridgeOf)
	}
	s, err := p.snapshot()
	if err != nil {
		return nil, err
	}
	j := &judge{book: snapshotBook(s)}
	j.tap = func(name string) (inspect.Tap, bool) {
		t, rules := s.Show(name)
		return t, len(rules) > 0
	}
	j.walk = func(pkt explain.Packet) (explain.Result, error) {
		tb := s.V4
		if pkt.Family == 6 {
			tb = s.V6
		}
		if tb == nil {
			return explain.Result{}, fmt.Errorf("no IPv%d table was read", pkt.Family)
		}
		return explain.Explain(tb, s.Sets, pkt)
	}
	return j, nil
}

// snapshot reads the iptables backend's tables with counters and the
// ipsets, and the bridge of each tap that exists.
func (p *plugin) snapshot() (*inspect.Snapshot, error) {
	if p.envErr != nil {
		return nil, p.envErr
	}
	s, err := inspect.Read(p.exec, p.fw.Sets, p.fw.Bridge)
	if err != nil {
		return nil, err
	}
	for _, tap := range s.TapNames() {
		if br, err := p.bridgeOf(tap); err == nil {
			s.Bridges[tap] = br
		}
	}
	return s, nil
}

func readJudgeNFT(b *nftablesBackend, bridgeOf func(string) (string, error)) (*judge, error) {
	taps, err := b.taps(bridgeOf)
	if err != nil {
		return nil, err
	}
	l, err := nft.ReadListing()
	if err != nil {
		return nil, err
	}
	j := &judge{book: listingBook(l, taps), hostSees: true}
	j.tap = func(name string) (inspect.Tap, bool) { return findTap(taps, name) }
	// The walk goes through the whole nftables ruleset: every table,
	// tapfw's and others'.
	j.walk = func(pkt explain.Packet) (explain.Result, error) { return explain.ExplainNFT(l, pkt) }
	return j, nil
}

// explain walks the query's packet, placed where the kernel sees it.
func (j *judge) explain(q query) (explain.Result, explain.Packet, error) {
	t, ok := j.tap(q.tap)
	pkt, err := q.tapPacket(t, ok)
	if err != nil {
		return explain.Result{}, pkt, err
	}
	q.place(j.book, t, &pkt)
	pkt.LocalTable = j.local
	if pkt.Hook == "OUTPUT" && j.hostSees {
		pkt.PhysOut = q.tap
	}
	res, err := j.walk(pkt)
	return res, pkt, err
}
