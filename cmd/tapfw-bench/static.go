package main

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// The worst-placed tap, found by replaying the installed rules.
//
// Counters (counters.go) give the exact cost for the two traffic VMs, but
// which tap a dispatch structure serves last depends on the structure (a
// flat list: the last added; a trie over names: a name with high symbols
// at every level). So the benchmark also evaluates the dispatch chains of
// `iptables-save` itself, with a model packet per tap: the rule matches
// that dispatch uses (interfaces, physdev ports with + wildcards,
// addresses, ipset membership from `ipset save`, protocol, ports,
// conntrack state NEW) are evaluated; the walk stops at the tap's own
// chain (TFW-T-*: an OUT chain returns, as for an allowed packet; an IN
// chain accepts) and does not enter the host firewall (TFW-HOST-*: it
// returns). It counts every rule checked outside those chains, exactly
// like the counter replay, so for the VMs the two methods must agree; the
// benchmark reports both and the maximum over all taps.

type sMatch struct {
	neg  bool
	kind string
	a, b string
}

type sRule struct {
	matches []sMatch
	target  string
	isGoto  bool
	unknown string // an option the model cannot evaluate
}

type sTable struct {
	chains map[string][]sRule
	sets   map[string][]netip.Prefix
}

// modelPacket is what the dispatch rules can look at.
type modelPacket struct {
	in, out         string // -i / -o
	physIn, physOut string
	bridged         bool
	src, dst        netip.Addr
	proto           string
	sport, dport    int
}

func parseStatic(save, ipsetSave string) (*sTable, error) {
	t := &sTable{chains: map[string][]sRule{}, sets: map[string][]netip.Prefix{}}
	for _, line := range strings.Split(save, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, ":") {
			if f := strings.Fields(line[1:]); len(f) > 0 {
				if _, ok := t.chains[f[0]]; !ok {
					t.chains[f[0]] = nil
				}
			}
			continue
		}
		if strings.HasPrefix(line, "[") { // counters, if any
			if i := strings.IndexByte(line, ']'); i >= 0 {
				line = strings.TrimSpace(line[i+1:])
			}
		}
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		toks := tokenize(line)
		chain := toks[1]
		t.chains[chain] = append(t.chains[chain], parseSRule(toks[2:]))
	}
	for _, line := range strings.Split(ipsetSave, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "add" {
			p, err := netip.ParsePrefix(f[2])
			if err != nil {
				a, aerr := netip.ParseAddr(f[2])
				if aerr != nil {
					continue // not an address entry (ports, interfaces): never matched by the model
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			t.sets[f[1]] = append(t.sets[f[1]], p)
		} else if len(f) >= 2 && f[0] == "create" {
			if _, ok := t.sets[f[1]]; !ok {
				t.sets[f[1]] = nil
			}
		}
	}
	return t, nil
}

func parseSRule(toks []string) sRule {
	var r sRule
	neg := false
	arg := func(i int) string {
		if i < len(toks) {
			return toks[i]
		}
		return ""
	}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		add := func(kind, a, b string) {
			r.matches = append(r.matches, sMatch{neg: neg, kind: kind, a: a, b: b})
			neg = false
		}
		switch tk {
		case "!":
			neg = true
		case "-i", "--in-interface":
			add("in", arg(i+1), "")
			i++
		case "-o", "--out-interface":
			add("out", arg(i+1), "")
			i++
		case "-s", "--source":
			add("src", arg(i+1), "")
			i++
		case "-d", "--destination":
			add("dst", arg(i+1), "")
			i++
		case "-p", "--protocol":
			add("proto", arg(i+1), "")
			i++
		case "-m", "--match":
			i++ // the module; its options follow
		case "--physdev-in":
			add("physin", arg(i+1), "")
			i++
		case "--physdev-out":
			add("physout", arg(i+1), "")
			i++
		case "--physdev-is-in", "--physdev-is-out", "--physdev-is-bridged":
			add(tk, "", "")
		case "--ctstate", "--state":
			add("ctstate", arg(i+1), "")
			i++
		case "--match-set":
			add("set", arg(i+1), arg(i+2))
			i += 2
		case "--comment", "--limit", "--limit-burst":
			i++
		case "--dport", "--destination-port", "--sport", "--source-port", "--dports", "--destination-ports", "--sports", "--source-ports":
			add(strings.TrimLeft(tk, "-"), arg(i+1), "")
			i++
		case "-j", "-g", "--jump", "--goto":
			r.target, r.isGoto = arg(i+1), tk == "-g" || tk == "--goto"
			return r // what follows are the target's options
		default:
			if r.unknown == "" {
				r.unknown = tk
			}
		}
	}
	return r
}

