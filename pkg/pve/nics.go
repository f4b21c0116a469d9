package pve

import (
	"fmt"
	"slices"
	"strings"
)

// openNIC is the NIC file of a NIC Proxmox VE does not filter (no
// firewall=1, or its guest's firewall is off): its port comes up on a
// fail-closed bridge and passes everything.
func openNIC(n NIC) map[string]any {
	return map[string]any{"bridge": n.Bridge, "mac": n.MAC, "macFilter": false, "ipFilter": false, "radv": true,
		"policyIn": "ACCEPT", "policyOut": "ACCEPT", "logDropped": false}
}

// guestOptions are the <vmid>.fw options the import carries over: the
// tapfw field and Proxmox VE's default as its firewall applies it (DHCP
// passes unless dhcp: 0, whatever the option's documented default).
var guestOptions = map[string]struct {
	field string
	def   bool
}{
	"macfilter": {"macFilter", true}, "ipfilter": {"ipFilter", false}, "dhcp": {"dhcp", true},
	"ndp": {"ndp", true}, "radv": {"radv", false},
}

// etherNames are Proxmox VE's layer2_protocols names, as tapfw's.
var etherNames = map[string]string{"ipv4": "ip", "ip": "ip", "ipv6": "ip6", "ip6": "ip6", "arp": "arp", "802_1q": "8021q",
	"8021q": "8021q", "rarp": "rarp", "lldp": "lldp", "ipx": "ipx"}

// guest writes the NIC files of a guest.
func (c *converter) guest(g *Guest) {
	fw := c.t.GuestFw[g.VMID]
	s := scope{aliases: map[string]string{}, sets: map[string]string{}}
	for k, v := range c.cluster.aliases {
		s.aliases[k] = v
	}
	for k, v := range c.cluster.sets {
		s.sets[k] = v
	}
	c.names(&s, fw, "guest/", func(n string) string { return guestName(g.VMID, n, c.opt.Limits.SetName) })
	c.unread(fw, false)
	on := fw != nil && c.boolOption(fw, "enable", false)
	base := c.guestBase(fw)
	for _, n := range g.NICs {
		port := g.Port(n)
		if !n.Firewall || !on {
			c.res.NICs[port] = openNIC(n)
			continue
		}
		nic := map[string]any{"bridge": n.Bridge, "mac": n.MAC}
		for k, v := range base {
			nic[k] = v
		}
		ips, filter := c.nicIPs(&s, fw, g, n, base["ipFilter"] == true)
		if len(ips) > 0 {
			nic["ips"] = ips
		}
		nic["ipFilter"] = filter
		switch {
		case len(c.helpers) == 0:
		case filter:
			nic["helpers"] = c.helpers
		default:
			_, line := c.t.Host.Option("nf_conntrack_helpers")
			c.problem(c.t.Host.Name, line, "nf_conntrack_helpers: %s gets none: tapfw's helpers need its IP filter (ipfilter)", port)
		}
		// A rule's -i that is not net<N> is reported (Proxmox VE refuses it).
		keep := func(r Rule) bool {
			return r.Iface == "" || r.Iface == fmt.Sprintf("net%d", n.Index) || !netIfaceRE.MatchString(r.Iface)
		}
		rules := map[string]any{}
		for _, dir := range []string{"in", "out"} {
			rs := s.ruleList(fw.Name, fw.Rules, dir, c.groups, keep, &c.res.Problems)
			if len(rs) > 0 {
				rules[dir] = c.fields(port+"|rules."+dir, rs)
			}
		}
		nic["rules"] = rules
		c.res.NICs[port] = nic
	}
}

// guestBase are the fields a guest's firewalled NICs share: its options,
// its policies (Proxmox VE's defaults DROP in, ACCEPT out), the host's
// conntrack helpers.
func (c *converter) guestBase(fw *FwFile) map[string]any {
	// Proxmox VE logs nothing unless log_level_in or _out says so.
	out := map[string]any{"policyIn": "DROP", "policyOut": "ACCEPT", "logLevelIn": "nolog", "logLevelOut": "nolog"}
	if fw == nil {
		return out
	}
	for k, o := range guestOptions {
		out[o.field] = c.boolOption(fw, k, o.def)
	}
	for _, o := range fw.Options {
		key := strings.ToLower(o.Key)
		switch {
		case key == "policy_in":
			out["policyIn"] = c.policyOption(fw, key, "DROP")
		case key == "policy_out":
			out["policyOut"] = c.policyOption(fw, key, "ACCEPT")
		case key == "log_level_in":
			out["logLevelIn"] = c.logOption(fw, key)
		case key == "log_level_out":
			out["logLevelOut"] = c.logOption(fw, key)
		case key == "layer2_protocols" && c.ebtablesOff():
			c.problem(fw.Name, o.Line, "layer2_protocols: cluster.fw's ebtables: 0 turns Proxmox VE's layer-2 filter off; left out")
		case key == "layer2_protocols":
			out["l2Protocols"] = c.etherTypes(fw, o)
		case key == "enable":
		case key == "ndp" && out["ndp"] == false:
			c.problem(fw.Name, o.Line, "option ndp: 0: tapfw drops the guest's neighbour solicitations and advertisements; Proxmox VE leaves them to the rules and policies")
		case guestOptions[key].field != "":
		default:
			c.problem(fw.Name, o.Line, "option %s has no tapfw equivalent; left out", key)
		}
	}
	return out
}

