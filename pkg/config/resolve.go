package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tapfw/tapfw/pkg/model"
)

// Env is what the CNI runtime passes in environment variables.
type Env struct {
	ContainerID string
	IfName      string
	Args        string // CNI_ARGS
}

// PrevIface is the part of a previous plugin's result tapfw needs: the
// host-side port, its bridge, and the sandboxed interface's MAC and IPs.
type PrevIface struct {
	HostPort string
	Bridge   string
	MAC      string
	IPs      []string // address/prefix as results give them
}

// Resolved is a validated config for one tap.
type Resolved struct {
	Conf  *NetConf
	Model model.Config
}

// Resolve validates conf and works out the tap's identity. Where it comes
// from, later wins: config fields, then CNI_ARGS (MAC=, IP=), then
// runtimeConfig ("mac", "ips"), then the previous result. The tap name is
// CNI_IFNAME unless the config names it or a previous result names the
// host-side port. bridge is used when neither config nor prev names one.
func Resolve(conf *NetConf, lim model.Limits, env Env, prev *PrevIface, bridge func(tap string) (string, error)) (*Resolved, error) {
	t, err := resolveOptions(conf, env, lim)
	if err != nil {
		return nil, err
	}
	args, err := parseCNIArgs(env.Args)
	if err != nil {
		return nil, envErr(err)
	}
	if err := resolveIdentity(&t, conf, env, args, prev); err != nil {
		return nil, err
	}
	if err := resolvePairs(&t, conf.AllowedPairs); err != nil {
		return nil, err
	}
	if err := parseHelpers(&t, conf.Helpers); err != nil {
		return nil, err
	}
	if t.Bridge, err = resolveBridge(t.Name, conf.Bridge, prev, bridge); err != nil {
		return nil, err
	}
	al, err := parseAliases(conf.Aliases)
	if err != nil {
		return nil, err
	}
	entries, err := parseSets(conf.IPSets, lim, al)
	if err != nil {
		return nil, err
	}
	sets := namedSets{entries: entries, maxName: lim.SetName, aliases: al, groups: conf.SecurityGroups}
	if t.DHCPServers, err = parseDHCPServers(conf.DHCPServers, t.DHCP, sets); err != nil {
		return nil, err
	}
	if t.In, t.Out, err = resolveRules(conf, args, sets); err != nil {
		return nil, err
	}
	groups, err := parseGroups(conf, sets, lim)
	if err != nil {
		return nil, err
	}
	if t.Groups, err = tapGroups(conf.Groups, groups); err != nil {
		return nil, err
	}
	brc, err := bridgeOptions(conf, t.Bridge)
	if err != nil {
		return nil, err
	}
	rc := model.Config{Tap: t, Bridge: brc, Sets: entries, Groups: groups}
	if rc.Host, err = parseHost(conf.Host, sets, groups); err != nil {
		return nil, err
	}
	return &Resolved{Conf: conf, Model: rc}, nil
}

