package ruleset

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
)

// Chain is a chain and the rules it holds, in order.
type Chain struct {
	Name  string
	Rules []Rule
}

// Set is an ipset (hash:net of the plan's family) and its entries.
type Set struct {
	Name    string
	Entries []netip.Prefix
}

// Plan is everything one tap needs in the kernel, as data. The backend
// compares it with what is installed and changes only what differs.
type Plan struct {
	Tap string
	// Owned are the tap's own chains, wanted exactly as given.
	Owned []Chain
	// Shared are shared chains whose whole content follows from the
	// config: rewritten when they differ.
	Shared []Chain
	// Base are shared chains that must exist; they are created with the
	// given rules when missing and otherwise left alone (dispatch chains
	// that other taps fill, and the host chains when the call carries no
	// host section).
	Base []Chain
	// Members are rules inside shared chains that belong to one owner (a
	// bridge in TFW-FORWARD). An owner's rules in a chain are replaced as a
	// group when they differ.
	Members []Rule
	// Paths are the tap's ways through the dispatch tries.
	Paths []Path
	// L2 is the tap's layer-2 checks (table bridge tapfw).
	L2 *L2Tap
	// Family is the plan's address family (nil: IPv4); V6 is the IPv6
	// plan of the same tap, for ip6tables.
	Family *Family
	V6     *Plan
	// Hooks are the jumps from the built-in chains, kept at their top.
	Hooks []Rule
	// Tails are rules kept last in their (shared) chain, in this order,
	// below every owner's Members.
	Tails []Rule
	// Sets are wanted exactly; BaseSets only have to exist.
	Sets     []Set
	BaseSets []Set
}

var (
	anyAddr   = netip.MustParsePrefix("0.0.0.0/32")
	broadcast = netip.MustParsePrefix("255.255.255.255/32")
)

// Build renders the wanted state for one tap. The config must be validated:
// Build checks names once more and returns an error rather than render a
// value that could escape its field.
func Build(c model.Config) (*Plan, error) {
	t := c.Tap
	if err := model.ValidateIfName(t.Name); err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	if err := model.ValidateIfName(c.Bridge.Name); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	if c.Bridge.ManagedPrefix == "" {
		c.Bridge.ManagedPrefix = model.DefaultManagedPrefix
	}
	if err := model.ValidateIfPrefix(c.Bridge.ManagedPrefix); err != nil {
		return nil, fmt.Errorf("managedPrefix: %w", err)
	}
	if t.MACFilter && len(t.MAC) != 6 {
		return nil, fmt.Errorf("mac: required when macFilter is on")
	}
	if err := checkLimits(c); err != nil {
		return nil, err
	}
	for _, g := range t.Groups {
		if _, ok := c.Groups[g]; !ok {
			return nil, fmt.Errorf("groups: %q is not defined in securityGroups", g)
		}
	}
	if t.LogLimit == "" {
		t.LogLimit = model.DefaultLogLimit
	}
	c.Tap = t
	p, err := buildFamily(c, IPv4)
	if err != nil {
		return nil, err
	}
	if p.L2, err = BuildL2(c); err != nil {
		return nil, err
	}
	if p.V6, err = buildFamily(c, IPv6); err != nil {
		return nil, err
	}
	return p, nil
}

// checkLimits refuses names this backend cannot render (see Limits): the
// config is checked against them already, so this only guards a caller
// that did not.
func checkLimits(c model.Config) error {
	for name := range c.Sets {
		if err := model.ValidateName(name, Limits.SetName); err != nil {
			return &model.FieldError{Field: "ipsets", Err: err}
		}
	}
	for name := range c.Groups {
		if err := model.ValidateName(name, Limits.GroupName); err != nil {
			return &model.FieldError{Field: "securityGroups", Err: err}
		}
	}
	if c.Tap.Network != "" {
		if err := model.ValidateID(c.Tap.Network, Limits.NetworkName); err != nil {
			return &model.FieldError{Field: "name", Err: err}
		}
	}
	if c.Tap.ContainerID != "" {
		if err := model.ValidateID(c.Tap.ContainerID, Limits.ContainerID); err != nil {
			return &model.FieldError{Field: "CNI_CONTAINERID", Env: true, Err: err}
		}
	}
	return nil
}

// Fam is the plan's family.
func (p *Plan) Fam() *Family {
	if p.Family == nil {
		return IPv4
	}
	return p.Family
}

// TapAddrs are the tap's addresses of the family, as its set holds them:
// for IPv6 also its link-local address, derived from its MAC.
func TapAddrs(t model.Tap, fam *Family) []netip.Prefix {
	if !fam.V6 {
		return sortedPrefixes(t.IPs)
	}
	ips := append([]netip.Prefix(nil), t.IPs6...)
	if len(t.MAC) == 6 {
		ips = append(ips, netip.PrefixFrom(LinkLocal(t.MAC), 128))
	}
	return sortedPrefixes(ips)
}