func ifMatch(pattern, name string) bool {
	if p, ok := strings.CutSuffix(pattern, "+"); ok {
		return strings.HasPrefix(name, p)
	}
	return pattern == name
}

func portIn(spec string, port int) bool {
	for _, part := range strings.Split(spec, ",") {
		lo, hi, rng := strings.Cut(part, ":")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return false
		}
		b := a
		if rng {
			if b, err = strconv.Atoi(hi); err != nil {
				return false
			}
		}
		if port >= a && port <= b {
			return true
		}
	}
	return false
}

func prefixHas(s string, a netip.Addr) (bool, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		x, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return false, fmt.Errorf("address %q", s)
		}
		p = netip.PrefixFrom(x, x.BitLen())
	}
	return a.IsValid() && p.Contains(a), nil
}

func (t *sTable) matches(r *sRule, p *modelPacket) (bool, error) {
	if r.unknown != "" {
		return false, fmt.Errorf("cannot evaluate option %s", r.unknown)
	}
	for _, m := range r.matches {
		var ok bool
		switch m.kind {
		case "in":
			ok = ifMatch(m.a, p.in)
		case "out":
			ok = ifMatch(m.a, p.out)
		case "src", "dst":
			a := p.src
			if m.kind == "dst" {
				a = p.dst
			}
			var err error
			if ok, err = prefixHas(m.a, a); err != nil {
				return false, err
			}
		case "proto":
			ok = m.a == "all" || m.a == p.proto
		case "physin":
			ok = p.physIn != "" && ifMatch(m.a, p.physIn)
		case "physout":
			ok = p.physOut != "" && ifMatch(m.a, p.physOut)
		case "--physdev-is-in":
			ok = p.physIn != ""
		case "--physdev-is-out":
			ok = p.physOut != ""
		case "--physdev-is-bridged":
			ok = p.bridged
		case "ctstate":
			ok = false
			for _, s := range strings.Split(m.a, ",") {
				ok = ok || s == "NEW"
			}
		case "set":
			entries, known := t.sets[m.a]
			if !known {
				return false, fmt.Errorf("unknown ipset %s", m.a)
			}
			a := p.src
			if strings.HasPrefix(m.b, "dst") {
				a = p.dst
			}
			for _, e := range entries {
				ok = ok || e.Contains(a)
			}
		case "dport", "destination-port", "dports", "destination-ports":
			ok = portIn(m.a, p.dport)
		case "sport", "source-port", "sports", "source-ports":
			ok = portIn(m.a, p.sport)
		default:
			return false, fmt.Errorf("cannot evaluate match %s", m.kind)
		}
		if ok == m.neg {
			return false, nil
		}
	}
	return true, nil
}

// staticWalk is the number of rules p is checked against from hook until
// it reaches the IN chain of a tap (or leaves the table), outside the taps'
// own chains and the host chains; reached lists the tap chains entered.
func (t *sTable) staticWalk(hook string, p *modelPacket) (checks int, reached []string, err error) {
	var walk func(chain string, depth int) (verdict string, err error)
	walk = func(chain string, depth int) (string, error) {
		if depth > 64 {
			return "", fmt.Errorf("chains nest deeper than 64 at %s", chain)
		}
		rules, ok := t.chains[chain]
		if !ok {
			return "", fmt.Errorf("no chain %s", chain)
		}
		for i := range rules {
			r := &rules[i]
			checks++
			ok, err := t.matches(r, p)
			if err != nil {
				return "", fmt.Errorf("%s rule %d: %w", chain, i+1, err)
			}
			if !ok {
				continue
			}
			v := r.target
			if _, sub := t.chains[v]; sub {
				switch {
				case isTapChain(v):
					reached = append(reached, v)
					if strings.HasSuffix(v, "-IN") {
						v = "ACCEPT"
					} else {
						v = "RETURN"
					}
				case isHostChain(v):
					v = "RETURN"
				default:
					if v, err = walk(v, depth+1); err != nil {
						return "", err
					}
				}
				// A sub-chain that returned: a jump goes on in this chain,
				// a goto returns from it.
				if v == "RETURN" {
					if r.isGoto {
						return "RETURN", nil
					}
					continue
				}
				return v, nil
			}
			switch v {
			case "ACCEPT", "DROP", "REJECT":
				return v, nil
			case "RETURN":
				return "RETURN", nil
			}
		}
		return "RETURN", nil
	}
	_, err = walk(hook, 0)
	return checks, reached, err
}

// StaticChecks is the replay of the rules for every tap of one path.
type StaticChecks struct {
	VM        int    `json:"vm"`        // the traffic VMs' path, to compare with the counters
	Worst     int    `json:"worst"`     // the largest over all taps
	WorstTaps string `json:"worstTaps"` // which tap (or pair of taps) it is
	Taps      int    `json:"taps"`      // taps evaluated
	Error     string `json:"error,omitempty"`
}