// resolveOptions reads the tap's options, who attaches it, its log
// options and its policies.
func resolveOptions(conf *NetConf, env Env, lim model.Limits) (model.Tap, error) {
	t := model.Tap{
		MACFilter:       boolOr(conf.MACFilter, true),
		IPFilter:        boolOr(conf.IPFilter, true),
		DHCP:            boolOr(conf.DHCP, true),
		NDP:             boolOr(conf.NDP, true),
		IGMP:            boolOr(conf.IGMP, true),
		RAdv:            conf.RAdv,
		LogDropped:      boolOr(conf.LogDropped, true),
		KeepEstablished: conf.KeepEstablished,
		Network:         conf.Name,
		IfName:          env.IfName,
	}
	if conf.Name != "" {
		if err := model.ValidateID(conf.Name, lim.NetworkName); err != nil {
			return t, &Error{Field: "name", Err: err}
		}
	}
	if env.ContainerID != "" {
		if err := model.ValidateID(env.ContainerID, lim.ContainerID); err != nil {
			return t, &Error{Field: "CNI_CONTAINERID", Code: types.ErrInvalidEnvironmentVariables, Err: err}
		}
		t.ContainerID = env.ContainerID
	}
	if env.IfName != "" {
		if err := model.ValidateIfName(env.IfName); err != nil {
			return t, &Error{Field: "CNI_IFNAME", Code: types.ErrInvalidEnvironmentVariables, Err: err}
		}
	}
	var err error
	if t.LogTarget, t.NFLogGroup, t.LogLimit, err = parseLog(conf); err != nil {
		return t, err
	}
	if t.LogPerTap, err = parseLogPrefix(conf.LogPrefix); err != nil {
		return t, err
	}
	if t.L2Protocols, err = parseL2Protocols(conf.L2Protocols); err != nil {
		return t, err
	}
	if t.LogLevelIn, err = parseLogLevel("logLevelIn", conf.LogLevelIn); err != nil {
		return t, err
	}
	if t.LogLevelOut, err = parseLogLevel("logLevelOut", conf.LogLevelOut); err != nil {
		return t, err
	}
	if t.PolicyIn, err = parsePolicy("policyIn", conf.PolicyIn); err != nil {
		return t, err
	}
	if t.PolicyOut, err = parsePolicy("policyOut", conf.PolicyOut); err != nil {
		return t, err
	}
	return t, nil
}

// source is where a value came from: the field an error about it names,
// and its code (one from CNI_* is an environment error).
type source struct {
	field string
	code  uint
}

func (s source) err(e error) error { return &Error{Field: s.field, Code: s.code, Err: e} }

// identity is the tap's name, MAC and addresses as given, with where each
// came from.
type identity struct {
	name, mac              string
	ips                    []string
	ipsArePrefixes         bool // address/prefix, as results give them
	nameSrc, macSrc, ipSrc source
}

// resolveIdentity works out the tap's name, MAC and addresses (later
// wins: config, CNI_ARGS, runtimeConfig, previous result) and validates
// them.
func resolveIdentity(t *model.Tap, conf *NetConf, env Env, args map[string]string, prev *PrevIface) error {
	id, err := gatherIdentity(conf, env, args, prev)
	if err != nil {
		return err
	}
	if id.name == "" {
		// CNI_IFNAME, when given, was checked before.
		return id.nameSrc.err(errors.New("is empty, and neither the config (tap) nor a previous result names the tap"))
	}
	if err := model.ValidateIfName(id.name); err != nil {
		return id.nameSrc.err(err)
	}
	t.Name = id.name
	if id.mac != "" {
		hw, err := net.ParseMAC(id.mac)
		if err != nil || len(hw) != 6 {
			return id.macSrc.err(fmt.Errorf("%q is not an Ethernet MAC address", id.mac))
		}
		if hw[0]&1 == 1 {
			return id.macSrc.err(fmt.Errorf("%q is a multicast address", id.mac))
		}
		t.MAC = hw
	} else if t.MACFilter {
		return fieldErr("mac", "required when macFilter is on (give it, or set macFilter to false)")
	}
	if len(id.ips) > MaxIPs {
		return id.ipSrc.err(fmt.Errorf("more than %d addresses", MaxIPs))
	}
	for i, s := range id.ips {
		p, err := parseTapIP(s, id.ipsArePrefixes)
		if err != nil {
			return source{fmt.Sprintf("%s[%d]", id.ipSrc.field, i), id.ipSrc.code}.err(err)
		}
		if p.Addr().Is4() {
			t.IPs = append(t.IPs, p)
		} else {
			t.IPs6 = append(t.IPs6, p)
		}
	}
	return nil
}

