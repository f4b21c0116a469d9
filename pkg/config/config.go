// Package config reads a tapfw network configuration from CNI stdin,
// validates every field, and resolves which tap it is about.
package config

import (
	"encoding/json"
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

// NetConf is the plugin's configuration as it arrives on stdin. Field names
// are the JSON names the README documents; unknown fields are an error.
type NetConf struct {
	types.PluginConf

	Bridge             string               `json:"bridge,omitempty"`
	Tap                string               `json:"tap,omitempty"`
	MAC                string               `json:"mac,omitempty"`
	IPs                []string             `json:"ips,omitempty"`
	MACFilter          *bool                `json:"macFilter,omitempty"`
	IPFilter           *bool                `json:"ipFilter,omitempty"`
	DHCP               *bool                `json:"dhcp,omitempty"`
	DHCPServers        []string             `json:"dhcpServers,omitempty"`
	NDP                *bool                `json:"ndp,omitempty"`
	IGMP               *bool                `json:"igmp,omitempty"`
	RAdv               bool                 `json:"radv,omitempty"`
	PolicyIn           string               `json:"policyIn,omitempty"`
	PolicyOut          string               `json:"policyOut,omitempty"`
	LogDropped         *bool                `json:"logDropped,omitempty"`
	LogTarget          string               `json:"logTarget,omitempty"`
	LogLimit           string               `json:"logLimit,omitempty"`
	NFLogGroup         *int                 `json:"nflogGroup,omitempty"`
	AllowBridgeRouting bool                 `json:"allowBridgeRouting,omitempty"`
	FailClosed         *bool                `json:"failClosed,omitempty"`
	ManagedPrefix      string               `json:"managedPrefix,omitempty"`
	Rules              RuleLists            `json:"rules,omitempty"`
	IPSets             map[string][]string  `json:"ipsets,omitempty"`
	SecurityGroups     map[string]RuleLists `json:"securityGroups,omitempty"`
	Groups             []string             `json:"groups,omitempty"`
	Host               *Host                `json:"host,omitempty"`

	// Attachments is the name an earlier CNI spec used for
	// cni.dev/valid-attachments; libcni still sends both on GC.
	Attachments []types.GCAttachment `json:"cni.dev/attachments,omitempty"`

	RuntimeConfig *RuntimeConfig `json:"runtimeConfig,omitempty"`
	// Args is the CNI "args" convention. tapfw reads args.cni.tapfwRules
	// (Multus puts a network selection's "cni-args" there) and ignores the
	// rest, as runtimes may pass args to every plugin of a list.
	Args *ArgsConf `json:"args,omitempty"`
}

// RuleLists holds rules for each direction, as seen from the VM (or host):
// "in" is traffic to it, "out" traffic from it.
type RuleLists struct {
	In  []Rule `json:"in,omitempty"`
	Out []Rule `json:"out,omitempty"`
}

// Rule is one firewall rule in the config's own words.
type Rule struct {
	Action   string `json:"action"`
	Proto    string `json:"proto,omitempty"`
	Source   string `json:"source,omitempty"`
	Dest     string `json:"dest,omitempty"`
	SPort    string `json:"sport,omitempty"`
	DPort    string `json:"dport,omitempty"`
	ICMPType string `json:"icmpType,omitempty"`
	Log      bool   `json:"log,omitempty"`
	Comment  string `json:"comment,omitempty"`
}

// Host is the host firewall section.
type Host struct {
	IPs          []string  `json:"ips,omitempty"`
	ClusterHosts []string  `json:"clusterHosts,omitempty"`
	Rules        RuleLists `json:"rules,omitempty"`
}

// ArgsConf is the "args" field; only args.cni.tapfwRules is read.
type ArgsConf struct {
	CNI struct {
		Rules *RuleLists `json:"tapfwRules,omitempty"`
	} `json:"cni"`
}

// UnmarshalJSON reads args leniently: other keys belong to other plugins.
// The keys "cni" and "tapfwRules" are matched exactly (a "CNI" is another
// plugin's), may not be given twice, and args.cni.tapfwRules is read as
// strictly as the config's rules. A null tapfwRules is no rules override.
func (a *ArgsConf) UnmarshalJSON(data []byte) error {
	if err := checkSyntax(data); err != nil {
		return &Error{Field: "args", Code: types.ErrDecodingFailure, Err: err}
	}
	if err := checkKeys(data, argsConfType, "args", true); err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return decodeErr(err, "args")
	}
	var cni map[string]json.RawMessage
	if c, ok := raw["cni"]; ok {
		if err := json.Unmarshal(c, &cni); err != nil {
			return decodeErr(err, "args.cni")
		}
	}
	a.CNI.Rules = nil
	if r, ok := cni["tapfwRules"]; ok && string(r) != "null" {
		rules := &RuleLists{}
		if err := decodeStrict(r, rules, "args.cni.tapfwRules", false); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				err = &Error{Field: "args.cni.tapfwRules", Code: types.ErrDecodingFailure, Err: err}
			}
			return err
		}
		a.CNI.Rules = rules
	}
	return nil
}

