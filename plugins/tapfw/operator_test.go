package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// The operator's commands, run as operators run them, inside a
// sandbox host with a real ruleset of both families.

// op runs `tapfw args...` in the host namespace, without CNI_COMMAND,
// on the host's backend.
func (h *host) op(args ...string) (string, error) {
	h.t.Helper()
	argv := append(append(append([]string{"env"}, h.be.env...), pluginBin), args...)
	out, err := h.ns.Run(argv...)
	return string(out), err
}

func (h *host) mustOp(args ...string) string {
	h.t.Helper()
	out, err := h.op(args...)
	if err != nil {
		h.t.Fatalf("tapfw %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// serveTCP listens on each port, both families, in each namespace, until
// the test ends.
func serveTCP(t *testing.T, ports []string, nss ...*testnet.NS) {
	t.Helper()
	for _, port := range ports {
		for _, ns := range nss {
			c, err := testnet.TCPServe(ns, "[::]:"+port)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}
}

// opNet is the IPv6 test network with a's rules and b open, and TCP
// servers on a few ports in every namespace.
func opNet(t *testing.T, be testBackend) (*host, *l2vm, *l2vm) {
	h, a, b := l2net(t, be)
	serveTCP(t, []string{"22", "25", "80", "8080", "23"}, a.ns, b.ns, h.ns)
	h.mustCall(a.dualConf("ADD", aRules, "DROP"))
	h.mustCall(b.dualConf("ADD", `{}`, "ACCEPT"))
	return h, a, b
}

// TestOperatorListShowMetrics: list, show and metrics report the taps, their
// rules in the config's words, and counters that real packets moved.
func TestOperatorListShowMetrics(t *testing.T) { forEachBackend(t, testOperatorListShowMetrics) }

func testOperatorListShowMetrics(t *testing.T, be testBackend) {
	h, a, b := opNet(t, be)
	// Two connections to a's web rule, one over each family; one to ssh
	// over IPv6, which a's policy drops.
	for _, addr := range []string{"[" + a.ip6.String() + "]:80", a.ip4.String() + ":80"} {
		if !testnet.TCPProbe(b.ns, addr, 2*time.Second) {
			t.Fatalf("b to %s failed", addr)
		}
	}
	if testnet.TCPProbe(b.ns, "["+a.ip6.String()+"]:22", 500*time.Millisecond) {
		t.Fatal("b to a's ssh over IPv6 passed")
	}

	var taps []inspect.Tap
	if err := json.Unmarshal([]byte(h.mustOp("list", "--json")), &taps); err != nil {
		t.Fatal(err)
	}
	if len(taps) != 2 || taps[0].Name != "tap110i0" || taps[1].Name != "tap111i0" {
		t.Fatalf("list: %+v", taps)
	}
	ta := taps[0]
	if ta.Bridge != "vmbr0" || ta.MAC != a.mac.String() || ta.Rules["in"] != 5 || ta.Rules["out"] != 1 || !ta.Attached {
		t.Errorf("list, tap110i0: %+v", ta)
	}
	if !strings.Contains(strings.Join(ta.IPs, " "), a.ip6.String()) || !strings.Contains(strings.Join(ta.IPs, " "), a.ll.String()) {
		t.Errorf("list, tap110i0's IPs %v lack %s or %s", ta.IPs, a.ip6, a.ll)
	}
	if in := ta.Traffic["in"]; in.Accepted.Packets < 2 || in.Dropped.Packets < 1 {
		t.Errorf("list, tap110i0 in: %+v, want at least 2 accepted and 1 dropped", in)
	}
	human := h.mustOp("list")
	if !strings.Contains(human, "TAP") || !strings.Contains(human, "tap110i0  vmbr0") {
		t.Errorf("list:\n%s", human)
	}

	var shown struct {
		inspect.Tap
		RuleList []inspect.Rule `json:"ruleList"`
	}
	if err := json.Unmarshal([]byte(h.mustOp("show", "--json", "tap110i0")), &shown); err != nil {
		t.Fatal(err)
	}
	var web, policy *inspect.Rule
	for i, r := range shown.RuleList {
		switch {
		case r.Direction == "in" && r.Number == 1:
			web = &shown.RuleList[i]
		case r.Direction == "in" && r.Kind == "policy":
			policy = &shown.RuleList[i]
		}
	}
	if web == nil || web.Match != "tcp dport 80" || web.Action != "ACCEPT" || web.Packets != 2 || len(web.Families) != 2 {
		t.Errorf("show, in rule 1: %+v (want the two SYNs, one per family)", web)
	}
	if policy == nil || policy.Action != "DROP" || policy.Packets == 0 {
		t.Errorf("show, in policy: %+v", policy)
	}
	if out := h.mustOp("show", "tap110i0"); !strings.Contains(out, "in   1  ACCEPT  tcp dport 80") {
		t.Errorf("show:\n%s", out)
	}
	if _, err := h.op("show", "tap999i0"); err == nil {
		t.Error("show of a tap without a firewall succeeded")
	}

	m := h.mustOp("metrics")
	for _, want := range []string{
		"# TYPE tapfw_tap_packets_total counter\n",
		"tapfw_taps 2\n",
		`tapfw_rule_packets_total{tap="tap110i0",bridge="vmbr0",direction="in",rule="1",action="ACCEPT"} 2` + "\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
	path := filepath.Join(t.TempDir(), "tapfw.prom")
	h.mustOp("metrics", "--textfile", path)
	if data, err := os.ReadFile(path); err != nil || !strings.Contains(string(data), "tapfw_taps 2") {
		t.Errorf("metrics --textfile: %v %s", err, data)
	}
	_ = b
}

// TestOperatorRender: render prints what an ADD would apply and changes
// nothing; after the ADD it has nothing to change.
func TestOperatorRender(t *testing.T) {
	h, a, _ := l2net(t, testBackend{})
	call := a.dualConf("ADD", aRules, "DROP")
	conf := filepath.Join(t.TempDir(), "tap110i0.json")
	if err := os.WriteFile(conf, call.Config, 0o644); err != nil {
		t.Fatal(err)
	}
	before := h.state()
	out := h.mustOp("render", "--ifname", "tap110i0", "--container-id", "vm-tap110i0", conf)
	if h.state() != before {
		t.Fatal("render changed the kernel")
	}
	for _, want := range []string{
		"# iptables: ipset changes, then one iptables-restore --noflush",
		"# ipset create tfw-t-tap110i0 hash:net family inet: " + a.ip4.String(),
		"# ip6tables: ipset changes",
		"hash:net family inet6: " + a.ip6.String(),
		`-A TFW-T-tap110i0-IN -p tcp -m tcp --dport 80 -m comment --comment "tap110i0: in rule 1`,
		"-A TFW-T-tap110i0-IN -p ipv6-icmp -m icmp6 --icmpv6-type 128",
		"# layer 2 (nft, table bridge tapfw)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q:\n%s", want, out)
		}
	}
	h.mustCall(call)
	if out := h.mustOp("render", "--ifname", "tap110i0", "--container-id", "vm-tap110i0", conf); !strings.Contains(out, "# iptables: nothing to change") || !strings.Contains(out, "# ip6tables: nothing to change") {
		t.Errorf("render after ADD:\n%s", out)
	}
	// A bad config is refused with the field named, and changes nothing.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(strings.Replace(string(call.Config), `"dport":"80"`, `"dport":"80000"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	after := h.state()
	if out, err := h.op("render", "--ifname", "tap110i0", bad); err == nil || !strings.Contains(out, "rules.in[0].dport") {
		t.Errorf("render of a bad config: %v %s", err, out)
	}
	if h.state() != after {
		t.Error("render of a bad config changed the kernel")
	}
}

// TestOperatorExplain: explain's verdict for each probe is what the real
// packet got, in both families, between VMs, from the host and to it.
func TestOperatorExplain(t *testing.T) { forEachBackend(t, testOperatorExplain) }

func testOperatorExplain(t *testing.T, be testBackend) {
	h, a, b := opNet(t, be)
	type probe struct {
		from *testnet.NS
		addr string
		args []string
		rule string // the deciding rule's comment holds it
	}
	a6, a4, b6 := a.ip6.String(), a.ip4.String(), b.ip6.String()
	in := func(src string, port int) []string {
		return []string{"--tap", "tap110i0", "--dir", "in", "--src", src, "--dport", fmt.Sprint(port)}
	}
	out := func(dst string, port int) []string {
		return []string{"--tap", "tap110i0", "--dir", "out", "--dst", dst, "--dport", fmt.Sprint(port)}
	}
	probes := []probe{
		{b.ns, "[" + a6 + "]:80", in(b6, 80), "tap110i0: in rule 1"},
		{b.ns, "[" + a6 + "]:22", in(b6, 22), "tap110i0: policy drop"},
		{b.ns, a4 + ":22", in(b.ip4.String(), 22), "tap110i0: in rule 2"},
		{b.ns, "[" + a6 + "]:8080", in(b6, 8080), "tap110i0: in rule 4"},
		{b.ns, a4 + ":8080", in(b.ip4.String(), 8080), "tap110i0: in rule 5"},
		{a.ns, "[" + b6 + "]:25", out(b6, 25), "tap110i0: out rule 1"},
		{a.ns, "[" + b6 + "]:23", out(b6, 23), "tap111i0: policy accept"},
		{h.ns, "[" + a6 + "]:80", in("2001:db8::1", 80), "tap110i0: in rule 1"},
		{h.ns, "[" + a6 + "]:22", in("2001:db8::1", 22), "tap110i0: policy drop"},
		// The host's rules RETURN what they allow; INPUT's default then
		// accepts it.
		// On nftables the host chain returns it too, and the input
		// chain's policy accepts it: no rule decides.
		{a.ns, "[2001:db8::1]:22", out("2001:db8::1", 22), "@tapfw: default"},
		{a.ns, "[2001:db8::1]:23", out("2001:db8::1", 23), "@host: policy drop"},
	}
	for _, p := range probes {
		name := strings.Join(p.args, " ")
		var res struct {
			Verdict  string
			Decisive *struct{ Chain, Comment string }
		}
		if err := json.Unmarshal([]byte(h.mustOp(append([]string{"explain", "--json"}, p.args...)...)), &res); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		real := testnet.TCPProbe(p.from, p.addr, 700*time.Millisecond)
		if (res.Verdict == "ACCEPT") != real {
			t.Errorf("%s: explain says %s, the real packet passed: %v", name, res.Verdict, real)
		}
		if be.nftables() && p.rule == "@tapfw: default" {
			if res.Decisive != nil {
				t.Errorf("%s: decided by %+v, want the input chain's policy", name, res.Decisive)
			}
			continue
		}
		if res.Decisive == nil || !strings.Contains(res.Decisive.Comment, explainComment(be, p.rule)) {
			t.Errorf("%s: decided by %+v, want the rule %q", name, res.Decisive, explainComment(be, p.rule))
		}
	}
	text := h.mustOp("explain", "--tap", "tap110i0", "--dir", "in", "--src", b6, "--dport", "22")
	want := "verdict DROP by TFW-T-tap110i0-IN"
	if be.nftables() {
		want = "verdict DROP by bridge tapfw tfw-pi6-"
	}
	if !strings.Contains(text, want) || !strings.Contains(text, "hook FORWARD") {
		t.Errorf("explain text:\n%s", text)
	}
	if _, err := h.op("explain", "--tap", "tap110i0", "--dir", "sideways"); err == nil {
		t.Error("explain with a bad direction succeeded")
	}
}

// explainComment is the comment of the rule that decides: the nftables
// backend's profiles are shared, so their comments name no tap.
func explainComment(be testBackend, rule string) string {
	if be.nftables() && strings.HasPrefix(rule, "tap") {
		_, rule, _ = strings.Cut(rule, ": ")
	}
	return rule
}

// TestOperatorGCFlush: gc removes the firewall of taps whose interface is
// gone, and nothing else; flush removes all of tapfw's and nothing else;
// --dry-run changes nothing.
func TestOperatorGCFlush(t *testing.T) {
	h, a, _ := opNet(t, testBackend{})
	h.run("ip6tables", "-A", "INPUT", "-s", "2001:db8:ffff::9", "-j", "ACCEPT")
	h.run("iptables", "-A", "INPUT", "-s", "203.0.113.9", "-j", "ACCEPT")
	h.run("ipset", "create", "foreign", "hash:ip")
	if out := h.mustOp("gc"); !strings.Contains(out, "nothing to remove") {
		t.Errorf("gc with every tap present: %s", out)
	}
	h.run("ip", "link", "del", a.port)
	before := h.state()
	if out := h.mustOp("gc", "--dry-run"); !strings.Contains(out, "would remove tap110i0") {
		t.Errorf("gc --dry-run: %s", out)
	}
	if h.state() != before {
		t.Fatal("gc --dry-run changed the kernel")
	}
	if out := h.mustOp("gc"); !strings.Contains(out, "removed tap110i0") {
		t.Errorf("gc: %s", out)
	}
	s := h.state()
	if strings.Contains(s, "tap110i0") || !strings.Contains(s, "tap111i0") {
		t.Errorf("after gc:\n%s", s)
	}

	foreign := cniForeignState(h)
	before = h.state()
	out := h.mustOp("flush", "--dry-run")
	for _, want := range []string{"-X TFW-T-tap111i0-IN", "# ipset destroy tfw6-t-tap111i0", "-D FORWARD -m comment --comment"} {
		if !strings.Contains(out, want) {
			t.Errorf("flush --dry-run lacks %q:\n%s", want, out)
		}
	}
	if h.state() != before {
		t.Fatal("flush --dry-run changed the kernel")
	}
	h.mustOp("flush")
	after := h.state()
	if tr := tapfwTraces(after); len(tr) > 0 {
		t.Errorf("flush left:\n%s", strings.Join(tr, "\n"))
	}
	if got := cniForeignState(h); got != foreign {
		t.Errorf("flush changed foreign rules:\n%s\n---\n%s", foreign, got)
	}
}

// TestOperatorRenderNFT: with the nftables backend, render prints the one
// transaction an ADD would send, as nft commands, and changes nothing:
// before the first ADD the skeleton, the tap's profiles and elements;
// after it, nothing of the chains; with a changed rule, the new profile,
// the element moving to it and the old profile going with its last tap.
func TestOperatorRenderNFT(t *testing.T) {
	h, a, _ := l2net(t, nftablesBE)
	call := a.dualConf("ADD", aRules, "DROP")
	conf := filepath.Join(t.TempDir(), "tap110i0.json")
	if err := os.WriteFile(conf, call.Config, 0o644); err != nil {
		t.Fatal(err)
	}
	render := func(file string) string {
		t.Helper()
		out, err := h.ns.Run("env", "TAPFW_BACKEND=nftables", pluginBin, "render", "--ifname", "tap110i0", "--container-id", "vm-tap110i0", file)
		if err != nil {
			t.Fatalf("render: %v\n%s", err, out)
		}
		return string(out)
	}
	before := h.state()
	out := render(conf)
	if h.state() != before {
		t.Fatal("render changed the kernel")
	}
	for _, want := range []string{
		"# nftables (tables bridge and inet tapfw): one transaction",
		"nft -f writes it",
		"add chain bridge tapfw tfw-pi4-",
		`meta l4proto tcp tcp dport 80 counter accept comment "in rule 1`,
		`add element bridge tapfw tfw-in { ip . "tap110i0" : jump tfw-pi4-`,
		"# layer 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render before ADD lacks %q:\n%s", want, out)
		}
	}
	h.mustCall(call)
	if out := render(conf); strings.Contains(out, "add chain") || strings.Contains(out, "tfw-in {") || strings.Contains(out, "skeleton") {
		t.Errorf("render after ADD would change chains or elements:\n%s", out)
	}
	old := h.profile("tap110i0", "tfw-in", "ip")
	changed := filepath.Join(t.TempDir(), "changed.json")
	if err := os.WriteFile(changed, []byte(strings.Replace(string(call.Config), `"dport":"80"`, `"dport":"8080"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	after := h.state()
	out = render(changed)
	for _, want := range []string{
		"add chain bridge tapfw tfw-pi4-",
		`delete element bridge tapfw tfw-in { ip . "tap110i0" }`,
		"delete chain bridge tapfw " + old + " (its last tap goes)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render of a changed rule lacks %q:\n%s", want, out)
		}
	}
	if h.state() != after {
		t.Error("render changed the kernel")
	}
}

// TestOperatorGCFlushNFT: with the nftables backend, gc removes exactly
// the taps whose interface is gone (--dry-run only says so), and flush
// removes both of tapfw's tables and leaves a foreign table alone
// (--dry-run only names them).
func TestOperatorGCFlushNFT(t *testing.T) {
	h, a, b := l2net(t, nftablesBE)
	h.mustCall(a.conf(""))
	h.mustCall(b.conf(""))
	h.run("nft", "add", "table", "bridge", "foreign")
	h.run("nft", "add", "chain", "bridge", "foreign", "in", "{ type filter hook input priority 0 ; }")
	op := func(args ...string) string {
		t.Helper()
		out, err := h.ns.Run(append([]string{"env", "TAPFW_BACKEND=nftables", pluginBin}, args...)...)
		if err != nil {
			t.Fatalf("tapfw %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := op("gc"); !strings.Contains(out, "nothing to remove") {
		t.Errorf("gc with every tap present: %s", out)
	}
	h.run("ip", "link", "del", a.port)
	before := h.state()
	if out := op("gc", "--dry-run"); !strings.Contains(out, "would remove tap110i0") {
		t.Errorf("gc --dry-run: %s", out)
	}
	if h.state() != before {
		t.Fatal("gc --dry-run changed the kernel")
	}
	if out := op("gc"); !strings.Contains(out, "removed tap110i0") {
		t.Errorf("gc: %s", out)
	}
	if s := h.state(); strings.Contains(s, "tap110i0") || !strings.Contains(s, "tap111i0") {
		t.Errorf("after gc:\n%s", s)
	}
	before = h.state()
	out := op("flush", "--dry-run")
	for _, want := range []string{"would delete table bridge tapfw", "would delete table inet tapfw"} {
		if !strings.Contains(out, want) {
			t.Errorf("flush --dry-run lacks %q:\n%s", want, out)
		}
	}
	if h.state() != before {
		t.Fatal("flush --dry-run changed the kernel")
	}
	op("flush")
	if s := h.state(); strings.Contains(s, "table bridge tapfw") || strings.Contains(s, "table inet tapfw") || !strings.Contains(s, "table bridge foreign") {
		t.Errorf("after flush:\n%s", s)
	}
	if out := op("flush", "--dry-run"); !strings.Contains(out, "nothing of tapfw's") {
		t.Errorf("flush --dry-run after flush:\n%s", out)
	}
}
