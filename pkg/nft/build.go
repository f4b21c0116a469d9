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
	// Chains are the tap's own chains, wanted exactly as given.
	Chains []Chain
	// Shared are the chains of the security groups the config defines
	// and, when it has a host section, the host firewall's: rewritten
	// when they differ.
	Shared []Chain
	// Members are the bridge's rules in shared chains.
	Members []Member
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
	p := &Plan{Tap: t.Name, L2: rp.L2, Members: bridgeMembers(cfg.Bridge)}
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
		ch, err := cx.chain(c, f)
		if err != nil {
			return err
		}
		d := Dispatch{Map: MapIn, Family: f, Port: tap, Chain: ch.Name}
		if dir == "out" {
			d.Map = MapOut
			if f == IPv4 {
				ch.Rules = append(ch.Rules, recordRule(t, ch.Name))
			}
		}
		p.Chains = append(p.Chains, ch)
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

// recordRule records who attached the tap, as the iptables backend's
// dispatch rule does: DEL and GC read it back. It comes after the chain's
// policy, so no packet reaches it.
func recordRule(t model.Tap, chain string) Rule {
	b := &builder{}
	b.counter()
	return b.rule(chain, ruleset.DispatchComment(t))
}

// RecordOf reads the attachment a chain's rule comments record.
func RecordOf(comments []string) (model.Attachment, bool) {
	for i := len(comments) - 1; i >= 0; i-- {
		if a, ok := ruleset.ParseDispatchComment(comments[i]); ok {
			return a, true
		}
	}
	return model.Attachment{}, false
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
// and a kernel test that loads it): the chains, then the map elements.
func (p *Plan) String() string {
	var b strings.Builder
	for _, s := range p.Sets {
		fmt.Fprintf(&b, "add set %s %s %s { type %s ; flags interval ; }\n", s.Table, Table, s.Name, s.Family.addrType())
		if len(s.Entries) > 0 {
			items := make([]string, len(s.Entries))
			for i, e := range s.Entries {
				items[i] = ruleset.PrefixString(e)
			}
			fmt.Fprintf(&b, "add element %s %s %s { %s }\n", s.Table, Table, s.Name, strings.Join(items, ", "))
		}
	}
	for _, cs := range [][]Chain{p.Shared, p.Chains} {
		for _, c := range cs {
			fmt.Fprintf(&b, "add chain %s %s %s\n", c.Table, Table, c.Name)
			for _, r := range c.Rules {
				fmt.Fprintf(&b, "add rule %s %s %s %s\n", c.Table, Table, c.Name, r)
			}
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
	fmt.Fprintf(&b, "add element bridge %s %s { %q }\n", Table, SetPorts, p.Tap)
	return b.String()
}
