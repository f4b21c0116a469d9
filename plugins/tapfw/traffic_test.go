package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// seedConfDir holds the plugin configs of the seed's three taps.
const seedConfDir = "../../testdata/seed"

// TestSeedTraffic installs the seed's firewall on its sample network with
// the plugin binary, under each backend, and lets real packets decide:
// every probe passes on the bare network, has its expected verdict with
// the firewall, and the taps leave no trace after DEL (only the host
// firewall and the bridges' chains, which no tap owns, remain).
func TestSeedTraffic(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackendMode(t, testSeedTraffic)
}

func testSeedTraffic(t *testing.T, be testBackend) {
	s, err := testnet.NewSeed()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	s.Env = be.env
	probes := s.Probes()

	// The bare network: every probe passes, so a drop later is the firewall's.
	base := runSeedTwice(t, s, probes, "without firewall")
	for i, p := range probes {
		if !base[i] {
			t.Errorf("without firewall: %s: dropped; the sample network itself is broken", p.Name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	if err := s.Install(pluginBin, seedConfDir); err != nil {
		t.Fatal(err)
	}
	// ADD again: same config, nothing changes, no error.
	if err := s.Install(pluginBin, seedConfDir); err != nil {
		t.Fatalf("second ADD: %v", err)
	}
	got := runSeedTwice(t, s, probes, "with firewall")
	for i, p := range probes {
		if got[i] != p.Want {
			t.Errorf("with firewall: %s: got %s, want %s (%s)", p.Name, passDrop(got[i]), passDrop(p.Want), p.Why)
		}
	}
	if t.Failed() {
		t.Logf("with firewall:\n%s", be.state(t, s.Host))
	}
	for _, tap := range testnet.SeedTaps() {
		if _, err := s.Call(pluginBin, seedConfDir, "CHECK", tap); err != nil {
			t.Errorf("CHECK %s: %v", tap, err)
		}
	}

	if err := s.Remove(pluginBin, seedConfDir); err != nil {
		t.Fatal(err)
	}
	// DEL again: nothing left to remove, no error.
	if err := s.Remove(pluginBin, seedConfDir); err != nil {
		t.Fatalf("second DEL: %v", err)
	}
	rules := be.state(t, s.Host)
	for _, tap := range testnet.SeedTaps() {
		if strings.Contains(rules, tap) {
			t.Errorf("after DEL: the installed state still mentions %s:\n%s", tap, linesWith(rules, tap))
		}
	}
	// The taps' own rules are gone but the taps are still ports of their
	// bridges, named like taps: the bridges fail closed, so nothing that
	// goes through a tap passes; between router and host the host firewall,
	// which outlives the taps, still decides.
	after := runSeedTwice(t, s, probes, "after DEL")
	for i, p := range probes {
		switch {
		case p.ThroughTap() && after[i]:
			t.Errorf("after DEL: %s: passed through a tap without chains; the bridge should fail closed", p.Name)
		case !p.ThroughTap() && after[i] != p.Want:
			t.Errorf("after DEL: %s: got %s, want %s: the host firewall outlives the taps", p.Name, passDrop(after[i]), passDrop(p.Want))
		}
	}
	if t.Failed() {
		t.Logf("after DEL:\n%s", rules)
	}
}

// runSeedTwice runs the whole probe table twice and fails the test unless both
// rounds agree; it returns the first round's verdicts.
func runSeedTwice(t *testing.T, s *testnet.Seed, probes []testnet.Probe, stage string) []bool {
	t.Helper()
	var rounds [2][]bool
	for r := range rounds {
		for _, p := range probes {
			rounds[r] = append(rounds[r], s.Run(p))
		}
	}
	if !slices.Equal(rounds[0], rounds[1]) {
		for i, p := range probes {
			if rounds[0][i] != rounds[1][i] {
				t.Errorf("%s: %s: %s in round 1, %s in round 2", stage, p.Name, passDrop(rounds[0][i]), passDrop(rounds[1][i]))
			}
		}
	}
	return rounds[0]
}

func passDrop(pass bool) string {
	if pass {
		return "pass"
	}
	return "drop"
}

// linesWith returns the lines of text that contain sub.
func linesWith(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// logCommand logs the output of a command in ns, for diagnosis.
func logCommand(t *testing.T, ns *testnet.NS, args ...string) {
	t.Helper()
	out, err := ns.Run(args...)
	if err != nil {
		t.Logf("%v", err)
		return
	}
	t.Logf("%s:\n%s", strings.Join(args, " "), out)
}