// buildFamily renders the tap's plan for one family.
func buildFamily(c model.Config, fam *Family) (*Plan, error) {
	t := c.Tap
	p := &Plan{Tap: t.Name, Family: fam}
	br := c.Bridge.Name

	// Built-in hooks, shared top-level chains and the bridge's chains.
	for _, h := range [][2]string{{"FORWARD", ChainForward}, {"INPUT", ChainInput}, {"OUTPUT", ChainOutput}} {
		p.Hooks = append(p.Hooks, Rule{Chain: h[0], Comment: OwnerHooks + ": hook", Verdict: Verdict{Target: h[1]}})
	}
	p.Base = append(p.Base, Chain{Name: ChainForward}, Chain{Name: ChainRouted}, Chain{Name: ChainUnmanagedIn}, Chain{Name: ChainUnmanagedOut})
	p.Tails = append(p.Tails, routedTails()...)
	for _, t := range fam.Tries {
		root := Chain{Name: t.Root}
		if miss, ok := t.MissRule(t.Root); ok {
			root.Rules = []Rule{miss}
		}
		p.Base = append(p.Base, root)
	}
	p.Shared = append(p.Shared, inputChain(fam), outputChain(fam), bridgeChain(br))
	p.Members = append(p.Members, forwardRules(c.Bridge, fam)...)
	p.Members = append(p.Members, unmanagedRules(c.Bridge)...)

	// The tap's chains and its dispatch rules.
	addrs := TapAddrs(t, fam)
	out, err := tapOut(t, fam)
	if err != nil {
		return nil, err
	}
	in, err := tapIn(t, fam)
	if err != nil {
		return nil, err
	}
	p.Owned = []Chain{in, out}
	p.Paths = dispatchPaths(t, fam, addrs)
	p.Sets = append(p.Sets, Set{Name: fam.TapSet(t.Name), Entries: addrs})

	// Host firewall.
	if c.Host != nil {
		hin, hout, err := hostChains(c.Host, fam, t.LogDropped, t.LogLimit, logTo{t.LogTarget, t.NFLogGroup})
		if err != nil {
			return nil, err
		}
		p.Shared = append(p.Shared, hin, hout)
		hostIPs := fam.Of(c.Host.IPs)
		if fam.V6 && len(hostIPs) > 0 {
			// With IPv6 addresses to guard, the host's link-local ones
			// (one per bridge, rarely listed) are guarded too: in INPUT
			// and OUTPUT a link-local address is always the host's.
			hostIPs = append(hostIPs, linkLocal)
		}
		p.Sets = append(p.Sets,
			Set{Name: fam.SetHost(), Entries: sortedPrefixes(hostIPs)},
			Set{Name: fam.SetCluster(), Entries: sortedPrefixes(fam.Of(c.Host.ClusterHosts))})
	} else {
		hin, hout, err := hostChains(&model.Host{}, fam, t.LogDropped, t.LogLimit, logTo{t.LogTarget, t.NFLogGroup})
		if err != nil {
			return nil, err
		}
		p.Base = append(p.Base, hin, hout)
		p.BaseSets = append(p.BaseSets, Set{Name: fam.SetHost()}, Set{Name: fam.SetCluster()})
	}
	groups, err := groupChains(c, fam)
	if err != nil {
		return nil, err
	}
	p.Shared = append(p.Shared, groups...)
	names := make([]string, 0, len(c.Sets))
	for n := range c.Sets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p.Sets = append(p.Sets, Set{Name: fam.UserSet(n), Entries: sortedPrefixes(fam.Of(c.Sets[n]))})
	}
	return p, nil
}

// groupChains are the security groups' shared chains, two per group, and
// the two chains that carry a group's "allowed" out of a tap's OUT chain.
func groupChains(c model.Config, fam *Family) ([]Chain, error) {
	if len(c.Groups) == 0 {
		return nil, nil
	}
	t := c.Tap
	names := make([]string, 0, len(c.Groups))
	for n := range c.Groups {
		names = append(names, n)
	}
	sort.Strings(names)
	mark := func(chain, desc, xmark string) Chain {
		return Chain{Name: chain, Rules: []Rule{{Chain: chain, Comment: OwnerHooks + ": " + desc, Verdict: Verdict{Target: "MARK", XMark: xmark}}}}
	}
	out := []Chain{
		mark(ChainGroupAllow, "a group allows", GroupMark),
		mark(ChainGroupAllowed, "a group allowed", groupMarkOff),
	}
	for _, n := range names {
		g := c.Groups[n]
		for _, d := range []struct {
			dir   string
			rules []model.Rule
			allow Verdict
		}{
			{"in", g.In, Verdict{Target: "ACCEPT"}},
			{"out", g.Out, Verdict{Goto: true, Target: ChainGroupAllow}},
		} {
			cx := chainCtx{chain: GroupChain(n, d.dir), fam: fam, owner: GroupOwner(n), logName: GroupOwner(n), dir: d.dir,
				allow: d.allow, limit: t.LogLimit, log: logTo{t.LogTarget, t.NFLogGroup}}
			rs, err := cx.userRules(d.rules)
			if err != nil {
				return nil, fmt.Errorf("securityGroups.%s.%w", n, err)
			}
			out = append(out, Chain{Name: cx.chain, Rules: rs})
		}
	}
	return out, nil
}

func hook(chain, desc string, v Verdict) Rule {
	return Rule{Chain: chain, Comment: OwnerHooks + ": " + desc, Verdict: v}
}

func inputChain(fam *Family) Chain {
	c := ChainInput
	return Chain{Name: c, Rules: []Rule{
		hook(c, "from taps", Verdict{Target: TrieIn.Root}),
		withState(hook(c, "established", Verdict{Target: "ACCEPT"}), "RELATED,ESTABLISHED"),
		withSet(hook(c, "to host", Verdict{Target: ChainHostIn}), fam.SetHost(), "dst"),
		hook(c, "default", Verdict{Target: "ACCEPT"}),
	}}
}

