// Command tapfw-demo rebuilds the sample network of the iptables RFC that
// tapfw comes from in sandbox network namespaces, installs the firewall of
// its three VM taps with the plugin, probes it with real packets, shows the
// installed chains and sets, removes the firewall and the namespaces, and
// exits 1 if any verdict was not the expected one or any step failed.
//
// Usage (as root): go run ./cmd/tapfw-demo -plugin bin/tapfw [-config testdata/seed] [-v]
//
// TAPFW_IPTABLES=nft or legacy in the environment picks the iptables
// backend, as for the plugin itself.
//
// It never touches the machine's own network state: everything happens in
// namespaces it creates and removes, also on SIGINT and SIGTERM.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/ruleset"
	"github.com/tapfw/tapfw/pkg/testnet"
)

const picture = `The sample network of the RFC (pve-devel, "iptables implementation", 2014),
rebuilt in network namespaces with documentation addresses:

  router  192.0.2.1 (and 192.0.2.47, a cluster host)
    | port uplink0 (not firewalled)
  host    vmbr0 192.0.2.31 --+-- tap110i0 -- vm110 192.0.2.200  gw .31  1e:0b:85:27:8d:65
                             +-- tap123i0 -- vm123 192.0.2.201  gw .1   e6:5f:f3:d4:2e:a6
          vmbr1 198.51.100.1 --- tap115i0 -- vm115 198.51.100.2 gw .1   32:36:8a:e1:b5:65

The host routes between its bridges (ip_forward=1). The "taps" are veth
pairs; the plugin runs in the host namespace, as the QEMU ifup script would.`

func main() { os.Exit(run()) }

func run() int {
	d, err := newDemo()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tapfw-demo: %v\n", err)
		return 1
	}
	return d.runUntilSignal()
}

// newDemo reads the flags and checks that the demo can run: as root,
// with the plugin binary and the seed's configs.
func newDemo() (*demo, error) {
	plugin := flag.String("plugin", "bin/tapfw", "path to the tapfw plugin binary")
	confDir := flag.String("config", "testdata/seed", "directory with <tap>.json plugin configs")
	verbose := flag.Bool("v", false, "show the chains of every tap in full")
	flag.Parse()
	if os.Geteuid() != 0 {
		return nil, errors.New("must run as root: it creates network namespaces, bridges and iptables rules inside them (try: sudo make demo)")
	}
	if _, err := os.Stat(*plugin); err != nil {
		return nil, fmt.Errorf("plugin binary: %v (build it with: make build)", err)
	}
	for _, tap := range testnet.SeedTaps() {
		if _, err := os.Stat(filepath.Join(*confDir, tap+".json")); err != nil {
			return nil, fmt.Errorf("config of %s: %v (-config names the directory with the seed's configs)", tap, err)
		}
	}
	return &demo{out: os.Stdout, plugin: *plugin, confDir: *confDir, verbose: *verbose}, nil
}

// runUntilSignal runs the demo; on SIGINT or SIGTERM it stops it and
// removes the namespaces.
func (d *demo) runUntilSignal() int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	done := make(chan int, 1)
	go func() { done <- d.run(ctx) }()
	select {
	case code := <-done:
		return code
	case sig := <-sigs:
		fmt.Fprintf(os.Stderr, "\ntapfw-demo: %v: stopping after the current step and removing the namespaces\n", sig)
		cancel()
	}
	// The demo stops at its next step and cleans up; a second signal, or a
	// step that hangs, removes the namespaces from here.
	select {
	case <-done:
	case sig := <-sigs:
		fmt.Fprintf(os.Stderr, "tapfw-demo: %v again: removing the namespaces now\n", sig)
		d.cleanup()
	case <-time.After(15 * time.Second):
		fmt.Fprintln(os.Stderr, "tapfw-demo: still busy: removing the namespaces now")
		d.cleanup()
	}
	return 1
}

// demo holds the network while it exists; cleanup may be called from the
// signal path while run is still going.
type demo struct {
	out             io.Writer
	plugin, confDir string
	verbose         bool
	backend         string // the one the plugin used: iptables or nftables

	mu   sync.Mutex
	seed *testnet.Seed
	gone bool // cleanup ran: NewSeed's result must be closed at once
	fail bool
}

// cleanup removes the namespaces; a second call does nothing.
func (d *demo) cleanup() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gone = true
	if d.seed != nil {
		if err := d.seed.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "tapfw-demo: removing namespaces: %v\n", err)
		}
		d.seed = nil
	}
}

