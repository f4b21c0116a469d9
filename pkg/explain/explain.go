// Package explain answers "which rule decides this packet?": it walks one
// packet through an installed iptables or ip6tables filter table, as the
// kernel would, and reports the rules the packet crossed and the one that
// gave its verdict.
//
// It is pure: the table comes from iptables-save output, the ipsets'
// contents from the caller, and nothing touches the kernel. The matches and
// targets tapfw writes are simulated exactly as the kernel evaluates them
// (physdev, conntrack, set, mac, tcp, udp, multiport, icmp, icmp6, -s/-d with
// any mask, -i/-o with '+' wildcards, negations, jumps, gotos and RETURN).
// What it cannot know (a match it does not simulate, a packet property the
// caller left unset) it does not guess silently: the rule is assumed not to
// match and the reason is listed in Result.Uncertain.
package explain

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/netfilter"
)

// Verdicts a packet can get.
const (
	Accept = "ACCEPT"
	Drop   = "DROP"
	Reject = "REJECT"
)

// What a step did, as in Step.What.
const (
	// WhatJump: the rule matched and its -j sent the packet to a chain; a
	// RETURN comes back to the rule after it.
	WhatJump = "matched, jump"
	// WhatGoto: the rule matched and its -g sent the packet to a chain; a
	// RETURN from there goes back to whoever called this rule's chain.
	WhatGoto = "matched, goto"
	// WhatReturn: the rule matched and its target is RETURN.
	WhatReturn = "matched, return"
	// WhatLog: the rule matched and its target is LOG; the packet goes on.
	WhatLog = "matched, log"
	// WhatMark: the rule matched and its target is MARK: the packet's mark
	// changes and it goes on.
	WhatMark = "matched, mark"
	// WhatNFLog: the rule matched and its target is NFLOG; the packet goes on.
	WhatNFLog = "matched, nflog"
	// WhatVerdict: the rule matched and its target (ACCEPT, DROP or REJECT)
	// ended the walk.
	WhatVerdict = "matched, verdict"
	// WhatNoTarget: the rule matched but has no target (a counter); the
	// packet goes on.
	WhatNoTarget = "matched, no target"
	// WhatUnknownTarget: the rule matched but its target is not simulated;
	// the packet is assumed to go on (see Result.Uncertain).
	WhatUnknownTarget = "matched, unknown target, assumed to continue"
	// WhatUnknown: the rule could match, but one of its matches cannot be
	// evaluated; it is assumed not to match (see Result.Uncertain).
	WhatUnknown = "unknown match, assumed no match"
	// WhatEnd: the packet ran off the end of a user chain: an implicit
	// RETURN.
	WhatEnd = "end of chain, return"
	// WhatPolicy: the built-in chain's policy gave the verdict.
	WhatPolicy = "policy"
)

// Packet is the packet to explain, as the filter table's hook sees it.
type Packet struct {
	Family int    // 4 or 6
	Hook   string // FORWARD, INPUT or OUTPUT
	// InIface and OutIface are the devices the hook sees: for a bridged
	// packet both are the bridge (e.g. vmbr0). INPUT has no OutIface,
	// OUTPUT no InIface.
	InIface, OutIface string
	// PhysIn and PhysOut are the bridge ports (e.g. tap110i0) of a packet
	// that came in or goes out through a bridge; empty otherwise. PhysIn
	// can be set in INPUT and FORWARD, PhysOut only for a bridged packet.
	PhysIn, PhysOut string
	// Bridged is a packet the bridge forwards from port to port (FORWARD,
	// both PhysIn and PhysOut set): what --physdev-is-bridged tests.
	Bridged bool
	// SrcMAC is the Ethernet source of a received packet; nil when not
	// known (a -m mac rule is then uncertain).
	SrcMAC   net.HardwareAddr
	Src, Dst netip.Addr
	// Proto is tcp, udp, icmp, ipv6-icmp (or icmpv6), another name from
	// /etc/protocols, or a number.
	Proto        string
	SPort, DPort uint16
	// ICMPType and ICMPCode of an icmp or ipv6-icmp packet; -1 is unset
	// (an icmp type match is then uncertain).
	ICMPType, ICMPCode int
	// CtState is the packet's conntrack state: NEW (the default when
	// empty), ESTABLISHED, RELATED, INVALID or UNTRACKED.
	CtState string
	// Mark is the packet's mark when it reaches the hook (0: none).
	Mark uint32
	// HopLimit is an IPv6 packet's hop limit, or an IPv4 packet's TTL;
	// 0 is unknown.
	HopLimit int
	// LocalTable is the host's local routing table (table local), where
	// addrtype and fib look an address's type up: each of its addresses
	// with its route type, "local" or "broadcast" (ReadLocalTable). nil
	// when not read: a match on the type of an address other than
	// 0.0.0.0, 255.255.255.255 or a multicast one is then uncertain.
	LocalTable map[netip.Addr]string `json:"-"`
}