func outputChain(fam *Family) Chain {
	c := ChainOutput
	return Chain{Name: c, Rules: []Rule{
		withState(hook(c, "established", Verdict{Target: "ACCEPT"}), "RELATED,ESTABLISHED"),
		withSet(hook(c, "from host", Verdict{Target: ChainHostOut}), fam.SetHost(), "src"),
		hook(c, "to taps", Verdict{Target: fam.TrieHost.Root}),
		hook(c, "default", Verdict{Target: "ACCEPT"}),
	}}
}

func withState(r Rule, s string) Rule { r.CtState = s; return r }

func withSet(r Rule, set, dir string) Rule {
	if dir == "src" {
		r.SetSrc = set
	} else {
		r.SetDst = set
	}
	return r
}

// bridgeChain: from a tap, its OUT chain runs first (anti-spoofing before
// the conntrack shortcut, so a VM cannot forge its way into another's
// connection); then established traffic passes; then the IN chain of the
// tap the packet leaves by.
func bridgeChain(br string) Chain {
	c := BridgeChain(br)
	own := br + ": "
	return Chain{Name: c, Rules: []Rule{
		{Chain: c, Physdev: Physdev{Present: true, IsIn: true, IsBridged: true}, Comment: own + "from port", Verdict: Verdict{Target: TrieIn.Root}},
		{Chain: c, CtState: "RELATED,ESTABLISHED", Comment: own + "established", Verdict: Verdict{Target: "ACCEPT"}},
		{Chain: c, Physdev: Physdev{Present: true, IsOut: true, IsBridged: true}, Comment: own + "to port", Verdict: Verdict{Target: TrieOut.Root}},
		{Chain: c, Comment: own + "default", Verdict: Verdict{Target: "ACCEPT"}},
	}}
}

// forwardRules are the bridge's rules in FORWARD: its bridged packets go
// to its bridge chain; routed ones are dropped or, when the bridge allows
// routing, meet the taps' chains as bridged ones do (routedTails, and the
// bridge's rules in ChainRouted).
func forwardRules(b model.Bridge, fam *Family) []Rule {
	c, own := ChainForward, b.Name+": "
	// A bridged packet's output device is always the bridge, while its
	// input device is the VLAN device on top of it for tagged frames: one
	// jump on -o catches every bridged packet of the bridge.
	rs := []Rule{
		{Chain: c, OutIface: b.Name, Physdev: Physdev{Present: true, IsBridged: true}, Comment: own + "bridged", Verdict: Verdict{Target: BridgeChain(b.Name)}},
	}
	ifaces := BridgeIfaces(b.Name)
	if !b.AllowRouting {
		for _, i := range ifaces {
			rs = append(rs,
				Rule{Chain: c, InIface: i, Comment: own + "no inter-bridge routing", Verdict: Verdict{Target: "DROP"}},
				Rule{Chain: c, OutIface: i, Comment: own + "no inter-bridge routing", Verdict: Verdict{Target: "DROP"}})
		}
		// Explicit, so the choice shows in the ruleset and a bridge that
		// stops routing loses its rules there.
		return append(rs, Rule{Chain: ChainRouted, OutIface: b.Name, Comment: own + "routing off", Verdict: Verdict{Target: "RETURN"}})
	}
	// The port a routed packet leaves by is not known yet when it is
	// routed, so its destination address decides, as for the host's own
	// packets. A DHCP server answers on its client's link, never routed:
	// the taps' DHCP exemptions are for the link only.
	for _, i := range ifaces {
		dhcp := Rule{Chain: ChainRouted, OutIface: i, Proto: "udp", SPort: "67", DPort: "68", Comment: own + "no routed dhcp replies", Verdict: Verdict{Target: "DROP"}}
		if fam.V6 {
			dhcp.SPort, dhcp.DPort = "547", "546"
		}
		rs = append(rs, dhcp,
			Rule{Chain: ChainRouted, OutIface: i, Comment: own + "routed to taps", Verdict: Verdict{Target: fam.TrieHost.Root}})
	}
	return rs
}

// BridgeIfaces are the interfaces a routed packet of bridge br comes in or
// goes out by: the bridge, and the VLAN devices on top of it when they are
// named as Proxmox VE and ifupdown name them ("vmbr0.100", matched as
// "vmbr0.+"), which fit only while the bridge's name leaves room.
func BridgeIfaces(br string) []string {
	if len(br)+1 >= MaxIfName {
		return []string{br}
	}
	return []string{br, br + ".+"}
}

// routedTails are the last rules of FORWARD's chain, after every bridge's
// rules (so after the drops of bridges that do not allow routing, whatever
// order the bridges were added in): a routed packet that came in through
// a bridge port (on the bridge or a VLAN device on top of it) meets that
// port's tap's OUT chain (anti-spoofing, then its rules; a port without
// chains meets its bridge's fail-closed rule), then the rules of the
// bridge it goes out by, which send it to the IN chain of the tap that
// owns its destination.
func routedTails() []Rule {
	return []Rule{
		{Chain: ChainForward, Physdev: Physdev{Present: true, IsIn: true}, Comment: OwnerHooks + ": routed from a port", Verdict: Verdict{Target: TrieIn.Root}},
		hook(ChainForward, "routed", Verdict{Target: ChainRouted}),
	}
}

