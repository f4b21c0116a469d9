package pve

import (
	"sort"
	"strings"
)

// hostOptions are the host.fw options the import carries over, as the
// tapfw host fields they become; the others it reports.
var hostOptions = map[string]string{
	"nosmurfs": "noSmurfs", "tcpflags": "tcpFlags", "nf_conntrack_allow_invalid": "allowInvalid",
	"protection_synflood": "synFlood",
}

// guestChecks are the host.fw options whose checks Proxmox VE applies to
// the guests' incoming traffic too (PVEFW-FWBR-IN), and tapfw to the
// host's only.
var guestChecks = map[string]bool{"tcpflags": true, "nosmurfs": true}

// ignoredHost are host.fw options with no bearing on what passes, or
// whose job tapfw does otherwise.
var ignoredHost = map[string]string{
	"enable":                   "",
	"ndp":                      "the host's neighbour discovery always passes in tapfw",
	"log_level_in":             "",
	"log_level_out":            "",
	"protection_synflood_rate": "", "protection_synflood_burst": "",
	"nf_conntrack_helpers": "", // per NIC in tapfw: every firewalled NIC gets them
}

// host makes the base config's host section: every local address behind
// the firewall (as Proxmox VE), IGMP, host.fw's rules then cluster.fw's,
// the management set with local_network (and the host's connections to
// local_network's management ports), corosync between the ring's
// addresses, and the cluster's policies as the last rules (tapfw's host
// policy is DROP): the rules Proxmox VE adds, in its order.
func (c *converter) host() {
	hf := c.t.Host
	if !c.boolOption(hf, "enable", true) {
		_, line := hf.Option("enable")
		c.problem(hf.Name, line, "the host firewall is off (enable: 0): no host section, the host firewall is left as it is")
		return
	}
	h := map[string]any{"allLocal": true, "managementPorts": pveManagementPorts, "logLevelIn": "nolog", "logLevelOut": "nolog"}
	c.unread(hf, true)
	c.hostOptions(h)
	c.management()
	hs := scope{host: true, aliases: c.cluster.aliases, sets: c.cluster.sets}
	rules := map[string]any{}
	for _, dir := range []string{"in", "out"} {
		rs := []outRule{c.igmp()}
		if hf != nil {
			rs = append(rs, hs.ruleList(hf.Name, c.ifaceGroups(hf.Rules), dir, c.groups, nil, &c.res.Problems)...)
		}
		rs = append(rs, hs.ruleList(c.t.Cluster.Name, c.ifaceGroups(c.t.Cluster.Rules), dir, c.groups, nil, &c.res.Problems)...)
		if dir == "out" {
			rs = append(rs, c.localNetwork()...)
		}
		rs = append(rs, c.corosync(dir)...)
		rs = append(rs, c.policy(dir))
		rules[dir] = c.fields("host.rules."+dir, rs)
	}
	h["rules"] = rules
	c.res.Base["host"] = h
}

// hostOptions carries host.fw's options over.
func (c *converter) hostOptions(h map[string]any) {
	hf := c.t.Host
	if hf == nil {
		return
	}
	for _, o := range hf.Options {
		key := strings.ToLower(o.Key)
		if field, ok := hostOptions[key]; ok {
			v := c.boolOption(hf, key, false)
			if key == "nosmurfs" {
				v = c.boolOption(hf, key, true)
			}
			h[field] = v
			if v && guestChecks[key] {
				c.problem(hf.Name, o.Line, "option %s: tapfw checks the host's traffic only; Proxmox VE checks the guests' incoming traffic too", key)
			}
			continue
		}
		if why, ok := ignoredHost[key]; ok {
			if why != "" {
				c.problem(hf.Name, o.Line, "option %s: %s", key, why)
			}
			continue
		}
		c.problem(hf.Name, o.Line, "option %s has no tapfw equivalent; left out", key)
	}
	if h["synFlood"] == true {
		for key, field := range map[string]string{"protection_synflood_rate": "synFloodRate", "protection_synflood_burst": "synFloodBurst"} {
			if n := c.intOption(hf, key); n > 0 {
				h[field] = n
			}
		}
	}
	h["logLevelIn"], h["logLevelOut"] = c.logOption(hf, "log_level_in"), c.logOption(hf, "log_level_out")
}

// management makes the management set hold local_network too, as in
// Proxmox VE: the cluster.fw alias, else --local-network.
func (c *converter) management() {
	sets, _ := c.res.Base["ipsets"].(map[string][]string)
	if sets == nil {
		sets = map[string][]string{}
		c.res.Base["ipsets"] = sets
	}
	if n, ok := c.cluster.aliases["dc/local_network"]; ok {
		sets["management"] = append(sets["management"], n)
	} else if c.opt.LocalNetwork != "" {
		sets["management"] = append(sets["management"], c.opt.LocalNetwork)
	} else if len(sets["management"]) == 0 {
		c.problem(c.t.Cluster.Name, 0, "no local_network alias and no --local-network: the management set is empty, so nothing is kept reachable before the host rules (anti-lockout)")
		return
	}
	sort.Strings(sets["management"])
}