// etherTypes converts layer2_protocols.
func (c *converter) etherTypes(fw *FwFile, o Option) []string {
	var out []string
	for _, v := range strings.Split(o.Value, ",") {
		v = strings.TrimSpace(v)
		if n, ok := etherNames[strings.ToLower(v)]; ok {
			out = append(out, n)
		} else if strings.HasPrefix(v, "0x") {
			out = append(out, v)
		} else {
			c.problem(fw.Name, o.Line, "layer2_protocols: %q is no ethertype tapfw knows; left out", v)
		}
	}
	return out
}

// conntrackHelpers are the host's nf_conntrack_helpers tapfw attaches
// per NIC. Proxmox VE attaches them to every connection; tapfw to those of
// a guest with an IP filter, not to the host's own.
func (c *converter) conntrackHelpers() []string {
	hf := c.t.Host
	if hf == nil {
		return nil
	}
	v, line := hf.Option("nf_conntrack_helpers")
	if v != "" {
		c.problem(hf.Name, line, "nf_conntrack_helpers: the host's own connections get no helper in tapfw")
	}
	var out []string
	for _, h := range strings.Split(v, ",") {
		switch h = strings.TrimSpace(h); h {
		case "":
		case "ftp", "tftp", "sip":
			out = append(out, h)
		default:
			c.problem(hf.Name, line, "nf_conntrack_helpers: %s is not a helper tapfw attaches (ftp, tftp, sip)", h)
		}
	}
	return out
}

// nicIPs are the NIC's addresses, and whether its IP filter is on. As
// Proxmox VE's ipfilter: an ipfilter-netN set turns the filter on for NIC
// N whatever the ipfilter option says, and holds its addresses; a
// container's ip= and ip6= are added to them, a VM's ipconfigN never
// are (with the filter on and no set, a VM may send from its link-local
// address only). Without the filter the config's addresses are kept.
func (c *converter) nicIPs(s *scope, fw *FwFile, g *Guest, n NIC, filter bool) ([]string, bool) {
	var out []string
	own := func() {
		for _, a := range n.IPs {
			if v := a.String(); !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	set := ipfilterSet(fw, n.Index)
	switch {
	case set != nil:
		out = c.ipfilterEntries(s, fw, set)
		if g.Container {
			own()
		}
		return out, true
	case !filter || g.Container:
		own()
	}
	return out, filter
}

// ipfilterSet is the guest's ipfilter-net<index> set, nil without one.
func ipfilterSet(fw *FwFile, index int) *IPSet {
	for i, set := range fw.IPSets {
		if strings.EqualFold(set.Name, fmt.Sprintf("ipfilter-net%d", index)) {
			return &fw.IPSets[i]
		}
	}
	return nil
}

// ipfilterEntries are the addresses of an ipfilter-netN set.
func (c *converter) ipfilterEntries(s *scope, fw *FwFile, set *IPSet) []string {
	var out []string
	for _, e := range set.Entries {
		v := e.Value
		if err := pveSetEntry(v); err != nil {
			c.problem(fw.Name, e.Line, "%s: %v (Proxmox VE skips it too)", set.Name, err)
			continue
		}
		if !isAddress(v) {
			a, ok := s.resolve(s.aliases, v)
			if !ok {
				c.problem(fw.Name, e.Line, "%s: %q is no address and no alias: left out", set.Name, v)
				continue
			}
			v = c.res.Base["aliases"].(map[string]string)[a]
		}
		if e.NoMatch {
			c.problem(fw.Name, e.Line, "%s: an exclusion in a NIC's addresses has no tapfw equivalent; left out", set.Name)
			continue
		}
		if v = masked(v); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// ebtablesOff reports whether cluster.fw says ebtables: 0, with which
// Proxmox VE installs no layer-2 filter (ethertypes, ARP addresses).
func (c *converter) ebtablesOff() bool {
	v, _ := c.t.Cluster.Option("ebtables")
	return v == "0"
}
