package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Rules checked per packet, from the installed ruleset's counters.
//
// A rule's counter counts the packets that matched it, not those that
// were checked against it. So after zeroing the counters and sending K
// packets down one path, the benchmark replays the chains: starting with
// K packets at the top of the built-in chain, every rule is checked by the
// packets still in its chain; a matched ACCEPT, DROP, REJECT or goto takes
// its packets out of the chain, a RETURN (or the end of a user chain) hands
// them back to the caller, a jump sends them into the sub-chain and they
// continue after it with those that came back; anything else (LOG, no
// target) leaves them in the chain. Summed over the rules this is the
// exact number of rule checks the K packets made (first-match semantics
// need nothing else), whatever the chains look like: a flat list, a tree
// of dispatch chains, sets in front. Divided by K it is the checks per
// packet. Checks in the taps' own chains (TFW-T-*) and in the host
// firewall (TFW-HOST-*) are counted apart: what is left is the dispatch
// cost a new packet pays before it reaches its tap's chain, including the
// hook rule in the built-in chain.

type iptRule struct {
	Chain   string
	Packets uint64
	Target  string
	Goto    bool
}

type iptTable struct {
	Chains map[string][]iptRule
	Policy map[string]uint64 // built-in chains: policy counter
}

// parseSaveCounters parses `iptables-save -c -t filter`.
func parseSaveCounters(out string) (*iptTable, error) {
	t := &iptTable{Chains: map[string][]iptRule{}, Policy: map[string]uint64{}}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) == 0 {
				continue
			}
			if _, ok := t.Chains[f[0]]; !ok {
				t.Chains[f[0]] = nil
			}
			if len(f) >= 3 && f[1] != "-" {
				p, _, _ := parseCounter(f[2])
				t.Policy[f[0]] = p
			}
		case strings.HasPrefix(line, "["):
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("bad counter line %q", line)
			}
			p, _, err := parseCounter(line[:end+1])
			if err != nil {
				return nil, fmt.Errorf("bad counter line %q: %w", line, err)
			}
			toks := tokenize(line[end+1:])
			if len(toks) < 2 || toks[0] != "-A" {
				continue
			}
			r := iptRule{Chain: toks[1], Packets: p}
			for i := 2; i+1 < len(toks); i++ {
				if toks[i] == "-j" || toks[i] == "-g" {
					r.Target, r.Goto = toks[i+1], toks[i] == "-g"
				}
			}
			t.Chains[r.Chain] = append(t.Chains[r.Chain], r)
		}
	}
	return t, nil
}

func parseCounter(s string) (uint64, uint64, error) {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, fmt.Errorf("no ':' in %q", s)
	}
	p, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, 0, err
	}
	by, err := strconv.ParseUint(b, 10, 64)
	return p, by, err
}

// tokenize splits an iptables-save rule into words, keeping "quoted
// strings" whole.
func tokenize(s string) []string {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inQ && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			inQ, have = !inQ, true
		case (c == ' ' || c == '\t') && !inQ:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// RuleChecks is the result of replaying K packets through the chains.
type RuleChecks struct {
	Packets  uint64             `json:"packets"`  // K
	Dispatch float64            `json:"dispatch"` // checks per packet outside TFW-T-* and TFW-HOST-*
	TapChain float64            `json:"tapChains"`
	Host     float64            `json:"hostChains"`
	Total    float64            `json:"total"`
	PerChain map[string]float64 `json:"perChain"` // checks per packet, by chain
	Path     []string           `json:"path"`     // chains entered, in order
}

func isTapChain(c string) bool {
	_, ok := ruleset.IsTapChain(c)
	return ok
}

func isHostChain(c string) bool { return c == ruleset.ChainHostIn || c == ruleset.ChainHostOut }

// replay walks k packets from the built-in chain hook through t.
func replay(t *iptTable, hook string, k uint64) (*RuleChecks, error) {
	if _, ok := t.Chains[hook]; !ok {
		return nil, fmt.Errorf("no chain %s in the table", hook)
	}
	checks := map[string]uint64{}
	var path []string
	var walk func(chain string, in uint64, depth int) (uint64, error)
	walk = func(chain string, in uint64, depth int) (uint64, error) {
		if depth > 64 {
			return 0, fmt.Errorf("chains nest deeper than 64 at %s", chain)
		}
		if in > 0 {
			path = append(path, chain)
		}
		var returned uint64
		for _, r := range t.Chains[chain] {
			if in == 0 {
				break
			}
			checks[chain] += in
			m := min(r.Packets, in)
			if m == 0 {
				continue
			}
			switch _, sub := t.Chains[r.Target]; {
			case sub && r.Goto:
				back, err := walk(r.Target, m, depth+1)
				if err != nil {
					return 0, err
				}
				in -= m
				returned += back
			case sub:
				back, err := walk(r.Target, m, depth+1)
				if err != nil {
					return 0, err
				}
				in = in - m + back
			case r.Target == "RETURN":
				in -= m
				returned += m
			case r.Target == "ACCEPT" || r.Target == "DROP" || r.Target == "REJECT":
				in -= m
			default:
				// LOG, no target, counters: the packet goes on.
			}
		}
		return returned + in, nil
	}
	if _, err := walk(hook, k, 0); err != nil {
		return nil, err
	}
	res := &RuleChecks{Packets: k, PerChain: map[string]float64{}, Path: path}
	names := make([]string, 0, len(checks))
	for c := range checks {
		names = append(names, c)
	}
	slices.Sort(names)
	for _, c := range names {
		per := float64(checks[c]) / float64(k)
		res.PerChain[c] = per
		res.Total += per
		switch {
		case isTapChain(c):
			res.TapChain += per
		case isHostChain(c):
			res.Host += per
		default:
			res.Dispatch += per
		}
	}
	return res, nil
}
