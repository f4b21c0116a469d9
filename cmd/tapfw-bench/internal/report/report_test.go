package report

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	var s []Sample
	for i := 1; i <= 30; i++ {
		s = append(s, Sample{WallMs: float64(i)})
	}
	st := Summarize(s)
	if st.P50 != 15 || st.P95 != 29 || st.Min != 1 || st.Max != 30 {
		t.Errorf("p50 %v p95 %v min %v max %v", st.P50, st.P95, st.Min, st.Max)
	}
}

// The markdown of a stored run is exactly its .md file (what tapfw-bench
// -from-json testdata/NAME.json prints): a change to the report's tables
// shows in that file's diff. quick.json is a run of one backend in the
// format before Backends; both.json measured both backends. After an
// intended change, rewrite them with
//
//	go run ./cmd/tapfw-bench -from-json cmd/tapfw-bench/internal/report/testdata/NAME.json > cmd/tapfw-bench/internal/report/testdata/NAME.md
func TestMarkdownOfAStoredRun(t *testing.T) {
	for _, name := range []string{"quick", "both"} {
		rep, err := ReadJSON("testdata/" + name + ".json")
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile("testdata/" + name + ".md")
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		WriteMarkdown(&got, rep)
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("markdown differs from testdata/%s.md:\n%s", name, got.String())
		}
	}
}

// A file written before Backends reads as a run of the iptables backend.
func TestReadJSONOfOneBackend(t *testing.T) {
	rep, err := ReadJSON("testdata/quick.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Backends) != 1 || rep.Backends[0].Backend != "iptables" || len(rep.Backends[0].Control) != 2 || len(rep.Control)+len(rep.Data) != 0 {
		t.Errorf("backends %+v", rep.Backends)
	}
}

func stats(p50 float64) *CallStats { return &CallStats{P50: p50} }

func cp(n int, add, del float64) CPResult {
	return CPResult{N: n, PluginAdd: stats(add), PluginDel: stats(del)}
}

// The targets table: ratios first, each target met or missed and by how
// much, the baseline measured once serving both backends, and the
// backends held against each other at the largest N.
func TestTargetsTable(t *testing.T) {
	ipt := BackendRun{Backend: "iptables", Control: []CPResult{cp(100, 60, 66), cp(4000, 400, 140)}}
	ipt.Control[1].BaselineAdd, ipt.Control[1].BaselineDel = stats(3800), stats(620)
	nft := BackendRun{Backend: "nftables", Control: []CPResult{cp(100, 20, 19), cp(4000, 50, 20)}}
	nft.Data = []DPResult{
		{N: 1, Paths: []PathResult{{Path: "forward", Desc: "VM to VM", FwPPS: 100e3, NoFwPPS: 300e3}}},
		{N: 4000, Paths: []PathResult{{Path: "forward", Desc: "VM to VM", FwPPS: 90e3, NoFwPPS: 300e3, Checks: &RuleChecks{Dispatch: 25}}},
			Established: &Established{Fw: TCPFigures{BulkBps: 9e9, SmallPps: 80e3}, Floor: TCPFigures{BulkBps: 10e9, SmallPps: 100e3}}},
	}
	var b bytes.Buffer
	writeTargets(&b, &Report{Backends: []BackendRun{ipt, nft}})
	out := b.String()
	for _, want := range []string{
		"| iptables | ADD p50 at N=4000 over N=100 | at most 2 | 6.67 | **missed** | 3.3× the target |",
		"| iptables | ADD baseline p50 over tapfw p50 at N=4000 | at least 10 | 9.5 | **missed** | 5% short |",
		"| nftables | ADD baseline p50 over tapfw p50 at N=4000 | at least 10 | 76.0 | met |  |",
		// The nftables backend's targets are its own.
		"| nftables | DEL p50 at N=4000 over N=100 | at most 1.5 | 1.05 | met |  |",
		"| nftables | ADD p50 at N=4000 over N=100 | at most 1.5 | 2.50 | **missed** | 1.7× the target |",
		"| both | ADD: iptables p50 over nftables p50 at N=4000 (speed-up) | at least 40 | 8.0 | **missed** | 80% short |",
		"| nftables | VM to VM packets/s at N=4000 over N=1 | at least 95% | 90% | **missed** | 5% short |",
		"| nftables | VM to VM packets/s at N=4000 over no firewall | at least 70% | 30% | **missed** | 57% short |",
		"| nftables | established TCP bulk throughput at N=4000 over the conntrack floor | at least 90% | 90% | met |  |",
		"| nftables | VM to VM rules checked per new packet at N=4000, worst tap | at most 20 | 25 | **missed** | 1.2× the target |",
		"| nftables | DEL p50 at N=4000 | at most 5 ms | 20.0 ms | **missed** | 4.0× the target |",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no row %q in\n%s", want, out)
		}
	}
	rows := strings.Split(strings.TrimSpace(out), "\n")
	seenAbs := false
	for _, r := range rows[4:] {
		abs := strings.Contains(r, " ms |") || strings.Contains(r, "rules checked")
		if seenAbs && !abs {
			t.Errorf("a ratio after an absolute figure: %s", r)
		}
		seenAbs = seenAbs || abs
	}
}

