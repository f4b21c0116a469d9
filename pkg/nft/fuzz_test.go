package nft

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/fuzzconf"
	"github.com/tapfw/tapfw/pkg/ruleset"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// FuzzApply builds a config from fuzzed fields (pkg/fuzzconf: tap and
// bridge names, MAC, addresses, one rule's protocol, ports, addresses,
// comment and ICMP type, a named set, a host section) and sends it through
// the real validation. What the validation accepts must build into a
// Plan whose text (what render prints) has the tap's elements, and, as
// root, in a network namespace made once per fuzz worker:
//
//   - apply over netlink, as an ADD does;
//   - read back with no difference (what CHECK reports);
//   - apply again changing nothing in `nft list ruleset`;
//   - and be removed leaving no trace of the tap.
func FuzzApply(f *testing.F) {
	for _, in := range fuzzconf.Seeds() {
		f.Add(in.Tap, in.Bridge, in.MAC, in.IPs, in.Proto, in.SPort, in.DPort, in.Source, in.Dest, in.Comment, in.ICMPType, in.Action,
			in.Log, in.SetName, in.SetEntry, in.Flags)
	}
	k := &applyTester{}
	f.Cleanup(k.close)
	f.Fuzz(func(t *testing.T, tap, bridge, mac, ips, proto, sport, dport, source, dest, comment, icmpType, action string, log bool, setName, setEntry string, flags uint8) {
		in := fuzzconf.Input{Tap: tap, Bridge: bridge, MAC: mac, IPs: ips, Proto: proto, SPort: sport, DPort: dport, Source: source, Dest: dest,
			Comment: comment, ICMPType: icmpType, Action: action, Log: log, SetName: setName, SetEntry: setEntry, Flags: flags}
		data := in.JSON()
		nc, err := config.Parse(data)
		if err != nil {
			return
		}
		res, err := config.Resolve(nc, ruleset.Limits, config.Env{ContainerID: "fuzz-1", IfName: "eth0"}, nil, nil)
		if err != nil {
			return
		}
		p, err := Build(res.Model, DefaultMarks)
		if err != nil {
			t.Fatalf("validation accepted the config, Build refuses it: %v\nconfig: %s", err, data)
		}
		if text := p.String(); !strings.Contains(text, `"`+res.Model.Tap.Name+`"`) {
			t.Fatalf("the plan's text does not name the tap's elements:\n%s\nconfig: %s", text, data)
		}
		if err := k.test(p); err != nil {
			t.Fatalf("%v\nconfig: %s\nplan:\n%s", err, data, p)
		}
	})
}

// applyTester applies plans in a namespace of its own, made on first use.
type applyTester struct {
	once sync.Once
	ns   *testnet.NS
	err  error
}

func (k *applyTester) close() {
	if k.ns != nil {
		_ = k.ns.Close()
	}
}

func (k *applyTester) test(p *Plan) error {
	if !testnet.KernelTests() {
		return nil
	}
	k.once.Do(func() {
		if _, err := exec.LookPath("nft"); err != nil {
			return
		}
		k.ns, k.err = testnet.NewNS(testnet.FuzzNSPrefix())
	})
	if k.err != nil {
		return fmt.Errorf("making the fuzz namespace: %w", k.err)
	}
	if k.ns == nil {
		return nil
	}
	kern := Kernel{Marks: DefaultMarks}
	list := func() (string, error) {
		out, err := k.ns.Run("nft", "list", "ruleset")
		return string(out), err
	}
	// Each input starts from an empty namespace.
	if err := k.ns.Do(func() error { return kern.Flush() }); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if err := k.ns.Do(func() error { return kern.Apply(p) }); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	var diffs []string
	if err := k.ns.Do(func() (err error) { diffs, err = kern.Diffs(p); return err }); err != nil {
		return fmt.Errorf("reading back: %w", err)
	}
	if len(diffs) > 0 {
		return fmt.Errorf("read back right after apply, it differs: %q", diffs)
	}
	first, err := list()
	if err != nil {
		return err
	}
	if err := k.ns.Do(func() error { return kern.Apply(p) }); err != nil {
		return fmt.Errorf("second apply: %w", err)
	}
	if again, err := list(); err != nil || again != first {
		return fmt.Errorf("a second apply changed the ruleset (%v):\n%s\n---\n%s", err, first, again)
	}
	if err := k.ns.Do(func() error { return kern.Remove(p.Tap) }); err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	return k.noTrace(p.Tap)
}

// noTrace checks that nothing in the namespace is the tap's: no chain
// named for it (its record, its log chains), no element of a set or map
// keyed by it.
func (k *applyTester) noTrace(tap string) error {
	out, err := k.ns.Run("nft", "-j", "list", "ruleset")
	if err != nil {
		return err
	}
	l, err := ParseListing(out)
	if err != nil {
		return err
	}
	for _, c := range l.Chains {
		if c.Name == ruleset.RecordChain(tap) || isLogChainOf(c.Name, tap) {
			return fmt.Errorf("after remove, chain %s %s is left", c.Family, c.Name)
		}
	}
	for _, s := range l.Sets {
		for i, e := range s.Elements {
			for _, part := range e.Key {
				if part.Kind == ValString && part.Str == tap {
					return fmt.Errorf("after remove, %s %s holds %s", s.Family, s.Name, s.ElementText(i))
				}
			}
		}
	}
	return nil
}

// isLogChainOf says whether name is one of the tap's log chains
// (LogChainName).
func isLogChainOf(name, tap string) bool {
	for _, dir := range []string{"in", "out"} {
		for _, f := range []Family{IPv4, IPv6} {
			if strings.HasPrefix(name, LogChainName(tap, dir, f, "")) {
				return true
			}
		}
	}
	return false
}