func (d *demo) printf(format string, a ...any) { fmt.Fprintf(d.out, format, a...) }

// failf reports a failed step; the demo goes on where it can and exits 1.
func (d *demo) failf(format string, a ...any) {
	d.fail = true
	fmt.Fprintf(d.out, "  FAILED: "+format+"\n", a...)
}

// run is the demo's steps; a step that returns false (it failed beyond
// going on, or ctx was cancelled) ends it with status 1.
func (d *demo) run(ctx context.Context) int {
	defer d.cleanup()
	d.printf("%s\n", picture)
	s := d.build()
	if s == nil {
		return 1
	}
	probes := s.Probes()
	bare, ok := d.bareNetwork(ctx, s, probes)
	if !ok || !d.add(ctx, s) || !d.withFirewall(ctx, s, probes, bare) {
		return 1
	}
	save := saveCommand()
	if d.backend == "nftables" {
		d.installedNFT(s)
	} else {
		d.installed(s, save)
	}
	d.explainProbe(s)
	if ctx.Err() != nil || !d.del(ctx, s, probes, save) {
		return 1
	}
	return d.finish(s, len(probes))
}

// build makes the sandbox network, which cleanup removes.
func (d *demo) build() *testnet.Seed {
	s, err := testnet.NewSeed()
	if err != nil {
		d.failf("building the network: %v", err)
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		_ = s.Close()
		return nil
	}
	d.seed = s
	for _, v := range []string{"TAPFW_IPTABLES", "TAPFW_BACKEND"} {
		if val := os.Getenv(v); val != "" {
			s.Env = append(s.Env, v+"="+val)
		}
	}
	return s
}

// bareNetwork is step 1: every probe passes without the firewall. It
// returns how many did.
func (d *demo) bareNetwork(ctx context.Context, s *testnet.Seed, probes []testnet.Probe) (int, bool) {
	base := d.runProbes(ctx, s, probes)
	if ctx.Err() != nil {
		return 0, false
	}
	n := count(base, true)
	d.printf("\n1. Without the firewall, %d of %d probes pass (the network works; a drop below is the firewall's).\n", n, len(probes))
	if n != len(probes) {
		d.failf("the network itself drops %s", names(probes, base, false))
	}
	return n, true
}

// add is step 2: ADD per tap, as the ifup script runs it, then CHECK.
func (d *demo) add(ctx context.Context, s *testnet.Seed) bool {
	d.printf("\n2. ADD: the ifup script runs the plugin once per tap (in the host namespace):\n")
	for _, tap := range testnet.SeedTaps() {
		if ctx.Err() != nil {
			return false
		}
		d.printf("  $ %s\n", d.cmdline("ADD", tap))
		d.printf("    config: %s\n", d.describe(tap))
		out, err := s.Call(d.plugin, d.confDir, "ADD", tap)
		if err != nil {
			d.failf("%v", err)
			d.printf("\nRESULT: FAILED: ADD did not succeed; namespaces removed.\n")
			return false
		}
		d.printf("    -> %s\n", compact(out))
	}
	for _, tap := range testnet.SeedTaps() {
		if _, err := s.Call(d.plugin, d.confDir, "CHECK", tap); err != nil {
			d.failf("CHECK %s: %v", tap, err)
		}
	}
	if !d.fail {
		d.printf("  CHECK of each tap: the kernel matches its config.\n")
	}
	d.backend = d.backendInUse(s)
	d.printf("  Backend: %s (TAPFW_BACKEND=%s; make demo TAPFW_BACKEND=iptables or nftables picks one).\n", d.backend, envOr("TAPFW_BACKEND", "auto"))
	return true
}

