package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// pluginBin is the plugin, built once for all tests of this package.
var pluginBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tapfw-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginBin = filepath.Join(dir, "tapfw")
	// Built as make build builds it: static, without cgo.
	build := exec.Command("go", "build", "-o", pluginBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the plugin: %v\n%s", err, out)
		os.Exit(1)
	}
	// The plugin's default is auto, nftables on this kernel. The tests
	// say which backend they test: those written for the iptables
	// backend alone get it from here, the others set TAPFW_BACKEND on
	// each call (an empty one is the default).
	// The plugin's lock is this test binary's own: another tapfw on the
	// machine (another test run, a benchmark) must not hold up its calls,
	// nor its calls theirs. Tests of the lock name their own.
	for k, v := range map[string]string{"TAPFW_BACKEND": "iptables", "TAPFW_LOCK": filepath.Join(dir, "tapfw.lock")} {
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := testnet.GuardHost(m)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// host is a sandbox hypervisor: a namespace with bridge vmbr0 and a real
// tap device on it, as QEMU makes them.
type host struct {
	t  *testing.T
	ns *testnet.NS
	// be is the backend the plugin calls use; the zero value is the
	// iptables backend (see TestMain).
	be testBackend
}

func newHost(t *testing.T, taps ...string) *host {
	t.Helper()
	return newHostOn(t, testBackend{}, taps...)
}

// newHostOn is newHost with the plugin calls on backend be.
func newHostOn(t *testing.T, be testBackend, taps ...string) *host {
	t.Helper()
	testnet.NeedKernel(t)
	ns, err := testnet.NewNS("pl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	h := &host{t: t, ns: ns, be: be}
	if err := testnet.AddBridge(ns, "vmbr0", "192.0.2.31/24"); err != nil {
		t.Fatal(err)
	}
	for _, tap := range taps {
		h.run("ip", "tuntap", "add", "mode", "tap", tap)
		h.run("ip", "link", "set", tap, "master", "vmbr0", "up")
	}
	return h
}

func (h *host) run(args ...string) string {
	h.t.Helper()
	out, err := h.ns.Run(args...)
	if err != nil {
		h.t.Fatal(err)
	}
	return string(out)
}

var (
	noise    = regexp.MustCompile(`(?m)^#.*\n| initval 0x[0-9a-f]+`)
	counters = regexp.MustCompile(`(?m)^(:\S+ \S+) \[\d+:\d+\]$`)
	// nftCounters are the values of nftables' counters and limits'
	// state, which traffic changes.
	nftCounters = regexp.MustCompile(`counter packets \d+ bytes \d+`)
)

// state is the namespace's whole netfilter and ipset state, comparable:
// both iptables backends and the ipsets, without comments, chain counters
// and hash seeds. Only stdout is read: warnings on stderr would interleave.
func (h *host) state() string {
	h.t.Helper()
	var b strings.Builder
	for _, argv := range [][]string{{"iptables-nft-save"}, {"iptables-legacy-save"}, {"ip6tables-nft-save"}, {"ip6tables-legacy-save"}, {"ipset", "save"}, {"nft", "list", "tables"}} {
		cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns.Name}, argv...)...)
		out, err := cmd.Output()
		if err != nil {
			h.t.Fatalf("%s: %v", strings.Join(argv, " "), err)
		}
		b.Write(out)
	}
	s := counters.ReplaceAllString(noise.ReplaceAllString(b.String(), ""), "$1 [0:0]")
	// tapfw's nftables tables, each line marked by its table: "l2 " for
	// the bridge table (the layer-2 checks, and the nftables backend's
	// taps), "inet " for the nftables backend's inet table, "hlp " for
	// the conntrack helpers' table.
	for _, tb := range []struct{ family, name, mark string }{{"bridge", "tapfw", "l2 "}, {"inet", "tapfw", "inet "}, {"inet", "tapfw-helpers", "hlp "}} {
		if !slices.Contains(strings.Split(s, "\n"), "table "+tb.family+" "+tb.name) {
			continue
		}
		cmd := exec.Command("ip", "netns", "exec", h.ns.Name, "nft", "list", "table", tb.family, tb.name)
		out, err := cmd.Output()
		if err != nil {
			h.t.Fatalf("nft list table %s %s: %v", tb.family, tb.name, err)
		}
		for _, l := range strings.Split(strings.TrimRight(nftCounters.ReplaceAllString(withoutRateElements(string(out)), "counter"), "\n"), "\n") {
			s += tb.mark + l + "\n"
		}
	}
	return s
}

