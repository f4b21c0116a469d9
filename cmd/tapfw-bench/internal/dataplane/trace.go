package dataplane

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/harness"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
)

// traceLine is one event of `nft monitor trace`: the chain, then what
// happened there ("packet: ...", "rule ... # handle N (verdict V [T])",
// "policy P", or "verdict V").
var (
	traceLine = regexp.MustCompile(`^trace id (\S+) (\S+) (\S+) (\S+) (.*)$`)
	traceRule = regexp.MustCompile(`# handle (\d+) \(verdict (\S+?)(?: (\S+))?\)\s*$`)
)

// frame is a chain being evaluated and how many of its rules were so far.
type frame struct {
	chain harness.NftChain
	pos   int
}

// traceCount sums the rules evaluated per chain of tapfw's tables.
type traceCount struct {
	rs       harness.NftRuleset
	perChain map[string]int
	stacks   map[string][]frame // by trace id
	path     []string           // chains entered under the first trace id
	firstID  string
}

// countTrace counts the rules the traced packets were evaluated against:
// in each chain entered, up to the last rule that matched (its place in
// the chain), or all of them when the packet fell off the chain's end
// (its policy, or the implicit return of a chain jumped to). A jump pushes
// the chain jumped to, so a chain where nothing matched counts whole.
func countTrace(lines []string, rs harness.NftRuleset) (*traceCount, error) {
	tc := &traceCount{rs: rs, perChain: map[string]int{}, stacks: map[string][]frame{}}
	for _, l := range lines {
		m := traceLine.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		id, c, rest := m[1], harness.NftChain{Family: m[2], Table: m[3], Name: m[4]}, m[5]
		if strings.HasPrefix(c.Table, benchTables) {
			continue
		}
		if err := tc.event(id, c, rest); err != nil {
			return nil, fmt.Errorf("trace %q: %w", l, err)
		}
	}
	if len(tc.perChain) == 0 {
		return nil, fmt.Errorf("the trace holds no chain of tapfw's tables (%d lines)", len(lines))
	}
	return tc, nil
}

// add counts rules evaluated in chain c.
func (tc *traceCount) add(c harness.NftChain, n int) {
	if c.Table == harness.NftTable && n > 0 {
		tc.perChain[c.Name] += n
	}
}

// enter finds c on id's stack, first counting the chains above it whole
// (they returned at their end), or pushes it.
func (tc *traceCount) enter(id string, c harness.NftChain) *frame {
	st := tc.stacks[id]
	i := slices.IndexFunc(st, func(f frame) bool { return f.chain == c })
	if i < 0 {
		st = append(st, frame{chain: c})
		tc.entered(id, c.Name)
		i = len(st) - 1
	}
	for j := len(st) - 1; j > i; j-- {
		tc.add(st[j].chain, len(tc.rs[st[j].chain])-st[j].pos)
	}
	tc.stacks[id] = st[:i+1]
	return &tc.stacks[id][i]
}

// entered records the chains entered under the first trace id (one hook
// of the first packet).
func (tc *traceCount) entered(id, chain string) {
	if tc.firstID == "" {
		tc.firstID = id
	}
	if id == tc.firstID {
		tc.path = append(tc.path, chain)
	}
}

func (tc *traceCount) event(id string, c harness.NftChain, rest string) error {
	f := tc.enter(id, c)
	word, _, _ := strings.Cut(rest, " ")
	switch word {
	case "packet:":
		return nil
	case "policy":
		tc.add(c, len(tc.rs[c])-f.pos)
		delete(tc.stacks, id)
		return nil
	case "verdict": // the chain ended without a rule deciding
		tc.add(c, len(tc.rs[c])-f.pos)
		st := tc.stacks[id]
		tc.stacks[id] = st[:len(st)-1]
		return nil
	case "rule":
	default:
		return fmt.Errorf("unknown event %q", word)
	}
	m := traceRule.FindStringSubmatch(rest)
	if m == nil {
		return fmt.Errorf("no handle and verdict")
	}
	h, _ := strconv.ParseUint(m[1], 10, 64)
	at := slices.Index(tc.rs[c], h)
	if at < 0 {
		return fmt.Errorf("rule handle %d is not in %s", h, c)
	}
	tc.add(c, at+1-f.pos)
	f.pos = at + 1
	st := tc.stacks[id]
	switch m[2] {
	case "continue":
	case "jump":
		tc.stacks[id] = append(st, frame{chain: harness.NftChain{Family: c.Family, Table: c.Table, Name: m[3]}})
		tc.entered(id, m[3])
	case "goto":
		st[len(st)-1] = frame{chain: harness.NftChain{Family: c.Family, Table: c.Table, Name: m[3]}}
		tc.entered(id, m[3])
	case "return":
		tc.stacks[id] = st[:len(st)-1]
	default: // accept, drop, queue, stolen: the hook is done with it
		delete(tc.stacks, id)
	}
	return nil
}

// nftChainKind is where a chain of tapfw's nftables tables belongs:
// "tap" (profiles, log chains, security groups), "host" or "dispatch".
func nftChainKind(name string) string {
	switch {
	case strings.HasPrefix(name, "tfw-pi"), strings.HasPrefix(name, "tfw-po"), strings.HasPrefix(name, "tfw-g"),
		strings.HasPrefix(name, "tfw-l") && name != "tfw-lout":
		return "tap"
	case strings.HasPrefix(name, "tfw-h"):
		return "host"
	}
	return "dispatch"
}

// checks are the counts per packet, for k packets traced.
func (tc *traceCount) checks(k int) *report.RuleChecks {
	r := &report.RuleChecks{Packets: uint64(k), PerChain: map[string]float64{}, Path: tc.path}
	for name, n := range tc.perChain {
		v := float64(n) / float64(k)
		r.PerChain[name] = v
		r.Total += v
		switch nftChainKind(name) {
		case "tap":
			r.TapChain += v
		case "host":
			r.Host += v
		default:
			r.Dispatch += v
		}
	}
	return r
}
