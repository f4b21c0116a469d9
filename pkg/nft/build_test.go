package nft

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// samples are the configs the goldens render: the seed's taps and the
// dual-stack sample's.
var samples = []struct{ dir, tap string }{
	{"seed", "tap110i0"}, {"seed", "tap123i0"}, {"seed", "tap115i0"},
	{"dualstack", "tap201i0"}, {"dualstack", "tap202i0"},
	{"pve", "tap301i0"},
}

func sampleConfig(t testing.TB, dir, tap string) model.Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", dir, tap+".json"))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := config.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	r, err := config.Resolve(conf, ruleset.Limits, config.Env{ContainerID: "vm-" + tap, IfName: tap}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.Model
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

// TestGoldenPlan renders each sample tap's nftables chains and map
// elements.
func TestGoldenPlan(t *testing.T) {
	for _, s := range samples {
		t.Run(s.tap, func(t *testing.T) {
			p, err := Build(sampleConfig(t, s.dir, s.tap), DefaultMarks)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "nft-"+s.dir+"-"+s.tap+".nft", []byte(p.String()))
		})
	}
}

func TestGoldenSkeleton(t *testing.T) {
	golden(t, "nft-skeleton.nft", []byte(Skeleton(DefaultMarks)))
}

func TestMarksValidate(t *testing.T) {
	if err := DefaultMarks.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Marks{
		{},
		{Established: 3, Invalid: 4, Reject: 8, RejectTCP: 16, Group: 32},
		{Established: 1, Invalid: 1, Reject: 8, RejectTCP: 16, Group: 32},
	} {
		if m.Validate() == nil {
			t.Errorf("%+v accepted", m)
		}
	}
}

func TestMarksFromMask(t *testing.T) {
	if m, err := MarksFromMask(0x1f000000); err != nil || m != DefaultMarks {
		t.Errorf("0x1f000000: %+v %v, want the defaults", m, err)
	}
	m, err := MarksFromMask(0x8000000f)
	if err != nil || m != (Marks{Established: 1, Invalid: 2, Reject: 4, RejectTCP: 8, Group: 0x80000000}) {
		t.Errorf("0x8000000f: %+v %v", m, err)
	}
	for _, bad := range []uint32{0, 0xf, 0x3f} {
		if _, err := MarksFromMask(bad); err == nil {
			t.Errorf("%#x accepted", bad)
		}
	}
}

// A rate set's elements expire once their bucket would be full again:
// the burst at the rate, rounded up to a second.
func TestRefill(t *testing.T) {
	for _, c := range []struct {
		rate  string
		burst int
		want  string
	}{{"5/min", 0, "1m"}, {"600/min", 0, "1s"}, {"10/second", 20, "2s"}, {"2/hour", 5, "2h30m"}, {"1/day", 3, "3d"}, {"7/min", 5, "43s"}} {
		d, err := refill(c.rate, c.burst)
		if err != nil || nftDuration(d) != c.want {
			t.Errorf("%s burst %d: %v %v, want %s", c.rate, c.burst, nftDuration(d), err, c.want)
		}
	}
	if _, err := refill("fast", 0); err == nil {
		t.Error("a bad rate is no error")
	}
}