// unmanagedRules are the bridge's rules for packets of ports that no trie
// leaf matched, in FORWARD (out = the bridge) and INPUT (in = the bridge):
// DROP for ports named like its taps when the bridge fails closed, an
// explicit RETURN otherwise, so the choice shows in the ruleset.
func unmanagedRules(b model.Bridge) []Rule {
	v, what := Verdict{Target: "RETURN"}, "fail open"
	if b.FailClosed {
		v, what = Verdict{Target: "DROP"}, "fail closed"
	}
	prefix := b.ManagedPrefix + "+"
	cin, cout, own := ChainUnmanagedIn, ChainUnmanagedOut, b.Name+": "
	return []Rule{
		{Chain: cin, OutIface: b.Name, Physdev: Physdev{Present: true, In: prefix, IsBridged: true}, Comment: own + "port without chains, " + what, Verdict: v},
		{Chain: cin, InIface: b.Name, Physdev: Physdev{Present: true, In: prefix}, Comment: own + "port without chains, " + what, Verdict: v},
		{Chain: cout, OutIface: b.Name, Physdev: Physdev{Present: true, Out: prefix, IsBridged: true}, Comment: own + "port without chains, " + what, Verdict: v},
	}
}

// DispatchComment is the comment of a tap's rule in its bridge's OUT
// dispatch chain. It records who attached the tap, so DEL and GC can find
// it from the kernel alone; ParseDispatchComment reads it back.
func DispatchComment(t model.Tap) string {
	return fmt.Sprintf("%s: dispatch net=%s cid=%s if=%s", t.Name, dash(t.Network), dash(t.ContainerID), dash(t.IfName))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ParseDispatchComment reads back what DispatchComment wrote.
func ParseDispatchComment(c string) (model.Attachment, bool) {
	f := strings.Fields(c)
	if len(f) != 5 || f[1] != "dispatch" || !strings.HasSuffix(f[0], ":") {
		return model.Attachment{}, false
	}
	a := model.Attachment{Tap: strings.TrimSuffix(f[0], ":")}
	for _, kv := range f[2:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return model.Attachment{}, false
		}
		if v == "-" {
			v = ""
		}
		switch k {
		case "net":
			a.Network = v
		case "cid":
			a.ContainerID = v
		case "if":
			a.IfName = v
		default:
			return model.Attachment{}, false
		}
	}
	return a, true
}

// OutLeafComment is the comment of a tap's leaf in the OUT dispatch trie.
// It records the guest's MAC, when known, so the MAC can be read back from
// the kernel even when no rule matches it (macFilter off).
func OutLeafComment(t model.Tap) string {
	c := t.Name + ": dispatch out"
	if len(t.MAC) == 6 {
		c += " mac=" + t.MAC.String()
	}
	return c
}

// ParseOutLeafComment reads back the tap and MAC ("" when none) that
// OutLeafComment wrote.
func ParseOutLeafComment(c string) (tap, mac string, ok bool) {
	f := strings.Fields(c)
	if len(f) < 3 || len(f) > 4 || f[1] != "dispatch" || f[2] != "out" || !strings.HasSuffix(f[0], ":") {
		return "", "", false
	}
	if len(f) == 4 {
		v, found := strings.CutPrefix(f[3], "mac=")
		if hw, err := net.ParseMAC(v); !found || err != nil || len(hw) != 6 {
			return "", "", false
		}
		mac = v
	}
	return strings.TrimSuffix(f[0], ":"), mac, true
}

// dispatchPaths are the tap's leaves in the tries: by bridge port in (it
// also records who attached the tap), by bridge port out, and by each of
// its addresses for traffic from the host.
func dispatchPaths(t model.Tap, fam *Family, addrs []netip.Prefix) []Path {
	ps := []Path{
		TrieIn.PathFor(t.Name, TapOut(t.Name), DispatchComment(t)),
		TrieOut.PathFor(t.Name, TapIn(t.Name), OutLeafComment(t)),
	}
	for _, ip := range addrs {
		ps = append(ps, HostPath(fam, t.Name, ip))
	}
	return ps
}

// HostPath is the way from the host to tap for its address ip.
func HostPath(fam *Family, tap string, ip netip.Prefix) Path {
	return fam.TrieHost.PathFor(fam.HostKey(ip), TapIn(tap), tap+": from host "+ip.String())
}

// ICMPv6 types of neighbour discovery (RFC 4861).
const (
	icmp6RouterSolicit = "133"
	icmp6RouterAdvert  = "134"
	icmp6NeighSolicit  = "135"
	icmp6NeighAdvert   = "136"
	icmp6Redirect      = "137"
)

// ndp is a neighbour discovery rule: a hop limit of 255 proves the packet
// was not routed (RFC 4861 receivers drop any other), so the exemption
// cannot carry anything past the link.
func ndp(chain, typ, comment string, v Verdict) Rule {
	return Rule{Chain: chain, Proto: model.ProtoICMPv6, ICMPType: typ, HopLimit: 255, Comment: comment, Verdict: v}
}

// ICMPv6 types of multicast listener discovery (RFC 2710, RFC 3810).
const (
	icmp6MLDQuery    = "130"
	icmp6MLDReport   = "131"
	icmp6MLDDone     = "132"
	icmp6MLDv2Report = "143"
)

