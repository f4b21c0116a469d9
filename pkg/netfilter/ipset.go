package netfilter

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Sets is the narrow interface to the kernel's ipsets that the firewall
// needs. Every set tapfw makes is hash:net; its name says its family (see
// ruleset.FamilyOfSet).
type Sets interface {
	// List returns the entries of the named sets that exist; with no
	// names, of every set whose name starts with a tapfw prefix.
	List(names ...string) (map[string][]netip.Prefix, error)
	// Create makes an empty set; it fails if the set exists.
	Create(name string) error
	// Add adds an entry; adding one that is there already is no error.
	Add(name string, p netip.Prefix) error
	// Swap exchanges the contents of two sets atomically.
	Swap(a, b string) error
	// Destroy removes a set; it fails if a rule still references it.
	Destroy(name string) error
}

// NetlinkSets talks to the kernel over netlink in the caller's namespace.
type NetlinkSets struct{}

var _ Sets = NetlinkSets{}

// hash:net revision 6 (skbinfo) exists on every kernel since 4.x; the
// library would send 0 for this type otherwise.
const hashNetRevision = 6

// List implements Sets. Asking for named sets costs one netlink request
// each, however many sets the host has.
func (NetlinkSets) List(names ...string) (map[string][]netip.Prefix, error) {
	if len(names) == 0 {
		all, err := netlink.IpsetListAll()
		if err != nil {
			return nil, fmt.Errorf("listing ipsets: %w", err)
		}
		for _, s := range all {
			if _, ok := ruleset.FamilyOfSet(s.SetName); ok {
				names = append(names, s.SetName)
			}
		}
	}
	out := map[string][]netip.Prefix{}
	for _, name := range names {
		r, err := netlink.IpsetList(name)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing ipset %s: %w", name, err)
		}
		ps := []netip.Prefix{}
		for _, e := range r.Entries {
			a, ok := netip.AddrFromSlice(e.IP)
			if !ok {
				continue
			}
			a = a.Unmap()
			bits := int(e.CIDR)
			if bits == 0 {
				bits = a.BitLen()
			}
			ps = append(ps, netip.PrefixFrom(a, bits))
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i].String() < ps[j].String() })
		out[name] = ps
	}
	return out, nil
}

// Create implements Sets.
func (NetlinkSets) Create(name string) error {
	family := uint8(unix.AF_INET)
	if f, ok := ruleset.FamilyOfSet(name); ok && f.V6 {
		family = unix.AF_INET6
	}
	err := netlink.IpsetCreate(name, "hash:net", netlink.IpsetCreateOptions{Family: family, Revision: hashNetRevision})
	if err != nil {
		return fmt.Errorf("creating ipset %s: %w", name, err)
	}
	return nil
}

// Add implements Sets.
func (NetlinkSets) Add(name string, p netip.Prefix) error {
	e := &netlink.IPSetEntry{IP: net.IP(p.Addr().AsSlice()), CIDR: uint8(p.Bits()), Replace: true}
	if err := netlink.IpsetAdd(name, e); err != nil {
		return fmt.Errorf("adding %s to ipset %s: %w", p, name, err)
	}
	return nil
}

// Swap implements Sets.
func (NetlinkSets) Swap(a, b string) error {
	if err := netlink.IpsetSwap(a, b); err != nil {
		return fmt.Errorf("swapping ipsets %s and %s: %w", a, b, err)
	}
	return nil
}

// Destroy implements Sets.
func (NetlinkSets) Destroy(name string) error {
	if err := netlink.IpsetDestroy(name); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("destroying ipset %s: %w", name, err)
	}
	return nil
}