func tapIP(s tapSpec) netip.Addr { return netip.MustParseAddr(s.IPs[0]) }

func fwdPacket(x, y tapSpec) *modelPacket {
	return &modelPacket{in: x.Bridge, out: y.Bridge, physIn: x.Name, physOut: y.Name, bridged: true,
		src: tapIP(x), dst: tapIP(y), proto: "udp", sport: flowPortLo, dport: benchPort}
}

func inPacket(x tapSpec) *modelPacket {
	return &modelPacket{in: x.Bridge, physIn: x.Name, src: tapIP(x), dst: netip.MustParseAddr(dpHostIP),
		proto: "udp", sport: flowPortLo, dport: benchPort}
}

func outPacket(y tapSpec) *modelPacket {
	return &modelPacket{out: y.Bridge, src: netip.MustParseAddr(dpHostIP), dst: tapIP(y), proto: "udp", sport: flowPortLo, dport: benchPort}
}

func outChain(s tapSpec) string { return ruleset.TapOut(s.Name) }
func inChain(s tapSpec) string  { return ruleset.TapIn(s.Name) }

// cost replays p from hook and checks that it reached the wanted tap
// chains ("" for none in particular).
func (t *sTable) cost(hook string, p *modelPacket, want ...string) (int, error) {
	n, reached, err := t.staticWalk(hook, p)
	if err != nil {
		return 0, err
	}
	for _, w := range want {
		found := false
		for _, r := range reached {
			found = found || r == w
		}
		if !found {
			return 0, fmt.Errorf("%s: the packet reached %v, not %s", hook, reached, w)
		}
	}
	return n, nil
}

// worstPair is the pair of different taps whose bridged packets are
// checked against the most rules: the worst sender (to any fixed
// receiver), then the worst receiver from it. The dispatch of the sender's
// port and that of the receiver's add up, so this is the worst pair.
func (t *sTable) worstPair(taps []tapSpec, to tapSpec) (x, y tapSpec, worst int, err error) {
	x, y = taps[0], to
	worst = -1
	for _, c := range taps {
		if c.Name == to.Name {
			continue
		}
		n, err := t.cost("FORWARD", fwdPacket(c, to), outChain(c), inChain(to))
		if err != nil {
			return x, y, 0, err
		}
		if n > worst {
			worst, x = n, c
		}
	}
	for _, c := range taps {
		if c.Name == x.Name {
			continue
		}
		n, err := t.cost("FORWARD", fwdPacket(x, c), outChain(x), inChain(c))
		if err != nil {
			return x, y, 0, err
		}
		if n >= worst {
			worst, y = n, c
		}
	}
	return x, y, worst, nil
}

// staticPaths computes the rule checks of each path for the VMs and the
// worst over all taps.
func staticPaths(t *sTable, taps []tapSpec, vmA, vmB tapSpec) (map[string]*StaticChecks, error) {
	res := map[string]*StaticChecks{}
	f := &StaticChecks{Taps: len(taps)}
	var err error
	if f.VM, err = t.cost("FORWARD", fwdPacket(vmA, vmB), outChain(vmA), inChain(vmB)); err != nil {
		return nil, err
	}
	x, y, worst, err := t.worstPair(taps, vmB)
	if err != nil {
		return nil, err
	}
	f.Worst, f.WorstTaps = worst, x.Name+" -> "+y.Name
	res["forward"] = f

	i := &StaticChecks{Taps: len(taps)}
	if i.VM, err = t.cost("INPUT", inPacket(vmA), outChain(vmA)); err != nil {
		return nil, err
	}
	for _, x := range taps {
		c, err := t.cost("INPUT", inPacket(x), outChain(x))
		if err != nil {
			return nil, err
		}
		if c > i.Worst {
			i.Worst, i.WorstTaps = c, x.Name
		}
	}
	res["input"] = i

	// output: taps are found by their address; fillers share addresses,
	// so the packet may reach another tap with the same one: any tap's IN
	// chain ends the walk.
	o := &StaticChecks{Taps: len(taps)}
	if o.VM, err = t.cost("OUTPUT", outPacket(vmB), inChain(vmB)); err != nil {
		return nil, err
	}
	for _, y := range taps {
		n, reached, err := t.staticWalk("OUTPUT", outPacket(y))
		if err != nil {
			return nil, err
		}
		if len(reached) == 0 {
			return nil, fmt.Errorf("OUTPUT to %s (%s) reached no tap chain", y.Name, y.IPs[0])
		}
		if n > o.Worst {
			o.Worst, o.WorstTaps = n, y.Name+" ("+y.IPs[0]+")"
		}
	}
	res["output"] = o
	return res, nil
}
