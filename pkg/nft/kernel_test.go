package nft

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// inNS runs f in a fresh namespace, removed when the test ends.
func inNS(t *testing.T, f func() error) *testnet.NS {
	t.Helper()
	testnet.NeedKernel(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("no nft")
	}
	ns, err := testnet.NewNS("nft")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	if err := ns.Do(f); err != nil {
		t.Fatal(err)
	}
	return ns
}

func nftLoad(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f: %w: %s", err, out)
	}
	return nil
}

// TestKernelTextIsExprs loads each sample plan's text with nft and finds
// in the kernel exactly the expressions the backend sends over netlink:
// the text that goldens, render and CHECK show is what is installed.
func TestKernelTextIsExprs(t *testing.T) {
	for _, s := range samples {
		t.Run(s.tap, func(t *testing.T) {
			p, err := Build(sampleConfig(t, s.dir, s.tap), DefaultMarks)
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
				for _, ch := range append(p.Shared, p.Chains...) {
					have, ok, err := readChain(c, tableOf(ch.Table), ch.Name)
					if err != nil || !ok {
						return fmt.Errorf("chain %s: %v %v", ch.Name, ok, err)
					}
					if d := diffRules(have, ch.Rules); len(d) > 0 {
						t.Errorf("%s:\n%s", ch.Name, strings.Join(d, "\n"))
					}
				}
				for _, m := range p.Members {
					have, _, err := readChain(c, tableOf(m.Table), m.Chain)
					if err != nil {
						return err
					}
					if d := diffRules(have, m.Rules); len(d) > 0 {
						t.Errorf("%s:\n%s", m.Chain, strings.Join(d, "\n"))
					}
				}
				ok, err := skeletonOK(c, DefaultMarks)
				if err != nil || !ok {
					t.Errorf("skeleton loaded by nft is not seen as current: %v %v", ok, err)
				}
				return nil
			})
		})
	}
}

// TestKernelApplyRemove installs a tap over netlink, finds a second
// Apply changes nothing, and Remove leaves the skeleton only.
func TestKernelApplyRemove(t *testing.T) {
	p, err := Build(sampleConfig(t, "seed", "tap110i0"), DefaultMarks)
	if err != nil {
		t.Fatal(err)
	}
	ns := inNS(t, func() error {
		k := Kernel{Marks: DefaultMarks}
		if err := k.Apply(p); err != nil {
			return err
		}
		c, err := nftables.New(nftables.AsLasting())
		if err != nil {
			return err
		}
		defer c.CloseLasting()
		changed, err := k.queueChains(c, p)
		if err != nil || changed {
			return fmt.Errorf("a second apply would change: %v %v", changed, err)
		}
		return nil
	})
	out, err := ns.Run("nft", "list", "map", "bridge", Table, MapOut)
	if err != nil || !strings.Contains(string(out), `ip . "tap110i0" : jump tfw-o4-tap110i0`) {
		t.Fatalf("map after apply: %v\n%s", err, out)
	}
	diffs := func() []string {
		var d []string
		if err := ns.Do(func() (err error) { d, err = Kernel{Marks: DefaultMarks}.Diffs(p); return err }); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := diffs(); len(d) > 0 {
		t.Fatalf("diffs right after apply: %q", d)
	}
	// Drift: a rule added by hand, a map element sent elsewhere.
	for _, cmd := range [][]string{
		{"nft", "add", "rule", "bridge", Table, "tfw-i4-tap110i0", "accept"},
		{"nft", "delete", "element", "bridge", Table, MapIn, `{ ip6 . "tap110i0" }`},
		{"nft", "add", "element", "bridge", Table, MapIn, `{ ip6 . "tap110i0" : jump tfw-i4-tap110i0 }`},
	} {
		if out, err := ns.Run(cmd...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	d := strings.Join(diffs(), "\n")
	for _, want := range []string{"tfw-i4-tap110i0: rule 10 not wanted", `map tfw-in: ip6 . tap110i0 goes to "tfw-i4-tap110i0", want tfw-i6-tap110i0`} {
		if !strings.Contains(d, want) {
			t.Errorf("diffs do not say %q:\n%s", want, d)
		}
	}
	if err := ns.Do(func() error { return Kernel{Marks: DefaultMarks}.Remove("tap110i0") }); err != nil {
		t.Fatal(err)
	}
	out, err = ns.Run("nft", "list", "ruleset")
	if err != nil || strings.Contains(string(out), "tap110i0") {
		t.Fatalf("after remove: %v\n%s", err, out)
	}
}