// Step is one rule the packet crossed, or an implicit return or a policy.
type Step struct {
	Chain string
	// Index is the rule's 1-based number in Chain; 0 for a step that is
	// not a rule (WhatEnd, WhatPolicy).
	Index   int
	Spec    string // the rule as iptables-save prints it, without "-A CHAIN"
	Comment string // the rule's comment, unquoted
	What    string // one of the What* constants
	// Target is the rule's target or chain (after -j or -g); for a
	// WhatPolicy step the policy, for WhatEnd the chain returned to.
	Target string
	// Detail is the LOG or NFLOG prefix, or REJECT's --reject-with.
	Detail string
	// Notes are assumptions made on this rule (e.g. a limit assumed to
	// match).
	Notes []string
}

// Result is the walk of one packet through the table.
type Result struct {
	Verdict string // ACCEPT, DROP or REJECT
	// RejectWith is REJECT's --reject-with, when the verdict is REJECT.
	RejectWith string
	// Decisive is the rule that gave the verdict; nil when it was the
	// policy of a built-in chain (the last step then says so).
	Decisive *Step
	// Steps are the rules the packet matched, in order, with the implicit
	// returns and the policy that were taken.
	Steps []Step
	// Uncertain lists what could not be evaluated on rules that could
	// have mattered; empty when the answer is exact.
	Uncertain []string
	// Checks counts, per chain, the rules the packet was checked against
	// (matched or not): what the walk cost the kernel. It is not part of
	// the operator's --json output.
	Checks map[string]int `json:"-"`
}

// maxEvaluations bounds a walk; a table the kernel accepts has no loops.
const maxEvaluations = 1 << 20

// Explain walks p through the table t (its policies included), starting at the built-in chain p.Hook, with
// sets giving the contents of the ipsets the rules name (a set missing
// from it makes its rules uncertain). It fails on a malformed packet or on
// a rule it cannot parse.
func Explain(t *netfilter.Table, sets map[string][]netip.Prefix, p Packet) (Result, error) {
	if t == nil {
		return Result{}, fmt.Errorf("explain: no table")
	}
	pk, err := p.normalize()
	if err != nil {
		return Result{}, fmt.Errorf("explain: %w", err)
	}
	w := walker{t: t, env: &env{p: pk.Packet, proto: pk.proto, sets: sets, mark: pk.Mark}, compiled: map[string][]*rule{},
		res: Result{Checks: map[string]int{}}}
	return w.run()
}

// packet is a validated Packet with its protocol number.
type packet struct {
	Packet
	proto int
}

var ctStates = map[string]bool{"NEW": true, "ESTABLISHED": true, "RELATED": true, "INVALID": true, "UNTRACKED": true}

