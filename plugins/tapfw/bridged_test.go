package main

import (
	"net"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// A bridged packet crosses the inet forward hook too (br_netfilter), but
// only routed packets can be dropped by the routed chain, so a bridged one
// skips it with one lookup of its bridge in tfw-bridged. The verdict is
// the same either way, so only a count of the packets that enter the
// chain tells the skip works: a rule the test puts at the chain's top
// counts them.
func TestBridgedSkipsRouted(t *testing.T) {
	testnet.NeedKernel(t)
	run(t, testBridgedSkipsRouted, nftablesBE)
}

func testBridgedSkipsRouted(t *testing.T, be testBackend) {
	n := newRoutedNet(t, be)
	c := n.vm("vmbr0", "tap111i0", "02:00:00:00:01:11", "192.0.2.11", "2001:db8::11", "192.0.2.1", "2001:db8::1")
	n.h.mustCall(n.a.conf(true, routedRulesA))
	n.h.mustCall(n.b.conf(true, routedRulesB))
	n.h.mustCall(c.conf(true, `{"in":[{"action":"ACCEPT","proto":"udp","dport":"9000"}],"out":[]}`))
	atC := map[bool]*testnet.UDPListener{}
	for v6, addr := range map[bool]string{false: "0.0.0.0:9000", true: "[::]:9000"} {
		l, err := testnet.UDPListen(c.ns, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		atC[v6] = l
	}
	atWAN, err := testnet.UDPListen(n.wan, "0.0.0.0:9000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = atWAN.Close() })
	n.h.run("nft", "insert", "rule", "inet", "tapfw", "tfw-routed", "counter", "comment", `"test: entered"`)

	bridged := func(what string) {
		t.Helper()
		for i := range 5 {
			for _, v6 := range []bool{false, true} {
				src, dst := addrOf(n.a.ip4, "40000"), addrOf(c.ip4, "9000")
				if v6 {
					src, dst = addrOf(n.a.ip6, "40000"), addrOf(c.ip6, "9000")
				}
				payload := what + " " + strconv.Itoa(i) + " " + dst
				udpFrom(t, n.a.ns, src, dst, "eth0", payload)
				if !atC[v6].Got([]byte(payload), 2*time.Second) {
					t.Fatalf("%s: a -> c udp 9000 (%s) did not arrive", what, dst)
				}
			}
		}
	}
	bridged("bridged")
	if got := enteredRouted(t, n.h); got != 0 {
		t.Errorf("%d bridged packets entered tfw-routed, want none", got)
	}
	// The counting rule sees routed packets: the zero above can fail.
	udpFrom(t, n.a.ns, addrOf(n.a.ip4, "40001"), net.JoinHostPort(n.wan4, "9000"), "eth0", "routed")
	if !atWAN.Got([]byte("routed"), 2*time.Second) {
		t.Fatal("a -> wan udp 9000 did not arrive")
	}
	routed := enteredRouted(t, n.h)
	if routed == 0 {
		t.Fatal("a routed packet did not enter tfw-routed: the count cannot tell")
	}
	// Without the bridge's element bridged packets walk the chain, and
	// still arrive.
	n.h.run("nft", "delete", "element", "inet", "tapfw", "tfw-bridged", `{ "vmbr0" . "vmbr0" }`)
	bridged("walked")
	if got := enteredRouted(t, n.h) - routed; got < 10 {
		t.Errorf("without vmbr0's element %d bridged packets entered tfw-routed, want at least 10", got)
	}
}

var enteredRule = regexp.MustCompile(`counter packets (\d+) bytes \d+ comment "test: entered"`)

// enteredRouted is the count of the rule the test put at the top of
// tfw-routed.
func enteredRouted(t *testing.T, h *host) int {
	t.Helper()
	out := h.run("nft", "list", "chain", "inet", "tapfw", "tfw-routed")
	m := enteredRule.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counting rule in tfw-routed:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