// A run whose nftables backend went on to 10,000 taps: its growth is
// from 100 to 10,000, its latency and the speed-up are at 4000, where
// both backends were measured.
func TestTargetsBeyondTheIptablesRun(t *testing.T) {
	ipt := BackendRun{Backend: "iptables", Control: []CPResult{cp(100, 60, 66), cp(4000, 400, 140)}}
	nft := BackendRun{Backend: "nftables", Control: []CPResult{cp(100, 20, 19), cp(4000, 25, 20), cp(10000, 40, 21)}}
	var b bytes.Buffer
	writeTargets(&b, &Report{Backends: []BackendRun{ipt, nft}})
	out := b.String()
	for _, want := range []string{
		"| nftables | ADD p50 at N=10000 over N=100 | at most 1.5 | 2.00 | **missed** | 1.3× the target |",
		"| nftables | ADD p50 at N=4000 | at most 5 ms | 25.0 ms | **missed** | 5.0× the target |",
		"| both | ADD: iptables p50 over nftables p50 at N=4000 (speed-up) | at least 40 | 16.0 | **missed** | 60% short |",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no row %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "p50 at N=10000 |") {
		t.Errorf("a latency target at 10,000 taps:\n%s", out)
	}
}

// With the conntrack floor measured, the targets show what it keeps of
// no firewall and what tapfw keeps of it, for comparison.
func TestTargetsWithTheConntrackFloor(t *testing.T) {
	nft := BackendRun{Backend: "nftables", Data: []DPResult{
		{N: 1, Paths: []PathResult{{Path: "forward", Desc: "VM to VM", FwPPS: 60e3, NoFwPPS: 120e3, FloorPPS: 80e3}}},
	}}
	var b bytes.Buffer
	writeTargets(&b, &Report{Backends: []BackendRun{nft}})
	for _, want := range []string{
		"| nftables | VM to VM packets/s at N=1: the conntrack floor over no firewall (what any stateful firewall keeps) | - | 67% | no target |  |",
		"| nftables | VM to VM packets/s at N=1 over the conntrack floor | - | 75% | no target |  |",
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("no row %q in\n%s", want, b.String())
		}
	}
}

