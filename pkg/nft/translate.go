package nft

import (
	"fmt"
	"golang.org/x/sys/unix"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// A tap's chains are package ruleset's chains, translated rule by rule:
// the rules say the same in both backends, and only their rendering
// differs. What the bridge family cannot do itself comes from the inet
// chains through the mark bits: a conntrack state is a mark test, and a
// REJECT marks the packet for the inet chains to answer.

// chainCtx is what translating one chain needs.
type chainCtx struct {
	fam   Family
	tap   string // the tap whose chain it is, "" for a group's
	dir   string // in or out
	marks Marks
	// tapSet is the ruleset name of the tap's address set, which here is
	// the tap's elements in the shared layer-2 sets.
	tapSet string
	// inet is set for a chain of the inet table (the host firewall),
	// which has conntrack and REJECT of its own; table is that table's
	// family.
	inet  bool
	table string
	// hostSets are the ruleset names of the host and cluster sets.
	hostSet, clusterSet string
	// logMap, when set, is the profile's log map a log rule jumps
	// through to the tap's own log chain.
	logMap string
	// rateSet, when set, is the profile's rate set where a log rule keeps
	// each port's limit.
	rateSet string
}

// ChainRejected is where a REJECT goes once its bit is set: a packet that
// came in by a port is accepted on to the inet chains, which answer it; a
// packet of the host's (or routed to a port) has no input device, and is
// dropped, as nothing after the bridge's output hook can answer it.
const ChainRejected = "tfw-rejected"

func (cx chainCtx) translate(chain string, r ruleset.Rule) ([]Rule, error) {
	if r.Physdev.Present || r.DstMask.IsValid() || !cx.inet && (r.InIface != "" || r.OutIface != "") {
		return nil, fmt.Errorf("rule %q: dispatch matches have no nftables form", r.Comment)
	}
	var out []Rule
	for _, set := range cx.tapSetVariants(r) {
		b := &builder{}
		if err := cx.matches(b, r, set); err != nil {
			return nil, fmt.Errorf("rule %q: %w", r.Comment, err)
		}
		if err := cx.statement(b, r.Verdict); err != nil {
			return nil, fmt.Errorf("rule %q: %w", r.Comment, err)
		}
		out = append(out, b.rule(chain, r.Comment))
	}
	return out, nil
}

// tapSetVariants are the shared sets a rule's match on the tap's own
// addresses becomes: its addresses and its networks are in two sets, so
// a positive match is two rules and a negated one two lookups in one.
func (cx chainCtx) tapSetVariants(r ruleset.Rule) []string {
	pos := (r.SetSrc == cx.tapSet && !r.SetSrcNeg) || (r.SetDst == cx.tapSet && !r.SetDstNeg)
	if cx.tapSet == "" || !pos {
		return []string{""}
	}
	addrs, nets := cx.l2Sets()
	return []string{addrs, nets}
}

func (cx chainCtx) l2Sets() (addrs, nets string) {
	if cx.fam == IPv6 {
		return ruleset.L2IP6, ruleset.L2IP6Net
	}
	return ruleset.L2IP4, ruleset.L2IP4Net
}

func (cx chainCtx) matches(b *builder, r ruleset.Rule, variant string) error {
	switch {
	case needsProtocol(r) && cx.inet:
		b.nfproto(cx.fam)
	case needsProtocol(r):
		b.protocol(cx.fam)
	}
	if err := cx.conntrack(b, r.CtState); err != nil {
		return err
	}
	if r.InIface != "" {
		b.iface("iifname", r.InIface, r.InIfaceNeg)
	}
	if r.OutIface != "" {
		b.iface("oifname", r.OutIface, r.OutIfaceNeg)
	}
	switch {
	case r.MACSource != "" && cx.tap != "" && r.MACNegate:
		// A profile knows no MAC: the layer-2 set has the port's.
		b.macCheck()
	case r.MACSource != "" && cx.tap != "":
		return fmt.Errorf("mac %s: a tap's chain can only refuse other MACs", r.MACSource)
	case r.MACSource != "":
		if err := b.etherSrc(r.MACSource, r.MACNegate); err != nil {
			return err
		}
	}
	if r.Mark != "" {
		if r.Mark != ruleset.GroupMark {
			return fmt.Errorf("mark %q", r.Mark)
		}
		b.markTest(cx.marks.Group)
	}
	b.addr(cx.fam, "saddr", r.Src, r.SrcNeg)
	b.addrRange(cx.fam, "saddr", r.SrcRange)
	b.addr(cx.fam, "daddr", r.Dst, false)
	if r.SrcType != "" {
		if err := b.fibSaddrType(r.SrcType); err != nil {
			return err
		}
	}
	b.addrRange(cx.fam, "daddr", r.DstRange)
	if err := cx.transport(b, r); err != nil {
		return err
	}
	switch {
	case r.TTL > 0:
		b.hops(cx.fam, r.TTL)
	case r.HopLimit > 0:
		b.hops(cx.fam, r.HopLimit)
	}
	// Set lookups cost several times a compare, so they come after every
	// compare: a packet that fails on its protocol or port never pays one.
	if err := cx.setMatch(b, "saddr", r.SetSrc, r.SetSrcNeg, variant); err != nil {
		return err
	}
	if err := cx.setMatch(b, "daddr", r.SetDst, r.SetDstNeg, variant); err != nil {
		return err
	}
	switch {
	case r.Limit == "":
		return nil
	case cx.rateSet != "":
		word, key := cx.portWord()
		return b.portLimit(word, key, cx.rateSet, r.Limit, r.LimitBurst)
	}
	return b.limit(r.Limit, r.LimitBurst)
}

// conntrack matches a conntrack state: itself in the inet table, by the
// bits the inet chains set in the bridge table.
func (cx chainCtx) conntrack(b *builder, state string) error {
	switch {
	case state == "":
	case state == "INVALID" && cx.inet:
		b.ctState("invalid", ctInvalid)
	case state == "RELATED,ESTABLISHED" && cx.inet:
		b.ctState("established,related", ctEstablished|ctRelated)
	case state == "INVALID":
		b.markTest(cx.marks.Invalid)
	case state == "RELATED,ESTABLISHED":
		b.markTest(cx.marks.Established)
	default:
		return fmt.Errorf("conntrack state %q", state)
	}
	return nil
}

// Conntrack state bits as ct state loads them.
const (
	ctInvalid     = 1 << 0 // NF_CT_STATE_INVALID_BIT
	ctEstablished = 1 << 1 // NF_CT_STATE_BIT(IP_CT_ESTABLISHED)
	ctRelated     = 1 << 2 // NF_CT_STATE_BIT(IP_CT_RELATED)
)

func needsProtocol(r ruleset.Rule) bool {
	return r.Src.IsValid() || r.Dst.IsValid() || r.SrcRange.IsValid() || r.DstRange.IsValid() || r.SetSrc != "" || r.SetDst != "" || r.Proto != "" || r.TTL > 0 || r.HopLimit > 0
}

// transport matches the protocol, its ports and ICMP types. A single
// source port and a single destination port are one load, as nft makes
// them.
func (cx chainCtx) transport(b *builder, r ruleset.Rule) error {
	if r.Proto == "" {
		return nil
	}
	if err := b.l4proto(r.Proto); err != nil {
		return err
	}
	if r.ICMPType != "" {
		return b.icmp(cx.fam, r.ICMPType)
	}
	sport, dport := r.SPort+r.SPorts, r.DPort+r.DPorts
	if sport != "" && dport != "" && isPort(sport) && isPort(dport) {
		s, d, _ := parseOne(sport, dport)
		b.add(fmt.Sprintf("%s sport %d %s dport %d", r.Proto, s, r.Proto, d),
			load(expr.PayloadBaseTransportHeader, 0, 4), eq(append(be16(s), be16(d)...)))
		return nil
	}
	if sport != "" {
		if err := b.ports(r.Proto, "sport", 0, sport); err != nil {
			return err
		}
	}
	if dport != "" {
		if err := b.ports(r.Proto, "dport", 2, dport); err != nil {
			return err
		}
	}
	if r.TCPFlags[0] != "" {
		if err := b.tcpFlags(r.TCPFlags[0], r.TCPFlags[1]); err != nil {
			return err
		}
	}
	if h := r.HashLimit; h != nil {
		return cx.perSourceLimit(b, h)
	}
	return nil
}

// perSourceLimit matches packets over a source's rate: the inet table's
// SynSet counts each source (an IPv6 one by its first SrcMask bits).
func (cx chainCtx) perSourceLimit(b *builder, h *ruleset.HashLimit) error {
	if !cx.inet || h.Name != ruleset.SynFloodName {
		return fmt.Errorf("a per-source limit %q has no nftables form here", h.Name)
	}
	off, size := addrField(cx.fam, "saddr")
	ex := []expr.Any{load(expr.PayloadBaseNetworkHeader, off, size)}
	key := string(cx.fam) + " saddr"
	if h.SrcMask != 0 {
		mask := make([]byte, size)
		for i := 0; i < h.SrcMask; i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		ex = append(ex, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: mask, Xor: make([]byte, size)})
		key += " and " + netip.AddrFrom16([16]byte(mask)).String()
	}
	set := SynSet(cx.fam)
	ex = append(ex, &expr.Dynset{SrcRegKey: 1, SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE,
		Exprs: []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(h.Rate), Unit: expr.LimitTimeSecond, Burst: uint32(h.Burst), Over: true}}})
	b.add(fmt.Sprintf("update @%s { %s limit rate over %d/second burst %d packets }", set, key, h.Rate, h.Burst), ex...)
	return nil
}