// cniErr is the error a plugin prints on stdout.
type cniErr struct {
	Code uint   `json:"code"`
	Msg  string `json:"msg"`
}

func (h *host) call(c testnet.Call) ([]byte, *cniErr) {
	h.t.Helper()
	c.Bin = pluginBin
	c.Env = append(append([]string(nil), h.be.env...), c.Env...)
	out, err := testnet.CallPlugin(h.ns, c)
	if err == nil {
		return out, nil
	}
	var e cniErr
	if jerr := json.Unmarshal(out, &e); jerr != nil || e.Code == 0 {
		h.t.Fatalf("plugin failed without a CNI error: %v", err)
	}
	return out, &e
}

func (h *host) mustCall(c testnet.Call) []byte {
	h.t.Helper()
	out, e := h.call(c)
	if e != nil {
		h.t.Fatalf("%s %s: code %d: %s", c.Command, c.IfName, e.Code, e.Msg)
	}
	return out
}

func tapConf(version, extra string) []byte {
	return []byte(`{"cniVersion":"` + version + `","name":"vms","type":"tapfw","mac":"02:00:00:00:01:10","ips":["192.0.2.200"],
	"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"22"}]}` + extra + `}`)
}

func TestStandaloneLifecycle(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testStandaloneLifecycle)
}

