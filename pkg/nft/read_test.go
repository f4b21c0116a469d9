package nft

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/google/nftables"
)

// TestKernelReadAhead reads a loaded plan's chains ahead, on sockets the
// workers use from threads outside the test's namespace, and finds what
// reading each chain on the caller's socket finds: the rules, their
// anonymous sets, a missing chain as missing. Workers that opened their
// own sockets would read the host's namespace, which has no tapfw tables.
func TestKernelReadAhead(t *testing.T) {
	p, err := Build(sampleConfig(t, "dualstack", "tap202i0"), DefaultMarks)
	if err != nil {
		t.Fatal(err)
	}
	inNS(t, func() error {
		if err := nftLoad(Skeleton(DefaultMarks) + p.String()); err != nil {
			return err
		}
		c, err := nftables.New(nftables.AsLasting())
		if err != nil {
			return err
		}
		defer c.CloseLasting()
		want := append(skeletonChains(), p.chainsOf()...)
		want = append(want, chainWant{table: bridgeTable, name: "tfw-pi4-missing", sets: true})
		open := func() (*nftables.Conn, error) { return nftables.New(nftables.AsLasting()) }
		rd := &reader{c: c}
		if err := rd.readAhead(open, want); err != nil {
			return err
		}
		found := 0
		for _, w := range unique(want) {
			direct, exists, err := readChain(c, w.table, w.name, true)
			if err != nil {
				return err
			}
			ahead, aheadExists, err := rd.chain(w.table, w.name, w.sets)
			if err != nil {
				return fmt.Errorf("%s: %w", w.name, err)
			}
			if aheadExists != exists || len(ahead) != len(direct) {
				t.Errorf("%s: read ahead %v with %d rules, read directly %v with %d", w.name, aheadExists, len(ahead), exists, len(direct))
				continue
			}
			for i := range direct {
				if comment(ahead[i].Rule) != comment(direct[i].Rule) || (w.sets && !reflect.DeepEqual(ahead[i].Sets, direct[i].Sets)) {
					t.Errorf("%s rule %d: read ahead %q %v, directly %q %v", w.name, i, comment(ahead[i].Rule), ahead[i].Sets, comment(direct[i].Rule), direct[i].Sets)
				}
			}
			if exists {
				found++
			}
		}
		if found < len(p.Profiles)+len(StaticChains) {
			t.Errorf("only %d chains found", found)
		}
		if _, ok, err := rd.chain(bridgeTable, "tfw-pi4-missing", true); ok || err != nil {
			t.Errorf("a missing chain read ahead: %v %v", ok, err)
		}
		// A chain read ahead without its sets is read again when asked
		// with them.
		prof := p.Profiles[0].Name
		rd.ahead[keyOf(bridgeTable, prof)] = chainRead{exists: true}
		if have, _, err := rd.installed(bridgeTable, prof); err != nil || !sameRules(have, p.Profiles[0].Rules) {
			t.Errorf("profile %s read again: %v, the same rules: %v", prof, err, err == nil && sameRules(have, p.Profiles[0].Rules))
		}
		return nil
	})
}
