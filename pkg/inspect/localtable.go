package inspect

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LocalTable reads the local routing table of the caller's network
// namespace (its thread's): each local and broadcast address with its
// type, "local" or "broadcast", as explain.Packet.LocalTable takes it.
func LocalTable() (map[netip.Addr]string, error) {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("reading the local routing table: %w", err)
	}
	out := map[netip.Addr]string{}
	for _, r := range routes {
		var typ string
		switch r.Type {
		case unix.RTN_LOCAL:
			typ = "local"
		case unix.RTN_BROADCAST:
			typ = "broadcast"
		default:
			continue
		}
		if r.Dst == nil {
			continue
		}
		if a, ok := netip.AddrFromSlice(r.Dst.IP); ok {
			out[a.Unmap()] = typ
		}
	}
	return out, nil
}
