package netfilter

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Record is what a tap's record chain (ruleset.RecordChain) in table
// bridge tapfw says: its layer-2 elements, and lines of the backend's own
// (what else the tap holds in shared chains and maps). Each line is the
// comment of one rule without expressions, in order.
type Record struct {
	Tap   string
	L2    *ruleset.L2Tap // nil when the tap has no layer-2 elements
	Lines []string
}

// l2Line starts the record lines of the layer-2 part; a backend's lines
// must not.
const l2Line = "l2 "

// maxLine is the longest comment the kernel keeps (NFT_USERDATA_MAXLEN
// less the type and length bytes and nft's terminating NUL).
const maxLine = 252

func recordLines(r *Record) ([]string, error) {
	var out []string
	if p := r.L2; p != nil {
		for _, f := range p.Flags {
			out = append(out, l2Line+"flag "+f)
		}
		if p.MAC != nil {
			out = append(out, l2Line+"mac "+p.MAC.String())
		}
		for _, x := range p.IP4 {
			out = append(out, l2Line+"ip4 "+x.String())
		}
		for _, x := range p.IP6 {
			out = append(out, l2Line+"ip6 "+x.String())
		}
		for _, e := range p.EtherTypes {
			out = append(out, l2Line+"etype "+ruleset.EtherTypeString(e))
		}
		for _, x := range p.Pairs {
			out = append(out, l2Line+"pair "+x.String())
		}
		for _, h := range p.Helpers {
			out = append(out, l2Line+"helper "+h)
		}
	}
	for _, l := range r.Lines {
		if strings.HasPrefix(l, l2Line) {
			return nil, fmt.Errorf("record line %q: starts like a layer-2 line", l)
		}
		out = append(out, l)
	}
	for _, l := range out {
		if len(l) > maxLine {
			return nil, fmt.Errorf("record line %q: longer than %d bytes", l, maxLine)
		}
	}
	return out, nil
}

// QueueRecord queues on c making the tap's record chain hold r, replacing
// what it held.
func QueueRecord(c *nftables.Conn, r *Record, exists bool) error {
	lines, err := recordLines(r)
	if err != nil {
		return err
	}
	ch := &nftables.Chain{Table: l2Table, Name: ruleset.RecordChain(r.Tap)}
	if exists {
		c.FlushChain(ch)
	} else {
		c.AddChain(ch)
	}
	for _, l := range lines {
		c.AddRule(&nftables.Rule{Table: l2Table, Chain: ch, UserData: userdata.AppendString(nil, userdata.TypeComment, l)})
	}
	return nil
}

// QueueRecordRemove queues on c deleting the tap's record chain.
func QueueRecordRemove(c *nftables.Conn, tap string) {
	ch := &nftables.Chain{Table: l2Table, Name: ruleset.RecordChain(tap)}
	c.FlushChain(ch)
	c.DelChain(ch)
}

// ReadRecord reads the tap's record; nil when it has none.
func ReadRecord(cr ChainReader, tap string) (*Record, error) {
	rules, exists, err := cr.ChainRules(l2Table, ruleset.RecordChain(tap))
	if err != nil {
		return nil, fmt.Errorf("reading record of %s: %w", tap, err)
	}
	if !exists {
		return nil, nil
	}
	// Every tap with a record is in the layer-2 table's set of taps,
	// also one whose record has no layer-2 line (nothing to check).
	r := &Record{Tap: tap, L2: &ruleset.L2Tap{Tap: tap}}
	for _, ru := range rules {
		line := nftRuleComment(ru)
		rest, ok := strings.CutPrefix(line, l2Line)
		if !ok {
			r.Lines = append(r.Lines, line)
			continue
		}
		if err := parseL2Line(r.L2, rest); err != nil {
			return nil, fmt.Errorf("record of %s: %w", tap, err)
		}
	}
	sortL2(r.L2)
	return r, nil
}

func parseL2Line(p *ruleset.L2Tap, line string) error {
	kind, v, _ := strings.Cut(line, " ")
	switch kind {
	case "flag":
		p.Flags = append(p.Flags, v)
	case "mac":
		m, err := net.ParseMAC(v)
		if err != nil {
			return fmt.Errorf("line %q: %w", line, err)
		}
		p.MAC = m
	case "ip4", "ip6":
		x, err := netip.ParsePrefix(v)
		if err != nil {
			return fmt.Errorf("line %q: %w", line, err)
		}
		if kind == "ip4" {
			p.IP4 = append(p.IP4, x)
		} else {
			p.IP6 = append(p.IP6, x)
		}
	case "pair":
		m, a, _ := strings.Cut(v, " ")
		mac, err1 := net.ParseMAC(m)
		ip, err2 := netip.ParseAddr(a)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("line %q: not a MAC and an address", line)
		}
		p.Pairs = append(p.Pairs, ruleset.L2Pair{MAC: mac, IP: ip})
	case "helper":
		p.Helpers = append(p.Helpers, v)
	case "etype":
		e, err := strconv.ParseUint(v, 0, 16)
		if err != nil {
			return fmt.Errorf("line %q: %w", line, err)
		}
		p.EtherTypes = append(p.EtherTypes, uint16(e))
	default:
		return fmt.Errorf("line %q: unknown kind", line)
	}
	return nil
}

func sortL2(p *ruleset.L2Tap) {
	slices.Sort(p.Flags)
	byAddr := func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	}
	slices.SortFunc(p.IP4, byAddr)
	slices.SortFunc(p.IP6, byAddr)
	slices.Sort(p.EtherTypes)
	ruleset.SortPairs(p.Pairs)
	slices.Sort(p.Helpers)
}
