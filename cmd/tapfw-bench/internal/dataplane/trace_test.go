package dataplane

import (
	"strings"
	"testing"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/harness"
)

// A trace as `nft -a monitor trace` prints it (nft 1.0.6): matched rules
// with their handles, chains jumped to where nothing matched, policies.
const sampleTrace = `trace id eb9e8044 inet tapfw_bench_trace out rule udp dport 9 meta nftrace set 1 # handle 2 (verdict continue)
trace id eb9e8044 inet tapfw_bench_trace out policy accept
trace id eb9e8044 inet tapfw out packet: oif "lo" ip saddr 127.0.0.1 ip daddr 127.0.0.1 udp sport 56411 udp dport 9
trace id eb9e8044 inet tapfw out rule udp dport 9 counter packets 0 bytes 0 # handle 6 (verdict continue)
trace id eb9e8044 inet tapfw out rule jump x # handle 8 (verdict jump x)
trace id eb9e8044 inet tapfw out rule meta mark set 0x1 comment "@tapfw: a # b" # handle 10 (verdict jump tfw-pi4-ab)
trace id eb9e8044 inet tapfw tfw-pi4-ab rule udp dport 9 # handle 21 (verdict return)
trace id eb9e8044 inet tapfw out rule udp dport 9 accept # handle 12 (verdict accept)
trace id 5574dbce inet tapfw in packet: iif "lo" ip saddr 127.0.0.1
trace id 5574dbce inet tapfw in policy accept
`

func sampleRuleset() harness.NftRuleset {
	c := func(name string) harness.NftChain {
		return harness.NftChain{Family: "inet", Table: "tapfw", Name: name}
	}
	return harness.NftRuleset{
		c("out"):        {6, 7, 8, 9, 10, 11, 12, 13},
		c("x"):          {4, 5},
		c("tfw-pi4-ab"): {20, 21, 22},
		c("in"):         {30},
		{Family: "inet", Table: "tapfw_bench_trace", Name: "out"}: {2},
	}
}

// Each chain counts the rules up to the last that matched, a chain
// jumped to where nothing matched counts whole, a policy counts the rest
// of its chain, and the benchmark's own tables count nothing.
func TestCountTrace(t *testing.T) {
	tc, err := countTrace(strings.Split(sampleTrace, "\n"), sampleRuleset())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"out": 7, "x": 2, "tfw-pi4-ab": 2, "in": 1}
	for k, v := range want {
		if tc.perChain[k] != v {
			t.Errorf("%s: %d rules, want %d (all %v)", k, tc.perChain[k], v, tc.perChain)
		}
	}
	if len(tc.perChain) != len(want) {
		t.Errorf("chains %v, want %v", tc.perChain, want)
	}
	c := tc.checks(1)
	if c.Total != 12 || c.TapChain != 2 || c.Dispatch != 10 {
		t.Errorf("checks %+v", c)
	}
	if got := strings.Join(c.Path, " "); got != "out x tfw-pi4-ab" {
		t.Errorf("path %q", got)
	}
}

func TestCountTraceRefusesUnknownRules(t *testing.T) {
	_, err := countTrace([]string{`trace id 1 inet tapfw out rule accept # handle 99 (verdict accept)`}, sampleRuleset())
	if err == nil || !strings.Contains(err.Error(), "handle 99") {
		t.Errorf("err %v", err)
	}
}

func TestChainKinds(t *testing.T) {
	for name, want := range map[string]string{"tfw-pre": "dispatch", "tfw-pi4-ab": "tap", "tfw-po6-cd": "tap", "tfw-lout": "dispatch",
		"tfw-li4-tap1-log": "tap", "tfw-g4-web-in": "tap", "tfw-h4-in": "host", "tfw-from": "dispatch"} {
		if got := nftChainKind(name); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
}