// protoIGMP is rendered as a number, as user rules render it.
const protoIGMP = "2"

// mld is a multicast listener discovery rule: MLD is sent with a hop limit
// of 1 (receivers drop any other), so it never leaves the link.
func mld(chain, typ, comment string, v Verdict) Rule {
	return Rule{Chain: chain, Proto: model.ProtoICMPv6, ICMPType: typ, HopLimit: 1, Comment: comment, Verdict: v}
}

// mldListener is what a listener sends: reports and done messages, always
// to a multicast address. Queries (130) are a querier's, and from a guest
// they meet its own rules.
var mldListener = []string{icmp6MLDReport, icmp6MLDDone, icmp6MLDv2Report}

// mldFrom is a listener message from a link-local address (RFC 3810 5.2.13)
// to a multicast one: so scoped, it carries nothing to a unicast address.
func mldFrom(chain, typ, comment string, v Verdict) Rule {
	r := mld(chain, typ, comment, v)
	r.Src, r.Dst = linkLocal, multicast6
	return r
}

// igmp is group membership over IPv4: sent with TTL 1 (RFC 2236, 3376) to
// a multicast address.
func igmp(chain, comment string, v Verdict) Rule {
	return Rule{Chain: chain, Dst: multicast4, Proto: protoIGMP, TTL: 1, Comment: comment, Verdict: v}
}

func icmp6(chain, typ, comment string, v Verdict) Rule {
	return Rule{Chain: chain, Proto: model.ProtoICMPv6, ICMPType: typ, Comment: comment, Verdict: v}
}

var (
	linkLocal  = netip.MustParsePrefix("fe80::/10")
	dhcpv6Srvs = netip.MustParsePrefix("ff02::1:2/128") // All_DHCP_Relay_Agents_and_Servers
	mldv2Rtrs  = netip.MustParsePrefix("ff02::16/128")  // All_MLDv2-capable_Routers
	unspec6    = netip.MustParsePrefix("::/128")
	multicast4 = netip.MustParsePrefix("224.0.0.0/4")
	multicast6 = netip.MustParsePrefix("ff00::/8")
)

// tapOut is the chain for packets from the VM. Allowed packets RETURN so
// that the IN chain of the receiving tap still runs. Anti-spoofing comes
// before the conntrack shortcut, so a VM cannot forge its way into
// another's connection.
func tapOut(t model.Tap, fam *Family) (Chain, error) {
	c := TapOut(t.Name)
	rs := outBeforeIPCheck(t, fam, c)
	if t.IPFilter {
		rs = append(rs, Rule{Chain: c, SetSrc: fam.TapSet(t.Name), SetSrcNeg: true, Comment: t.Name + ": ip anti-spoof", Verdict: Verdict{Target: "DROP"}})
	}
	rs = append(rs, outAfterIPCheck(t, fam, c)...)
	rs = append(rs, Rule{Chain: c, CtState: "RELATED,ESTABLISHED", Comment: t.Name + ": established", Verdict: Verdict{Target: "ACCEPT"}})
	rs = append(rs, outGroups(t, c)...)
	return tapChain(t, fam, c, "out", Verdict{Target: "RETURN"}, rs)
}

// tapChain ends the tap's chain c for dir, after its own rules rs: the
// tap's rules of that direction (allow is what an allowed packet gets),
// then its policy.
func tapChain(t model.Tap, fam *Family, c, dir string, allow Verdict, rs []Rule) (Chain, error) {
	rules, policy := t.In, t.PolicyIn
	if dir == "out" {
		rules, policy = t.Out, t.PolicyOut
	}
	cx := chainCtx{chain: c, fam: fam, owner: t.Name, logName: t.Name, dir: dir, allow: allow, limit: t.LogLimit, log: logTo{t.LogTarget, t.NFLogGroup}}
	user, err := cx.userRules(rules)
	if err != nil {
		return Chain{}, err
	}
	rs = append(rs, user...)
	rs = append(rs, cx.policy(policy, t.LogDropped)...)
	return Chain{Name: c, Rules: rs}, nil
}

// outBeforeIPCheck are the OUT chain's rules before the address check:
// INVALID, the MAC check, what a guest may never send (server replies,
// router advertisements) and what it sends before it has an address.
func outBeforeIPCheck(t model.Tap, fam *Family, c string) []Rule {
	own := t.Name + ": "
	ret, drop := Verdict{Target: "RETURN"}, Verdict{Target: "DROP"}
	rs := []Rule{{Chain: c, CtState: "INVALID", Comment: own + "invalid", Verdict: drop}}
	if t.MACFilter {
		rs = append(rs, Rule{Chain: c, MACSource: t.MAC.String(), MACNegate: true, Comment: own + "mac anti-spoof", Verdict: drop})
	}
	if !fam.V6 {
		rs = append(rs, Rule{Chain: c, Proto: "udp", SPort: "67", DPort: "68", Comment: own + "no dhcp server", Verdict: drop})
		if t.DHCP {
			// A client without an address asks from 0.0.0.0 to the
			// broadcast address: that, and only that, passes before the
			// IP check.
			rs = append(rs, Rule{Chain: c, Src: anyAddr, Dst: broadcast, Proto: "udp", SPort: "68", DPort: "67", Comment: own + "dhcp discover", Verdict: ret})
		}
		return rs
	}
	if !t.RAdv {
		rs = append(rs,
			icmp6(c, icmp6RouterAdvert, own+"no router advertisements", drop),
			icmp6(c, icmp6Redirect, own+"no redirects", drop))
	}
	rs = append(rs, Rule{Chain: c, Proto: "udp", SPort: "547", DPort: "546", Comment: own + "no dhcpv6 server", Verdict: drop})
	if t.NDP && t.IPFilter {
		// Duplicate address detection asks from the unspecified
		// address, before the VM has one.
		rs = append(rs, Rule{Chain: c, Src: unspec6, Proto: model.ProtoICMPv6, ICMPType: icmp6NeighSolicit, HopLimit: 255, Comment: own + "ndp dad", Verdict: ret})
	}
	if t.IGMP && t.IPFilter {
		// So do its first MLD reports, for the solicited-node groups
		// of the addresses it is about to check (RFC 3590).
		r := mld(c, icmp6MLDv2Report, own+"mld before dad", ret)
		r.Src, r.Dst = unspec6, mldv2Rtrs
		rs = append(rs, r)
	}
	return rs
}