// normalize checks that p is a packet the hook can see, and fills in the
// defaults.
func (p Packet) normalize() (packet, error) {
	if p.Family != 4 && p.Family != 6 {
		return packet{}, fmt.Errorf("family %d: want 4 or 6", p.Family)
	}
	if !netfilter.Builtin(p.Hook) {
		return packet{}, fmt.Errorf("hook %q: want FORWARD, INPUT or OUTPUT", p.Hook)
	}
	var err error
	if p.Src, err = familyAddr(p.Src, p.Family, "source"); err != nil {
		return packet{}, err
	}
	if p.Dst, err = familyAddr(p.Dst, p.Family, "destination"); err != nil {
		return packet{}, err
	}
	if p.Proto == "" {
		return packet{}, fmt.Errorf("protocol: missing")
	}
	if p.Family == 6 && strings.EqualFold(p.Proto, "icmp") {
		// ip6tables' "-p icmp" is protocol 1, which no one sends over
		// IPv6: the caller surely means ICMPv6.
		return packet{}, fmt.Errorf(`protocol "icmp" is protocol 1, not ICMPv6: use ipv6-icmp`)
	}
	proto, err := protoNumber(p.Proto)
	if err != nil {
		return packet{}, fmt.Errorf("protocol: %w", err)
	}
	if p.CtState == "" {
		p.CtState = "NEW"
	}
	p.CtState = strings.ToUpper(p.CtState)
	if !ctStates[p.CtState] {
		return packet{}, fmt.Errorf("conntrack state %q: want NEW, ESTABLISHED, RELATED, INVALID or UNTRACKED", p.CtState)
	}
	if p.ICMPType < -1 || p.ICMPType > 255 || p.ICMPCode < -1 || p.ICMPCode > 255 {
		return packet{}, fmt.Errorf("icmp type %d code %d: want -1 (unset) or 0-255", p.ICMPType, p.ICMPCode)
	}
	switch p.Hook {
	case "FORWARD":
		if p.InIface == "" || p.OutIface == "" {
			return packet{}, fmt.Errorf("a FORWARD packet needs both an in and an out interface")
		}
	case "INPUT":
		if p.InIface == "" || p.OutIface != "" {
			return packet{}, fmt.Errorf("an INPUT packet has an in interface and no out interface")
		}
	case "OUTPUT":
		if p.InIface != "" || p.OutIface == "" {
			return packet{}, fmt.Errorf("an OUTPUT packet has an out interface and no in interface")
		}
		if p.PhysIn != "" || p.PhysOut != "" || p.Bridged {
			return packet{}, fmt.Errorf("an OUTPUT packet has no bridge ports yet (the bridge comes after OUTPUT)")
		}
	}
	if p.Bridged != (p.PhysOut != "") {
		return packet{}, fmt.Errorf("a bridged packet, and only a bridged one, has a PhysOut")
	}
	if p.Bridged && (p.Hook != "FORWARD" || p.PhysIn == "") {
		return packet{}, fmt.Errorf("a bridged packet is seen in FORWARD, with both PhysIn and PhysOut")
	}
	return packet{Packet: p, proto: proto}, nil
}

// familyAddr checks that a is an address of the family.
func familyAddr(a netip.Addr, family int, what string) (netip.Addr, error) {
	if !a.IsValid() {
		return a, fmt.Errorf("%s address: missing", what)
	}
	if family == 4 {
		a = a.Unmap()
		if !a.Is4() {
			return a, fmt.Errorf("%s address %s: not IPv4", what, a)
		}
		return a, nil
	}
	if !a.Is6() {
		return a, fmt.Errorf("%s address %s: not IPv6", what, a)
	}
	return a, nil
}

// protoNumber turns a protocol name or number into its number; "all" is 0.
func protoNumber(s string) (int, error) {
	switch strings.ToLower(s) {
	case "all":
		return 0, nil
	case "tcp":
		return 6, nil
	case "udp":
		return 17, nil
	case "icmp":
		return 1, nil
	case "icmpv6", "ipv6-icmp":
		return 58, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 255 {
			return 0, fmt.Errorf("%q: out of range", s)
		}
		return n, nil
	}
	// netfilter.Normalize knows the names of /etc/protocols.
	if n, ok := strings.CutPrefix(netfilter.Normalize("-p "+strings.ToLower(s)), "-p "); ok {
		if v, err := strconv.Atoi(n); err == nil {
			return v, nil
		}
	}
	return 0, fmt.Errorf("unknown protocol %q", s)
}

// frame is a return address: the rule after a -j.
type frame struct {
	chain string
	next  int // 0-based index of the rule to continue with
}