// withFirewall is step 3: the probes again, each verdict beside the
// expected one.
func (d *demo) withFirewall(ctx context.Context, s *testnet.Seed, probes []testnet.Probe, bare int) bool {
	got := d.runProbes(ctx, s, probes)
	if ctx.Err() != nil {
		return false
	}
	d.printf("\n3. Probes with the firewall (real packets; bare network: %d/%d passed):\n", bare, len(probes))
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  PROBE\tWANT\tGOT\t\tDECIDED BY")
	bad := 0
	for i, p := range probes {
		res := "OK"
		if got[i] != p.Want {
			res, bad = "MISMATCH", bad+1
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", p.Name, passDrop(p.Want), passDrop(got[i]), res, p.Why)
	}
	_ = tw.Flush()
	if bad > 0 {
		d.failf("%d probe(s) did not get the expected verdict", bad)
	}
	return true
}

// saveCommand is the iptables-save of the backend TAPFW_IPTABLES picks.
func saveCommand() string {
	if mode := os.Getenv("TAPFW_IPTABLES"); mode == "nft" || mode == "legacy" {
		return "iptables-" + mode + "-save"
	}
	return "iptables-save"
}

// installed is step 4: tapfw's rules and sets, and the operator's view of
// the same: what is installed and why a probe was dropped, from the
// kernel alone.
func (d *demo) installed(s *testnet.Seed, save string) {
	d.printf("\n4. Installed (%s in the host namespace, tapfw's rules only):\n", save)
	rules, err := s.Host.Run(save, "-t", "filter")
	if err != nil {
		d.failf("%v", err)
	}
	lines, err := tapfwRules(rules, testnet.SeedTaps()[0], d.verbose)
	if err != nil {
		d.failf("%v", err)
	}
	for _, l := range lines {
		d.printf("  %s\n", l)
	}
	d.installedSets(s)
	d.printf("\n  tapfw list (counters: the probes above):\n")
	d.operator(s, "list")
}

// explainProbe shows why a probe was dropped, from the kernel alone.
func (d *demo) explainProbe(s *testnet.Seed) {
	d.printf("\n  tapfw explain --tap tap110i0 --dir in --src %s --dport 80 --peer uplink0 (probe \"router -> vm110 tcp/80\"):\n", testnet.SeedRouterIP)
	d.operator(s, "explain", "--tap", "tap110i0", "--dir", "in", "--src", testnet.SeedRouterIP, "--dport", "80", "--peer", "uplink0")
}

// installedSets prints tapfw's ipsets, their members sorted.
func (d *demo) installedSets(s *testnet.Seed) {
	d.printf("\n  ipsets (ipset list, tfw- and tfw6- sets):\n")
	sets, err := s.Host.Run("ipset", "list")
	if err != nil {
		d.failf("%v", err)
	}
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	for _, st := range parseSets(sets) {
		if _, ok := ruleset.FamilyOfSet(st.name); ok {
			slices.Sort(st.members) // hash order varies from run to run
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", st.name, st.typ, strings.Join(st.members, " "))
		}
	}
	_ = tw.Flush()
}

// del is step 5: DEL per tap, as the ifdown script runs it; nothing of the
// taps remains, and the bridges fail closed.
func (d *demo) del(ctx context.Context, s *testnet.Seed, probes []testnet.Probe, save string) bool {
	d.printf("\n5. DEL: the ifdown script removes each tap's firewall:\n")
	for _, tap := range testnet.SeedTaps() {
		out, err := s.Call(d.plugin, d.confDir, "DEL", tap)
		if err != nil {
			d.failf("%v", err)
			continue
		}
		res := "ok"
		if len(bytes.TrimSpace(out)) > 0 {
			res = compact(out)
		}
		d.printf("  $ %s -> %s\n", d.cmdline("DEL", tap), res)
	}
	if d.backend == "nftables" {
		d.leftoversNFT(s)
	} else {
		d.leftovers(s, save)
	}
	after := d.runProbes(ctx, s, probes)
	if ctx.Err() != nil {
		return false
	}
	for i, p := range probes {
		switch {
		case p.ThroughTap() && after[i]:
			d.failf("after DEL, %s passed through a tap that has no chains; the bridge should fail closed", p.Name)
		case !p.ThroughTap() && after[i] != p.Want:
			d.failf("after DEL, %s: got %s, want %s (the host firewall stays)", p.Name, passDrop(after[i]), passDrop(p.Want))
		}
	}
	d.printf("  Probes after DEL: %d of %d pass. The taps are still bridge ports but have no chains of their own,\n", count(after, true), len(probes))
	d.printf("  so the bridges fail closed (option failClosed, ports named managedPrefix+ = tap+): nothing goes through them.\n")
	d.printf("  Between router and host the host firewall, which outlives the VMs, still decides.\n")
	return true
}

// finish is step 6: remove the namespaces and print the result.
func (d *demo) finish(s *testnet.Seed, probes int) int {
	d.mu.Lock()
	var nsNames []string
	for _, ns := range s.Namespaces() {
		nsNames = append(nsNames, ns.Name)
	}
	d.mu.Unlock()
	d.cleanup()
	d.printf("\n6. Removed namespaces %s.\n", strings.Join(nsNames, " "))
	if d.fail {
		d.printf("\nRESULT: FAILED (see FAILED and MISMATCH above)\n")
		return 1
	}
	d.printf("\nRESULT: OK: all %d probes got their expected verdict.\n", probes)
	return 0
}

// operator runs `tapfw args...` in the host namespace and prints its
// output indented.
func (d *demo) operator(s *testnet.Seed, args ...string) {
	out, err := s.Host.Run(append([]string{d.plugin}, args...)...)
	if err != nil {
		d.failf("tapfw %s: %v", strings.Join(args, " "), err)
		return
	}
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		d.printf("  %s\n", l)
	}
}

