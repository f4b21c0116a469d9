package ruleset

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Chain is a chain and the rules it holds, in order.
type Chain struct {
	Name  string
	Rules []Rule
}

// Set is an ipset (hash:net, family inet) and its entries.
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
	// Hooks are the jumps from the built-in chains, kept at their top.
	Hooks []Rule
	// Sets are wanted exactly; BaseSets only have to exist.
	Sets     []Set
	BaseSets []Set
}

var (
	anyAddr   = netip.MustParsePrefix("0.0.0.0/32")
	broadcast = netip.MustParsePrefix("255.255.255.255/32")
)

// DefaultLogLimit is the LOG rate when the config does not set one.
const DefaultLogLimit = "5/min"

// Build renders the wanted state for one tap. The config must be validated:
// Build checks names once more and returns an error rather than render a
// value that could escape its field.
func Build(c Config) (*Plan, error) {
	t := c.Tap
	if err := ValidateIfName(t.Name); err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	if err := ValidateIfName(c.Bridge.Name); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	if c.Bridge.ManagedPrefix == "" {
		c.Bridge.ManagedPrefix = DefaultManagedPrefix
	}
	if err := ValidateIfPrefix(c.Bridge.ManagedPrefix); err != nil {
		return nil, fmt.Errorf("managedPrefix: %w", err)
	}
	if t.MACFilter && len(t.MAC) != 6 {
		return nil, fmt.Errorf("mac: required when macFilter is on")
	}
	for name := range c.Sets {
		if err := ValidateSetName(name); err != nil {
			return nil, fmt.Errorf("ipsets: %w", err)
		}
	}
	if t.LogLimit == "" {
		t.LogLimit = DefaultLogLimit
	}
	p := &Plan{Tap: t.Name}
	br := c.Bridge.Name

	// Built-in hooks, shared top-level chains and the bridge's chains.
	for _, h := range [][2]string{{"FORWARD", ChainForward}, {"INPUT", ChainInput}, {"OUTPUT", ChainOutput}} {
		p.Hooks = append(p.Hooks, Rule{Chain: h[0], Comment: OwnerHooks + ": hook", Verdict: Verdict{Target: h[1]}})
	}
	p.Base = append(p.Base, Chain{Name: ChainForward}, Chain{Name: ChainUnmanagedIn}, Chain{Name: ChainUnmanagedOut})
	for _, t := range Tries {
		root := Chain{Name: t.Root}
		if miss, ok := t.MissRule(t.Root); ok {
			root.Rules = []Rule{miss}
		}
		p.Base = append(p.Base, root)
	}
	p.Shared = append(p.Shared, inputChain(), outputChain(), bridgeChain(br))
	p.Members = append(p.Members, forwardRules(c.Bridge)...)
	p.Members = append(p.Members, unmanagedRules(c.Bridge)...)

	// The tap's chains and its dispatch rules.
	out, err := tapOut(t)
	if err != nil {
		return nil, err
	}
	in, err := tapIn(t)
	if err != nil {
		return nil, err
	}
	p.Owned = []Chain{in, out}
	if p.L2, err = BuildL2(c); err != nil {
		return nil, err
	}
	p.Paths = dispatchPaths(t)
	p.Sets = append(p.Sets, Set{Name: TapSet(t.Name), Entries: sortedPrefixes(t.IPs)})

	// Host firewall.
	if c.Host != nil {
		hin, hout, err := hostChains(c.Host, t.LogDropped, t.LogLimit)
		if err != nil {
			return nil, err
		}
		p.Shared = append(p.Shared, hin, hout)
		p.Sets = append(p.Sets,
			Set{Name: SetHost, Entries: sortedPrefixes(c.Host.IPs)},
			Set{Name: SetCluster, Entries: sortedPrefixes(c.Host.ClusterHosts)})
	} else {
		hin, hout, err := hostChains(&Host{}, t.LogDropped, t.LogLimit)
		if err != nil {
			return nil, err
		}
		p.Base = append(p.Base, hin, hout)
		p.BaseSets = append(p.BaseSets, Set{Name: SetHost}, Set{Name: SetCluster})
	}
	names := make([]string, 0, len(c.Sets))
	for n := range c.Sets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p.Sets = append(p.Sets, Set{Name: UserSet(n), Entries: sortedPrefixes(c.Sets[n])})
	}
	return p, nil
}

