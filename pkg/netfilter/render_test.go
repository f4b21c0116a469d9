package netfilter

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

var seedTaps = []string{"tap110i0", "tap123i0", "tap115i0"}

// seedPlan builds the plan of one of the seed's taps from testdata/seed.
func seedPlan(t testing.TB, tap string) *ruleset.Plan {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "seed", tap+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return planFrom(t, data, tap)
}

func planFrom(t testing.TB, data []byte, tap string) *ruleset.Plan {
	t.Helper()
	conf, err := config.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	r, err := config.Resolve(conf, ruleset.Limits, config.Env{ContainerID: "vm-" + tap, IfName: tap}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ruleset.Build(r.Model)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("..", "..", "testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `make update` to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run `make update` if the change is meant):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// firstAdd renders what the first ADD of a plan applies to an empty
// kernel: set operations and the restore file of iptables, then of
// ip6tables.
func firstAdd(t *testing.T, p *ruleset.Plan) []byte {
	t.Helper()
	var b strings.Builder
	for _, q := range []*ruleset.Plan{p, p.V6} {
		save, _ := NewFakeTables().Save()
		table, err := ParseSave(save)
		if err != nil {
			t.Fatal(err)
		}
		c, err := PlanChanges(TableReader{T: table}, nil, q)
		if err != nil {
			t.Fatal(err)
		}
		if q.Fam().V6 {
			b.WriteString("# ip6tables\n")
		}
		b.WriteString(c.String())
	}
	return []byte(b.String())
}

// TestGoldenFirstAdd renders what the first ADD of each seed tap and of
// each dual-stack tap applies to an empty kernel.
func TestGoldenFirstAdd(t *testing.T) {
	for _, tap := range seedTaps {
		t.Run(tap, func(t *testing.T) {
			golden(t, "seed-add-"+tap+".txt", firstAdd(t, seedPlan(t, tap)))
		})
	}
	for _, tap := range dualTaps {
		t.Run(tap, func(t *testing.T) {
			golden(t, "dualstack-add-"+tap+".txt", firstAdd(t, dualPlan(t, tap)))
		})
	}
	t.Run("tap301i0", func(t *testing.T) {
		golden(t, "pve-add-tap301i0.txt", firstAdd(t, pvePlan(t)))
	})
}

// pvePlan is the plan of the Proxmox-style sample: testdata/pve.
func pvePlan(t testing.TB) *ruleset.Plan {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "pve", "tap301i0.json"))
	if err != nil {
		t.Fatal(err)
	}
	return planFrom(t, data, "tap301i0")
}

// The dual-stack sample: testdata/dualstack.
var dualTaps = []string{"tap201i0", "tap202i0"}

func dualPlan(t testing.TB, tap string) *ruleset.Plan {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "dualstack", tap+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return planFrom(t, data, tap)
}

// TestGoldenSeedTable applies the three seed taps in turn and renders the
// resulting tables and sets: shared chains once, each tap's chains and
// jumps. The same for the dual-stack sample.
func TestGoldenSeedTable(t *testing.T) {
	for _, sample := range []struct {
		name string
		taps []string
		plan func(testing.TB, string) *ruleset.Plan
	}{{"seed", seedTaps, seedPlan}, {"dualstack", dualTaps, dualPlan}} {
		t.Run(sample.name, func(t *testing.T) {
			fw, tb, sets := newFake()
			for _, tap := range sample.taps {
				if _, err := fw.Apply(sample.plan(t, tap)); err != nil {
					t.Fatal(err)
				}
			}
			golden(t, sample.name+"-table.txt", tablesAndSets(fw, tb, sets))
		})
	}
}

// tablesAndSets renders both tables and every set of a fake firewall.
func tablesAndSets(fw *Firewall, tb *FakeTables, sets *FakeSets) []byte {
	save, _ := tb.Save()
	var b strings.Builder
	b.Write(save)
	save6, _ := fw.Tables6.Save()
	b.WriteString("# ip6tables\n")
	b.Write(save6)
	list, _ := sets.List()
	names := make([]string, 0, len(list))
	for n := range list {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		b.WriteString("# ipset " + n + ":")
		for _, e := range list[n] {
			b.WriteString(" " + entryString(e))
		}
		b.WriteString("\n")
	}
	return []byte(b.String())
}

func newFake() (*Firewall, *FakeTables, *FakeSets) {
	tb, sets := NewFakeTables(), NewFakeSets()
	return &Firewall{Tables: tb, Tables6: NewFakeTables(), Sets: sets, Lock: NoLock{}}, tb, sets
}

var errBoom = errors.New("boom")

func readSeed(t testing.TB, tap string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "seed", tap+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestGoldenLayer2 renders each seed tap's layer-2 transaction (nft -f).
func TestGoldenLayer2(t *testing.T) {
	for _, tap := range seedTaps {
		t.Run(tap, func(t *testing.T) {
			p := seedPlan(t, tap)
			golden(t, "seed-l2-"+tap+".txt", []byte(p.L2.String()))
		})
	}
	golden(t, "pve-l2-tap301i0.txt", []byte(pvePlan(t).L2.String()))
	golden(t, "l2-skeleton.nft", []byte(ruleset.L2Skeleton()))
}