func isPort(s string) bool { return !strings.ContainsAny(s, ":,") }

func parseOne(s, d string) (uint16, uint16, error) {
	a, err := parsePorts(s)
	if err != nil {
		return 0, 0, err
	}
	c, err := parsePorts(d)
	if err != nil {
		return 0, 0, err
	}
	return a[0].lo, c[0].lo, nil
}

// setMatch matches an address against a set: the tap's own addresses
// (the layer-2 sets, keyed by the tap's port) or a named set.
func (cx chainCtx) setMatch(b *builder, dir, set string, neg bool, variant string) error {
	if set == "" {
		return nil
	}
	op := ""
	if neg {
		op = "!= "
	}
	word := string(cx.fam)
	off, size := addrField(cx.fam, dir)
	if set != cx.tapSet {
		name, err := cx.namedSet(set)
		if err != nil {
			return err
		}
		b.add(fmt.Sprintf("%s %s %s@%s", word, dir, op, name),
			load(expr.PayloadBaseNetworkHeader, off, size),
			&expr.Lookup{SourceRegister: 1, SetName: name, Invert: neg})
		return nil
	}
	port, key := cx.portWord()
	sets := []string{variant}
	if neg {
		addrs, nets := cx.l2Sets()
		sets = []string{addrs, nets}
	}
	for _, s := range sets {
		b.add(fmt.Sprintf("%s . %s %s %s@%s", port, word, dir, op, s),
			&expr.Meta{Key: key, Register: regConcat0},
			&expr.Payload{DestRegister: regConcat4, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
			&expr.Lookup{SourceRegister: regConcat0, SetName: s, Invert: neg})
	}
	return nil
}

// Registers of an interface name . address concatenation, as nft makes
// it: the name fills the first 16-byte register, the address the next.
const (
	regConcat0 = 1 // NFT_REG_1
	regConcat4 = 2 // NFT_REG_2
)

// namedSet is the nftables set of a ruleset (ipset) name: a named set,
// or the host's or the cluster's.
func (cx chainCtx) namedSet(set string) (string, error) {
	switch {
	case set == "":
	case set == cx.hostSet:
		return HostSet(cx.fam), nil
	case set == cx.clusterSet:
		return ClusterSet(cx.fam), nil
	}
	for _, f := range ruleset.Families {
		prefix := f.UserSet("")
		if name, ok := strings.CutPrefix(set, prefix); ok && name != "" {
			return UserSet(name, cx.fam), nil
		}
	}
	return "", fmt.Errorf("set %q", set)
}

// statement renders the rule's target.
func (cx chainCtx) statement(b *builder, v ruleset.Verdict) error {
	switch v.Target {
	case "ACCEPT":
		b.counter()
		b.verdict(expr.VerdictAccept, "")
	case "DROP":
		cx.countDrop(b)
		b.counter()
		b.verdict(expr.VerdictDrop, "")
	case "RETURN":
		b.counter()
		b.verdict(expr.VerdictReturn, "")
	case "REJECT":
		cx.countDrop(b)
		b.counter()
		if cx.inet {
			b.reject(v.RejectWith == "tcp-reset")
			return nil
		}
		bit := cx.marks.Reject
		if v.RejectWith == "tcp-reset" {
			bit = cx.marks.RejectTCP
		}
		b.markSet(bit, true)
		b.verdict(expr.VerdictGoto, ChainRejected)
	case "LOG", "NFLOG":
		if cx.logMap != "" {
			word, key := cx.portWord()
			b.logJump(word, key, cx.logMap)
			return nil
		}
		b.log(v.LogPrefix, v.LogLevel, v.NFLogGroup, v.Target == "NFLOG")
	case "MARK":
		switch v.XMark {
		case ruleset.GroupMark:
			b.markSet(cx.marks.Group, true)
		case "0x0/" + strings.SplitN(ruleset.GroupMark, "/", 2)[1]:
			b.markSet(cx.marks.Group, false)
		default:
			return fmt.Errorf("mark %q", v.XMark)
		}
	default:
		return cx.jump(b, v)
	}
	return nil
}

// countDrop adds the port's drop counter to a DROP or REJECT of a
// bridge chain a tap's packets reach by their port (SetDropIn): the
// lookup always matches, and counts the packet for the port.
func (cx chainCtx) countDrop(b *builder) {
	if cx.inet || cx.dir == "" {
		return
	}
	word, _ := cx.portWord()
	set := SetDropOut
	if cx.dir == "in" {
		set = SetDropIn
	}
	b.ifaceSet(word, set, false)
}

func (cx chainCtx) jump(b *builder, v ruleset.Verdict) error {
	name, err := chainName(v.Target, cx.fam)
	if err != nil {
		return err
	}
	kind := expr.VerdictJump
	if v.Goto {
		kind = expr.VerdictGoto
	}
	b.verdict(kind, name)
	return nil
}
