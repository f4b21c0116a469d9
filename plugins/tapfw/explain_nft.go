package main

import (
	"net/netip"

	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/nft"
)

// findTap is the tap of that name among taps.
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