// runProbes runs every probe and returns the verdicts; it stops early
// (leaving the rest false) when ctx is cancelled.
func (d *demo) runProbes(ctx context.Context, s *testnet.Seed, probes []testnet.Probe) []bool {
	res := make([]bool, len(probes))
	for i, p := range probes {
		if ctx.Err() != nil {
			break
		}
		res[i] = s.Run(p)
	}
	return res
}

// leftovers shows that nothing of the taps remains after DEL, and what does.
func (d *demo) leftovers(s *testnet.Seed, save string) {
	rules, err := s.Host.Run(save, "-t", "filter")
	if err != nil {
		d.failf("%v", err)
		return
	}
	sets, err := s.Host.Run("ipset", "list")
	if err != nil {
		d.failf("%v", err)
		return
	}
	var tapLines, tapSets, shared []string
	for _, l := range strings.Split(string(rules), "\n") {
		for _, tap := range testnet.SeedTaps() {
			if strings.Contains(l, tap) {
				tapLines = append(tapLines, l)
				break
			}
		}
	}
	tb, err := netfilter.ParseSave(rules)
	if err != nil {
		d.failf("%v", err)
		return
	}
	var chains []string
	for _, c := range tb.Order {
		if strings.HasPrefix(c, ruleset.ChainPrefix) {
			chains = append(chains, c)
		}
	}
	for _, st := range parseSets(sets) {
		fam, ok := ruleset.FamilyOfSet(st.name)
		if !ok {
			continue
		}
		if _, isTap := fam.TapOfSet(st.name); isTap {
			tapSets = append(tapSets, st.name)
		} else {
			shared = append(shared, st.name)
		}
	}
	if len(tapLines) > 0 {
		d.failf("rules still name a tap:\n    %s", strings.Join(tapLines, "\n    "))
	}
	if len(tapSets) > 0 {
		d.failf("tap sets remain: %s", strings.Join(tapSets, " "))
	}
	if len(tapLines) == 0 && len(tapSets) == 0 {
		d.printf("  Nothing of the taps remains: no rule names tap110i0, tap123i0 or tap115i0; no tfw-t-* set.\n")
	}
	d.printf("  Left in place (shared, owned by no tap): %d chains (%s ...), sets %s.\n",
		len(chains), strings.Join(chains[:min(3, len(chains))], " "), strings.Join(shared, " "))
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// cmdline is how the ifup/ifdown script runs the plugin for tap.
func (d *demo) cmdline(command, tap string) string {
	return fmt.Sprintf("CNI_COMMAND=%s CNI_CONTAINERID=vm%s CNI_IFNAME=%s %s < %s",
		command, strings.TrimPrefix(tap, "tap")[:3], tap, d.plugin, filepath.Join(d.confDir, tap+".json"))
}

// describe summarizes a tap's config file in one line.
func (d *demo) describe(tap string) string {
	var c struct {
		Bridge    string   `json:"bridge"`
		MAC       string   `json:"mac"`
		IPs       []string `json:"ips"`
		PolicyIn  string   `json:"policyIn"`
		PolicyOut string   `json:"policyOut"`
		Rules     struct {
			In, Out []struct {
				Action, Proto, DPort string
			}
		} `json:"rules"`
	}
	b, err := os.ReadFile(filepath.Join(d.confDir, tap+".json"))
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		return "(" + err.Error() + ")"
	}
	rules := func(rs []struct{ Action, Proto, DPort string }, policy string) string {
		var parts []string
		for _, r := range rs {
			parts = append(parts, fmt.Sprintf("%s/%s %s", r.Proto, r.DPort, strings.ToLower(r.Action)))
		}
		if policy == "" {
			policy = "DROP"
		}
		return strings.Join(append(parts, "else "+strings.ToLower(policy)), ", ")
	}
	return fmt.Sprintf("%s, ip %s; in: %s; out: %s; + host firewall",
		c.Bridge, strings.Join(c.IPs, ","), rules(c.Rules.In, c.PolicyIn), rules(c.Rules.Out, c.PolicyOut))
}