// walker is one walk of a packet through a ruleset.
type walker struct {
	t        *netfilter.Table
	env      *env
	compiled map[string][]*rule // the rules compiled so far, by chain
	res      Result
	seen     map[string]bool // the entries of res.Uncertain

	// Where the packet is: rule i (0-based) of chain, with the return
	// addresses of the jumps that led there.
	chain string
	i     int
	stack []frame
	// entered holds each chain entered, with the return addresses then on
	// the stack: the walk is deterministic, so entering the same chain
	// with the same stack again is a loop (of gotos: jumps in a loop are
	// caught by onStack).
	entered map[string]bool
}

// rule returns the compiled rule i (0-based) of chain.
func (w *walker) rule(chain string, i int) (*rule, error) {
	specs := w.t.Chains[chain]
	c, ok := w.compiled[chain]
	if !ok {
		c = make([]*rule, len(specs))
		w.compiled[chain] = c
	}
	if c[i] == nil {
		r, err := compile(specs[i], w.env.p.Family)
		if err != nil {
			return nil, fmt.Errorf("explain: %s rule %d: %w", chain, i+1, err)
		}
		c[i] = r
	}
	return c[i], nil
}

// uncertain adds msg to Result.Uncertain, once.
func (w *walker) uncertain(msg string) {
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	if !w.seen[msg] {
		w.seen[msg] = true
		w.res.Uncertain = append(w.res.Uncertain, msg)
	}
}

// policy ends the walk with the hook's policy; it returns true, the walk
// being done.
func (w *walker) policy() bool {
	hook := w.env.p.Hook
	pol := w.t.Policies[hook]
	if pol == "" {
		pol = Accept
	}
	w.res.Steps = append(w.res.Steps, Step{Chain: hook, What: WhatPolicy, Target: pol})
	w.res.Verdict = pol
	return true
}

// run is ipt_do_table: a -j pushes a return address, a -g does not, a
// RETURN (or the end of a user chain) pops one, and with none left the
// hook's policy decides.
func (w *walker) run() (Result, error) {
	w.chain, w.i = w.env.p.Hook, 0
	w.entered = map[string]bool{}
	for n := 0; ; n++ {
		if n > maxEvaluations {
			return Result{}, fmt.Errorf("explain: more than %d rules evaluated: a loop?", maxEvaluations)
		}
		done, err := w.step()
		if err != nil {
			return Result{}, err
		}
		if done {
			return w.res, nil
		}
	}
}

// step takes the packet through the next rule of its chain, or off the
// chain's end; it reports whether the walk is done (w.res holds the
// verdict).
func (w *walker) step() (bool, error) {
	if w.i >= len(w.t.Chains[w.chain]) {
		return w.endOfChain(), nil
	}
	r, err := w.rule(w.chain, w.i)
	if err != nil {
		return false, err
	}
	w.res.Checks[w.chain]++
	out := r.eval(w.env)
	step := Step{Chain: w.chain, Index: w.i + 1, Spec: r.spec, Comment: r.comment, Target: r.target, Notes: out.notes}
	w.i++
	switch out.v {
	case no:
		return false, nil
	case unknown:
		w.unknownMatch(r, step, out.why)
		return false, nil
	}
	return w.target(r, step)
}

// endOfChain is the packet running off the end of its chain: a built-in
// chain's policy decides; a user chain returns to the rule after the jump
// that led there, or with no jump left, to the hook's policy.
func (w *walker) endOfChain() bool {
	if netfilter.Builtin(w.chain) {
		return w.policy()
	}
	s := Step{Chain: w.chain, What: WhatEnd, Target: w.env.p.Hook}
	if len(w.stack) > 0 {
		s.Target = w.stack[len(w.stack)-1].chain
	}
	w.res.Steps = append(w.res.Steps, s)
	if !w.ret() {
		return w.policy()
	}
	return false
}

// ret pops a return address; false when there is none.
func (w *walker) ret() bool {
	if len(w.stack) == 0 {
		return false
	}
	f := w.stack[len(w.stack)-1]
	w.stack = w.stack[:len(w.stack)-1]
	w.chain, w.i = f.chain, f.next
	return true
}

