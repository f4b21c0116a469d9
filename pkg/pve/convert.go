package pve

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/model"
)

// Result is what the import writes: the base config, one NIC file per
// guest NIC (by port), and what it left out.
type Result struct {
	Base     map[string]any
	NICs     map[string]map[string]any
	Problems []Problem
	// origins say, per rule list of the base ("host.rules.in",
	// "securityGroups.web.out") and of each NIC ("rules.in"), where each
	// rule came from.
	origins map[string][]Problem
}

// Options are the import's choices the tree does not make.
type Options struct {
	// LocalNetwork is the management network when cluster.fw has no
	// local_network alias.
	LocalNetwork string
	Limits       model.Limits
}

// Proxmox VE's implicit host rules: what its management ipset reaches
// (the web interface, VNC and SPICE consoles, migration) besides ssh,
// what the host reaches in local_network (the same but migration, and
// ssh), and corosync between the cluster's nodes (Firewall.pm's
// enable_host_firewall).
var (
	pveManagementPorts = []string{"8006", "5900:5999", "3128", "60000:60050"}
	localNetworkPorts  = "8006,22,5900:5999,3128"
	corosyncPorts      = "5404:5405"
)

// converter holds what a conversion builds.
type converter struct {
	t       *Tree
	opt     Options
	res     *Result
	cluster scope
	groups  map[string]string // lower-case Proxmox VE name: tapfw name
	helpers []string          // host.fw's nf_conntrack_helpers tapfw attaches
}

// Convert turns the tree into tapfw's configs.
func Convert(t *Tree, opt Options) *Result {
	c := &converter{t: t, opt: opt, res: &Result{Base: map[string]any{}, NICs: map[string]map[string]any{}, origins: map[string][]Problem{}},
		groups: map[string]string{}}
	c.res.Base["allowBridgeRouting"] = true
	if !c.clusterOn() {
		for _, g := range t.Guests {
			for _, n := range g.NICs {
				c.res.NICs[g.Port(n)] = openNIC(n)
			}
		}
		return c.res
	}
	c.clusterOptions()
	c.cluster = scope{aliases: map[string]string{}, sets: map[string]string{}}
	c.names(&c.cluster, t.Cluster, "dc/", func(n string) string { return clusterName(n, c.opt.Limits.SetName) })
	c.securityGroups()
	c.host()
	c.helpers = c.conntrackHelpers()
	for _, g := range t.Guests {
		c.guest(g)
	}
	c.validate()
	c.res.Problems = Sorted(c.res.Problems)
	return c.res
}

// Sorted is problems by file and line, each once.
func Sorted(ps []Problem) []Problem {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
	return slices.Compact(ps)
}

func (c *converter) problem(file string, line int, format string, a ...any) {
	c.res.Problems = append(c.res.Problems, Problem{file, line, fmt.Sprintf(format, a...)})
}