func testStandaloneLifecycle(t *testing.T, be testBackend) {
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			h := newHostOn(t, be, "tap110i0")
			conf := tapConf(v, "") // no "bridge": found from the tap's master
			call := testnet.Call{ContainerID: "vm110", IfName: "tap110i0", Config: conf}

			if err := h.ns.Sysctl("net.bridge.bridge-nf-call-iptables", "0"); err != nil {
				t.Fatal(err)
			}
			call.Command = "ADD"
			out := h.mustCall(call)
			if got := strings.TrimSpace(h.run("cat", "/proc/sys/net/bridge/bridge-nf-call-iptables")); got != "1" {
				t.Errorf("bridge-nf-call-iptables is %s after ADD, want 1", got)
			}
			var res struct {
				CNIVersion string `json:"cniVersion"`
				Interfaces []struct{ Name, Mac string }
				IPs        []struct {
					Address string `json:"address"`
				} `json:"ips"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("result %s: %v", out, err)
			}
			if res.CNIVersion != v || len(res.Interfaces) != 1 || res.Interfaces[0].Name != "tap110i0" ||
				res.Interfaces[0].Mac != "02:00:00:00:01:10" || len(res.IPs) != 1 || res.IPs[0].Address != "192.0.2.200/32" {
				t.Errorf("result does not name the tap with its MAC and IP: %s", out)
			}
			installed := h.state()
			for _, want := range []string{h.dispatchText("tap110i0", "net=vms cid=vm110 if=tap110i0"), h.recordText("tap110i0", "net=vms cid=vm110 if=tap110i0")} {
				if !strings.Contains(installed, want) {
					t.Fatalf("the state lacks %q:\n%s", want, installed)
				}
			}
			h.mustCall(call)
			if again := h.state(); again != installed {
				t.Errorf("second ADD changed the kernel")
			}
			call.Command = "CHECK"
			h.mustCall(call)

			// Tagged frames must reach iptables too: CHECK says when not,
			// ADD puts it right.
			if err := h.ns.Sysctl("net.bridge.bridge-nf-filter-vlan-tagged", "0"); err != nil {
				t.Fatal(err)
			}
			if _, e := h.call(call); e == nil || e.Code != errDrift || !strings.Contains(e.Msg, "bridge-nf-filter-vlan-tagged") {
				t.Errorf("CHECK with vlan-tagged frames unfiltered: %+v", e)
			}
			call.Command = "ADD"
			h.mustCall(call)
			call.Command = "CHECK"
			h.mustCall(call)

			says := h.tamperTapRule("tap110i0")
			_, e := h.call(call)
			if e == nil || e.Code != errDrift || !strings.Contains(e.Msg, says) {
				t.Errorf("CHECK after tampering: %+v, want %q", e, says)
			}

			// DEL needs only the tap's name.
			del := testnet.Call{Command: "DEL", ContainerID: "vm110", IfName: "tap110i0",
				Config: []byte(`{"cniVersion":"` + v + `","name":"vms","type":"tapfw"}`)}
			h.mustCall(del)
			h.mustCall(del)
			if got := h.state(); strings.Contains(got, "tap110i0") {
				t.Errorf("DEL left traces of the tap:\n%s", got)
			}
		})
	}
}

func TestBadConfigChangesNothing(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testBadConfigChangesNothing)
}

func testBadConfigChangesNothing(t *testing.T, be testBackend) {
	h := newHostOn(t, be, "tap110i0", "tap111i0")
	h.mustCall(testnet.Call{Command: "ADD", ContainerID: "vm110", IfName: "tap110i0", Config: tapConf("1.0.0", "")})
	before := h.state()
	cases := []struct {
		conf string
		args string
		code uint
		says string
	}{
		{`{"cniVersion":"1.0.0","name":"vms","type":"tapfw",`, "", 6, ""},
		{string(tapConf("1.0.0", `,"bogus":1`)), "", 2, "bogus"},
		{string(tapConf("1.0.0", `,"policyin":"ACCEPT"`)), "", 2, "policyin"},
		{string(tapConf("1.0.0", `,"mac":"02:00:00:00:01:11"`)), "", 2, "mac: duplicate key"},
		{string(tapConf("1.0.0", `,"policyIn":"MAYBE"`)), "", 7, "policyIn"},
		{`{"cniVersion":"1.0.0","name":"vms","type":"tapfw","mac":"02:00:00:00:01:10","rules":{"out":[{"action":"ACCEPT","proto":"tcp","dport":"22;reboot"}]}}`, "", 7, "rules.out[0].dport"},
		{string(tapConf("1.0.0", `,"host":{"ips":["192.0.2.0/33"]}`)), "", 7, "host.ips[0]"},
		{string(tapConf("1.0.0", `,"bridge":"br0\nCOMMIT"`)), "", 7, "bridge"},
		{string(tapConf("1.0.0", "")), "MAC=nope", 4, "CNI_ARGS MAC"},
		{`{"cniVersion":"9.9.9","name":"vms","type":"tapfw"}`, "", 1, ""},
	}
	for i, c := range cases {
		_, e := h.call(testnet.Call{Command: "ADD", ContainerID: "vm111", IfName: "tap111i0", Args: c.args, Config: []byte(c.conf)})
		if e == nil {
			t.Errorf("case %d accepted", i)
			continue
		}
		if e.Code != c.code || !strings.Contains(e.Msg, c.says) {
			t.Errorf("case %d: code %d %q, want code %d naming %q", i, e.Code, e.Msg, c.code, c.says)
		}
	}
	if after := h.state(); after != before {
		t.Errorf("bad configs changed the kernel:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// bridgeResult is what the bridge plugin returns: the bridge, the host-side
// veth, and the container's interface.
func bridgeResult(hostVeth, mac, ip string) string {
	return `{"cniVersion":"1.0.0","interfaces":[{"name":"vmbr0","mac":"02:aa:00:00:00:01"},{"name":"` + hostVeth + `","mac":"02:aa:00:00:00:02"},
	{"name":"eth0","mac":"` + mac + `","sandbox":"/var/run/netns/c1"}],"ips":[{"address":"` + ip + `/24","gateway":"192.0.2.31","interface":2}]}`
}

func TestChainedAfterBridge(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testChainedAfterBridge)
}

func testChainedAfterBridge(t *testing.T, be testBackend) {
	h := newHostOn(t, be)
	peer, err := testnet.NewNS("pc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	if err := testnet.AddPort(h.ns, "vmbr0", "veth1c", peer, "02:00:00:00:0c:01", "192.0.2.60/24", ""); err != nil {
		t.Fatal(err)
	}
	prev := bridgeResult("veth1c", "02:00:00:00:0c:01", "192.0.2.60")
	conf := []byte(`{"cniVersion":"1.0.0","name":"pods","type":"tapfw","prevResult":` + prev + `,
		"rules":{"in":[{"action":"ACCEPT","proto":"tcp","dport":"80"}]}}`)
	call := testnet.Call{Command: "ADD", ContainerID: "c1", IfName: "eth0", Config: conf}
	out := h.mustCall(call)
	var got, want map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal([]byte(prev), &want)
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("prevResult not passed through:\n got %s\nwant %s", gj, wj)
	}
	s := h.state()
	for _, want := range []string{
		h.dispatchText("veth1c", "net=pods cid=c1 if=eth0"),
		h.recordText("veth1c", "net=pods cid=c1 if=eth0"),
		h.macText("veth1c", "02:00:00:00:0c:01"),
		h.dportText("80"),
		h.tapAddrText("veth1c", "192.0.2.60"),
	} {
		if !strings.Contains(s, want) {
			t.Errorf("installed state lacks %q:\n%s", want, s)
		}
	}
	call.Command = "CHECK"
	h.mustCall(call)
	// DEL without prevResult finds the port from the recorded attachment.
	h.mustCall(testnet.Call{Command: "DEL", ContainerID: "c1", IfName: "eth0", Config: []byte(`{"cniVersion":"1.0.0","name":"pods","type":"tapfw"}`)})
	if s := h.state(); strings.Contains(s, "veth1c") {
		t.Errorf("DEL left traces:\n%s", s)
	}
}

func TestGC(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testGC)
}

func testGC(t *testing.T, be testBackend) {
	h := newHostOn(t, be, "tap1", "tap2", "tap3")
	for i, tap := range []string{"tap1", "tap2"} {
		conf := []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"vms","type":"tapfw","mac":"02:00:00:00:00:0%d","ips":["192.0.2.%d"]}`, i+1, i+1))
		h.mustCall(testnet.Call{Command: "ADD", ContainerID: "c" + tap, IfName: tap, Config: conf})
	}
	// Another network's tap survives this network's GC.
	h.mustCall(testnet.Call{Command: "ADD", ContainerID: "ctap3", IfName: "tap3",
		Config: []byte(`{"cniVersion":"1.1.0","name":"other","type":"tapfw","mac":"02:00:00:00:00:03"}`)})
	// libcni sends the list under both names, the old one too.
	gc := []byte(`{"cniVersion":"1.1.0","name":"vms","type":"tapfw","cni.dev/valid-attachments":[{"containerID":"ctap1","ifname":"tap1"}],
		"cni.dev/attachments":[{"containerID":"ctap1","ifname":"tap1"}]}`)
	h.mustCall(testnet.Call{Command: "GC", Config: gc})
	s := h.state()
	if strings.Contains(s, "tap2") {
		t.Errorf("GC left the stale attachment tap2:\n%s", s)
	}
	if !strings.Contains(s, h.recordText("tap1", "net=vms cid=ctap1 if=tap1")) || !strings.Contains(s, h.recordText("tap3", "net=other cid=ctap3 if=tap3")) {
		t.Errorf("GC removed a valid attachment:\n%s", s)
	}
}

