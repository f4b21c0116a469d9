package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/ruleset"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// TestLogNFLOG: with logTarget NFLOG, dropped packets and rules marked
// log reach the NFLOG group (what ulogd reads) with prefixes that name the
// direction and the rule (and the tap, with logPrefix tap), in both
// families; the rate limit holds, and each tap has a budget of its own
// even where two taps share their rules.
func TestLogNFLOG(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, func(t *testing.T, be testBackend) {
		for _, mode := range []string{"rule", "tap"} {
			t.Run("logPrefix="+mode, func(t *testing.T) { testLogNFLOG(t, be, mode) })
		}
	})
}

func testLogNFLOG(t *testing.T, be testBackend, mode string) {
	h, a, b := l2net(t, be)
	serveTCP(t, []string{"22", "8080"}, a.ns)
	nflog, err := testnet.NFLogListen(h.ns, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer nflog.Close()
	rules := `{"in":[{"action":"ACCEPT","proto":"udp","dport":"53"},{"action":"ACCEPT","proto":"tcp","dport":"8080","log":true}]}`
	for _, vm := range []*l2vm{a, b} {
		call := vm.dualConf("ADD", rules, "DROP")
		call.Config = []byte(strings.Replace(string(call.Config), `"policyIn"`, `"logTarget":"NFLOG","nflogGroup":7,"logLimit":"1/hour","logPrefix":"`+mode+`","policyIn"`, 1))
		h.mustCall(call)
	}
	prefix := func(vm *l2vm, what string) string {
		if mode == "tap" {
			return ruleset.LogPrefix(vm.port, "in", what)
		}
		return ruleset.LogPrefix("", "in", what)
	}
	want := `-j NFLOG --nflog-prefix "` + prefix(a, "drop") + `" --nflog-group 7`
	if be.nftables() {
		want = `log prefix "` + prefix(a, "drop") + `" group 7`
	}
	if s := be.state(t, h.ns); !strings.Contains(s, want) {
		t.Fatalf("no NFLOG rule %s:\n%s", want, s)
	}

	if !testnet.TCPProbe(b.ns, "["+a.ip6.String()+"]:8080", time.Second) {
		t.Fatal("8080 over IPv6 did not pass")
	}
	if !nflog.Wait(prefix(a, "r2"), 2*time.Second) {
		t.Errorf("rule 2 logged no line; got %q", nflog.Prefixes())
	}
	testnet.TCPProbe(b.ns, a.ip4.String()+":22", 300*time.Millisecond)
	if !nflog.Wait(prefix(a, "drop"), 2*time.Second) {
		t.Errorf("the policy drop logged no line; got %q", nflog.Prefixes())
	}
	for _, p := range nflog.Packets() {
		l, ok := ruleset.ParseLogPrefix(p.Prefix)
		if !ok || l.Dir != "in" || (mode == "rule") != (l.Owner == "") || (mode == "tap" && l.Owner != a.port && l.Owner != b.port) {
			t.Errorf("%v: the prefix reads as %+v, %v", p, l, ok)
		}
	}
	// toTCP counts the drop lines of vm's TCP packets to addr (other
	// lines, multicast dropped on its way, spend the same budget).
	toTCP := func(vm *l2vm, addr net.IP) int {
		n := 0
		for _, p := range nflog.Packets() {
			if p.Prefix == prefix(vm, "drop") && strings.Contains(p.Packet, "> "+addr.String()+" ") && strings.Contains(p.Packet, "next 6 ") {
				n++
			}
		}
		return n
	}
	// 1/hour with the default burst of 5: a flood of drops logs at most 5
	// lines a family (IPv4 and IPv6 each have their own rule and budget).
	for i := 0; i < 12; i++ {
		testnet.TCPProbe(b.ns, "["+a.ip6.String()+"]:22", 100*time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if n := toTCP(a, a.ip6); n < 1 || n > 5 {
		t.Errorf("%d IPv6 drop lines after a flood, want at most the burst of 5", n)
	}
	// The other tap's drops have a budget of their own, not spent by the
	// first tap's flood, even where the two share their rules.
	for i := 0; i < 12; i++ {
		testnet.TCPProbe(a.ns, "["+b.ip6.String()+"]:22", 100*time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if n := toTCP(b, b.ip6); n < 1 || n > 5 {
		t.Errorf("%d IPv6 drop lines of the second tap after its flood, want its own budget (1 to 5)", n)
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

// withoutRateElements leaves a listing as it was but for the elements of
// dynamic sets with timeouts.
func TestWithoutRateElements(t *testing.T) {
	in := "table bridge tapfw {\n\tset s {\n\t\ttype ifname\n\t\telements = { \"tap1\" }\n\t}\n\n" +
		"\tset r {\n\t\ttype ifname\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 1m\n\t\telements = { \"tap1\" limit rate 5/minute expires 59s,\n\t\t\t     \"tap2\" limit rate 5/minute expires 3s }\n\t}\n\n" +
		"\tset q {\n\t\ttype ifname\n\t\tflags dynamic,timeout\n\t\telements = { \"tap3\" expires 1s }\n\t}\n}"
	want := "table bridge tapfw {\n\tset s {\n\t\ttype ifname\n\t\telements = { \"tap1\" }\n\t}\n\n" +
		"\tset r {\n\t\ttype ifname\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 1m\n\t}\n\n" +
		"\tset q {\n\t\ttype ifname\n\t\tflags dynamic,timeout\n\t}\n}"
	if got := withoutRateElements(in); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
