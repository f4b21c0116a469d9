package ruleset

import (
	"fmt"
	"net/netip"
	"slices"
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
	for _, u := range slices.Concat(t.In, t.Out) {
		if _, ok := c.Groups[u.Group]; u.Group != "" && !ok {
			return nil, fmt.Errorf("rules: group %q is not defined in securityGroups", u.Group)
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
	_, blacklist := c.Sets[model.SetBlacklist]
	in, err := tapIn(t, fam, blacklist)
	if err != nil {
		return nil, err
	}
	p.Owned = []Chain{in, out}
	p.Paths = dispatchPaths(t, fam, addrs)
	p.Sets = append(p.Sets, Set{Name: fam.TapSet(t.Name), Entries: addrs})

	// Host firewall.
	if c.Host != nil {
		hin, hout, err := hostChains(c.Host, fam, c.Sets, t.LogDropped, t.LogLimit, logTo{t.LogTarget, t.NFLogGroup})
		if err != nil {
			return nil, err
		}
		p.Shared = append(p.Shared, hin, hout)
		hostIPs := hostAddrs(c.Host, fam)
		p.Sets = append(p.Sets,
			Set{Name: fam.SetHost(), Entries: sortedPrefixes(hostIPs)},
			Set{Name: fam.SetCluster(), Entries: sortedPrefixes(fam.Of(c.Host.ClusterHosts))})
	} else {
		hin, hout, err := hostChains(&model.Host{}, fam, nil, t.LogDropped, t.LogLimit, logTo{t.LogTarget, t.NFLogGroup})
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

// hostAddrs are the addresses the host firewall guards in family fam.
func hostAddrs(h *model.Host, fam *Family) []netip.Prefix {
	if h.AllLocal {
		// Every address: the hooks leave loopback out, and anything
		// else reaching INPUT or leaving by OUTPUT is the host's.
		return fam.Everything()
	}
	addrs := fam.Of(h.IPs)
	if fam.V6 && len(addrs) > 0 {
		// With IPv6 addresses to guard, the host's link-local ones (one
		// per bridge, rarely listed) are guarded too: in INPUT and
		// OUTPUT a link-local address is always the host's.
		addrs = append(addrs, linkLocal)
	}
	return addrs
}

func hook(chain, desc string, v Verdict) Rule {
	return Rule{Chain: chain, Comment: OwnerHooks + ": " + desc, Verdict: v}
}

func inputChain(fam *Family) Chain {
	c := ChainInput
	return Chain{Name: c, Rules: []Rule{
		hook(c, "from taps", Verdict{Target: TrieIn.Root}),
		withState(hook(c, "established", Verdict{Target: "ACCEPT"}), "RELATED,ESTABLISHED"),
		notLo(withSet(hook(c, "to host", Verdict{Target: ChainHostIn}), fam.SetHost(), "dst")),
		hook(c, "default", Verdict{Target: "ACCEPT"}),
	}}
}

func outputChain(fam *Family) Chain {
	c := ChainOutput
	return Chain{Name: c, Rules: []Rule{
		withState(hook(c, "established", Verdict{Target: "ACCEPT"}), "RELATED,ESTABLISHED"),
		notLo(withSet(hook(c, "from host", Verdict{Target: ChainHostOut}), fam.SetHost(), "src")),
		hook(c, "to taps", Verdict{Target: fam.TrieHost.Root}),
		hook(c, "default", Verdict{Target: "ACCEPT"}),
	}}
}

func withState(r Rule, s string) Rule { r.CtState = s; return r }

// notLo leaves loopback out of a hook of INPUT or OUTPUT: the host
// talking to itself is not the host firewall's to filter.
func notLo(r Rule) Rule {
	if r.Chain == ChainInput {
		r.InIface, r.InIfaceNeg = "lo", true
	} else {
		r.OutIface, r.OutIfaceNeg = "lo", true
	}
	return r
}

func withSet(r Rule, set, dir string) Rule {
	if dir == "src" {
		r.SetSrc = set
	} else {
		r.SetDst = set
	}
	return r
}

// HostWide is the part of p that every tap of its config shares: the
// hooks, the shared chains but the bridge's, the host firewall, the
// security groups, the named sets. It is what a change to the host-wide
// parts of a config installs for taps whose own rules stay as they are;
// it has no tap. It speaks for the whole host: a config without a host
// section has the host firewall that guards no address, rewritten
// as such.
func (p *Plan) HostWide() *Plan {
	if p == nil {
		return nil
	}
	q := &Plan{Family: p.Family, Hooks: p.Hooks, Tails: p.Tails}
	for _, ch := range p.Shared {
		if !strings.HasPrefix(ch.Name, bridgeChainPrefix) {
			q.Shared = append(q.Shared, ch)
		}
	}
	for _, ch := range p.Base {
		if ch.Name == ChainHostIn || ch.Name == ChainHostOut {
			q.Shared = append(q.Shared, ch)
		} else {
			q.Base = append(q.Base, ch)
		}
	}
	for _, s := range p.Sets {
		if s.Name != p.Fam().TapSet(p.Tap) {
			q.Sets = append(q.Sets, s)
		}
	}
	for _, s := range p.BaseSets {
		if s.Name == p.Fam().SetHost() || s.Name == p.Fam().SetCluster() {
			q.Sets = append(q.Sets, s)
		} else {
			q.BaseSets = append(q.BaseSets, s)
		}
	}
	q.V6 = p.V6.HostWide()
	return q
}