func TestStatusAndVersion(t *testing.T) {
	testnet.NeedKernel(t)
	forEachBackend(t, testStatusAndVersion)
}

func testStatusAndVersion(t *testing.T, be testBackend) {
	h := newHostOn(t, be)
	conf := []byte(`{"cniVersion":"1.1.0","name":"vms","type":"tapfw"}`)
	h.mustCall(testnet.Call{Command: "STATUS", Config: conf})
	tool := "iptables"
	if be.nftables() {
		tool = "nft"
	}
	_, e := h.call(testnet.Call{Command: "STATUS", Config: conf, Env: []string{"PATH=/nonexistent"}})
	if e == nil || e.Code != 50 || !strings.Contains(e.Msg, tool) || !strings.HasPrefix(e.Msg, be.backend()+" backend: ") {
		t.Errorf("STATUS without %s: %+v, want code 50 naming it and the backend", tool, e)
	}
	out := h.mustCall(testnet.Call{Command: "VERSION", Config: conf})
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		if !strings.Contains(string(out), `"`+v+`"`) {
			t.Errorf("VERSION does not list %s: %s", v, out)
		}
	}
}

// leaves counts the rules in the chains of a dispatch trie (root TFW-DI,
// TFW-DO or TFW-DH) that hold every one of subs.
func leaves(save, root string, subs ...string) int {
	n := 0
lines:
	for _, l := range strings.Split(save, "\n") {
		chain, _, _ := strings.Cut(strings.TrimPrefix(l, "-A "), " ")
		if !strings.HasPrefix(l, "-A ") || (chain != root && !strings.HasPrefix(chain, root+"-")) {
			continue
		}
		for _, s := range subs {
			if !strings.Contains(l+" ", s) {
				continue lines
			}
		}
		n++
	}
	return n
}

// withoutRateElements drops the elements of dynamic sets with timeouts
// from an nft listing: a log rule's per-port limits, which packets make
// and which expire by themselves (their "expires" changes by the
// millisecond), so they are no part of what a call installed.
func withoutRateElements(listing string) string {
	var out []string
	dynamic, skipping := false, false
	for _, l := range strings.Split(listing, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case skipping:
			skipping = !strings.HasSuffix(t, "}")
			continue
		case strings.HasPrefix(t, "set ") || strings.HasPrefix(t, "map "):
			dynamic = false
		case strings.HasPrefix(t, "flags ") && strings.Contains(t, "dynamic") && strings.Contains(t, "timeout"):
			dynamic = true
		case dynamic && strings.HasPrefix(t, "elements = {"):
			skipping = !strings.HasSuffix(t, "}")
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}
