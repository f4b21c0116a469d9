package soak

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// A receiver's check counts a skipped record as missing until it comes
// late, and what never came after the last one as lost.
func TestSeqCheck(t *testing.T) {
	var c SeqCheck
	for _, seq := range []uint64{0, 1, 3, 2, 4, 7} {
		c.See(seq)
	}
	if c.Gaps != 2 || c.Late != 1 || c.Missing != 2 || c.Next != 8 || c.Received != 6 {
		t.Errorf("%+v", c)
	}
	if got := c.Lost(10); got != 4 {
		t.Errorf("lost %d, want 4 (5, 6, 8, 9)", got)
	}
}

// The longest wait is the longest a record waited for its acknowledgement,
// also one still waiting.
func TestAckClock(t *testing.T) {
	a := NewAckClock(4)
	t0 := time.Unix(0, 0)
	a.Sent(t0)
	a.Sent(t0.Add(time.Millisecond))
	a.Acked(1, t0.Add(3*time.Millisecond))
	a.Sent(t0.Add(4 * time.Millisecond))
	a.Check(t0.Add(10 * time.Millisecond))
	sent, acked, longest, over := a.State()
	if sent != 3 || acked != 2 || longest != 6*time.Millisecond || over {
		t.Errorf("sent %d acked %d longest %v over %v", sent, acked, longest, over)
	}
}

func TestCounts(t *testing.T) {
	chains, rules := CountSave([]byte("*filter\n:INPUT ACCEPT [0:0]\n:TFW-X - [0:0]\n-A INPUT -j TFW-X\nCOMMIT\n"))
	if chains != 2 || rules != 1 {
		t.Errorf("save: %d chains, %d rules", chains, rules)
	}
	sets, entries := CountIpset([]byte("create tfw-a hash:net family inet\nadd tfw-a 192.0.2.0/24\nadd tfw-a 198.51.100.0/24\n"))
	if sets != 1 || entries != 2 {
		t.Errorf("ipset: %d sets, %d entries", sets, entries)
	}
	n, err := CountNftJSON([]byte(`{"nftables": [{"metainfo": {}}, {"table": {"name": "tapfw"}}, {"chain": {"name": "a"}},
		{"rule": {"chain": "a"}}, {"set": {"name": "s", "elem": ["192.0.2.1", "192.0.2.2"]}}, {"map": {"name": "m"}},
		{"set": {"name": "rates", "flags": ["dynamic", "timeout"], "elem": ["tap1"]}}]}`))
	if err != nil || n != (NftCounts{Tables: 1, Chains: 1, Rules: 1, Sets: 3, Elements: 2}) {
		t.Errorf("nft: %+v, %v", n, err)
	}
}

// Leaked lists what the rulesets hold after and did not before, counters
// left out, a repeated line once more for each extra copy.
func TestLeaked(t *testing.T) {
	before := Counts{Rules: map[string][]string{"iptables-save": ruleLines([]byte("# Generated\n[5:300] -A X -j ACCEPT\n"))}}
	after := Counts{Rules: map[string][]string{"iptables-save": ruleLines([]byte("[9:540] -A X -j ACCEPT\n[0:0] -A X -j ACCEPT\n:TFW-B-vmbr1 - [0:0]\n"))}}
	got := strings.Join(Leaked(before, after, 10), "\n")
	if want := "iptables-save: -A X -j ACCEPT\niptables-save: :TFW-B-vmbr1 - [0:0]"; got != want {
		t.Errorf("leaked:\n%s\nwant:\n%s", got, want)
	}
}

// The RSS check fails on growth beyond both the fraction and the slack.
func TestCompareRSS(t *testing.T) {
	var calls []Call
	for i := 0; i < 100; i++ {
		calls = append(calls, Call{Command: "ADD", MaxRSSKB: 10000 + int64(i)*100})
	}
	if r := CompareRSS(calls, "ADD", 0, 20, 0.05, 1024); r.OK || r.Window != 20 {
		t.Errorf("grew 80%%: %+v", r)
	}
	if r := CompareRSS(calls, "ADD", 0, 20, 1.0, 1024); !r.OK {
		t.Errorf("within the tolerance: %+v", r)
	}
	if r := CompareRSS(calls[:15], "ADD", 0, 20, 0.05, 1024); !r.OK || r.Window != 0 {
		t.Errorf("too few calls: %+v", r)
	}
}

// Every pool tap's config carries the host section, and the
// pool's addresses are distinct.
func TestPool(t *testing.T) {
	seen := map[string]bool{}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < MaxTaps; i++ {
		p := PoolTap(i)
		if seen[p.IPs[0]] || seen[p.Name] || seen[p.MAC] {
			t.Fatalf("tap %d: %+v repeats a name or address", i, p)
		}
		seen[p.IPs[0]], seen[p.Name], seen[p.MAC] = true, true, true
		if _, conf := PoolConfig(p, r); !strings.Contains(string(conf), `"host":`) {
			t.Fatalf("tap %d: no host section in %s", i, conf)
		}
	}
}

// A clean result passes; a lost datagram, a probe that passed or a count
// that did not come back fails it.
func TestFailures(t *testing.T) {
	ok := Result{O: Options{Cycles: 1, MaxStall: time.Second}, Done: 1,
		Traffic: TrafficResult{TCPSent: 5, TCPRecv: 5, UDPSent: 5, UDPRecv: 5, ProbeTCPTried: 1, ProbeUDPSent: 1},
		Before:  Counts{List: []Count{{"nft rules", 3}}},
		After:   Counts{List: []Count{{"nft rules", 3}}},
	}
	if f := ok.Failures(); len(f) != 0 {
		t.Errorf("clean run fails: %v", f)
	}
	bad := ok
	bad.Traffic.UDPLost, bad.Traffic.ProbeTCPPassed = 1, 2
	bad.After = Counts{List: []Count{{"nft rules", 4}}}
	f := strings.Join(bad.Failures(), "; ")
	for _, want := range []string{"udp flow lost 1", "tcp probe to the closed port 5002 passed 2 times", "nft rules: 3 before, 4 after"} {
		if !strings.Contains(f, want) {
			t.Errorf("no %q in %s", want, f)
		}
	}
}
