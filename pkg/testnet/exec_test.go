package testnet

import "testing"

func TestReportedRSS(t *testing.T) {
	for _, c := range []struct {
		stderr string
		kb     int64
		ok     bool
	}{
		{"tapfw: commit 1.00 ms\ntapfw: peak rss 8712 KiB\n", 8712, true},
		{"tapfw: commit 1.00 ms\n", 0, false},
		{"tapfw: peak rss x KiB\n", 0, false},
	} {
		if kb, ok := reportedRSS(c.stderr); kb != c.kb || ok != c.ok {
			t.Errorf("%q: %d %v, want %d %v", c.stderr, kb, ok, c.kb, c.ok)
		}
	}
}
