package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// IPv6 rules, decided by real packets: rules of one family stay
// in it, rules without addresses apply to both, the host's packets reach a
// tap's IN chain through the IPv6 dispatch trie (global and link-local
// addresses), the host firewall holds for IPv6, and DEL takes it all away.

const v6Host = `"host":{"ips":["192.0.2.31","2001:db8::1"],"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22"}],"out":[{"action":"ACCEPT","proto":"tcp"}]}}`

func (v *l2vm) dualConf(command, rules, policyIn string) testnet.Call {
	return testnet.Call{Command: command, ContainerID: "vm-" + v.port, IfName: v.port,
		Config: []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"v6","type":"tapfw","bridge":"vmbr0","mac":%q,
		"ips":[%q,%q],"policyIn":%q,"policyOut":"ACCEPT","rules":%s,%s}`, v.mac, v.ip4, v.ip6, policyIn, rules, v6Host))}
}

// aRules: web in both families, ssh from the IPv4 network only, echo
// requests of ICMPv6 only, 8080 rejected from b's IPv6 address; out, mail
// rejected.
const aRules = `{"in":[
	{"action":"ACCEPT","proto":"tcp","dport":"80"},
	{"action":"ACCEPT","proto":"tcp","dport":"22","source":"192.0.2.0/24"},
	{"action":"ACCEPT","proto":"icmpv6","icmpType":"echo-request"},
	{"action":"REJECT","proto":"tcp","dport":"8080","source":"2001:db8::11"},
	{"action":"ACCEPT","proto":"tcp","dport":"8080"}],
	"out":[{"action":"REJECT","proto":"tcp","dport":"25"}]}`

func TestIPv6Rules(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testIPv6Rules)
}

func testIPv6Rules(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	serveTCP(t, []string{"22", "25", "80", "8080", "23"}, a.ns, b.ns, h.ns)
	type probe struct {
		name string
		run  func() bool
		want bool
	}
	tcp := func(from *testnet.NS, addr string) func() bool {
		return func() bool { return testnet.TCPProbe(from, addr, 700*time.Millisecond) }
	}
	aLL := a.ll.String() + "%vmbr0"
	probes := []probe{
		{"b to a, web over IPv6", tcp(b.ns, "["+a.ip6.String()+"]:80"), true},
		{"b to a, web over IPv4", tcp(b.ns, a.ip4.String()+":80"), true},
		{"b to a, ssh over IPv4 (rule of 192.0.2.0/24)", tcp(b.ns, a.ip4.String()+":22"), true},
		{"b to a, ssh over IPv6 (no IPv6 rule)", tcp(b.ns, "["+a.ip6.String()+"]:22"), false},
		{"b to a, ICMPv6 echo", func() bool { return testnet.Ping6(b.ns, a.ip6.String(), 700*time.Millisecond) }, true},
		{"b to a, 8080 rejected from b's IPv6 address", tcp(b.ns, "["+a.ip6.String()+"]:8080"), false},
		{"b to a, 8080 over IPv4 (the reject is IPv6 only)", tcp(b.ns, a.ip4.String()+":8080"), true},
		{"a to b, mail over IPv6 rejected on the way out", tcp(a.ns, "["+b.ip6.String()+"]:25"), false},
		{"a to b, 23 over IPv6", tcp(a.ns, "["+b.ip6.String()+"]:23"), true},
		{"host to a, web to its global address", tcp(h.ns, "["+a.ip6.String()+"]:80"), true},
		{"host to a, ssh to its global address", tcp(h.ns, "["+a.ip6.String()+"]:22"), false},
		{"host to a, web to its link-local address", tcp(h.ns, "["+aLL+"]:80"), true},
		{"host to a, ssh to its link-local address", tcp(h.ns, "["+aLL+"]:22"), false},
		{"b to host, ssh (host rule)", tcp(b.ns, "[2001:db8::1]:22"), true},
		{"b to host, 23 (host policy)", tcp(b.ns, "[2001:db8::1]:23"), false},
	}
	run := func() []bool {
		got := make([]bool, len(probes))
		for i, p := range probes {
			got[i] = p.run()
		}
		return got
	}
	// Without tapfw everything passes (once duplicate address detection
	// of the link-local addresses is over): each probe can fail only by a
	// rule.
	for _, p := range probes {
		ok := p.run()
		for i := 0; i < 20 && !ok; i++ {
			time.Sleep(200 * time.Millisecond)
			ok = p.run()
		}
		if !ok {
			t.Fatalf("before ADD, %s failed: the network is broken", p.name)
		}
	}
	h.mustCall(a.dualConf("ADD", aRules, "DROP"))
	h.mustCall(b.dualConf("ADD", `{}`, "ACCEPT"))
	for i, ok := range run() {
		if ok != probes[i].want {
			t.Errorf("%s: passed %v, want %v", probes[i].name, ok, probes[i].want)
		}
	}
	if t.Failed() {
		t.Logf("ip6tables:\n%s", h.run("ip6tables-save", "-c"))
	}
	// A rejected connection is refused at once, not timed out.
	start := time.Now()
	if testnet.TCPProbe(b.ns, "["+a.ip6.String()+"]:8080", 3*time.Second) || time.Since(start) > 2*time.Second {
		t.Errorf("8080 from b over IPv6 was not rejected at once (%v)", time.Since(start))
	}
	// What a's OUT chain rejects is answered even when b's IN policy
	// drops: the sender's verdict comes first.
	refused := func(when string) {
		start := time.Now()
		if testnet.TCPProbe(a.ns, "["+b.ip6.String()+"]:25", 3*time.Second) || time.Since(start) > 2*time.Second {
			t.Errorf("mail from a %s was not rejected at once (%v)", when, time.Since(start))
		}
	}
	refused("to b accepting all")
	h.mustCall(b.dualConf("ADD", `{}`, "DROP"))
	refused("to b dropping all")
	h.mustCall(b.dualConf("ADD", `{}`, "ACCEPT"))
	for _, c := range []testnet.Call{a.dualConf("CHECK", aRules, "DROP"), b.dualConf("CHECK", `{}`, "ACCEPT")} {
		h.mustCall(c)
	}
	// Tampering with an IPv6 rule is drift.
	where := "ip6 filter"
	if be.nftables() {
		where = h.profile("tap110i0", "tfw-in", "ip6")
		h.run("nft", "insert", "rule", "bridge", "tapfw", where, "accept")
	} else {
		h.run("ip6tables", "-D", "TFW-T-tap110i0-IN", "-p", "tcp", "-m", "tcp", "--dport", "80", "-m", "comment",
			"--comment", ruleComment(t, h, "TFW-T-tap110i0-IN", "in rule 1"), "-j", "ACCEPT")
	}
	if _, e := h.call(a.dualConf("CHECK", aRules, "DROP")); e == nil || e.Code != errDrift || !strings.Contains(e.Msg, where) {
		t.Errorf("CHECK after changing an IPv6 rule: %+v", e)
	}
	h.mustCall(a.dualConf("ADD", aRules, "DROP"))
	h.mustCall(a.dualConf("CHECK", aRules, "DROP"))
	// DEL: a's IPv6 state goes, b's stays.
	h.mustCall(a.dualConf("DEL", aRules, "DROP"))
	if save := be.state(t, h.ns); strings.Contains(save, "tap110i0") || !strings.Contains(save, "tap111i0") {
		t.Errorf("after DEL of tap110i0:\n%s", save)
	}
}

// ruleComment is the installed comment of the rule in chain whose comment
// holds what.
func ruleComment(t *testing.T, h *host, chain, what string) string {
	t.Helper()
	for _, l := range strings.Split(h.run("ip6tables-save", "-t", "filter"), "\n") {
		if strings.HasPrefix(l, "-A "+chain+" ") && strings.Contains(l, what) {
			_, rest, _ := strings.Cut(l, `--comment "`)
			c, _, _ := strings.Cut(rest, `"`)
			return c
		}
	}
	t.Fatalf("no rule %q in %s", what, chain)
	return ""
}