// unknownMatch records rule r, whose matches cannot all be evaluated, as
// assumed not to match, with why (one entry each) in Result.Uncertain and
// what would follow if it did match.
func (w *walker) unknownMatch(r *rule, step Step, why []string) {
	step.What = WhatUnknown
	w.res.Steps = append(w.res.Steps, step)
	for _, y := range why {
		msg := fmt.Sprintf("%s rule %d: %s; assumed not to match", step.Chain, step.Index, y)
		switch {
		case r.harmless():
			msg += " (it only logs or counts: the verdict does not depend on it)"
		case r.isGoto:
			msg += " (if it does: -g " + r.target + ")"
		default:
			msg += " (if it does: -j " + r.target + ")"
		}
		w.uncertain(msg)
	}
}

// target carries out the target of the matched rule r, step being its
// step; it reports whether the walk is done.
func (w *walker) target(r *rule, step Step) (bool, error) {
	switch t := r.target; {
	case t == "":
		step.What = WhatNoTarget
	case t == Accept || t == Drop || t == Reject:
		w.verdict(r, step)
		return true, nil
	case t == "RETURN":
		step.What = WhatReturn
		w.res.Steps = append(w.res.Steps, step)
		if netfilter.Builtin(step.Chain) || !w.ret() {
			return w.policy(), nil
		}
		return false, nil
	case t == "MARK":
		// xt_MARK: mark = (mark & ~mask) ^ value.
		w.env.mark = w.env.mark&^r.xmark[1] ^ r.xmark[0]
		step.What, step.Detail = WhatMark, fmt.Sprintf("mark now %#x", w.env.mark)
	case t == "LOG":
		step.What, step.Detail = WhatLog, r.logPrefix
	case t == "NFLOG":
		step.What, step.Detail = WhatNFLog, r.logPrefix
	case w.t.Has(t):
		return false, w.enter(r, step)
	case r.isGoto:
		return false, fmt.Errorf("explain: %s rule %d: goto to missing chain %s", step.Chain, step.Index, t)
	default:
		step.What = WhatUnknownTarget
		w.uncertain(fmt.Sprintf("%s rule %d: target %s is not simulated; assumed to let the packet go on", step.Chain, step.Index, t))
	}
	w.res.Steps = append(w.res.Steps, step)
	return false, nil
}

// verdict ends the walk with the ACCEPT, DROP or REJECT of rule r.
func (w *walker) verdict(r *rule, step Step) {
	step.What = WhatVerdict
	if r.target == Reject {
		step.Detail = r.rejectWith
		w.res.RejectWith = r.rejectWith
	}
	w.res.Steps = append(w.res.Steps, step)
	d := step
	w.res.Decisive = &d
	w.res.Verdict = r.target
}

// enter takes the packet into the user chain that rule r jumps or goes to;
// a jump pushes the return address (the rule after r). It refuses a jump
// to a built-in chain and a loop.
func (w *walker) enter(r *rule, step Step) error {
	t := r.target
	if netfilter.Builtin(t) {
		return fmt.Errorf("explain: %s rule %d: jump to built-in chain %s", step.Chain, step.Index, t)
	}
	if r.isGoto {
		step.What = WhatGoto
	} else {
		step.What = WhatJump
		if onStack(w.stack, step.Chain, t) {
			return fmt.Errorf("explain: %s rule %d: loop through chain %s", step.Chain, step.Index, t)
		}
		w.stack = append(w.stack, frame{chain: step.Chain, next: w.i})
	}
	w.res.Steps = append(w.res.Steps, step)
	key := fmt.Sprint(t, w.stack)
	if w.entered[key] {
		return fmt.Errorf("explain: %s rule %d: loop through chain %s", step.Chain, step.Index, t)
	}
	w.entered[key] = true
	w.chain, w.i = t, 0
	return nil
}

// onStack reports whether a jump to target from chain loops: the kernel
// refuses such tables, but the ruleset may not come from the kernel.
func onStack(stack []frame, chain, target string) bool {
	if chain == target {
		return true
	}
	for _, f := range stack {
		if f.chain == target {
			return true
		}
	}
	return false
}