// outAfterIPCheck are the protocols a guest needs from its own addresses
// that conntrack does not track: neighbour discovery, group membership,
// DHCP renewals and DHCPv6 requests.
func outAfterIPCheck(t model.Tap, fam *Family, c string) []Rule {
	own, ret := t.Name+": ", Verdict{Target: "RETURN"}
	var rs []Rule
	if !fam.V6 {
		if t.IGMP {
			// Group membership from the guest's own address; IGMP is
			// never routed.
			rs = append(rs, igmp(c, own+"igmp", ret))
		}
		if t.DHCP {
			// Renewals come from the guest's own address.
			rs = append(rs, Rule{Chain: c, Proto: "udp", SPort: "68", DPort: "67", Comment: own + "dhcp renew", Verdict: ret})
		}
		return rs
	}
	if t.NDP {
		// Their targets are checked in the bridge table.
		for _, typ := range []string{icmp6RouterSolicit, icmp6NeighSolicit, icmp6NeighAdvert} {
			rs = append(rs, ndp(c, typ, own+"ndp", ret))
		}
	}
	if t.IGMP {
		// Group membership, without which a snooping bridge or switch
		// stops sending the guest its solicited-node multicast.
		for _, typ := range mldListener {
			rs = append(rs, mldFrom(c, typ, own+"mld", ret))
		}
	}
	if t.DHCP {
		// Clients ask the link's servers and relays, by multicast.
		rs = append(rs, Rule{Chain: c, Dst: dhcpv6Srvs, Proto: "udp", SPort: "546", DPort: "547", Comment: own + "dhcpv6 request", Verdict: ret})
	}
	return rs
}

// outGroups send the packet through the tap's security groups. What a
// group allows comes back marked and returns from the tap's chain;
// anything else falls through to the next group and the tap's own rules.
func outGroups(t model.Tap, c string) []Rule {
	if len(t.Groups) == 0 {
		return nil
	}
	own := t.Name + ": "
	// The mark bit says "a group allowed it" only if it starts clear: a
	// packet that arrives with it set would skip the tap's rules.
	rs := []Rule{{Chain: c, Comment: own + "groups: clear mark", Verdict: Verdict{Target: "MARK", XMark: groupMarkOff}}}
	for _, g := range t.Groups {
		rs = append(rs,
			Rule{Chain: c, Comment: own + "out group " + g, Verdict: Verdict{Target: GroupChain(g, "out")}},
			Rule{Chain: c, Mark: GroupMark, Comment: own + "out group " + g + " allowed", Verdict: Verdict{Goto: true, Target: ChainGroupAllowed}})
	}
	return rs
}

// tapIn is the chain for packets to the VM. Allowed packets are ACCEPTed.
func tapIn(t model.Tap, fam *Family) (Chain, error) {
	c := TapIn(t.Name)
	own := t.Name + ": "
	acc := Verdict{Target: "ACCEPT"}
	rs := []Rule{
		{Chain: c, CtState: "INVALID", Comment: own + "invalid", Verdict: Verdict{Target: "DROP"}},
		{Chain: c, CtState: "RELATED,ESTABLISHED", Comment: own + "established", Verdict: acc},
	}
	if fam.V6 {
		// Conntrack does not track neighbour discovery, so nothing of it
		// is ever established.
		if t.NDP {
			for _, typ := range []string{icmp6RouterSolicit, icmp6RouterAdvert, icmp6NeighSolicit, icmp6NeighAdvert} {
				rs = append(rs, ndp(c, typ, own+"ndp", acc))
			}
		}
		if t.IGMP {
			// Queries, and other members' reports (MLDv1 listeners hold
			// back their own on hearing one), from link-local addresses
			// as MLD requires: conntrack does not track MLD either.
			q := mld(c, icmp6MLDQuery, own+"mld", acc)
			q.Src = linkLocal // a query may be unicast
			rs = append(rs, q)
			for _, typ := range mldListener {
				rs = append(rs, mldFrom(c, typ, own+"mld", acc))
			}
		}
	} else if t.IGMP {
		// Queries, and the reports of other members (IGMPv1 and v2
		// listeners hold back their own on hearing one).
		rs = append(rs, igmp(c, own+"igmp", acc))
	}
	if t.DHCP {
		rs = append(rs, dhcpReplies(c, t, fam, acc)...)
	}
	for _, g := range t.Groups {
		rs = append(rs, Rule{Chain: c, Comment: own + "in group " + g, Verdict: Verdict{Target: GroupChain(g, "in")}})
	}
	return tapChain(t, fam, c, "in", acc, rs)
}

