package main

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// testBackend is one way the plugin can filter, as the tests drive it:
// the environment that selects it, and how to read what it installed.
type testBackend struct {
	name string
	env  []string
	// tool is the command that must be installed for it.
	tool string
	// mode is the iptables mode ("nft" or "legacy"); "" for nftables.
	mode string
}

var (
	iptablesNFT    = testBackend{name: "nft", env: []string{"TAPFW_BACKEND=iptables", "TAPFW_IPTABLES=nft"}, tool: "iptables-nft-save", mode: "nft"}
	iptablesLegacy = testBackend{name: "legacy", env: []string{"TAPFW_BACKEND=iptables", "TAPFW_IPTABLES=legacy"}, tool: "iptables-legacy-save", mode: "legacy"}
	nftablesBE     = testBackend{name: "nftables", env: []string{"TAPFW_BACKEND=nftables"}, tool: "nft"}
)

// forEachBackend runs f as a subtest on each backend: iptables (in
// whatever mode iptables is here) and nftables.
func forEachBackend(t *testing.T, f func(t *testing.T, be testBackend)) {
	run(t, f, testBackend{name: "iptables", env: []string{"TAPFW_BACKEND=iptables"}, tool: "iptables"}, nftablesBE)
}

// forEachBackendMode is forEachBackend with both iptables modes, for the
// tests whose subject the modes differ in.
func forEachBackendMode(t *testing.T, f func(t *testing.T, be testBackend)) {
	run(t, f, iptablesNFT, iptablesLegacy, nftablesBE)
}

func run(t *testing.T, f func(t *testing.T, be testBackend), bes ...testBackend) {
	for _, be := range bes {
		t.Run(be.name, func(t *testing.T) {
			if _, err := exec.LookPath(be.tool); err != nil {
				t.Skipf("%s not installed", be.tool)
			}
			f(t, be)
		})
	}
}

// backend is the plugin's name of the backend: iptables or nftables.
func (be testBackend) backend() string {
	if be.nftables() {
		return "nftables"
	}
	return "iptables"
}

// nftables says whether this is the nftables backend.
func (be testBackend) nftables() bool { return be.name == nftablesBE.name }

// elemCounter is a map element's counter as nft lists it.
var elemCounter = regexp.MustCompile(`" counter packets \d+ bytes \d+ :`)

// state is everything the backend installed in ns, as text: the filter
// tables and ipsets of iptables, or nftables' whole ruleset (without the
// dispatch elements' counters, which count traffic).
func (be testBackend) state(t *testing.T, ns *testnet.NS) string {
	t.Helper()
	var cmds [][]string
	switch {
	case be.nftables():
		cmds = [][]string{{"nft", "list", "ruleset"}}
	case be.mode == "":
		cmds = [][]string{{"iptables-save"}, {"ip6tables-save"}, {"ipset", "list"}}
	default:
		cmds = [][]string{{"iptables-" + be.mode + "-save"}, {"ip6tables-" + be.mode + "-save"}, {"ipset", "list"}}
	}
	var b strings.Builder
	for _, c := range cmds {
		out, err := ns.Run(c...)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(out)
	}
	if be.nftables() {
		return elemCounter.ReplaceAllString(b.String(), `" :`)
	}
	return b.String()
}

// installedTapText is what the host's installed state shows when tap is
// installed with its record (network, container ID, interface), its MAC
// check and a rule for tcp port 80 or 22 as the tests write them.
func (h *host) dispatchText(tap, record string) string {
	if h.be.nftables() {
		return `ip . "` + tap + `" counter : jump tfw-po4-` // the map element; the record is checked by recordText
	}
	return `-m physdev --physdev-in ` + tap + ` -m comment --comment "` + tap + `: dispatch ` + record + ` #`
}

// recordText is how the state shows who attached tap.
func (h *host) recordText(tap, record string) string {
	if h.be.nftables() {
		return `comment "` + tap + `: dispatch ` + record + `"`
	}
	return `--comment "` + tap + `: dispatch ` + record + ` #`
}

// macText and dportText are how the state shows tap's MAC check and a
// destination port.
func (h *host) macText(tap, mac string) string {
	if h.be.nftables() {
		return `"` + tap + `" . ` + mac // the layer-2 set the tap's profile looks the MAC up in
	}
	return "--mac-source " + mac
}

func (h *host) dportText(port string) string {
	if h.be.nftables() {
		return "tcp dport " + port
	}
	return "--dport " + port
}

// tapAddrText is how the state shows that ip is one of tap's addresses.
func (h *host) tapAddrText(tap, ip string) string {
	if h.be.nftables() {
		return `"` + tap + `" . ` + ip
	}
	return "add tfw-t-" + tap + " " + ip
}

