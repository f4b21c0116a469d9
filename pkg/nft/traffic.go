package nft

import (
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/tapfw/tapfw/pkg/netfilter"
)

// Verdicts is what one direction of a tap's chains accepted and dropped
// (DROP and REJECT), both families together.
type Verdicts struct {
	Accepted, Dropped netfilter.Counter
}

// Traffic is what each tap's chains saw, by direction (in is to the VM).
// A tap's chains are shared profiles whose rule counters count every tap
// using them; these come from the tap's own elements: its dispatch
// elements count every packet its chains saw, its drop elements those
// they dropped, and the rest they accepted (a tap's chain ends in a
// verdict, its policy, so nothing comes back unjudged).
func (k Kernel) Traffic() (map[string]map[string]*Verdicts, error) {
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	out := map[string]map[string]*Verdicts{}
	of := func(tap string) map[string]*Verdicts {
		if out[tap] == nil {
			out[tap] = map[string]*Verdicts{"in": {}, "out": {}}
		}
		return out[tap]
	}
	for _, s := range []struct {
		set     *nftables.Set
		dir     string
		dropped bool
	}{{dispatchMap(MapIn), "in", false}, {dispatchMap(MapOut), "out", false}, {dropInSet, "in", true}, {dropOutSet, "out", true}} {
		els, err := c.GetSetElements(s.set)
		if isNotFound(err) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("reading %s: %w", s.set.Name, err)
		}
		for _, e := range els {
			if len(e.Key) < 16 {
				continue
			}
			var n netfilter.Counter
			if e.Counter != nil {
				n = netfilter.Counter{Packets: e.Counter.Packets, Bytes: e.Counter.Bytes}
			}
			tap := strings.TrimRight(string(e.Key[len(e.Key)-16:]), "\x00")
			v := of(tap)[s.dir]
			if s.dropped {
				v.Dropped.Add(n)
			} else {
				v.Accepted.Add(n) // seen, until the drops are taken off
			}
		}
	}
	for _, dirs := range out {
		for _, v := range dirs {
			v.Accepted.Packets -= min(v.Accepted.Packets, v.Dropped.Packets)
			v.Accepted.Bytes -= min(v.Accepted.Bytes, v.Dropped.Bytes)
		}
	}
	return out, nil
}