// dhcpReplies let the answers of DHCP servers in, which conntrack cannot
// relate to the request: a client asks from 0.0.0.0 (or, for DHCPv6, from
// its link-local address to a multicast one), and the server answers from
// its own address. A DHCPv4 server answers to the broadcast address or by
// unicast to the address it offers, which with ipFilter on must be one of
// the tap's own; a DHCPv6 server or relay on the link answers from its
// link-local address. With dhcpServers, only those sources.
func dhcpReplies(c string, t model.Tap, fam *Family, v Verdict) []Rule {
	proto := Rule{Chain: c, Proto: "udp", SPort: "67", DPort: "68", Comment: t.Name + ": dhcp reply", Verdict: v}
	if fam.V6 {
		proto.SPort, proto.DPort, proto.Comment = "547", "546", t.Name+": dhcpv6 reply"
	}
	var dsts []Rule
	switch {
	case fam.V6 || !t.IPFilter:
		dsts = []Rule{proto}
	default:
		bcast, own := proto, proto
		bcast.Dst, own.SetDst = broadcast, fam.TapSet(t.Name)
		dsts = []Rule{bcast, own}
	}
	var rs []Rule
	for _, src := range dhcpSources(t, fam) {
		for _, r := range dsts {
			r.Src, r.SetSrc = src.prefix, src.set
			rs = append(rs, r)
		}
	}
	return rs
}

// ruleSrc is a rule's source: a prefix, a set's kernel name, or neither
// (any).
type ruleSrc struct {
	prefix netip.Prefix
	set    string
}

// dhcpSources are the sources DHCP replies of the family may come from.
func dhcpSources(t model.Tap, fam *Family) []ruleSrc {
	if len(t.DHCPServers) == 0 {
		if fam.V6 {
			return []ruleSrc{{prefix: linkLocal}}
		}
		return []ruleSrc{{}}
	}
	var out []ruleSrc
	for _, a := range t.DHCPServers {
		switch {
		case a.Set != "":
			out = append(out, ruleSrc{set: fam.UserSet(a.Set)})
		case a.Family == fam.Name:
			out = append(out, ruleSrc{})
		case a.Prefix.IsValid() && fam.Has(a.Prefix):
			out = append(out, ruleSrc{prefix: a.Prefix})
		}
	}
	return out
}

func hostChains(h *model.Host, fam *Family, logDropped bool, limit string, log logTo) (Chain, Chain, error) {
	var chains [2]Chain
	for i, d := range []struct {
		chain, dir string
		rules      []model.Rule
		cluster    Rule
	}{
		{ChainHostIn, "in", h.In, Rule{SetSrc: fam.SetCluster()}},
		{ChainHostOut, "out", h.Out, Rule{SetDst: fam.SetCluster()}},
	} {
		cx := chainCtx{chain: d.chain, fam: fam, owner: OwnerHost, logName: "host", dir: d.dir, allow: Verdict{Target: "RETURN"}, limit: limit, log: log}
		cluster := d.cluster
		cluster.Chain, cluster.Comment, cluster.Verdict = d.chain, OwnerHost+": cluster hosts", Verdict{Target: "RETURN"}
		rs := []Rule{cluster}
		if fam.V6 {
			// The host's own neighbour discovery: without it, it has no
			// IPv6 at all.
			for _, typ := range []string{icmp6RouterSolicit, icmp6RouterAdvert, icmp6NeighSolicit, icmp6NeighAdvert} {
				rs = append(rs, ndp(d.chain, typ, OwnerHost+": ndp", Verdict{Target: "RETURN"}))
			}
		}
		if d.dir == "out" {
			// The host's own group membership reports (and queries, if it
			// is a querier): dropped, they leave the host deaf to
			// multicast behind a snooping bridge or switch. They go to
			// multicast addresses, so what comes in never meets HOST-IN.
			if fam.V6 {
				rs = append(rs, mld(d.chain, icmp6MLDQuery, OwnerHost+": mld", Verdict{Target: "RETURN"}))
				for _, typ := range mldListener {
					r := mld(d.chain, typ, OwnerHost+": mld", Verdict{Target: "RETURN"})
					r.Dst = multicast6
					rs = append(rs, r)
				}
			} else {
				rs = append(rs, igmp(d.chain, OwnerHost+": igmp", Verdict{Target: "RETURN"}))
			}
		}
		user, err := cx.userRules(d.rules)
		if err != nil {
			return Chain{}, Chain{}, fmt.Errorf("host.%w", err)
		}
		rs = append(rs, user...)
		chains[i] = Chain{Name: d.chain, Rules: append(rs, cx.policy(model.Drop, logDropped)...)}
	}
	return chains[0], chains[1], nil
}

// LogPrefix is the LOG prefix for owner, direction and what ("drop", "rej"
// or "r<N>" for user rule N): "tfw:tap110i0:out:drop ". At most 29
// characters, as the kernel allows.
func LogPrefix(owner, dir, what string) string {
	return "tfw:" + owner + ":" + dir + ":" + what + " "
}