// RuntimeConfig carries the capabilities tapfw reads: "mac" and "ips".
type RuntimeConfig struct {
	MAC string   `json:"mac,omitempty"`
	IPs []string `json:"ips,omitempty"`
	// Rules, when the runtime passes them (capability "tapfwRules"),
	// replace the config's rules.
	Rules *RuleLists `json:"tapfwRules,omitempty"`
}

// Limits on sizes, so a config cannot make the kernel do unbounded work.
const (
	MaxRules      = 999 // rule numbers fit the 29-character LOG prefix
	MaxIPs        = 256
	MaxSets       = 256
	MaxSetEntries = 65536
	MaxConfigSize = 4 << 20
)

// Error is a validation error naming the field it is about.
//
// Code is the CNI error code that fits it, one of the well-known codes of
// the CNI package's types: ErrUnsupportedField (2) for a key that is no
// field of the config (exactly, case included) or a key given twice in one
// object; ErrInvalidEnvironmentVariables (4) for a bad value of CNI_ARGS,
// CNI_IFNAME or CNI_CONTAINERID (a missing CNI_IFNAME included);
// ErrDecodingFailure (6) for a value of the wrong JSON type. Zero means an
// invalid network config (ErrInvalidNetworkConfig, 7). Malformed JSON on
// stdin is no *Error but an error wrapping ErrDecode.
type Error struct {
	Field string
	Code  uint
	Err   error
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%s: %v", e.Field, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrDecode marks input that is not well-formed JSON.
var ErrDecode = errors.New("cannot decode config")

func fieldErr(field string, format string, a ...any) error {
	return &Error{Field: field, Err: fmt.Errorf(format, a...)}
}

// envErr marks err, a *Error, as one about an environment variable.
func envErr(err error) error {
	var e *Error
	if errors.As(err, &e) {
		e.Code = types.ErrInvalidEnvironmentVariables
	}
	return err
}

// Parse decodes stdin strictly: keys must be the fields' JSON names
// exactly (case included) and given once per object; unknown keys,
// trailing data and wrong types are errors. It does not validate values;
// Resolve does. Malformed JSON or trailing data is an error wrapping
// ErrDecode; anything else is a *Error naming the key's path, with Code
// ErrUnsupportedField or ErrDecodingFailure.
func Parse(data []byte) (*NetConf, error) {
	if len(data) > MaxConfigSize {
		return nil, fieldErr("", "config is larger than %d bytes", MaxConfigSize)
	}
	conf := &NetConf{}
	if err := decodeStrict(data, conf, "", true); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, e
		}
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	return conf, nil
}

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
	if t.Bridge, err = resolveBridge(t.Name, conf.Bridge, prev, bridge); err != nil {
		return nil, err
	}
	sets, err := parseSets(conf.IPSets, lim)
	if err != nil {
		return nil, err
	}
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
	rc := model.Config{Tap: t, Bridge: brc, Sets: sets, Groups: groups}
	if rc.Host, err = parseHost(conf.Host, sets); err != nil {
		return nil, err
	}
	return &Resolved{Conf: conf, Model: rc}, nil
}

