package explain

// ExplainNFT walks a packet through an nftables ruleset (nft.Listing, as
// `nft -j list ruleset` prints it): every base chain of every table, tapfw's
// and others', that the packet meets on its way, as the kernel runs them.
//
// The packet's path (net/bridge/br_netfilter_hooks.c: br_nf_pre_routing
// is hooked at bridge prerouting NF_BR_PRI_BRNF = 0, br_nf_forward at
// bridge forward NF_BR_PRI_BRNF - 1 = -1, br_nf_post_routing at bridge
// postrouting NF_BR_PRI_LAST; ip_sabotage_in keeps the IP prerouting
// hooks from running twice for a frame passed up to the host):
//
//   - bridged (FORWARD, PhysIn and PhysOut): bridge prerouting chains of
//     priority < 0 (iifname the port), then br_netfilter runs the IP
//     prerouting chains (inet and ip or ip6 tables; iifname the bridge),
//     then bridge prerouting >= 0; bridge forward < -1 (iifname and
//     oifname the ports), then the IP forward chains (the bridge both
//     ways), then bridge forward >= -1; bridge postrouting (no iifname,
//     oifname the port), then the IP postrouting chains (oifname the
//     bridge).
//   - to the host (INPUT with PhysIn): bridge prerouting as above,
//     bridge input (iifname the port), IP input (iifname the bridge).
//   - from the host (OUTPUT): IP output and IP postrouting (oifname the
//     bridge), then, when PhysOut names the port the bridge sends it out
//     of, bridge output and bridge postrouting (no iifname, oifname the
//     port). ExplainNFT takes PhysOut on OUTPUT; Explain (iptables) does
//     not, iptables never seeing the port.
//   - routed (FORWARD, not bridged): bridge prerouting and input when it
//     came in by a port, IP prerouting, IP forward, IP postrouting.
//
// A chain whose priority equals br_netfilter's (0 at bridge prerouting,
// -1 at bridge forward) is taken to run after it; nat chains run only
// for a NEW packet. Within a hook the chains run by priority, those of
// equal priority in listing order (the order they were made in).
//
// An accept ends the base chain it is given in (the packet goes on to the
// next base chain); a drop or reject ends the packet. jump, goto, return,
// verdict maps, named and anonymous sets (concatenations, intervals,
// prefixes, ranges), != lookups, ct state (Packet.CtState, in the IP
// families; the bridge family's ct is not simulated), meta mark tests and
// meta mark set (the mark carries over from chain to chain, starting at
// Packet.Mark), meta protocol, nfproto, l4proto, iifname, oifname and
// iiftype (every device is taken to be Ethernet; a packet without an input
// device has no iiftype, which fails the rule), ether saddr and type, the
// IP addresses, protocol and TTL or hop limit, TCP and UDP ports, ICMP and
// ICMPv6 type and code, limit (assumed to match, noted), log, counter and
// reject are simulated. Anything else, and a header field the Packet
// does not carry (the neighbour discovery target @th,64,128), makes its
// rule uncertain: assumed not to match, listed in Result.Uncertain.

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/nft"
)

// stage is one hook on the packet's path: the family's base chains of
// priority in [lo, hi), and the devices they see.
type stage struct {
	family  string // "bridge", or "ip" for the IP families (inet and ip or ip6)
	hook    string
	lo, hi  int
	in, out string
}

const (
	prioMin = math.MinInt
	prioMax = math.MaxInt
)