// gatherIdentity collects the tap's name, MAC and addresses from every
// place that may give them, later wins.
func gatherIdentity(conf *NetConf, env Env, args map[string]string, prev *PrevIface) (identity, error) {
	cniEnv := types.ErrInvalidEnvironmentVariables
	id := identity{name: env.IfName, nameSrc: source{"CNI_IFNAME", cniEnv},
		mac: conf.MAC, macSrc: source{"mac", 0}, ips: conf.IPs, ipSrc: source{"ips", 0}}
	if conf.Tap != "" {
		id.name, id.nameSrc = conf.Tap, source{"tap", 0}
	}
	if v, ok := args["MAC"]; ok {
		if v == "" {
			return id, envErr(fieldErr("CNI_ARGS MAC", "is empty"))
		}
		id.mac, id.macSrc = v, source{"CNI_ARGS MAC", cniEnv}
	}
	if v, ok := args["IP"]; ok {
		if v == "" {
			return id, envErr(fieldErr("CNI_ARGS IP", "is empty"))
		}
		id.ips, id.ipSrc = strings.Split(v, ","), source{"CNI_ARGS IP", cniEnv}
	}
	if rc := conf.RuntimeConfig; rc != nil {
		if rc.MAC != "" {
			id.mac, id.macSrc = rc.MAC, source{"runtimeConfig.mac", 0}
		}
		if len(rc.IPs) > 0 {
			id.ips, id.ipSrc, id.ipsArePrefixes = rc.IPs, source{"runtimeConfig.ips", 0}, true
		}
	}
	if prev != nil {
		if prev.HostPort != "" {
			id.name, id.nameSrc = prev.HostPort, source{"tap", 0}
		}
		if prev.MAC != "" {
			id.mac, id.macSrc = prev.MAC, source{"prevResult mac", 0}
		}
		if len(prev.IPs) > 0 {
			id.ips, id.ipSrc, id.ipsArePrefixes = prev.IPs, source{"prevResult ips", 0}, true
		}
	}
	return id, nil
}

// resolveBridge is the bridge tap is on: the previous result's, else the
// config's, else what bridge finds.
func resolveBridge(tap, br string, prev *PrevIface, bridge func(tap string) (string, error)) (string, error) {
	if prev != nil && prev.Bridge != "" {
		br = prev.Bridge
	}
	if br == "" && bridge != nil {
		var err error
		if br, err = bridge(tap); err != nil {
			return "", &Error{Field: "bridge", Err: err}
		}
	}
	if br == "" {
		return "", fieldErr("bridge", "required: the config names no bridge and tap %q is on none", tap)
	}
	if err := model.ValidateIfName(br); err != nil {
		return "", &Error{Field: "bridge", Err: err}
	}
	if br == tap {
		return "", fieldErr("bridge", "%q is the tap itself", br)
	}
	return br, nil
}

// parseSets reads the named address sets.
func parseSets(in map[string][]string, lim model.Limits, al aliases) (map[string][]netip.Prefix, error) {
	sets := map[string][]netip.Prefix{}
	if len(in) > MaxSets {
		return nil, fieldErr("ipsets", "more than %d sets", MaxSets)
	}
	for name, entries := range in {
		f := "ipsets." + name
		if err := model.ValidateName(name, lim.SetName); err != nil {
			return nil, &Error{Field: "ipsets", Err: err}
		}
		if len(entries) > MaxSetEntries {
			return nil, fieldErr(f, "more than %d entries", MaxSetEntries)
		}
		ps, err := parseIPSetEntries(f, entries, al)
		if err != nil {
			return nil, err
		}
		sets[name] = ps
	}
	return sets, nil
}

// resolveRules reads the tap's rules from where they come from, later
// wins: the config, CNI_ARGS TAPFW_RULES, args.cni.tapfwRules,
// runtimeConfig.tapfwRules.
func resolveRules(conf *NetConf, args map[string]string, sets namedSets) (in, out []model.Rule, err error) {
	rules, src := conf.Rules, source{"rules", 0}
	if v, ok := args["TAPFW_RULES"]; ok {
		rules, src = RuleLists{}, source{"CNI_ARGS TAPFW_RULES", types.ErrInvalidEnvironmentVariables}
		if err := decodeStrict([]byte(v), &rules, src.field, false); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				err = fieldErr(src.field, "not a rules object {\"in\": [...], \"out\": [...]}: %v", err)
			}
			return nil, nil, envErr(err)
		}
	}
	if conf.Args != nil && conf.Args.CNI.Rules != nil {
		rules, src = *conf.Args.CNI.Rules, source{"args.cni.tapfwRules", 0}
	}
	if rc := conf.RuntimeConfig; rc != nil && rc.Rules != nil {
		rules, src = *rc.Rules, source{"runtimeConfig.tapfwRules", 0}
	}
	if in, err = parseRules(src.field+".in", rules.In, sets); err != nil {
		return nil, nil, codeErr(err, src.code)
	}
	if out, err = parseRules(src.field+".out", rules.Out, sets); err != nil {
		return nil, nil, codeErr(err, src.code)
	}
	return in, out, nil
}