// The kernel's floor under an nftables ADD is the commit of its dispatch
// element, not the nft tool's one-rule add (which reads the whole ruleset
// first); under an iptables ADD it is the one-rule append.
func TestAddOverFloor(t *testing.T) {
	r := CPResult{
		PluginAdd:  &CallStats{P50: 21.4},
		FloorAdd:   &CallStats{P50: 23.2},
		CommitJump: &CallStats{P50: 6.4},
	}
	if got := addOverFloor(r, true); got != ms(15.0) {
		t.Errorf("nftables: %q, want %q", got, ms(15.0))
	}
	if got := addOverFloor(r, false); got != ms(-1.8) {
		t.Errorf("iptables: %q, want %q", got, ms(-1.8))
	}
	r.CommitJump = nil
	if got := addOverFloor(r, true); got != "" {
		t.Errorf("nftables without the commit measured: %q, want blank", got)
	}
}

// The RSS caption says which peak the columns are: the plugin's own
// report only when every call made one.
func TestRSSMeaning(t *testing.T) {
	reported := Summarize([]Sample{{MaxRSSKB: 9000, RSSReported: true}, {MaxRSSKB: 9100, RSSReported: true}})
	mixed := Summarize([]Sample{{MaxRSSKB: 9000, RSSReported: true}, {MaxRSSKB: 170000}})
	b := &BackendRun{Control: []CPResult{{PluginAdd: reported, PluginDel: reported}}}
	if got := rssMeaning(b); !strings.Contains(got, "plugin's own peak") {
		t.Errorf("all reported: %q", got)
	}
	b.Control = append(b.Control, CPResult{PluginAdd: reported, PluginDel: mixed})
	if got := rssMeaning(b); !strings.Contains(got, "upper bound") {
		t.Errorf("one call without a report: %q", got)
	}
}

// The apply table lists the N at which apply was measured, beside the
// ADD at that N, and is left out of runs that did not measure it.
func TestApplyTable(t *testing.T) {
	rep := &Report{Params: Params{Calls: 2}}
	b := &BackendRun{Backend: "nftables", Control: []CPResult{
		{N: 100, PluginAdd: &CallStats{P50: 20}},
		{N: 1000, PluginAdd: &CallStats{P50: 25}, ApplyChange: &CallStats{P50: 50, P95: 60}, ApplySame: &CallStats{P50: 10, P95: 12}},
	}}
	var got bytes.Buffer
	(md{&got}).apply(rep, b)
	want := fmt.Sprintf("| 1000 | %s | %s | %s | %s | %s | %s |\n", ms(50), ms(60), ms(10), ms(12), ms(25), ratio(50, 25))
	if !strings.Contains(got.String(), want) || strings.Contains(got.String(), "| 100 |") {
		t.Errorf("apply table:\n%s\nwant the row\n%s", got.String(), want)
	}
	got.Reset()
	b.Control = b.Control[:1]
	if (md{&got}).apply(rep, b); got.Len() != 0 {
		t.Errorf("a run without apply prints:\n%s", got.String())
	}
}

// TestConsoleTable: the console's table has a row for each N it was
// measured at, and nothing for a run without it.
func TestConsoleTable(t *testing.T) {
	rep := &Report{Params: Params{Calls: 2}}
	c := func(p50 float64) *CallStats { return &CallStats{P50: p50, P95: p50 + 1} }
	b := &BackendRun{Backend: "nftables", Control: []CPResult{
		{N: 100, PluginAdd: c(20)},
		{N: 1000, ApplyChange: c(50), ConsoleTaps: c(5), ConsolePage: c(6), ConsolePut: c(55), ListCLI: c(12)},
	}}
	var got bytes.Buffer
	(md{&got}).console(rep, b)
	want := fmt.Sprintf("| 1000 | %s | %s | %s | %s | %s | %s |\n", ms(5), ms(6), ms(12), ms(55), ms(56), ms(50))
	if !strings.Contains(got.String(), want) || strings.Contains(got.String(), "| 100 |") {
		t.Errorf("console table:\n%s\nwant the row\n%s", got.String(), want)
	}
	got.Reset()
	b.Control = b.Control[:1]
	if (md{&got}).console(rep, b); got.Len() != 0 {
		t.Errorf("a run without the console prints:\n%s", got.String())
	}
}
