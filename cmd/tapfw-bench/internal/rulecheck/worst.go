package rulecheck

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/tapfw/tapfw/pkg/explain"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// The worst-placed tap. Which tap a dispatch structure serves last depends
// on the structure (a flat list: the last added; a trie over names: a name
// with high symbols at every level), so the bench walks a packet of every
// tap through the dispatch chains, in a table whose taps' own chains stand
// in for the VMs' (StandIn): the VMs take the places of the taps found,
// with rules of their own that let the bench's packets through.

// StandIn returns a copy of t in which each tap's own chain does what the
// VMs' chains do with the bench's packets: an OUT chain returns (the
// packet is allowed on) and an IN chain accepts. What a packet is then
// checked against outside the taps' chains is the dispatch of its tap,
// whatever that tap's own rules allow.
func StandIn(t *netfilter.Table) *netfilter.Table {
	c := *t
	c.Chains = make(map[string][]string, len(t.Chains))
	for name, specs := range t.Chains {
		tap, ok := ruleset.IsTapChain(name)
		switch {
		case !ok:
			c.Chains[name] = specs
		case name == ruleset.TapIn(tap):
			c.Chains[name] = []string{`-m comment --comment "tapfw-bench: stand-in" -j ACCEPT`}
		default:
			c.Chains[name] = []string{`-m comment --comment "tapfw-bench: stand-in" -j RETURN`}
		}
	}
	c.Counters = nil
	return &c
}

// Scan walks the packets of many taps through one table.
type Scan struct {
	table *netfilter.Table
	sets  map[string][]netip.Prefix
	flow  Flow
}

// NewScan prepares the walks of f's packets through t (see StandIn), with
// the ipsets' contents.
func NewScan(t *netfilter.Table, sets map[string][]netip.Prefix, f Flow) *Scan {
	return &Scan{table: StandIn(t), sets: sets, flow: f}
}

// cost is the dispatch checks of p; the walk must go to every chain of
// want, and to some tap's IN chain when anyIn is set.
func (s *Scan) cost(p explain.Packet, anyIn bool, want ...string) (int, error) {
	res, err := Walk(s.table, s.sets, p)
	if err != nil {
		return 0, err
	}
	reached := Reached(res)
	for _, w := range want {
		if !slices.Contains(reached, w) {
			return 0, fmt.Errorf("%s %s -> %s: the packet went to %v, not to %s", p.Hook, p.Src, p.Dst, reached, w)
		}
	}
	if anyIn && !slices.ContainsFunc(reached, isInChain) {
		return 0, fmt.Errorf("%s to %s reached no tap's chain (went to %v)", p.Hook, p.Dst, reached)
	}
	return Split(p, res).Dispatch, nil
}

func isInChain(c string) bool {
	tap, ok := ruleset.IsTapChain(c)
	return ok && c == ruleset.TapIn(tap)
}

func (s *Scan) forward(x, y Port) (int, error) {
	return s.cost(s.flow.Forward(x, y), false, ruleset.TapOut(x.Tap), ruleset.TapIn(y.Tap))
}

// WorstPair is the pair of different taps whose bridged packets are
// checked against the most rules: the worst sender (to the fixed receiver
// to), then the worst receiver from it. The dispatch of the sender's port
// and that of the receiver's add up, so this is the worst pair.
func (s *Scan) WorstPair(ports []Port, to Port) (x, y Port, worst int, err error) {
	x, y = ports[0], to
	worst = -1
	for _, c := range ports {
		if c.Tap == to.Tap {
			continue
		}
		n, err := s.forward(c, to)
		if err != nil {
			return x, y, 0, err
		}
		if n > worst {
			worst, x = n, c
		}
	}
	for _, c := range ports {
		if c.Tap == x.Tap {
			continue
		}
		n, err := s.forward(x, c)
		if err != nil {
			return x, y, 0, err
		}
		if n >= worst {
			worst, y = n, c
		}
	}
	return x, y, worst, nil
}

// Worst is one path's dispatch checks for the traffic VMs and the worst
// over all taps.
type Worst struct {
	VM        int    // the traffic VMs' path
	Worst     int    // the largest over all taps
	WorstTaps string // which tap (or pair of taps) it is
	Taps      int    // taps walked
}

// Paths walks each path (forward, input, output) for the VMs a (sender)
// and b (receiver) and for every port.
func (s *Scan) Paths(ports []Port, a, b Port) (map[string]Worst, error) {
	fw, err := s.forwardWorst(ports, a, b)
	if err != nil {
		return nil, err
	}
	in, err := s.inputWorst(ports, a)
	if err != nil {
		return nil, err
	}
	out, err := s.outputWorst(ports, b)
	if err != nil {
		return nil, err
	}
	return map[string]Worst{"forward": fw, "input": in, "output": out}, nil
}

func (s *Scan) forwardWorst(ports []Port, a, b Port) (Worst, error) {
	w := Worst{Taps: len(ports)}
	var err error
	if w.VM, err = s.forward(a, b); err != nil {
		return w, err
	}
	x, y, worst, err := s.WorstPair(ports, b)
	if err != nil {
		return w, err
	}
	w.Worst, w.WorstTaps = worst, x.Tap+" -> "+y.Tap
	return w, nil
}

func (s *Scan) inputWorst(ports []Port, a Port) (Worst, error) {
	w := Worst{Taps: len(ports)}
	var err error
	if w.VM, err = s.cost(s.flow.Input(a), false, ruleset.TapOut(a.Tap)); err != nil {
		return w, err
	}
	for _, x := range ports {
		n, err := s.cost(s.flow.Input(x), false, ruleset.TapOut(x.Tap))
		if err != nil {
			return w, err
		}
		if n > w.Worst {
			w.Worst, w.WorstTaps = n, x.Tap
		}
	}
	return w, nil
}

// outputWorst: taps are found by their address, and filler taps share
// addresses, so a packet may reach another tap with the same one: any
// tap's IN chain ends the walk.
func (s *Scan) outputWorst(ports []Port, b Port) (Worst, error) {
	w := Worst{Taps: len(ports)}
	var err error
	if w.VM, err = s.cost(s.flow.Output(b), false, ruleset.TapIn(b.Tap)); err != nil {
		return w, err
	}
	for _, y := range ports {
		n, err := s.cost(s.flow.Output(y), true)
		if err != nil {
			return w, err
		}
		if n > w.Worst {
			w.Worst, w.WorstTaps = n, fmt.Sprintf("%s (%s)", y.Tap, y.IP)
		}
	}
	return w, nil
}
