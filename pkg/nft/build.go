package nft

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Chain is a chain and its rules, in order.
type Chain struct {
	// Table is the family of the table it is in: "bridge" (the taps'
	// chains and the groups') or "inet" (the host firewall's).
	Table string
	Name  string
	Rules []Rule
}

// Dispatch is one element of MapOut or MapIn: packets of the protocol by
// the tap's port go to the chain.
type Dispatch struct {
	Map    string
	Family Family
	Port   string
	Chain  string
}

// Set is a named set of one family and its networks.
type Set struct {
	Table   string // as Chain.Table
	Name    string
	Family  Family
	Entries []netip.Prefix
}

// Plan is what one tap needs in the nftables tables, as data.
type Plan struct {
	Tap string
	// attached is the record's line saying who attached the tap.
	attached string
	// mac is the guest's MAC, for the record ("" when none).
	mac string
	// Profiles are the tap's IN and OUT chains, shared with every tap
	// whose rules are the same; Logs are the tap's own log chains.
	Profiles []Profile
	Logs     []LogChain
	// Shared are the chains of the security groups the config defines
	// and, when it has a host section, the host firewall's: rewritten
	// when they differ.
	Shared []Chain
	// Members are the bridge's rules in shared chains.
	Members []Member
	// Bridge is the tap's bridge.
	Bridge string
	// Dispatch are the tap's map elements.
	Dispatch []Dispatch
	// Sets are the named sets the config defines, per family, wanted
	// exactly; sets it does not define are left alone.
	Sets []Set
	// L2 is the tap's layer-2 checks, in the same table.
	L2 *ruleset.L2Tap
}