// tapfwRules keeps the lines of an iptables-save dump that are tapfw's:
// rules in TFW- chains and the hooks into them from the built-in chains.
// Unless full, the own chains (TFW-T-<tap>-IN/OUT) of taps other than
// firstTap are summed up in one line per tap: they have the same shape.
func tapfwRules(save []byte, firstTap string, full bool) ([]string, error) {
	tb, err := netfilter.ParseSave(save)
	if err != nil {
		return nil, err
	}
	var out []string
	otherTrie := 0
	counts := map[string]map[string]int{} // tap -> chain -> rules
	for _, chain := range tb.Order {
		for _, spec := range tb.Chains[chain] {
			l := "-A " + chain + " " + spec
			if !strings.HasPrefix(chain, ruleset.ChainPrefix) && !strings.Contains(l, " -j "+ruleset.ChainPrefix) {
				continue
			}
			if ruleset.IsTrieChain(chain) && !full && !onPath(l, firstTap) {
				otherTrie++
				continue
			}
			if tap, ok := ruleset.IsTapChain(chain); ok && !full && tap != firstTap {
				if counts[tap] == nil {
					counts[tap] = map[string]int{}
				}
				counts[tap][chain]++
				continue
			}
			out = append(out, l)
		}
	}
	for _, tap := range testnet.SeedTaps() {
		if counts[tap] == nil {
			continue
		}
		in, outc := ruleset.TapIn(tap), ruleset.TapOut(tap)
		out = append(out, fmt.Sprintf("(%s: %d rules, %s: %d rules, shaped like %s's; -v shows them)",
			in, counts[tap][in], outc, counts[tap][outc], firstTap))
	}
	if otherTrie > 0 {
		out = append(out, fmt.Sprintf("(%d more rules in the dispatch tries TFW-DI, TFW-DO, TFW-DH lead to the other taps; -v shows them)", otherTrie))
	}
	return out, nil
}

// onPath tells whether a trie rule is on tap's way: its own leaf, or an
// edge whose prefix starts the tap's name (or, in TFW-DH, the address key
// of the seed's first tap, 192.0.2.200).
func onPath(line, tap string) bool {
	c := netfilter.Comment(line)
	if ruleset.CommentOwner(c) == tap {
		return true
	}
	f := strings.Fields(strings.TrimPrefix(c, ruleset.EdgeOwner+": "))
	if len(f) < 2 {
		return false
	}
	key := tap
	if f[0] == ruleset.TrieHost.Name {
		key = ruleset.IPKey(netip.MustParsePrefix(testnet.SeedVM110IP + "/32"))
	}
	return strings.HasPrefix(key, f[1])
}

type ipset struct {
	name, typ string
	members   []string
}

// parseSets reads `ipset list` output. Only names, types and members are
// kept: the header holds a random initval.
func parseSets(out []byte) []ipset {
	var sets []ipset
	inMembers := false
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "Name: "):
			sets = append(sets, ipset{name: strings.TrimPrefix(l, "Name: ")})
			inMembers = false
		case len(sets) == 0:
		case strings.HasPrefix(l, "Type: "):
			sets[len(sets)-1].typ = strings.TrimPrefix(l, "Type: ")
		case l == "Members:":
			inMembers = true
		case l == "":
			inMembers = false
		case inMembers:
			sets[len(sets)-1].members = append(sets[len(sets)-1].members, strings.TrimSpace(l))
		}
	}
	return sets
}

func compact(b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return strings.TrimSpace(string(b))
	}
	return buf.String()
}

func passDrop(pass bool) string {
	if pass {
		return "pass"
	}
	return "drop"
}

func count(bs []bool, v bool) int {
	n := 0
	for _, b := range bs {
		if b == v {
			n++
		}
	}
	return n
}

// names lists the probes whose verdict is v.
func names(probes []testnet.Probe, got []bool, v bool) string {
	var out []string
	for i, p := range probes {
		if got[i] == v {
			out = append(out, p.Name)
		}
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, "; ")
}