// LogLine is what a log prefix says: whose rule logged (a tap, or "host"
// for the host firewall), the direction (in: to the VM or host; out: from
// it) and what ("drop" or "rej" for the policy, "r<N>" for rule N of the
// direction, 1-based as in the config).
type LogLine struct {
	Owner, Dir, What string
}

// ParseLogPrefix reads back what LogPrefix wrote, from a kernel log line
// ("... tfw:tap110i0:in:drop IN=vmbr0 ...") or an NFLOG prefix.
func ParseLogPrefix(s string) (LogLine, bool) {
	i := strings.Index(s, "tfw:")
	if i < 0 {
		return LogLine{}, false
	}
	word, _, _ := strings.Cut(s[i:], " ")
	f := strings.Split(word, ":")
	if len(f) != 4 || f[1] == "" || (f[2] != "in" && f[2] != "out") || f[3] == "" {
		return LogLine{}, false
	}
	return LogLine{Owner: f[1], Dir: f[2], What: f[3]}, true
}

// chainCtx is what the rules of one direction of one owner share.
type chainCtx struct {
	chain   string
	fam     *Family
	owner   string  // the comment's owner: a tap name or OwnerHost
	logName string  // the name in LOG prefixes
	dir     string  // in or out
	allow   Verdict // what an allowed packet gets: ACCEPT, RETURN, or a goto to ChainGroupAllow
	limit   string  // LOG rate
	log     logTo
}

func (cx chainCtx) logRule(what, comment string) Rule {
	return Rule{Chain: cx.chain, Limit: cx.limit, Comment: comment, Verdict: cx.logVerdict(what)}
}

// logVerdict logs with the prefix for what, to the kernel log or NFLOG.
func (cx chainCtx) logVerdict(what string) Verdict {
	v := Verdict{Target: "LOG", LogPrefix: LogPrefix(cx.logName, cx.dir, what)}
	if cx.log.target == "NFLOG" {
		v.Target, v.NFLogGroup = "NFLOG", cx.log.group
	}
	return v
}

// logTo is where a chain's log lines go.
type logTo struct {
	target string // LOG or NFLOG
	group  int    // NFLOG's group
}

func (cx chainCtx) policy(a model.Action, logDropped bool) []Rule {
	own := cx.owner + ": "
	var rs []Rule
	switch a {
	case model.Accept:
		return []Rule{{Chain: cx.chain, Comment: own + "policy accept", Verdict: cx.allow}}
	case model.Reject:
		if logDropped {
			rs = append(rs, cx.logRule("rej", own+"log policy"))
		}
		return append(rs, Rule{Chain: cx.chain, Comment: own + "policy reject", Verdict: Verdict{Target: "REJECT", RejectWith: cx.fam.RejectWith()}})
	default:
		if logDropped {
			rs = append(rs, cx.logRule("drop", own+"log policy"))
		}
		return append(rs, Rule{Chain: cx.chain, Comment: own + "policy drop", Verdict: Verdict{Target: "DROP"}})
	}
}

func (cx chainCtx) userRules(us []model.Rule) ([]Rule, error) {
	var rs []Rule
	for i, u := range us {
		if !cx.fam.Renders(u) {
			continue
		}
		n := i + 1
		comment := fmt.Sprintf("%s: %s rule %d", cx.owner, cx.dir, n)
		if u.Comment != "" {
			if err := model.ValidateComment(u.Comment); err != nil {
				return nil, fmt.Errorf("rules.%s[%d].comment: %w", cx.dir, i, err)
			}
			comment += " " + u.Comment
		}
		r := Rule{Chain: cx.chain, Proto: u.Proto, Comment: comment, ICMPType: u.ICMPType}
		if u.Source.Set != "" {
			r.SetSrc = cx.fam.UserSet(u.Source.Set)
		} else {
			r.Src = u.Source.Prefix
		}
		if u.Dest.Set != "" {
			r.SetDst = cx.fam.UserSet(u.Dest.Set)
		} else {
			r.Dst = u.Dest.Prefix
		}
		if strings.Contains(u.SPort, ",") {
			r.SPorts = u.SPort
		} else {
			r.SPort = u.SPort
		}
		if strings.Contains(u.DPort, ",") {
			r.DPorts = u.DPort
		} else {
			r.DPort = u.DPort
		}
		switch u.Action {
		case model.Accept:
			r.Verdict = cx.allow
		case model.Reject:
			r.Verdict = Verdict{Target: "REJECT", RejectWith: cx.fam.RejectWith()}
			if u.Proto == "tcp" {
				r.Verdict.RejectWith = "tcp-reset"
			}
		case model.Drop:
			r.Verdict = Verdict{Target: "DROP"}
		default:
			return nil, fmt.Errorf("rules.%s[%d].action: unknown action %q", cx.dir, i, u.Action)
		}
		if u.Log {
			l := r
			l.Limit = cx.limit
			l.Verdict = cx.logVerdict(fmt.Sprintf("r%d", n))
			rs = append(rs, l)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := append([]netip.Prefix(nil), ps...)
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr().Compare(out[j].Addr()); c != 0 {
			return c < 0
		}
		return out[i].Bits() < out[j].Bits()
	})
	// Drop duplicates: a set holds each entry once.
	res := out[:0]
	for i, p := range out {
		if i == 0 || p != out[i-1] {
			res = append(res, p)
		}
	}
	return res
}
