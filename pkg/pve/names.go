package pve

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
)

// Names: Proxmox VE scopes aliases and ipsets (dc/ for the cluster's,
// guest/ for a guest's own; a bare name is the guest's if it has one,
// else the cluster's). tapfw's are one flat space, so the cluster's
// become dc-<name> and a guest's vm<vmid>-<name>; the sets management
// and blacklist keep their names, which have a meaning of their own in
// tapfw as in Proxmox VE. A name longer than tapfw allows keeps its
// start and ends in a hash of the whole.

// scope is the names one file can refer to: its own (a guest's), then
// the cluster's.
type scope struct {
	host    bool              // the host's rules: -i is the interface
	aliases map[string]string // "dc/name", "guest/name" (lower case): tapfw name
	sets    map[string]string // the same for ipsets
}

// shorten fits name into max characters: its start, "-" and 8 hex
// digits of its hash.
func shorten(name string, max int) string {
	if len(name) <= max {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:max-9] + "-" + hex.EncodeToString(sum[:4])
}

// clusterName is the tapfw name of a cluster alias or set.
func clusterName(name string, max int) string {
	switch strings.ToLower(name) {
	case "management", "blacklist":
		return strings.ToLower(name)
	}
	return shorten("dc-"+name, max)
}

// guestName is the tapfw name of a guest's alias or set.
func guestName(vmid int, name string, max int) string {
	return shorten(fmt.Sprintf("vm%d-%s", vmid, name), max)
}

// resolve finds a name as Proxmox VE does: "dc/x", "guest/x", or bare x
// (the guest's, then the cluster's).
func (s *scope) resolve(names map[string]string, ref string) (string, bool) {
	ref = strings.ToLower(ref)
	if strings.HasPrefix(ref, "dc/") || strings.HasPrefix(ref, "guest/") {
		n, ok := names[ref]
		return n, ok
	}
	if n, ok := names["guest/"+ref]; ok {
		return n, true
	}
	n, ok := names["dc/"+ref]
	return n, ok
}

// address converts a rule's source or dest: a list of addresses,
// networks, ranges, aliases and +ipsets, into tapfw's words.
func (s *scope) address(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		switch {
		case strings.HasPrefix(item, "+"):
			n, ok := s.resolve(s.sets, item[1:])
			if !ok {
				return "", fmt.Errorf("ipset %s is not defined", item)
			}
			out = append(out, "+"+n)
		case isAddress(item):
			out = append(out, masked(item))
		default:
			n, ok := s.resolve(s.aliases, item)
			if !ok {
				return "", fmt.Errorf("alias %s is not defined", item)
			}
			out = append(out, n)
		}
	}
	return strings.Join(out, ","), nil
}

// masked writes a network with host bits as the network, as ipset and
// iptables take it ("192.0.2.10/24" is 192.0.2.0/24).
func masked(v string) string {
	if p, err := netip.ParsePrefix(v); err == nil {
		if p.Bits() == p.Addr().BitLen() {
			return p.Addr().String()
		}
		return p.Masked().String()
	}
	return v
}

// isAddress reports whether v is an address, a network or a range.
func isAddress(v string) bool {
	if a, b, ok := strings.Cut(v, "-"); ok {
		return isAddress(a) && isAddress(b)
	}
	if _, err := netip.ParsePrefix(v); err == nil {
		return true
	}
	_, err := netip.ParseAddr(v)
	return err == nil
}
