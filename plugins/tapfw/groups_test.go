package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// Security groups: defined once, rendered once per family as
// shared chains, used by taps in order before their own rules, and
// decided by real packets in both families and both directions.

const groupDefs = `"securityGroups":{
	"web":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"80"},{"action":"DROP","proto":"tcp","dport":"8080"}]},
	"mail":{"out":[{"action":"ACCEPT","proto":"tcp","dport":"25"}]}}`

func (v *l2vm) groupConf(command, groups, rules string) testnet.Call {
	return testnet.Call{Command: command, ContainerID: "vm-" + v.port, IfName: v.port,
		Config: []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"sg","type":"tapfw","bridge":"vmbr0","mac":%q,
		"ips":[%q,%q],"policyIn":"DROP","policyOut":"ACCEPT",%s,"groups":%s,"rules":%s}`, v.mac, v.ip4, v.ip6, groupDefs, groups, rules))}
}

func TestSecurityGroups(t *testing.T) { forEachBackend(t, testSecurityGroups) }

func testSecurityGroups(t *testing.T, be testBackend) {
	h, a, b := l2net(t, be)
	serveTCP(t, []string{"22", "23", "25", "80", "8080"}, a.ns, b.ns)
	// a: web and mail; its own rules accept 8080 (the group drops it
	// first) and reject mail and 23 out (the mail group allows mail
	// first). b: web, and its own rules accept 25 and 23.
	aConf := a.groupConf("ADD", `["web","mail"]`, `{"in":[{"action":"ACCEPT","proto":"tcp","dport":"8080"}],
		"out":[{"action":"REJECT","proto":"tcp","dport":"25"},{"action":"REJECT","proto":"tcp","dport":"23"}]}`)
	bConf := b.groupConf("ADD", `["web"]`, `{"in":[{"action":"ACCEPT","proto":"tcp","dport":"25"},{"action":"ACCEPT","proto":"tcp","dport":"23"}]}`)
	h.mustCall(aConf)
	h.mustCall(bConf)

	type probe struct {
		name string
		from *testnet.NS
		addr string
		args []string
		want bool
	}
	var probes []probe
	for _, fam := range []struct{ a, b string }{{"[" + a.ip6.String() + "]", "[" + b.ip6.String() + "]"}, {a.ip4.String(), b.ip4.String()}} {
		ip := func(s string) string { return strings.Trim(s, "[]") }
		in := func(port int) []string {
			return []string{"--tap", "tap110i0", "--dir", "in", "--src", ip(fam.b), "--dport", fmt.Sprint(port)}
		}
		out := func(port int) []string {
			return []string{"--tap", "tap110i0", "--dir", "out", "--dst", ip(fam.b), "--dport", fmt.Sprint(port)}
		}
		probes = append(probes,
			probe{"b to a:80, group web allows", b.ns, fam.a + ":80", in(80), true},
			probe{"b to a:8080, group web drops before a's own accept", b.ns, fam.a + ":8080", in(8080), false},
			probe{"b to a:22, a's policy", b.ns, fam.a + ":22", in(22), false},
			probe{"a to b:25, group mail allows before a's own reject", a.ns, fam.b + ":25", out(25), true},
			probe{"a to b:23, a's own reject", a.ns, fam.b + ":23", out(23), false},
			probe{"a to b:80, b's group web", a.ns, fam.b + ":80", out(80), true},
		)
	}
	for _, p := range probes {
		got := testnet.TCPProbe(p.from, p.addr, 700*time.Millisecond)
		if got != p.want {
			t.Errorf("%s (%s): passed %v, want %v", p.name, p.addr, got, p.want)
		}
		var res struct{ Verdict string }
		if err := json.Unmarshal([]byte(h.mustOp(append([]string{"explain", "--json"}, p.args...)...)), &res); err != nil {
			t.Fatal(err)
		}
		if (res.Verdict == "ACCEPT") != got {
			t.Errorf("%s: explain says %s, the real packet passed: %v\n%s", p.name, res.Verdict, got, h.mustOp(append([]string{"explain"}, p.args...)...))
		}
	}
	if t.Failed() {
		t.Logf("installed:\n%s", be.state(t, h.ns))
	}

	// Rendered once: one chain per group and direction in each family,
	// one jump per tap, not a copy of the rules.
	h.groupRenderedOnce("web", 2)
	if out := h.mustOp("show", "tap110i0"); !strings.Contains(out, "group web (shared counters)") || !strings.Contains(out, "group mail allowed") {
		t.Errorf("show:\n%s", out)
	}
	// CHECK covers the group chains.
	check := aConf
	check.Command = "CHECK"
	h.mustCall(check)
	groupChain := h.flushGroup("web")
	if _, e := h.call(check); e == nil || e.Code != errDrift || !strings.Contains(e.Msg, groupChain) {
		t.Errorf("CHECK after flushing the group chain: %+v", e)
	}
	h.mustCall(aConf)
	h.mustCall(check)
	// DEL of a keeps the groups b uses; the last DEL removes everything.
	del := aConf
	del.Command = "DEL"
	h.mustCall(del)
	if s := be.state(t, h.ns); !strings.Contains(s, groupChain) || strings.Contains(s, "tap110i0") {
		t.Errorf("after DEL of a:\n%s", s)
	}
	del = bConf
	del.Command = "DEL"
	h.mustCall(del)
	if tr := tapfwTraces(h.state()); len(tr) > 0 {
		t.Errorf("after the last DEL:\n%s", strings.Join(tr, "\n"))
	}
}

// groupRenderedOnce checks that group g's IN chain exists once per
// family, its rule 2 (tcp/8080) once in it, and jumps taps times.
func (h *host) groupRenderedOnce(g string, taps int) {
	h.t.Helper()
	if h.be.nftables() {
		table := h.run("nft", "list", "table", "bridge", "tapfw")
		for _, f := range []string{"4", "6"} {
			chain := "tfw-g" + f + "-" + g + "-in"
			if n := strings.Count(table, "\tchain "+chain+" {"); n != 1 {
				h.t.Errorf("%d chains %s", n, chain)
			}
			if n := strings.Count(table, "jump "+chain+" "); n != taps {
				h.t.Errorf("%d jumps to %s, want one per tap (%d)", n, chain, taps)
			}
		}
		if n := strings.Count(table, "tcp dport 8080 oifname @tfw-drop-in counter packets"); n != 2 {
			h.t.Errorf("group %s's rule 2 is installed %d times, want once a family", g, n)
		}
		return
	}
	for _, save := range []string{h.run("iptables-save"), h.run("ip6tables-save")} {
		chain := "TFW-G-" + g + "-IN"
		if n := strings.Count(save, "\n:"+chain+" "); n != 1 {
			h.t.Errorf("%d chains %s", n, chain)
		}
		if n := strings.Count(save, "--dport 8080 -m comment --comment \"+"+g+": in rule 2"); n != 1 {
			h.t.Errorf("group %s's rule 2 is installed %d times", g, n)
		}
		if n := strings.Count(save, "-j "+chain); n != taps {
			h.t.Errorf("%d jumps to group %s, want one per tap", n, g)
		}
	}
}

// flushGroup empties group g's IPv4 IN chain behind the plugin's back and
// returns the chain's name.
func (h *host) flushGroup(g string) string {
	if h.be.nftables() {
		chain := "tfw-g4-" + g + "-in"
		h.run("nft", "flush", "chain", "bridge", "tapfw", chain)
		return chain
	}
	chain := "TFW-G-" + g + "-IN"
	h.run("iptables", "-F", chain)
	return chain
}