// Build renders the wanted state of cfg's tap: package ruleset's chains
// for both families, translated. The config must be validated.
func Build(cfg model.Config, m Marks) (*Plan, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	rp, err := ruleset.Build(cfg)
	if err != nil {
		return nil, err
	}
	t := cfg.Tap
	p := &Plan{Tap: t.Name, Bridge: cfg.Bridge.Name, attached: ruleset.DispatchComment(t), L2: rp.L2, Members: bridgeMembers(cfg.Bridge)}
	if t.MAC != nil {
		p.mac = t.MAC.String()
	}
	for _, fp := range []struct {
		fam  Family
		plan *ruleset.Plan
	}{{IPv4, rp}, {IPv6, rp.V6}} {
		if fp.plan == nil {
			continue
		}
		if err := p.addFamily(t, fp.fam, fp.plan, m); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *Plan) addFamily(t model.Tap, f Family, rp *ruleset.Plan, m Marks) error {
	fam := ruleset.IPv4
	if f == IPv6 {
		fam = ruleset.IPv6
	}
	for _, c := range rp.Owned {
		tap, ok := ruleset.IsTapChain(c.Name)
		if !ok || tap != t.Name {
			continue
		}
		dir := "out"
		if c.Name == ruleset.TapIn(tap) {
			dir = "in"
		}
		cx := chainCtx{fam: f, tap: tap, dir: dir, marks: m, tapSet: fam.TapSet(tap), table: "bridge"}
		prof, logs, err := cx.profile(c)
		if err != nil {
			return fmt.Errorf("chain %s: %w", c.Name, err)
		}
		d := Dispatch{Map: MapIn, Family: f, Port: tap, Chain: prof.Name}
		if dir == "out" {
			d.Map = MapOut
		}
		p.Profiles = append(p.Profiles, prof)
		p.Logs = append(p.Logs, logs...)
		p.Dispatch = append(p.Dispatch, d)
	}
	for _, c := range rp.Shared {
		cx, ok := sharedCtx(c.Name, f, fam, m)
		if !ok {
			continue
		}
		ch, err := cx.chain(c, f)
		if err != nil {
			return err
		}
		p.Shared = append(p.Shared, ch)
	}
	sort.Slice(p.Shared, func(i, j int) bool { return p.Shared[i].Table+p.Shared[i].Name < p.Shared[j].Table+p.Shared[j].Name })
	for _, s := range rp.Sets {
		switch name, user := strings.CutPrefix(s.Name, fam.UserSet("")); {
		case user:
			// Rules of both tables may use a named set.
			for _, tb := range []string{"bridge", "inet"} {
				p.Sets = append(p.Sets, Set{Table: tb, Name: UserSet(name, f), Family: f, Entries: s.Entries})
			}
		case s.Name == fam.SetHost():
			p.Sets = append(p.Sets, Set{Table: "inet", Name: HostSet(f), Family: f, Entries: s.Entries})
		case s.Name == fam.SetCluster():
			p.Sets = append(p.Sets, Set{Table: "inet", Name: ClusterSet(f), Family: f, Entries: s.Entries})
		}
	}
	return nil
}

// sharedCtx is how a shared chain of package ruleset's plan is
// translated; ok is false for the chains this backend has its own form
// of (dispatch, hooks, bridges).
func sharedCtx(name string, f Family, fam *ruleset.Family, m Marks) (chainCtx, bool) {
	cx := chainCtx{fam: f, dir: "out", marks: m, hostSet: fam.SetHost(), clusterSet: fam.SetCluster(), table: "bridge"}
	switch {
	case name == ruleset.ChainHostIn || name == ruleset.ChainHostOut:
		cx.inet, cx.table = true, "inet"
		if name == ruleset.ChainHostIn {
			cx.dir = "in"
		}
		return cx, true
	case name == ruleset.ChainGroupAllow || name == ruleset.ChainGroupAllowed:
		return cx, true
	}
	if _, ok := ruleset.IsGroupChain(name); ok {
		if strings.HasSuffix(name, "-IN") {
			cx.dir = "in"
		}
		return cx, true
	}
	return cx, false
}

func (cx chainCtx) chain(c ruleset.Chain, f Family) (Chain, error) {
	name, err := chainName(c.Name, f)
	if err != nil {
		return Chain{}, err
	}
	ch := Chain{Table: cx.table, Name: name}
	for _, r := range c.Rules {
		rs, err := cx.translate(name, r)
		if err != nil {
			return Chain{}, fmt.Errorf("chain %s: %w", name, err)
		}
		ch.Rules = append(ch.Rules, rs...)
	}
	return ch, nil
}

// String renders the plan as nft -f takes it (for goldens, tapfw render
// and a kernel test that loads it): the named sets, the shared chains,
// the profiles with their log maps, the tap's log chains, the bridge's
// rules, then the tap's elements. The record and the layer-2 elements
// are not in it.
func (p *Plan) String() string {
	var b strings.Builder
	for _, s := range p.Sets {
		fmt.Fprintf(&b, "add set %s %s %s { type %s ; flags interval ; }%s\n", s.Table, Table, s.Name, s.Family.addrType(), entriesText(s))
	}
	chains := append([]Chain(nil), p.Shared...)
	for _, pr := range p.Profiles {
		for _, m := range pr.Maps {
			fmt.Fprintf(&b, "add map bridge %s %s { type ifname : verdict ; }\n", Table, m)
		}
		for _, rs := range pr.Rates {
			fmt.Fprintln(&b, rs)
		}
		chains = append(chains, pr.Chain)
	}
	for _, l := range p.Logs {
		chains = append(chains, l.Chain)
	}
	for _, c := range chains {
		fmt.Fprintf(&b, "add chain %s %s %s\n", c.Table, Table, c.Name)
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "add rule %s %s %s %s\n", c.Table, Table, c.Name, r)
		}
	}
	for _, m := range p.Members {
		for _, r := range m.Rules {
			fmt.Fprintf(&b, "add rule %s %s %s %s\n", m.Table, Table, m.Chain, r)
		}
	}
	for _, d := range p.Dispatch {
		fmt.Fprintf(&b, "add element bridge %s %s { %s . %q : jump %s }\n", Table, d.Map, d.Family, d.Port, d.Chain)
	}
	for _, l := range p.Logs {
		fmt.Fprintf(&b, "add element bridge %s %s { %q : jump %s }\n", Table, l.Map, p.Tap, l.Name)
	}
	for _, set := range []string{SetPorts, SetDropIn, SetDropOut} {
		fmt.Fprintf(&b, "add element bridge %s %s { %q }\n", Table, set, p.Tap)
	}
	fmt.Fprintf(&b, "add element bridge %s %s { %q : jump %s }\n", Table, MapAnchors, p.Tap, ChainAnchor)
	return b.String()
}