// tamperTapRule deletes the third rule of tap's IPv4 IN chain (with
// nftables, of its profile) behind the plugin's back and returns what
// CHECK must say of it.
func (h *host) tamperTapRule(tap string) string {
	h.t.Helper()
	if !h.be.nftables() {
		h.run("iptables", "-D", "TFW-T-"+tap+"-IN", "3")
		return "table filter, chain TFW-T-" + tap + "-IN, rule 3"
	}
	chain := h.profile(tap, "tfw-in", "ip")
	n := 0
	for _, l := range strings.Split(h.run("nft", "-a", "list", "chain", "bridge", "tapfw", chain), "\n") {
		_, handle, ok := strings.Cut(l, "# handle ")
		if !ok || strings.Contains(l, "chain ") {
			continue
		}
		if n++; n == 3 {
			h.run("nft", "delete", "rule", "bridge", "tapfw", chain, "handle", strings.TrimSpace(handle))
			return chain + ": rule 3 differs"
		}
	}
	h.t.Fatalf("no third rule in %s", chain)
	return ""
}

// tapRules is the rules of tap's chain for dir in IPv4 (with nftables,
// of its profile), as the backend lists them.
func (h *host) tapRules(tap, dir string) string {
	h.t.Helper()
	if !h.be.nftables() {
		chain := "TFW-T-" + tap + "-" + strings.ToUpper(dir)
		var out []string
		for _, l := range strings.Split(h.run("iptables-save"), "\n") {
			if strings.HasPrefix(l, "-A "+chain+" ") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	return h.run("nft", "list", "chain", "bridge", "tapfw", h.profile(tap, "tfw-"+dir, "ip"))
}

// tapChainWord is what a drift in tap's IN rules names: its chain, or
// with nftables its element in the IN map.
func (h *host) tapChainWord(tap string) string {
	if h.be.nftables() {
		return "ip . " + tap
	}
	return "TFW-T-" + tap + "-IN"
}

// shownTap is `tapfw show --json` of a tap.
type shownTap struct {
	inspect.Tap
	RuleList []inspect.Rule `json:"ruleList"`
}

func (h *host) showJSON(tap string) shownTap {
	h.t.Helper()
	var s shownTap
	if err := json.Unmarshal([]byte(h.mustOp("show", "--json", tap)), &s); err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *host) listJSON() []inspect.Tap {
	h.t.Helper()
	var taps []inspect.Tap
	if err := json.Unmarshal([]byte(h.mustOp("list", "--json")), &taps); err != nil {
		h.t.Fatal(err)
	}
	return taps
}

// hostSSHFromAdmins counts the host firewall's IPv4 rules accepting
// tcp/22 from the named set admins.
func (h *host) hostSSHFromAdmins() int {
	h.t.Helper()
	chain, subs := "TFW-HOST-IN", []string{"--match-set tfw-s-admins src", "--dport 22 "}
	lines := strings.Split(h.run("iptables-save"), "\n")
	if h.be.nftables() {
		chain, subs = "", []string{"ip saddr @tfw-s4-admins", "tcp dport 22 "}
		lines = strings.Split(h.run("nft", "list", "chain", "inet", "tapfw", "tfw-h4-in"), "\n")
	}
	n := 0
lines:
	for _, l := range lines {
		if chain != "" && !strings.HasPrefix(l, "-A "+chain+" ") {
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

// setHas says whether the named set (or "host", the host's addresses)
// holds entry in IPv4.
func (h *host) setHas(name, entry string) bool {
	h.t.Helper()
	if !h.be.nftables() {
		set := "tfw-host"
		if name != "host" {
			set = "tfw-s-" + name
		}
		return strings.Contains(h.run("ipset", "list", set), entry)
	}
	set := "tfw-host4"
	if name != "host" {
		set = "tfw-s4-" + name
	}
	return strings.Contains(h.run("nft", "list", "set", "inet", "tapfw", set), entry)
}

// dispatchCount counts what sends tap's packets to its chains: its leaves
// in the IPv4 dispatch tries, or its elements in the dispatch maps.
func (h *host) dispatchCount(tap string) int {
	h.t.Helper()
	if !h.be.nftables() {
		save := h.run("iptables-save")
		return leaves(save, "TFW-DI", "--physdev-in "+tap+" ") + leaves(save, "TFW-DO", "--physdev-out "+tap+" ") + leaves(save, "TFW-DH", tap+": from host")
	}
	n := 0
	for _, m := range []string{"tfw-in", "tfw-out"} {
		n += strings.Count(h.run("nft", "list", "map", "bridge", "tapfw", m), `"`+tap+`"`)
	}
	return n
}

// dispatchPerTap is how many dispatchCount finds for a dual-family tap.
func (be testBackend) dispatchPerTap() int {
	if be.nftables() {
		return 4 // in and out, both families
	}
	return 3 // from the tap, to it, from the host
}

// profile is the nftables profile chain tap's element in map m jumps to
// for family f ("ip" or "ip6").
func (h *host) profile(tap, m, f string) string {
	h.t.Helper()
	out := elemCounter.ReplaceAllString(h.run("nft", "list", "map", "bridge", "tapfw", m), `" :`)
	_, rest, ok := strings.Cut(out, f+` . "`+tap+`" : jump `)
	if !ok {
		h.t.Fatalf("no %s element for %s in map %s:\n%s", f, tap, m, out)
	}
	return strings.TrimRight(strings.Fields(rest)[0], ",")
}