func hook(chain, desc string, v Verdict) Rule {
	return Rule{Chain: chain, Comment: OwnerHooks + ": " + desc, Verdict: v}
}

func inputChain() Chain {
	c := ChainInput
	return Chain{Name: c, Rules: []Rule{
		hook(c, "from taps", Verdict{Target: TrieIn.Root}),
		withState(hook(c, "established", Verdict{Target: "ACCEPT"}), "RELATED,ESTABLISHED"),
		withSet(hook(c, "to host", Verdict{Target: ChainHostIn}), SetHost, "dst"),
		hook(c, "default", Verdict{Target: "ACCEPT"}),
	}}
}

func outputChain() Chain {
	c := ChainOutput
	return Chain{Name: c, Rules: []Rule{
		withState(hook(c, "established", Verdict{Target: "ACCEPT"}), "RELATED,ESTABLISHED"),
		withSet(hook(c, "from host", Verdict{Target: ChainHostOut}), SetHost, "src"),
		hook(c, "to taps", Verdict{Target: TrieHost.Root}),
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

func forwardRules(b Bridge) []Rule {
	c, own := ChainForward, b.Name+": "
	// A bridged packet's output device is always the bridge, while its
	// input device is the VLAN device on top of it for tagged frames: one
	// jump on -o catches every bridged packet of the bridge.
	rs := []Rule{
		{Chain: c, OutIface: b.Name, Physdev: Physdev{Present: true, IsBridged: true}, Comment: own + "bridged", Verdict: Verdict{Target: BridgeChain(b.Name)}},
	}
	if !b.AllowRouting {
		rs = append(rs,
			Rule{Chain: c, InIface: b.Name, Comment: own + "no inter-bridge routing", Verdict: Verdict{Target: "DROP"}},
			Rule{Chain: c, OutIface: b.Name, Comment: own + "no inter-bridge routing", Verdict: Verdict{Target: "DROP"}})
	}
	return rs
}

// unmanagedRules are the bridge's rules for packets of ports that no trie
// leaf matched, in FORWARD (out = the bridge) and INPUT (in = the bridge):
// DROP for ports named like its taps when the bridge fails closed, an
// explicit RETURN otherwise, so the choice shows in the ruleset.
func unmanagedRules(b Bridge) []Rule {
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
func DispatchComment(t Tap) string {
	return fmt.Sprintf("%s: dispatch net=%s cid=%s if=%s", t.Name, dash(t.Network), dash(t.ContainerID), dash(t.IfName))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Attachment is what a dispatch comment records.
type Attachment struct {
	Tap, Network, ContainerID, IfName string
}

// ParseDispatchComment reads back what DispatchComment wrote.
func ParseDispatchComment(c string) (Attachment, bool) {
	f := strings.Fields(c)
	if len(f) != 5 || f[1] != "dispatch" || !strings.HasSuffix(f[0], ":") {
		return Attachment{}, false
	}
	a := Attachment{Tap: strings.TrimSuffix(f[0], ":")}
	for _, kv := range f[2:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Attachment{}, false
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
			return Attachment{}, false
		}
	}
	return a, true
}

// dispatchPaths are the tap's leaves in the tries: by bridge port in (it
// also records who attached the tap), by bridge port out, and by each of
// its addresses for traffic from the host.
func dispatchPaths(t Tap) []Path {
	own := t.Name + ": "
	ps := []Path{
		TrieIn.PathFor(t.Name, TapOut(t.Name), DispatchComment(t)),
		TrieOut.PathFor(t.Name, TapIn(t.Name), own+"dispatch out"),
	}
	for _, ip := range sortedPrefixes(t.IPs) {
		ps = append(ps, TrieHost.PathFor(IPKey(ip), TapIn(t.Name), own+"from host "+ip.String()))
	}
	return ps
}

// tapOut is the chain for packets from the VM. Allowed packets RETURN so
// that the IN chain of the receiving tap still runs.
func tapOut(t Tap) (Chain, error) {
	c := TapOut(t.Name)
	own := t.Name + ": "
	rs := []Rule{{Chain: c, CtState: "INVALID", Comment: own + "invalid", Verdict: Verdict{Target: "DROP"}}}
	if t.MACFilter {
		rs = append(rs, Rule{Chain: c, MACSource: t.MAC.String(), MACNegate: true, Comment: own + "mac anti-spoof", Verdict: Verdict{Target: "DROP"}})
	}
	rs = append(rs, Rule{Chain: c, Proto: "udp", SPort: "67", DPort: "68", Comment: own + "no dhcp server", Verdict: Verdict{Target: "DROP"}})
	if t.DHCP {
		// A client without an address asks from 0.0.0.0 to the broadcast
		// address: that, and only that, passes before the IP check.
		rs = append(rs, Rule{Chain: c, Src: anyAddr, Dst: broadcast, Proto: "udp", SPort: "68", DPort: "67", Comment: own + "dhcp discover", Verdict: Verdict{Target: "RETURN"}})
	}
	if t.IPFilter {
		rs = append(rs, Rule{Chain: c, SetSrc: TapSet(t.Name), SetSrcNeg: true, Comment: own + "ip anti-spoof", Verdict: Verdict{Target: "DROP"}})
	}
	if t.DHCP {
		// Renewals come from the guest's own address.
		rs = append(rs, Rule{Chain: c, Proto: "udp", SPort: "68", DPort: "67", Comment: own + "dhcp renew", Verdict: Verdict{Target: "RETURN"}})
	}
	rs = append(rs, Rule{Chain: c, CtState: "RELATED,ESTABLISHED", Comment: own + "established", Verdict: Verdict{Target: "ACCEPT"}})
	cx := chainCtx{chain: c, owner: t.Name, logName: t.Name, dir: "out", allow: "RETURN", limit: t.LogLimit}
	user, err := cx.userRules(t.Out)
	if err != nil {
		return Chain{}, err
	}
	rs = append(rs, user...)
	rs = append(rs, cx.policy(t.PolicyOut, t.LogDropped)...)
	return Chain{Name: c, Rules: rs}, nil
}

// tapIn is the chain for packets to the VM. Allowed packets are ACCEPTed.
func tapIn(t Tap) (Chain, error) {
	c := TapIn(t.Name)
	own := t.Name + ": "
	rs := []Rule{
		{Chain: c, CtState: "INVALID", Comment: own + "invalid", Verdict: Verdict{Target: "DROP"}},
		{Chain: c, CtState: "RELATED,ESTABLISHED", Comment: own + "established", Verdict: Verdict{Target: "ACCEPT"}},
	}
	cx := chainCtx{chain: c, owner: t.Name, logName: t.Name, dir: "in", allow: "ACCEPT", limit: t.LogLimit}
	user, err := cx.userRules(t.In)
	if err != nil {
		return Chain{}, err
	}
	rs = append(rs, user...)
	rs = append(rs, cx.policy(t.PolicyIn, t.LogDropped)...)
	return Chain{Name: c, Rules: rs}, nil
}

func hostChains(h *Host, logDropped bool, limit string) (Chain, Chain, error) {
	var chains [2]Chain
	for i, d := range []struct {
		chain, dir string
		rules      []UserRule
		cluster    Rule
	}{
		{ChainHostIn, "in", h.In, Rule{SetSrc: SetCluster}},
		{ChainHostOut, "out", h.Out, Rule{SetDst: SetCluster}},
	} {
		cx := chainCtx{chain: d.chain, owner: OwnerHost, logName: "host", dir: d.dir, allow: "RETURN", limit: limit}
		cluster := d.cluster
		cluster.Chain, cluster.Comment, cluster.Verdict = d.chain, OwnerHost+": cluster hosts", Verdict{Target: "RETURN"}
		user, err := cx.userRules(d.rules)
		if err != nil {
			return Chain{}, Chain{}, fmt.Errorf("host.%w", err)
		}
		rs := append([]Rule{cluster}, user...)
		chains[i] = Chain{Name: d.chain, Rules: append(rs, cx.policy(Drop, logDropped)...)}
	}
	return chains[0], chains[1], nil
}

// LogPrefix is the LOG prefix for owner, direction and what ("drop", "rej"
// or "r<N>" for user rule N): "tfw:tap110i0:out:drop ". At most 29
// characters, as the kernel allows.
func LogPrefix(owner, dir, what string) string {
	return "tfw:" + owner + ":" + dir + ":" + what + " "
}

// chainCtx is what the rules of one direction of one owner share.
type chainCtx struct {
	chain   string
	owner   string // the comment's owner: a tap name or OwnerHost
	logName string // the name in LOG prefixes
	dir     string // in or out
	allow   string // the target of an allowed packet: ACCEPT or RETURN
	limit   string // LOG rate
}

func (cx chainCtx) logRule(what, comment string) Rule {
	return Rule{Chain: cx.chain, Limit: cx.limit, Comment: comment, Verdict: Verdict{Target: "LOG", LogPrefix: LogPrefix(cx.logName, cx.dir, what)}}
}

func (cx chainCtx) policy(a Action, logDropped bool) []Rule {
	own := cx.owner + ": "
	var rs []Rule
	switch a {
	case Accept:
		return []Rule{{Chain: cx.chain, Comment: own + "policy accept", Verdict: Verdict{Target: cx.allow}}}
	case Reject:
		if logDropped {
			rs = append(rs, cx.logRule("rej", own+"log policy"))
		}
		return append(rs, Rule{Chain: cx.chain, Comment: own + "policy reject", Verdict: Verdict{Target: "REJECT"}})
	default:
		if logDropped {
			rs = append(rs, cx.logRule("drop", own+"log policy"))
		}
		return append(rs, Rule{Chain: cx.chain, Comment: own + "policy drop", Verdict: Verdict{Target: "DROP"}})
	}
}

func (cx chainCtx) userRules(us []UserRule) ([]Rule, error) {
	var rs []Rule
	for i, u := range us {
		n := i + 1
		comment := fmt.Sprintf("%s: %s rule %d", cx.owner, cx.dir, n)
		if u.Comment != "" {
			if err := ValidateComment(u.Comment); err != nil {
				return nil, fmt.Errorf("rules.%s[%d].comment: %w", cx.dir, i, err)
			}
			comment += " " + u.Comment
		}
		r := Rule{Chain: cx.chain, Proto: u.Proto, Comment: comment, ICMPType: u.ICMPType}
		if u.Source.Set != "" {
			r.SetSrc = UserSet(u.Source.Set)
		} else {
			r.Src = u.Source.Prefix
		}
		if u.Dest.Set != "" {
			r.SetDst = UserSet(u.Dest.Set)
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
		case Accept:
			r.Verdict = Verdict{Target: cx.allow}
		case Reject:
			r.Verdict = Verdict{Target: "REJECT"}
			if u.Proto == "tcp" {
				r.Verdict.RejectWith = "tcp-reset"
			}
		case Drop:
			r.Verdict = Verdict{Target: "DROP"}
		default:
			return nil, fmt.Errorf("rules.%s[%d].action: unknown action %q", cx.dir, i, u.Action)
		}
		if u.Log {
			l := r
			l.Limit = cx.limit
			l.Verdict = Verdict{Target: "LOG", LogPrefix: LogPrefix(cx.logName, cx.dir, fmt.Sprintf("r%d", n))}
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