// tapGroups checks the security groups the tap uses: defined, each once.
func tapGroups(names []string, groups map[string]model.Group) ([]string, error) {
	seen := map[string]bool{}
	for i, g := range names {
		f := fmt.Sprintf("groups[%d]", i)
		if _, ok := groups[g]; !ok {
			return nil, fieldErr(f, "%q is not defined in securityGroups", g)
		}
		if seen[g] {
			return nil, fieldErr(f, "%q is named twice", g)
		}
		seen[g] = true
	}
	if len(names) > MaxGroups {
		return nil, fieldErr("groups", "more than %d groups", MaxGroups)
	}
	return names, nil
}

// bridgeOptions are the per-bridge options: routing and failing closed.
func bridgeOptions(conf *NetConf, br string) (model.Bridge, error) {
	prefix := conf.ManagedPrefix
	if prefix == "" {
		prefix = model.DefaultManagedPrefix
	}
	if err := model.ValidateIfPrefix(prefix); err != nil {
		return model.Bridge{}, fieldErr("managedPrefix", "%v", err)
	}
	return model.Bridge{Name: br, AllowRouting: conf.AllowBridgeRouting, FailClosed: boolOr(conf.FailClosed, true), ManagedPrefix: prefix,
		IsolatePorts: conf.IsolatePorts}, nil
}

// parseHost reads the host firewall section; nil when there is none.
func parseHost(h *Host, sets namedSets, groups map[string]model.Group) (*model.Host, error) {
	if h == nil {
		return nil, nil
	}
	host := &model.Host{}
	if len(h.IPs) > MaxSetEntries {
		return nil, fieldErr("host.ips", "more than %d entries", MaxSetEntries)
	}
	if len(h.ClusterHosts) > MaxSetEntries {
		return nil, fieldErr("host.clusterHosts", "more than %d entries", MaxSetEntries)
	}
	var err error
	if host.IPs, err = parseSetEntries("host.ips", h.IPs, sets.aliases); err != nil {
		return nil, err
	}
	if host.ClusterHosts, err = parseSetEntries("host.clusterHosts", h.ClusterHosts, sets.aliases); err != nil {
		return nil, err
	}
	if host.LogLevelIn, err = parseLogLevel("host.logLevelIn", h.LogLevelIn); err != nil {
		return nil, err
	}
	if host.LogLevelOut, err = parseLogLevel("host.logLevelOut", h.LogLevelOut); err != nil {
		return nil, err
	}
	sets.host = true
	if host.In, err = parseRules("host.rules.in", h.Rules.In, sets); err != nil {
		return nil, err
	}
	if host.Out, err = parseRules("host.rules.out", h.Rules.Out, sets); err != nil {
		return nil, err
	}
	host.In, host.Out = inlineGroups(host.In, groups, "in"), inlineGroups(host.Out, groups, "out")
	if host.AllLocal = h.AllLocal; host.AllLocal && len(host.IPs) > 0 {
		return nil, fieldErr("host.ips", "given with allLocal, which puts every address of the host behind its firewall")
	}
	host.Smurfs, host.TCPFlags, host.AllowInvalid = boolOr(h.NoSmurfs, true), h.TCPFlags, h.AllowInvalid
	if host.SynFlood, err = parseSynFlood(h); err != nil {
		return nil, err
	}
	if host.Management, err = parseManagement(h.ManagementPorts); err != nil {
		return nil, err
	}
	return host, nil
}