// clusterOn reports whether the cluster firewall is on (enable: 1; off
// by default, as in Proxmox VE), and says so when it is not.
func (c *converter) clusterOn() bool {
	if c.t.Cluster == nil {
		c.problem("firewall/cluster.fw", 0, "missing: the cluster firewall is off, so every NIC file filters nothing")
		return false
	}
	if v, line := c.t.Cluster.Option("enable"); v != "1" {
		c.problem(c.t.Cluster.Name, line, "the cluster firewall is off (enable: %s): every NIC file filters nothing", or(v, "0"))
		return false
	}
	return true
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// names puts a file's aliases and ipsets into the base config under
// their tapfw names, and into scope s under prefix ("dc/", "guest/").
// Every name is known before any entry is converted: an ipset entry may
// name an alias.
func (c *converter) names(s *scope, f *FwFile, prefix string, name func(string) string) {
	if f == nil {
		return
	}
	aliases, _ := c.res.Base["aliases"].(map[string]string)
	if aliases == nil {
		aliases = map[string]string{}
	}
	for _, a := range f.Aliases {
		if _, err := netip.ParsePrefix(a.CIDR); err != nil && !isAddr(a.CIDR) {
			c.problem(f.Name, a.Line, "alias %s: %q is no address or network (Proxmox VE skips it too)", a.Name, a.CIDR)
			continue
		}
		n := shorten(name(a.Name), config.MaxAliasName)
		s.aliases[prefix+strings.ToLower(a.Name)] = n
		aliases[n] = masked(a.CIDR)
	}
	if len(aliases) > 0 {
		c.res.Base["aliases"] = aliases
	}
	for _, set := range f.IPSets {
		s.sets[prefix+strings.ToLower(set.Name)] = name(set.Name)
	}
	for _, set := range f.IPSets {
		if strings.HasPrefix(strings.ToLower(set.Name), "ipfilter-net") {
			continue // a NIC's own addresses, not a named set
		}
		c.addSet(s, f.Name, set, name(set.Name))
	}
}

// addSet writes an ipset's entries into the base config's ipsets.
func (c *converter) addSet(s *scope, file string, set IPSet, name string) {
	var entries []string
	for _, e := range set.Entries {
		v := e.Value
		if err := pveSetEntry(v); err != nil {
			c.problem(file, e.Line, "ipset %s: %v (Proxmox VE skips it too)", set.Name, err)
			continue
		}
		if !isAddress(v) {
			n, ok := s.resolve(s.aliases, v)
			if !ok {
				c.problem(file, e.Line, "ipset %s: %q is no address and no alias: left out", set.Name, v)
				continue
			}
			v = n
		} else {
			v = masked(v)
		}
		if e.NoMatch {
			v = "!" + v
		}
		entries = append(entries, v)
		c.res.origins["ipsets."+name] = append(c.res.origins["ipsets."+name], Problem{File: file, Line: e.Line})
	}
	sets, _ := c.res.Base["ipsets"].(map[string][]string)
	if sets == nil {
		sets = map[string][]string{}
		c.res.Base["ipsets"] = sets
	}
	sets[name] = append(sets[name], entries...)
}

// securityGroups puts cluster.fw's groups into the base config.
func (c *converter) securityGroups() {
	f := c.t.Cluster
	for _, g := range f.Groups {
		c.groups[strings.ToLower(g.Name)] = shorten(g.Name, c.opt.Limits.GroupName)
	}
	if len(f.Groups) == 0 {
		return
	}
	out := map[string]any{}
	for _, g := range f.Groups {
		name := c.groups[strings.ToLower(g.Name)]
		lists := map[string]any{}
		for _, dir := range []string{"in", "out"} {
			rs := c.cluster.ruleList(f.Name, g.Rules, dir, nil, nil, &c.res.Problems)
			if len(rs) > 0 {
				lists[dir] = c.fields("securityGroups."+name+"."+dir, rs)
			}
		}
		out[name] = lists
	}
	c.res.Base["securityGroups"] = out
}

// fields records where a list's rules came from and returns their
// fields.
func (c *converter) fields(list string, rs []outRule) []map[string]any {
	out := make([]map[string]any, len(rs))
	c.res.origins[list] = nil
	for i, r := range rs {
		out[i] = r.fields
		c.res.origins[list] = append(c.res.origins[list], r.origin)
	}
	return out
}

// clusterOptions reports the cluster.fw options the import leaves out.
func (c *converter) clusterOptions() {
	for _, o := range c.t.Cluster.Options {
		switch key := strings.ToLower(o.Key); key {
		case "enable", "policy_in", "policy_out":
		case "ebtables":
			if o.Value == "0" {
				c.problem(c.t.Cluster.Name, o.Line, "option ebtables: 0: no layer2_protocols are imported, but a NIC with an IP filter still checks its ARP senders in tapfw")
			}
		case "log_ratelimit":
			c.problem(c.t.Cluster.Name, o.Line, "option log_ratelimit: tapfw limits log lines per rule and tap (logLimit); left out")
		default:
			c.problem(c.t.Cluster.Name, o.Line, "option %s has no tapfw equivalent; left out", key)
		}
	}
}

// boolOption reads a 0/1 option of f, def when not set; another value
// is a problem.
func (c *converter) boolOption(f *FwFile, key string, def bool) bool {
	if f == nil {
		return def
	}
	v, line := f.Option(key)
	switch v {
	case "":
		return def
	case "0", "1":
		return v == "1"
	}
	c.problem(f.Name, line, "option %s: %q is not 0 or 1; the default is used", key, v)
	return def
}

// intOption reads a number option of f, 0 when not set.
func (c *converter) intOption(f *FwFile, key string) int {
	v, line := f.Option(key)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		c.problem(f.Name, line, "option %s: %q is not a number; left out", key, v)
	}
	return n
}

// policyOption reads a policy option of f (ACCEPT, DROP or REJECT in any
// case), def when it is not set or (a problem) another value, which
// Proxmox VE does not read either.
func (c *converter) policyOption(f *FwFile, key, def string) string {
	v, line := f.Option(key)
	switch u := strings.ToUpper(v); u {
	case "":
		return def
	case "ACCEPT", "DROP", "REJECT":
		return u
	}
	c.problem(f.Name, line, "option %s: %q is not ACCEPT, DROP or REJECT; Proxmox VE's default %s is used", key, v, def)
	return def
}

// logLevels are the log levels Proxmox VE's options take.
var logLevels = map[string]bool{"emerg": true, "alert": true, "crit": true, "err": true, "warning": true,
	"notice": true, "info": true, "debug": true, "nolog": true}

// logOption reads a log level option of f (in any case): nolog when it
// is not set or empty (Proxmox VE logs nothing then), or (a problem)
// another value.
func (c *converter) logOption(f *FwFile, key string) string {
	v, line := f.Option(key)
	v = strings.ToLower(v)
	switch {
	case v == "":
		return "nolog"
	case logLevels[v]:
		return v
	}
	c.problem(f.Name, line, "option %s: %q is not a log level; no log lines, as Proxmox VE's default", key, v)
	return "nolog"
}

// isAddr reports whether v is one address.
func isAddr(v string) bool {
	_, err := netip.ParseAddr(v)
	return err == nil
}
