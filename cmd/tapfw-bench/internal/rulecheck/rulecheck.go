// Package rulecheck counts the rules a new packet of the benchmark is
// checked against, and finds the worst-placed tap, by walking the packet
// through the installed filter table with pkg/explain. A rule's counter
// counts the packets that matched it, not those checked against it, so the
// checks come from explain's walk (Result.Checks); the kernel's counters
// only cross-check that walk (CrossCheck).
package rulecheck

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/tapfw/tapfw/pkg/explain"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Port is a tap as the bench's packets see it: a bridge port with the
// VM's MAC and address behind it.
type Port struct {
	Tap, Bridge string
	MAC         net.HardwareAddr
	IP          netip.Addr
}

// Flow is what the bench's packets have in common: one-way UDP to DPort
// from SPort (the first of the flows' source ports), to or from the host
// at Host.
type Flow struct {
	Host         netip.Addr
	SPort, DPort uint16
	// LocalTable is the host's, for the host's address type matches.
	LocalTable map[netip.Addr]string
}

func (f Flow) udp(hook string, src, dst netip.Addr) explain.Packet {
	return explain.Packet{Family: 4, Hook: hook, Src: src, Dst: dst, Proto: "udp",
		SPort: f.SPort, DPort: f.DPort, ICMPType: -1, ICMPCode: -1, CtState: "NEW", HopLimit: 64, LocalTable: f.LocalTable}
}

// Forward is a packet the bridge forwards from a's port to b's (FORWARD).
func (f Flow) Forward(a, b Port) explain.Packet {
	p := f.udp("FORWARD", a.IP, b.IP)
	p.InIface, p.OutIface, p.PhysIn, p.PhysOut, p.Bridged, p.SrcMAC = a.Bridge, b.Bridge, a.Tap, b.Tap, true, a.MAC
	return p
}

// Input is a packet from a's port to the host (INPUT).
func (f Flow) Input(a Port) explain.Packet {
	p := f.udp("INPUT", a.IP, f.Host)
	p.InIface, p.PhysIn, p.SrcMAC = a.Bridge, a.Tap, a.MAC
	return p
}

// Output is a packet the host sends to b (OUTPUT).
func (f Flow) Output(b Port) explain.Packet {
	p := f.udp("OUTPUT", f.Host, b.IP)
	p.OutIface = b.Bridge
	return p
}

// Checks are the rules one packet was checked against, by kind of chain:
// the taps' own chains (TFW-T-*), the host firewall (TFW-HOST-*) and
// everything else, the dispatch a new packet pays to reach its tap's
// chain (the hook rule in the built-in chain included).
type Checks struct {
	Dispatch, TapChains, Host, Total int
	PerChain                         map[string]int
	// Path is the chains entered, in order, starting with the hook.
	Path []string
}

// IsTapChain reports whether chain is a tap's own chain.
func IsTapChain(chain string) bool {
	_, ok := ruleset.IsTapChain(chain)
	return ok
}

// IsHostChain reports whether chain is the host firewall's.
func IsHostChain(chain string) bool {
	return chain == ruleset.ChainHostIn || chain == ruleset.ChainHostOut
}

// Split sorts the checks of a walk by kind of chain.
func Split(p explain.Packet, res explain.Result) Checks {
	c := Checks{PerChain: map[string]int{}, Path: append([]string{p.Hook}, Reached(res)...)}
	for chain, n := range res.Checks {
		c.PerChain[chain] = n
		c.Total += n
		switch {
		case IsTapChain(chain):
			c.TapChains += n
		case IsHostChain(chain):
			c.Host += n
		default:
			c.Dispatch += n
		}
	}
	return c
}

// Walk explains p in t and fails unless the answer is exact: a rule
// explain cannot evaluate would make the count a guess.
func Walk(t *netfilter.Table, sets map[string][]netip.Prefix, p explain.Packet) (explain.Result, error) {
	res, err := explain.Explain(t, sets, p)
	if err != nil {
		return res, err
	}
	if len(res.Uncertain) > 0 {
		return res, fmt.Errorf("%s %s -> %s: explain is not certain: %v", p.Hook, p.Src, p.Dst, res.Uncertain)
	}
	return res, nil
}

// Reached lists the chains a walk jumped or went to, in order.
func Reached(res explain.Result) []string {
	var out []string
	for _, s := range res.Steps {
		if s.What == explain.WhatJump || s.What == explain.WhatGoto {
			out = append(out, s.Target)
		}
	}
	return out
}

// CrossCheck holds explain's walk of a packet against what the kernel
// counted after k such packets (counted is `iptables-save -c` read after
// zeroing the counters and sending them): every rule the walk says the
// packet matched must have counted at least k packets, and so must the
// policy if it gave the verdict. A rule whose match explain had to assume
// (a rate limit: the kernel lets only a burst through) is left out. It
// returns how many rules it compared.
func CrossCheck(res explain.Result, counted *netfilter.Table, k uint64) (int, error) {
	n := 0
	for _, s := range res.Steps {
		var got uint64
		switch {
		case s.What == explain.WhatPolicy:
			got = counted.PolicyCounters[s.Chain].Packets
		case s.Index == 0 || s.What == explain.WhatUnknown || len(s.Notes) > 0:
			continue
		default:
			got = counted.Counter(s.Chain, s.Index-1).Packets
		}
		n++
		if got < k {
			what := fmt.Sprintf("%s rule %d (%s)", s.Chain, s.Index, s.Spec)
			if s.What == explain.WhatPolicy {
				what = s.Chain + " policy " + s.Target
			}
			return n, fmt.Errorf("explain's walk matches %s, but the kernel counted %d of the %d packets sent there: explain and the kernel disagree",
				what, got, k)
		}
	}
	return n, nil
}

// sortedChains is the chains of c.PerChain in order, for messages.
func (c Checks) sortedChains() []string {
	names := make([]string, 0, len(c.PerChain))
	for n := range c.PerChain {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// String is the per-chain checks, for messages.
func (c Checks) String() string {
	s := ""
	for _, n := range c.sortedChains() {
		s += fmt.Sprintf(" %s:%d", n, c.PerChain[n])
	}
	return fmt.Sprintf("dispatch %d, tap chains %d, host %d, total %d;%s", c.Dispatch, c.TapChains, c.Host, c.Total, s)
}