// MaxDHCPServers is how many sources dhcpServers may name.
const MaxDHCPServers = 16

// parseDHCPServers reads the only sources DHCP replies may come from:
// addresses, networks or +sets, as a rule's source.
func parseDHCPServers(servers []string, dhcp bool, sets namedSets) ([]model.Addr, error) {
	if len(servers) == 0 {
		return nil, nil
	}
	if !dhcp {
		return nil, fieldErr("dhcpServers", "given while dhcp is false")
	}
	if len(servers) > MaxDHCPServers {
		return nil, fieldErr("dhcpServers", "more than %d entries", MaxDHCPServers)
	}
	out := make([]model.Addr, 0, len(servers))
	for i, s := range servers {
		f := fmt.Sprintf("dhcpServers[%d]", i)
		a, err := parseAddr(s, sets)
		if err != nil {
			return nil, fieldErr(f, "%v", err)
		}
		if a.IsZero() {
			return nil, fieldErr(f, "is empty")
		}
		if slices.Contains(out, a) {
			return nil, fieldErr(f, "%q is named twice", s)
		}
		out = append(out, a)
	}
	return out, nil
}

// MaxGroups is how many security groups a tap may use, and how many a
// config may define.
const MaxGroups = 32

// parseGroups reads the security groups the config defines.
func parseGroups(conf *NetConf, sets namedSets, lim model.Limits) (map[string]model.Group, error) {
	if len(conf.SecurityGroups) > MaxGroups {
		return nil, fieldErr("securityGroups", "more than %d groups", MaxGroups)
	}
	groups := map[string]model.Group{}
	sets.inGroup = true
	for name, rl := range conf.SecurityGroups {
		if err := model.ValidateName(name, lim.GroupName); err != nil {
			return nil, &Error{Field: "securityGroups", Err: err}
		}
		var g model.Group
		var err error
		f := "securityGroups." + name
		if g.In, err = parseRules(f+".in", rl.In, sets); err != nil {
			return nil, err
		}
		if g.Out, err = parseRules(f+".out", rl.Out, sets); err != nil {
			return nil, err
		}
		groups[name] = g
	}
	return groups, nil
}