// nftPath is the stages a packet meets, in order.
func nftPath(p Packet) []stage {
	var st []stage
	if p.Hook == "OUTPUT" {
		st = append(st, stage{"ip", "output", prioMin, prioMax, "", p.OutIface}, stage{"ip", "postrouting", prioMin, prioMax, "", p.OutIface})
		if p.PhysOut != "" {
			st = append(st, stage{"bridge", "output", prioMin, prioMax, "", p.PhysOut}, stage{"bridge", "postrouting", prioMin, prioMax, "", p.PhysOut})
		}
		return st
	}
	if p.PhysIn != "" {
		st = append(st, stage{"bridge", "prerouting", prioMin, 0, p.PhysIn, ""})
	}
	st = append(st, stage{"ip", "prerouting", prioMin, prioMax, p.InIface, ""})
	if p.PhysIn != "" {
		st = append(st, stage{"bridge", "prerouting", 0, prioMax, p.PhysIn, ""})
	}
	switch {
	case p.Bridged:
		return append(st,
			stage{"bridge", "forward", prioMin, -1, p.PhysIn, p.PhysOut},
			stage{"ip", "forward", prioMin, prioMax, p.InIface, p.OutIface},
			stage{"bridge", "forward", -1, prioMax, p.PhysIn, p.PhysOut},
			stage{"bridge", "postrouting", prioMin, prioMax, "", p.PhysOut},
			stage{"ip", "postrouting", prioMin, prioMax, "", p.OutIface})
	case p.PhysIn != "":
		st = append(st, stage{"bridge", "input", prioMin, prioMax, p.PhysIn, ""})
	}
	if p.Hook == "INPUT" {
		return append(st, stage{"ip", "input", prioMin, prioMax, p.InIface, ""})
	}
	return append(st, stage{"ip", "forward", prioMin, prioMax, p.InIface, p.OutIface}, stage{"ip", "postrouting", prioMin, prioMax, "", p.OutIface})
}

// chains are the base chains of the stage, in the order they run.
func (s stage) chains(l *nft.Listing, p Packet) []*nft.ChainInfo {
	var out []*nft.ChainInfo
	fams := map[string]bool{"bridge": s.family == "bridge"}
	if s.family == "ip" {
		fams["inet"] = true
		fams[map[int]string{4: "ip", 6: "ip6"}[p.Family]] = true
	}
	for _, c := range l.Chains {
		if !fams[c.Family] || c.Hook != s.hook || c.Priority < s.lo || c.Priority >= s.hi {
			continue
		}
		if c.Type == "nat" && p.CtState != "NEW" {
			continue
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Priority < out[j].Priority })
	return out
}

// nframe is a return address: the rule after a jump.
type nframe struct {
	chain *nft.ChainInfo
	next  int
}

// nwalker is one walk of a packet through an nftables ruleset.
type nwalker struct {
	l     *nft.Listing
	p     Packet
	proto int
	mark  uint32
	at    stage
	res   Result
	seen  map[string]bool

	// Where the packet is: rule i of chain (family table), with the
	// return addresses of the jumps that led there.
	family, table string
	chain         *nft.ChainInfo
	i             int
	stack         []nframe
	base0         *nft.ChainInfo // the base chain being run
	accepted      *Step          // the last accept given
	// The last rule that set mark bits, and those bits: a later drop or
	// reject that tests them carries out that rule's decision.
	marker   *Step
	markBits uint32
}

// ExplainNFT walks p through the ruleset l (see the comment at the top of
// this file for the path and what is simulated). It fails on a malformed
// packet or a ruleset that loops or jumps to a missing chain.
func ExplainNFT(l *nft.Listing, p Packet) (Result, error) {
	if l == nil {
		return Result{}, fmt.Errorf("explain: no ruleset")
	}
	// The bridge port a host's packet leaves by is after iptables'
	// OUTPUT, which normalize checks, but nftables' bridge output sees it.
	physOut := ""
	if p.Hook == "OUTPUT" {
		physOut, p.PhysOut = p.PhysOut, ""
	}
	pk, err := p.normalize()
	if err != nil {
		return Result{}, fmt.Errorf("explain: %w", err)
	}
	if p.Hook == "OUTPUT" {
		pk.PhysOut = physOut
	}
	w := &nwalker{l: l, p: pk.Packet, proto: pk.proto, mark: pk.Mark, res: Result{Checks: map[string]int{}}}
	for _, st := range nftPath(w.p) {
		w.at = st
		for _, c := range st.chains(l, w.p) {
			dropped, err := w.base(c)
			if err != nil {
				return Result{}, err
			}
			if dropped {
				return w.res, nil
			}
		}
	}
	w.res.Verdict = Accept
	if w.accepted != nil {
		d := *w.accepted
		w.res.Decisive = &d
	}
	return w.res, nil
}

