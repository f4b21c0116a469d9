package testnet

import (
	"slices"
	"testing"
)

// TestSeedBaseline builds the sample network without any firewall: every
// probe must pass, twice, and Close must remove every namespace.
func TestSeedBaseline(t *testing.T) {
	NeedKernel(t)
	s, err := NewSeed()
	if err != nil {
		t.Fatal(err)
	}
	nss := s.Namespaces()
	createdMu.Lock()
	for _, n := range nss {
		created = append(created, n.Name)
	}
	createdMu.Unlock()
	t.Cleanup(func() { _ = s.Close() })

	probes := s.Probes()
	if len(probes) == 0 {
		t.Fatal("no probes")
	}
	names := map[string]bool{}
	for _, p := range probes {
		if names[p.Name] {
			t.Errorf("probe name %q twice", p.Name)
		}
		names[p.Name] = true
		if p.Why == "" {
			t.Errorf("probe %q: no Why", p.Name)
		}
	}
	for round := 1; round <= 2; round++ {
		for _, p := range probes {
			if !s.Run(p) {
				t.Errorf("round %d: %s: dropped on the bare network", round, p.Name)
			}
		}
	}
	if s.Run(Probe{Name: "no such probe"}) {
		t.Error("an unknown probe passed")
	}
	if got := SeedTaps(); !slices.Equal(got, []string{"tap110i0", "tap123i0", "tap115i0"}) {
		t.Errorf("SeedTaps() = %v", got)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, n := range nss {
		if _, err := n.Run("true"); err == nil {
			t.Errorf("namespace %s still there after Close", n.Name)
		}
	}
}