// codeErr sets the code of err, a *Error, when code is not zero.
func codeErr(err error, code uint) error {
	var e *Error
	if code != 0 && errors.As(err, &e) {
		e.Code = code
	}
	return err
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// parseLog reads where log lines go (LOG: the kernel log; NFLOG: a netlink
// group, for ulogd and the like) and how many per rule it lets through.
func parseLog(conf *NetConf) (target string, group int, limit string, err error) {
	switch conf.LogTarget {
	case "", "LOG":
		target = "LOG"
		if conf.NFLogGroup != nil {
			return "", 0, "", fieldErr("nflogGroup", "needs logTarget NFLOG")
		}
	case "NFLOG":
		target = "NFLOG"
		if conf.NFLogGroup != nil {
			group = *conf.NFLogGroup
			if group < 0 || group > 65535 {
				return "", 0, "", fieldErr("nflogGroup", "%d is not a group 0-65535", group)
			}
		}
	default:
		return "", 0, "", fieldErr("logTarget", "%q is not LOG or NFLOG", conf.LogTarget)
	}
	limit = model.DefaultLogLimit
	if conf.LogLimit != "" {
		if limit, err = canonicalRate(conf.LogLimit); err != nil {
			return "", 0, "", &Error{Field: "logLimit", Err: err}
		}
	}
	return target, group, limit, nil
}

// parseLogPrefix reads what a tap's log prefixes name: "rule" (the
// default) is tfw:<dir>:<what>, the line's ports naming the tap; "tap"
// adds the tap's name, tfw:<tap>:<dir>:<what>.
func parseLogPrefix(s string) (perTap bool, err error) {
	switch s {
	case "", "rule":
		return false, nil
	case "tap":
		return true, nil
	}
	return false, fieldErr("logPrefix", "%q is not rule or tap", s)
}

// Units of a rate, as xt_limit counts them (XT_LIMIT_SCALE per second),
// longest first, with the name iptables-save prints.
var rateUnits = []struct {
	names []string
	mult  uint32
}{
	{[]string{"day", "d"}, 86400 * 10000},
	{[]string{"hour", "h"}, 3600 * 10000},
	{[]string{"min", "minute", "m"}, 60 * 10000},
	{[]string{"sec", "second", "s"}, 10000},
}

// canonicalRate reads a rate ("5/min", "10/second") and returns it as
// iptables-save prints it back: xt_limit keeps only the period between
// two lines, so 60/min is 1/sec.
func canonicalRate(s string) (string, error) {
	num, unit, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(num)
	if !ok || err != nil || strconv.Itoa(n) != num || n < 1 {
		return "", fmt.Errorf("%q is not a rate such as 5/min (a count from 1, '/', sec, min, hour or day)", s)
	}
	var mult uint32
	for _, u := range rateUnits {
		for _, name := range u.names {
			if unit == name {
				mult = u.mult
			}
		}
	}
	if mult == 0 {
		return "", fmt.Errorf("%q: the unit is not sec, min, hour or day", s)
	}
	if n > int(mult) {
		return "", fmt.Errorf("%q is faster than the kernel can limit (at most 10000/sec)", s)
	}
	period := mult / uint32(n)
	// print_rate of iptables' libxt_limit.
	i := 1
	for ; i < len(rateUnits); i++ {
		m := rateUnits[i].mult
		if period > m || m/period < m%period {
			break
		}
	}
	return fmt.Sprintf("%d/%s", rateUnits[i-1].mult/period, rateUnits[i-1].names[0]), nil
}

func parsePolicy(field, s string) (model.Action, error) {
	switch strings.ToUpper(s) {
	case "":
		return model.Drop, nil
	case "ACCEPT", "DROP", "REJECT":
		if s != strings.ToUpper(s) {
			return "", fieldErr(field, "%q: write it in capitals: ACCEPT, DROP or REJECT", s)
		}
		return model.Action(s), nil
	}
	return "", fieldErr(field, "%q is not ACCEPT, DROP or REJECT", s)
}

// parseCNIArgs reads "K=V;K2=V2". MAC, IP and TAPFW_RULES are used; other
// keys are an error unless IgnoreUnknown is set, as the CNI conventions say.
func parseCNIArgs(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	var unknown []string
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fieldErr("CNI_ARGS", "%q is not KEY=VALUE", kv)
		}
		switch k {
		case "MAC", "IP", "TAPFW_RULES", "IgnoreUnknown":
			out[k] = v
		default:
			unknown = append(unknown, k)
		}
	}
	if ign := strings.ToLower(out["IgnoreUnknown"]); len(unknown) > 0 && ign != "1" && ign != "true" {
		sort.Strings(unknown)
		return nil, fieldErr("CNI_ARGS", "unknown keys %s (set IgnoreUnknown=1 to allow them)", strings.Join(unknown, ","))
	}
	delete(out, "IgnoreUnknown")
	return out, nil
}

// parseTapIP reads one of the tap's addresses. From the config or CNI_ARGS
// it is an address or a network ("198.51.100.0/28", host bits zero); from
// runtimeConfig or a previous result it is address/prefix, and the address
// alone is meant.
func parseTapIP(s string, addrWithPrefix bool) (netip.Prefix, error) {
	if addrWithPrefix && strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address/prefix", s)
		}
		s = p.Addr().String()
	}
	return parseNet(s, false)
}

// parseNet reads an IPv4 or IPv6 address or network. Networks must have
// their host bits zero, so a typo cannot silently widen a rule. IPv6
// addresses may not carry a zone, nor be IPv4 in IPv6 disguise.
func parseNet(s string, allowAny bool) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 or IPv6 address or CIDR", s)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 network: write the IPv4 one", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", s, p.Masked())
		}
		if p.Bits() == 0 && !allowAny {
			return netip.Prefix{}, fmt.Errorf("%q matches everything; not allowed here", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 or IPv6 address or CIDR", s)
	}
	if a.Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 address: write the IPv4 one", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