// corosync are the host rules that let corosync through between the
// ring's addresses (the set dc-corosync), as Proxmox VE adds them.
func (c *converter) corosync(dir string) []outRule {
	if len(c.t.Ring) == 0 {
		return nil
	}
	sets := c.res.Base["ipsets"].(map[string][]string)
	var ring []string
	for _, a := range c.t.Ring {
		ring = append(ring, a.String())
	}
	sets["dc-corosync"] = ring
	peer := "source"
	if dir == "out" {
		peer = "dest"
	}
	return []outRule{{fields: map[string]any{"action": "ACCEPT", "proto": "udp", "dport": corosyncPorts, peer: "+dc-corosync", "comment": "corosync (Proxmox VE)"},
		origin: Problem{File: "corosync.conf"}}}
}

// policy is the cluster's policy for dir as the host's last rule:
// policy_in DROP and policy_out ACCEPT unless cluster.fw says otherwise.
func (c *converter) policy(dir string) outRule {
	_, line := c.t.Cluster.Option("policy_" + dir)
	v := c.policyOption(c.t.Cluster, "policy_"+dir, map[string]string{"in": "DROP", "out": "ACCEPT"}[dir])
	return outRule{fields: map[string]any{"action": v, "comment": "policy_" + dir + " " + v + " (Proxmox VE)"},
		origin: Problem{File: c.t.Cluster.Name, Line: line}}
}

// ifaceGroups replaces each host rule "GROUP name -i IFACE" with the
// group's rules, each matching IFACE: Proxmox VE checks the group only
// for packets of that interface, and a tapfw group rule names no
// interface. They keep the GROUP rule's line, and are enabled only if
// it is. A group's own rule with -i (which Proxmox VE refuses) and its
// FORWARD rules are reported with the group, and left out here.
func (c *converter) ifaceGroups(rules []Rule) []Rule {
	var out []Rule
	for _, r := range rules {
		g := c.t.Cluster.group(r.Group)
		if r.Type != "group" || r.Iface == "" || g == nil {
			out = append(out, r)
			continue
		}
		for _, gr := range g.Rules {
			if gr.Iface != "" || gr.Type == "forward" {
				continue
			}
			gr.Iface, gr.Line, gr.Enable = r.Iface, r.Line, r.Enable && gr.Enable
			if gr.Comment == "" {
				gr.Comment = "group " + g.Name
			}
			out = append(out, gr)
		}
	}
	return out
}

// igmp is the host's first rule: Proxmox VE lets IGMP in and out before
// any rule (multicast needs it).
func (c *converter) igmp() outRule {
	return outRule{fields: map[string]any{"action": "ACCEPT", "proto": "igmp", "comment": "igmp (Proxmox VE)"},
		origin: Problem{File: c.t.Cluster.Name}}
}

// localNetwork is the host's rule for its connections to the management
// ports of local_network (the cluster.fw alias, else --local-network),
// which Proxmox VE accepts after the host's rules, whatever policy_out.
func (c *converter) localNetwork() []outRule {
	dest := c.opt.LocalNetwork
	if n, ok := c.cluster.aliases["dc/local_network"]; ok {
		dest = n
	}
	if dest == "" {
		return nil
	}
	return []outRule{{fields: map[string]any{"action": "ACCEPT", "proto": "tcp", "dport": localNetworkPorts, "dest": dest,
		"comment": "local_network (Proxmox VE)"}, origin: Problem{File: c.t.Cluster.Name}}}
}

// unread reports the sections of f Proxmox VE does not read there: a
// guest's and the host's [group], the host's [ALIASES] and [IPSET] (their
// names are the cluster's).
func (c *converter) unread(f *FwFile, host bool) {
	if f == nil {
		return
	}
	for _, g := range f.Groups {
		c.problem(f.Name, g.Line, "[group %s]: security groups are cluster.fw's; Proxmox VE does not read this one, nor the import", g.Name)
	}
	if !host {
		return
	}
	for _, a := range f.Aliases {
		c.problem(f.Name, a.Line, "alias %s: aliases are cluster.fw's or a guest's; Proxmox VE does not read host.fw's, nor the import", a.Name)
	}
	for _, set := range f.IPSets {
		c.problem(f.Name, set.Line, "[IPSET %s]: ipsets are cluster.fw's or a guest's; Proxmox VE does not read host.fw's, nor the import", set.Name)
	}
}
