package inspect

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/inspect -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func plan(t *testing.T, tap string) *ruleset.Plan {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "dualstack", tap+".json"))
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
	p, err := ruleset.Build(r.Model)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dualstack installs the dual-stack sample with the fake backend, then
// puts counters on some rules the way iptables-save -c prints them.
func dualstack(t *testing.T) *Snapshot {
	t.Helper()
	tb, tb6, sets := netfilter.NewFakeTables(), netfilter.NewFakeTables(), netfilter.NewFakeSets()
	fw := &netfilter.Firewall{Tables: tb, Tables6: tb6, Sets: sets, Lock: netfilter.NoLock{}}
	for _, tap := range []string{"tap201i0", "tap202i0"} {
		if _, err := fw.Apply(plan(t, tap)); err != nil {
			t.Fatal(err)
		}
	}
	count := func(save []byte, counts map[string]string) []byte {
		var out []string
		for _, l := range strings.Split(string(save), "\n") {
			if strings.HasPrefix(l, "-A ") {
				c := "[0:0] "
				for what, n := range counts {
					if strings.Contains(l, what) {
						c = n + " "
					}
				}
				l = c + l
			}
			out = append(out, l)
		}
		return []byte(strings.Join(out, "\n"))
	}
	s := &Snapshot{Bridges: map[string]string{"tap201i0": "vmbr6"}}
	save, _ := tb.Save()
	save6, _ := tb6.Save()
	var err error
	if s.V4, err = netfilter.ParseSave(count(save, map[string]string{
		"tap201i0: in rule 1 web":     "[10:600]",
		"tap201i0: in rule 7":         "[3:180]",
		"tap201i0: policy drop":       "[2:120]",
		"tap201i0: ip anti-spoof":     "[4:240]",
		"tap201i0: established":       "[100:10000]",
		"tap202i0: policy accept":     "[7:700]",
		"tap201i0: out rule 1 no mai": "[1:60]",
	})); err != nil {
		t.Fatal(err)
	}
	if s.V6, err = netfilter.ParseSave(count(save6, map[string]string{
		"tap201i0: in rule 1 web": "[5:400]",
		"tap201i0: in rule 5":     "[2:160]",
		"tap201i0: policy drop":   "[1:80]",
	})); err != nil {
		t.Fatal(err)
	}
	if s.Sets, err = sets.List(); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestShow: a tap's rules in the config's words, both families joined,
// counters summed; its traffic by direction.
func TestShow(t *testing.T) {
	s := dualstack(t)
	tap, rules := s.Show("tap201i0")
	var b bytes.Buffer
	if err := WriteRules(&b, tap, rules); err != nil {
		t.Fatal(err)
	}
	golden(t, "show-tap201i0.txt", b.Bytes())
	byNum := map[int]Rule{}
	for _, r := range rules {
		if r.Direction == "in" && r.Kind == "rule" {
			byNum[r.Number] = r
		}
	}
	if r := byNum[1]; r.Packets != 15 || r.Bytes != 1000 || strings.Join(r.Families, ",") != "ipv4,ipv6" || r.Match != "tcp dport 80" || r.Comment != "web" {
		t.Errorf("in rule 1: %+v", r)
	}
	if r := byNum[5]; r.Action != "REJECT" || strings.Join(r.Families, ",") != "ipv6" || r.Match != "from 2001:db8:1::202/128 tcp dport 8080" {
		t.Errorf("in rule 5: %+v", r)
	}
	if r := byNum[7]; !r.Log || r.Action != "DROP" || strings.Join(r.Families, ",") != "ipv4" {
		t.Errorf("in rule 7: %+v", r)
	}
	if r := byNum[2]; r.Match != "tcp from +mgmt dport 22" {
		t.Errorf("in rule 2: %+v", r)
	}
	if tap.Rules["in"] != 7 || tap.Rules["out"] != 3 {
		t.Errorf("rule counts %v, want in 7 out 3", tap.Rules)
	}
	in := tap.Traffic["in"]
	// accepted: web 15, established 100; dropped: rule 7 3, rule 5 (REJECT) 2, policy 3.
	if in.Accepted.Packets != 115 || in.Dropped.Packets != 8 {
		t.Errorf("in traffic %+v", in)
	}
	if out := tap.Traffic["out"]; out.Dropped.Packets != 5 || out.Accepted.Packets != 100 {
		t.Errorf("out traffic %+v", out)
	}
	if tap.MAC != "02:00:00:00:02:01" || !tap.Attached || tap.ContainerID != "vm-tap201i0" {
		t.Errorf("tap %+v", tap)
	}
}

// TestList: every tap, and JSON that scripts can read back.
func TestList(t *testing.T) {
	s := dualstack(t)
	taps := s.Taps()
	var b bytes.Buffer
	if err := WriteTaps(&b, taps); err != nil {
		t.Fatal(err)
	}
	golden(t, "list.txt", b.Bytes())
	js, err := json.Marshal(taps)
	if err != nil {
		t.Fatal(err)
	}
	var back []Tap
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back) != 2 || back[1].Name != "tap202i0" || back[1].Traffic["out"].Accepted.Packets != 7 {
		t.Errorf("JSON round trip: %s", js)
	}
}

// TestMetrics: the Prometheus text format, golden.
func TestMetrics(t *testing.T) {
	var b bytes.Buffer
	if err := WriteMetrics(&b, dualstack(t).All()); err != nil {
		t.Fatal(err)
	}
	golden(t, "metrics.txt", b.Bytes())
	// Every series once: Prometheus refuses an exposition that repeats one.
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		series := l[:strings.LastIndexByte(l, ' ')]
		if seen[series] {
			t.Errorf("series %s twice", series)
		}
		seen[series] = true
	}
	for _, want := range []string{
		"tapfw_taps 2\n",
		`tapfw_tap_packets_total{tap="tap201i0",bridge="vmbr6",direction="in",verdict="dropped"} 8` + "\n",
		`tapfw_rule_packets_total{tap="tap201i0",bridge="vmbr6",direction="in",rule="1",action="ACCEPT"} 15` + "\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// A tap that only a trie leaf still names (its chains and set are gone,
// as a crash can leave it), or only its layer-2 elements, is listed, as GC
// sees it.
func TestTapNamesLeafOnly(t *testing.T) {
	tb, err := netfilter.ParseSave([]byte("*filter\n:TFW-DI - [0:0]\n:TFW-DI-t - [0:0]\n" +
		"-A TFW-DI -m physdev --physdev-in t+ -m comment --comment \"@dispatch: DI t #00000000\" -g TFW-DI-t\n" +
		"-A TFW-DI-t -m physdev --physdev-in tap9 -m comment --comment \"tap9: dispatch net=- cid=- if=- #00000000\" -g TFW-T-tap9-OUT\n" +
		"COMMIT\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := &Snapshot{V4: tb, Sets: map[string][]netip.Prefix{"tfw-t-tap7": nil}, L2Taps: []string{"tap5", "tap9"}}
	if got := s.TapNames(); strings.Join(got, " ") != "tap5 tap7 tap9" {
		t.Errorf("TapNames = %v, want [tap5 tap7 tap9]", got)
	}
	if got := len(s.Taps()); got != 3 {
		t.Errorf("Taps lists %d taps, want 3", got)
	}
}