// resolveOptions reads the tap's options, who attaches it, its log
// options and its policies.
func resolveOptions(conf *NetConf, env Env, lim model.Limits) (model.Tap, error) {
	t := model.Tap{
		MACFilter:  boolOr(conf.MACFilter, true),
		IPFilter:   boolOr(conf.IPFilter, true),
		DHCP:       boolOr(conf.DHCP, true),
		NDP:        boolOr(conf.NDP, true),
		IGMP:       boolOr(conf.IGMP, true),
		RAdv:       conf.RAdv,
		LogDropped: boolOr(conf.LogDropped, true),
		Network:    conf.Name,
		IfName:     env.IfName,
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
func parseSets(in map[string][]string, lim model.Limits) (map[string][]netip.Prefix, error) {
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
		ps, err := parseSetEntries(f, entries)
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
func resolveRules(conf *NetConf, args map[string]string, sets map[string][]netip.Prefix) (in, out []model.Rule, err error) {
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
	return model.Bridge{Name: br, AllowRouting: conf.AllowBridgeRouting, FailClosed: boolOr(conf.FailClosed, true), ManagedPrefix: prefix}, nil
}

// parseHost reads the host firewall section; nil when there is none.
func parseHost(h *Host, sets map[string][]netip.Prefix) (*model.Host, error) {
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
	if host.IPs, err = parseSetEntries("host.ips", h.IPs); err != nil {
		return nil, err
	}
	if host.ClusterHosts, err = parseSetEntries("host.clusterHosts", h.ClusterHosts); err != nil {
		return nil, err
	}
	if host.In, err = parseRules("host.rules.in", h.Rules.In, sets); err != nil {
		return nil, err
	}
	if host.Out, err = parseRules("host.rules.out", h.Rules.Out, sets); err != nil {
		return nil, err
	}
	return host, nil
}

// MaxDHCPServers is how many sources dhcpServers may name.
const MaxDHCPServers = 16

// parseDHCPServers reads the only sources DHCP replies may come from:
// addresses, networks or +sets, as a rule's source.
func parseDHCPServers(servers []string, dhcp bool, sets map[string][]netip.Prefix) ([]model.Addr, error) {
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
func parseGroups(conf *NetConf, sets map[string][]netip.Prefix, lim model.Limits) (map[string]model.Group, error) {
	if len(conf.SecurityGroups) > MaxGroups {
		return nil, fieldErr("securityGroups", "more than %d groups", MaxGroups)
	}
	groups := map[string]model.Group{}
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

func parseSetEntries(field string, entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, e := range entries {
		p, err := parseNet(e, false)
		if err != nil {
			return nil, &Error{Field: fmt.Sprintf("%s[%d]", field, i), Err: err}
		}
		out = append(out, p)
	}
	return out, nil
}

func parseRules(field string, rs []Rule, sets map[string][]netip.Prefix) ([]model.Rule, error) {
	if len(rs) > MaxRules {
		return nil, fieldErr(field, "more than %d rules", MaxRules)
	}
	var out []model.Rule
	for i, r := range rs {
		u, err := parseRule(r, sets)
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.Field = fmt.Sprintf("%s[%d].%s", field, i, e.Field)
				return nil, e
			}
			return nil, &Error{Field: fmt.Sprintf("%s[%d]", field, i), Err: err}
		}
		out = append(out, u)
	}
	return out, nil
}

var protoNumbers = map[string]int{
	"tcp": 6, "udp": 17, "icmp": 1, "igmp": 2, "gre": 47, "esp": 50, "ah": 51,
	"icmpv6": 58, model.ProtoICMPv6: 58,
	"ospf": 89, "pim": 103, "vrrp": 112, "l2tp": 115, "sctp": 132, "udplite": 136,
}

func parseRule(r Rule, sets map[string][]netip.Prefix) (model.Rule, error) {
	u := model.Rule{Log: r.Log, Comment: r.Comment}
	switch r.Action {
	case "ACCEPT", "DROP", "REJECT":
		u.Action = model.Action(r.Action)
	case "":
		return u, fieldErr("action", "required: ACCEPT, DROP or REJECT")
	default:
		return u, fieldErr("action", "%q is not ACCEPT, DROP or REJECT", r.Action)
	}
	if r.Proto != "" {
		p := strings.ToLower(r.Proto)
		if n, ok := protoNumbers[p]; ok {
			switch {
			case n == 58:
				p = model.ProtoICMPv6
			case p != "tcp" && p != "udp" && p != "icmp":
				p = strconv.Itoa(n)
			}
		} else {
			n, err := strconv.Atoi(r.Proto)
			if err != nil || n < 1 || n > 255 || strconv.Itoa(n) != r.Proto {
				return u, fieldErr("proto", "%q is not tcp, udp, icmp, icmpv6, a known protocol name or a number 1-255", r.Proto)
			}
			switch n {
			case 6:
				p = "tcp"
			case 17:
				p = "udp"
			case 1:
				p = "icmp"
			case 58:
				p = model.ProtoICMPv6
			}
		}
		u.Proto = p
	}
	var err error
	if u.Source, err = parseAddr(r.Source, sets); err != nil {
		return u, &Error{Field: "source", Err: err}
	}
	if u.Dest, err = parseAddr(r.Dest, sets); err != nil {
		return u, &Error{Field: "dest", Err: err}
	}
	if err := sameFamily(u); err != nil {
		return u, err
	}
	if r.SPort != "" || r.DPort != "" {
		if u.Proto != "tcp" && u.Proto != "udp" {
			f := "sport"
			if r.SPort == "" {
				f = "dport"
			}
			return u, fieldErr(f, "ports need proto tcp or udp")
		}
	}
	if u.SPort, err = parsePorts(r.SPort); err != nil {
		return u, &Error{Field: "sport", Err: err}
	}
	if u.DPort, err = parsePorts(r.DPort); err != nil {
		return u, &Error{Field: "dport", Err: err}
	}
	if r.ICMPType != "" {
		switch u.Proto {
		case "icmp":
			u.ICMPType, err = parseICMPType(r.ICMPType, icmpTypes)
		case model.ProtoICMPv6:
			u.ICMPType, err = parseICMPType(r.ICMPType, icmp6Types)
		default:
			return u, fieldErr("icmpType", "needs proto icmp or icmpv6")
		}
		if err != nil {
			return u, &Error{Field: "icmpType", Err: err}
		}
	}
	if err := model.ValidateComment(r.Comment); err != nil {
		return u, &Error{Field: "comment", Err: err}
	}
	return u, nil
}

func parseAddr(s string, sets map[string][]netip.Prefix) (model.Addr, error) {
	if s == "" {
		return model.Addr{}, nil
	}
	if name, ok := strings.CutPrefix(s, "+"); ok {
		// The names in sets have been checked against the backend's
		// limits; any other is not defined.
		if _, ok := sets[name]; !ok {
			if err := model.ValidateName(name, 0); err != nil {
				return model.Addr{}, fmt.Errorf("ipset name %w", err)
			}
			return model.Addr{}, fmt.Errorf("ipset %q is not defined in ipsets", name)
		}
		return model.Addr{Set: name}, nil
	}
	p, err := parseNet(s, true)
	if err != nil {
		return model.Addr{}, err
	}
	if p.Bits() == 0 { // 0.0.0.0/0 or ::/0: any address of the family
		if p.Addr().Is6() {
			return model.Addr{Family: model.IPv6}, nil
		}
		return model.Addr{Family: model.IPv4}, nil
	}
	return model.Addr{Prefix: p}, nil
}

// parsePorts reads "22", "1000:2000" or "22,80,443" (at most 15 ports, a
// range counting two, as multiport allows) and returns it canonical: as
// iptables-save prints it back. A range whose ends are equal is the port
// ("22:22" is "22": iptables prints it so, and multiport refuses it in a
// list), and the range of every port alone is no match at all.
func parsePorts(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	parts := strings.Split(s, ",")
	slots := 0
	var out []string
	for _, part := range parts {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := parsePort(lo)
		if err != nil {
			return "", fmt.Errorf("%q: %w", s, err)
		}
		if !isRange {
			out = append(out, strconv.Itoa(a))
			slots++
			continue
		}
		b, err := parsePort(hi)
		if err != nil {
			return "", fmt.Errorf("%q: %w", s, err)
		}
		if a > b {
			return "", fmt.Errorf("%q: range %d:%d is backwards", s, a, b)
		}
		if a == b {
			out = append(out, strconv.Itoa(a))
			slots++
			continue
		}
		out = append(out, fmt.Sprintf("%d:%d", a, b))
		slots += 2
	}
	if len(parts) > 1 && slots > 15 {
		return "", fmt.Errorf("%q: at most 15 ports in a list (a range counts two)", s)
	}
	if len(out) == 1 && out[0] == "0:65535" {
		return "", nil // every port: no port match (iptables prints none)
	}
	return strings.Join(out, ","), nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(n) != s || n < 0 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number 0-65535", s)
	}
	return n, nil
}

var icmpTypes = map[string]string{
	"echo-reply": "0", "destination-unreachable": "3", "network-unreachable": "3/0",
	"host-unreachable": "3/1", "protocol-unreachable": "3/2", "port-unreachable": "3/3",
	"fragmentation-needed": "3/4", "source-quench": "4", "redirect": "5",
	"echo-request": "8", "router-advertisement": "9", "router-solicitation": "10",
	"time-exceeded": "11", "ttl-zero-during-transit": "11/0", "parameter-problem": "12",
	"timestamp-request": "13", "timestamp-reply": "14",
}

// icmp6Types are ICMPv6's type names as ip6tables knows them.
var icmp6Types = map[string]string{
	"destination-unreachable": "1", "no-route": "1/0", "communication-prohibited": "1/1",
	"address-unreachable": "1/3", "port-unreachable": "1/4", "packet-too-big": "2",
	"time-exceeded": "3", "ttl-zero-during-transit": "3/0", "parameter-problem": "4",
	"echo-request": "128", "echo-reply": "129", "router-solicitation": "133",
	"router-advertisement": "134", "neighbour-solicitation": "135", "neighbor-solicitation": "135",
	"neighbour-advertisement": "136", "neighbor-advertisement": "136", "redirect": "137",
}

// sameFamily checks that a rule's addresses and protocol name one family
// at most: a rule is rendered in the chains of its family.
func sameFamily(u model.Rule) error {
	type claim struct{ field, fam string }
	var claims []claim
	if f := u.Source.FamilyName(); f != "" {
		claims = append(claims, claim{"source", f})
	}
	if f := u.Dest.FamilyName(); f != "" {
		claims = append(claims, claim{"dest", f})
	}
	switch u.Proto {
	case "icmp":
		claims = append(claims, claim{"proto", model.IPv4})
	case model.ProtoICMPv6:
		claims = append(claims, claim{"proto", model.IPv6})
	}
	for _, c := range claims[min(1, len(claims)):] {
		if c.fam != claims[0].fam {
			return fieldErr(c.field, "is %s but %s is %s: a rule matches one address family", c.fam, claims[0].field, claims[0].fam)
		}
	}
	return nil
}

func parseICMPType(s string, names map[string]string) (string, error) {
	if v, ok := names[s]; ok {
		return v, nil
	}
	t, c, hasCode := strings.Cut(s, "/")
	n, err := strconv.Atoi(t)
	if err != nil || strconv.Itoa(n) != t || n < 0 || n > 255 {
		return "", fmt.Errorf("%q is not a known ICMP type name or type[/code] number", s)
	}
	if n == 255 {
		return "", fmt.Errorf("%q means any ICMP type: leave icmpType out", s)
	}
	if !hasCode {
		return t, nil
	}
	m, err := strconv.Atoi(c)
	if err != nil || strconv.Itoa(m) != c || m < 0 || m > 255 {
		return "", fmt.Errorf("%q: bad ICMP code", s)
	}
	return t + "/" + c, nil
}