// chainName is how a step names a chain: "bridge tapfw tfw-fwd".
func chainName(c *nft.ChainInfo) string { return c.Family + " " + c.Table + " " + c.Name }

// base runs the base chain c; it reports whether the packet was dropped.
func (w *nwalker) base(c *nft.ChainInfo) (bool, error) {
	w.family, w.table, w.chain, w.base0, w.i, w.stack = c.Family, c.Table, c, c, 0, nil
	entered := map[string]bool{}
	for n := 0; ; n++ {
		if n > maxEvaluations {
			return false, fmt.Errorf("explain: more than %d rules evaluated: a loop?", maxEvaluations)
		}
		done, dropped, err := w.step(entered)
		if err != nil || done {
			return dropped, err
		}
	}
}

// step takes the packet through the next rule of its chain, or off the
// chain's end; it reports whether the base chain is done, and whether
// the packet was dropped.
func (w *nwalker) step(entered map[string]bool) (done, dropped bool, err error) {
	if w.i >= len(w.chain.Rules) {
		return w.endOfChain()
	}
	r := w.chain.Rules[w.i]
	name := chainName(w.chain)
	w.res.Checks[name]++
	out, act := w.evalRule(r)
	step := Step{Chain: name, Index: w.i + 1, Spec: specOf(r), Comment: r.Comment, Notes: out.notes}
	w.i++
	switch out.v {
	case no:
		return false, false, nil
	case unknown:
		w.unknownRule(r, step, out.why)
		return false, false, nil
	}
	if act.marked != 0 && act.verdict != nil {
		m := step
		w.marker, w.markBits = &m, act.marked
	}
	return w.act(act, step, entered)
}

// specOf is the rule's text without its comment, which the step holds
// apart.
func specOf(r *nft.RuleInfo) string {
	t := r.Text()
	if r.Comment == "" {
		return t
	}
	c := "comment " + strconv.Quote(r.Comment)
	return strings.TrimSpace(strings.TrimSuffix(t, c))
}

// endOfChain is the packet running off the end of its chain: a regular
// chain returns to the rule after the jump that led there; with none
// left, the base chain's policy decides.
func (w *nwalker) endOfChain() (done, dropped bool, err error) {
	if len(w.stack) > 0 || !w.chain.Base() {
		s := Step{Chain: chainName(w.chain), What: WhatEnd, Target: w.baseName()}
		if len(w.stack) > 0 {
			s.Target = chainName(w.stack[len(w.stack)-1].chain)
		}
		w.res.Steps = append(w.res.Steps, s)
		if w.ret() {
			return false, false, nil
		}
	}
	return w.policy()
}

// baseName names the base chain the walk is in.
func (w *nwalker) baseName() string { return chainName(w.base0) }

// policy ends the base chain with its policy.
func (w *nwalker) policy() (done, dropped bool, err error) {
	b := w.base0
	pol := Accept
	if b.Policy == "drop" {
		pol = Drop
	}
	w.res.Steps = append(w.res.Steps, Step{Chain: chainName(b), What: WhatPolicy, Target: pol})
	if pol == Drop {
		w.res.Verdict, w.res.Decisive = Drop, nil
		return true, true, nil
	}
	return true, false, nil
}

// ret pops a return address; false when there is none.
func (w *nwalker) ret() bool {
	if len(w.stack) == 0 {
		return false
	}
	f := w.stack[len(w.stack)-1]
	w.stack = w.stack[:len(w.stack)-1]
	w.chain, w.i = f.chain, f.next
	return true
}
