package netfilter

import (
	"fmt"
	"math/rand"
	"net"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/model"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

func randomTap(rng *rand.Rand, name string) model.Tap {
	var ips []netip.Prefix
	for i := 0; i < 1+rng.Intn(3); i++ {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(rng.Intn(256))})
		bits := []int{32, 32, 32, 30, 28}[rng.Intn(5)]
		ips = append(ips, netip.PrefixFrom(a, bits).Masked())
	}
	mac, _ := net.ParseMAC(fmt.Sprintf("02:00:00:00:%02x:%02x", rng.Intn(256), rng.Intn(256)))
	return model.Tap{Name: name, Bridge: fmt.Sprintf("br%d", rng.Intn(3)), MAC: mac, IPs: ips,
		MACFilter: true, IPFilter: true, DHCP: true, PolicyIn: model.Drop, PolicyOut: model.Drop,
		Network: "n", ContainerID: "c-" + name, IfName: name}
}

func buildPlan(t *testing.T, tap model.Tap) *ruleset.Plan {
	t.Helper()
	p, err := ruleset.Build(model.Config{Tap: tap, Bridge: model.Bridge{Name: tap.Bridge}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkTries asserts the tries hold exactly the leaves of the taps given,
// and no node is empty or unreachable.
func checkTries(t *testing.T, tb *FakeTables, taps map[string]model.Tap) {
	t.Helper()
	save, _ := tb.Save()
	table, err := ParseSave(save)
	if err != nil {
		t.Fatal(err)
	}
	wantLeaves := map[string]bool{}
	for _, tap := range taps {
		for _, path := range buildPlan(t, tap).Paths {
			wantLeaves[path.Leaf.Chain+" "+path.Leaf.Spec()] = true
		}
	}
	targets := map[string]bool{}
	for _, chain := range table.Order {
		if !ruleset.IsTrieChain(chain) {
			continue
		}
		root := false
		for _, tr := range ruleset.Tries {
			root = root || chain == tr.Root
		}
		if !root && len(table.Chains[chain]) == 0 {
			t.Errorf("empty trie node %s left", chain)
		}
		for _, s := range table.Chains[chain] {
			f := strings.Fields(s)
			targets[f[len(f)-1]] = true
			if Owner(s) == ruleset.EdgeOwner {
				continue
			}
			if !wantLeaves[chain+" "+s] {
				t.Errorf("unexpected leaf in %s: %s", chain, s)
			}
			delete(wantLeaves, chain+" "+s)
		}
	}
	for l := range wantLeaves {
		t.Errorf("missing leaf %s", l)
	}
	for _, chain := range table.Order {
		if ruleset.IsTrieChain(chain) && strings.Count(chain, "-") > 1 && !targets[chain] {
			t.Errorf("node %s is not reached by any edge", chain)
		}
	}
}

// Random ADDs, re-ADDs with other addresses, and DELs keep the tries
// exact; every live tap passes CHECK; removing all leaves only the roots.
func TestTrieRandomOperations(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			fw, tb, _ := newFake()
			live := map[string]model.Tap{}
			names := []string{"tap1", "tap10", "tap100", "tap101i0", "tap101i1", "tap2", "tap21", "veth0", "veth01", "v", "tap1000i0", "x.y-z_1"}
			for step := 0; step < 120; step++ {
				name := names[rng.Intn(len(names))]
				if _, ok := live[name]; ok && rng.Intn(3) == 0 {
					if err := fw.Remove(name); err != nil {
						t.Fatalf("step %d: remove %s: %v", step, name, err)
					}
					delete(live, name)
				} else {
					tap := randomTap(rng, name)
					if _, err := fw.Apply(buildPlan(t, tap)); err != nil {
						t.Fatalf("step %d: apply %s: %v", step, name, err)
					}
					live[name] = tap
				}
				checkTries(t, tb, live)
				if t.Failed() {
					t.Fatalf("after step %d", step)
				}
			}
			keys := make([]string, 0, len(live))
			for k := range live {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if err := fw.Check(buildPlan(t, live[k])); err != nil {
					t.Errorf("check %s: %v", k, err)
				}
			}
			for _, k := range keys {
				if err := fw.Remove(k); err != nil {
					t.Fatal(err)
				}
			}
			save, _ := tb.Save()
			for _, l := range strings.Split(string(save), "\n") {
				if strings.HasPrefix(l, ":TFW-D") && strings.Count(l, "-") > 2 {
					t.Errorf("node left after removing every tap: %s", l)
				}
				if strings.HasPrefix(l, "-A TFW-D") {
					t.Errorf("rule left after removing every tap: %s", l)
				}
			}
		})
	}
}
