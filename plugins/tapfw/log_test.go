package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/ruleset"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// TestLogNFLOG: with logTarget NFLOG, dropped packets and rules marked
// log reach the NFLOG group (what ulogd reads) with prefixes that name the
// tap, the direction and the rule, in both families; the rate limit holds.
func TestLogNFLOG(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testLogNFLOG)
}

func testLogNFLOG(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	serveTCP(t, []string{"22", "8080"}, a.ns)
	nflog, err := testnet.NFLogListen(h.ns, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer nflog.Close()
	rules := `{"in":[{"action":"ACCEPT","proto":"udp","dport":"53"},{"action":"ACCEPT","proto":"tcp","dport":"8080","log":true}]}`
	call := a.dualConf("ADD", rules, "DROP")
	call.Config = []byte(strings.Replace(string(call.Config), `"policyIn"`, `"logTarget":"NFLOG","nflogGroup":7,"logLimit":"1/hour","policyIn"`, 1))
	h.mustCall(call)
	h.mustCall(b.dualConf("ADD", `{}`, "ACCEPT"))
	want := `-j NFLOG --nflog-prefix "tfw:tap110i0:in:drop " --nflog-group 7`
	if be.nftables() {
		want = `log prefix "tfw:tap110i0:in:drop " group 7`
	}
	if s := be.state(t, h.ns); !strings.Contains(s, want) {
		t.Fatalf("no NFLOG rule:\n%s", s)
	}

	if !testnet.TCPProbe(b.ns, "["+a.ip6.String()+"]:8080", time.Second) {
		t.Fatal("8080 over IPv6 did not pass")
	}
	if !nflog.Wait("tfw:tap110i0:in:r2 ", 2*time.Second) {
		t.Errorf("rule 2 logged no line; got %q", nflog.Prefixes())
	}
	testnet.TCPProbe(b.ns, a.ip4.String()+":22", 300*time.Millisecond)
	if !nflog.Wait("tfw:tap110i0:in:drop ", 2*time.Second) {
		t.Errorf("the policy drop logged no line; got %q", nflog.Prefixes())
	}
	for _, p := range nflog.Packets() {
		l, ok := ruleset.ParseLogPrefix(p.Prefix)
		if !ok || l.Owner != "tap110i0" || l.Dir != "in" {
			t.Errorf("%v: the prefix reads as %+v, %v", p, l, ok)
		}
	}
	// 1/hour with the default burst of 5: a flood of drops logs 5 lines.
	for i := 0; i < 12; i++ {
		testnet.TCPProbe(b.ns, "["+a.ip6.String()+"]:22", 100*time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	drops := 0
	for _, p := range nflog.Prefixes() {
		if p == "tfw:tap110i0:in:drop " {
			drops++
		}
	}
	// IPv4 and IPv6 each have their own rule and so their own budget.
	if drops < 5 || drops > 5+5 {
		t.Errorf("%d drop lines after a flood, want the burst (5 per family) and no more", drops)
	}
}

// TestParseLogPrefix reads prefixes back from kernel log lines.
func TestParseLogPrefix(t *testing.T) {
	for in, want := range map[string]ruleset.LogLine{
		"[ 12.3] tfw:tap110i0:in:drop IN=vmbr0 OUT=vmbr0 PHYSIN=tap111i0": {Owner: "tap110i0", Dir: "in", What: "drop"},
		"tfw:host:out:r3 ":                      {Owner: "host", Dir: "out", What: "r3"},
		ruleset.LogPrefix("tap1", "out", "rej"): {Owner: "tap1", Dir: "out", What: "rej"},
	} {
		if got, ok := ruleset.ParseLogPrefix(in); !ok || got != want {
			t.Errorf("%q: %+v %v", in, got, ok)
		}
	}
	for _, bad := range []string{"IN=vmbr0", "tfw:tap1:up:drop", "tfw:tap1:in"} {
		if _, ok := ruleset.ParseLogPrefix(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}
