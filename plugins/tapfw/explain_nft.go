package main

import (
	"fmt"
	"net/netip"

	"github.com/tapfw/tapfw/pkg/explain"
	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/nft"
)

// explainNFT builds the packet as the hooks see it and walks it through
// the whole nftables ruleset (every table, tapfw's and others').
func (q query) explainNFT(b *nftablesBackend, bridgeOf func(string) (string, error)) (explain.Result, explain.Packet, error) {
	taps, err := b.taps(bridgeOf)
	if err != nil {
		return explain.Result{}, explain.Packet{}, fmt.Errorf("reading the installed firewall: %w", err)
	}
	t, ok := findTap(taps, q.tap)
	pkt, err := q.tapPacket(t, ok)
	if err != nil {
		return explain.Result{}, pkt, err
	}
	l, err := nft.ReadListing()
	if err != nil {
		return explain.Result{}, pkt, fmt.Errorf("reading the installed firewall: %w", err)
	}
	q.place(listingBook(l, taps), t, &pkt)
	if pkt.Hook == "OUTPUT" {
		// nftables sees the port a host's packet leaves the bridge by.
		pkt.PhysOut = q.tap
	}
	res, err := explain.ExplainNFT(l, pkt)
	return res, pkt, err
}

func findTap(taps []inspect.Tap, name string) (inspect.Tap, bool) {
	for _, t := range taps {
		if t.Name == name {
			return t, true
		}
	}
	return inspect.Tap{}, false
}

// listingBook reads owners from the taps' records and the host's
// address sets in the listing.
func listingBook(l *nft.Listing, taps []inspect.Tap) book {
	return book{
		owner: func(a netip.Addr) (tap string, host bool) {
			for _, f := range []nft.Family{nft.IPv4, nft.IPv6} {
				if s := l.Set("inet", nft.Table, nft.HostSet(f)); s != nil && s.Contains(a) {
					host = true
				}
			}
			for _, t := range taps {
				if tapHolds(t, a) {
					tap = t.Name
				}
			}
			return tap, host
		},
		mac: func(name string) string { t, _ := findTap(taps, name); return t.MAC },
	}
}

// tapHolds says whether a is one of the tap's addresses or in one of
// its networks.
func tapHolds(t inspect.Tap, a netip.Addr) bool {
	for _, ip := range t.IPs {
		if p, err := netip.ParsePrefix(ip); err == nil && p.Contains(a) {
			return true
		}
		if b, err := netip.ParseAddr(ip); err == nil && b == a {
			return true
		}
	}
	return false
}
