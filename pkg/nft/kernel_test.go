package nft

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// inNS runs f in a fresh namespace, removed when the test ends.
func inNS(t *testing.T, f func() error) *testnet.NS {
	t.Helper()
	testnet.NeedKernel(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("no nft")
	}
	ns, err := testnet.NewNS("nft")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	if err := ns.Do(f); err != nil {
		t.Fatal(err)
	}
	return ns
}

func nftLoad(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f: %w: %s", err, out)
	}
	return nil
}

// TestKernelTextIsExprs loads each sample plan's text with nft and finds
// in the kernel exactly the expressions the backend sends over netlink:
// the text that goldens, render and CHECK show is what is installed.
func TestKernelTextIsExprs(t *testing.T) {
	for _, s := range samples {
		t.Run(s.tap, func(t *testing.T) {
			p, err := Build(sampleConfig(t, s.dir, s.tap), DefaultMarks)
			if err != nil {
				t.Fatal(err)
			}
			inNS(t, func() error {
				if err := nftLoad(Skeleton(DefaultMarks) + p.String()); err != nil {
					return err
				}
				c, err := nftables.New(nftables.AsLasting())
				if err != nil {
					return err
				}
				defer c.CloseLasting()
				chains := append([]Chain(nil), p.Shared...)
				for _, pr := range p.Profiles {
					chains = append(chains, pr.Chain)
				}
				for _, l := range p.Logs {
					chains = append(chains, l.Chain)
				}
				for _, ch := range chains {
					have, ok, err := readChain(c, tableOf(ch.Table), ch.Name, true)
					if err != nil || !ok {
						return fmt.Errorf("chain %s: %v %v", ch.Name, ok, err)
					}
					if d := diffRules(have, ch.Rules); len(d) > 0 {
						t.Errorf("%s:\n%s", ch.Name, strings.Join(d, "\n"))
					}
				}
				for _, m := range p.Members {
					have, _, err := readChain(c, tableOf(m.Table), m.Chain, true)
					if err != nil {
						return err
					}
					if d := diffRules(have, m.Rules); len(d) > 0 {
						t.Errorf("%s:\n%s", m.Chain, strings.Join(d, "\n"))
					}
				}
				ok, err := skeletonOK(netfilter.ConnReader{C: c}, DefaultMarks)
				if err != nil || !ok {
					t.Errorf("skeleton loaded by nft is not seen as current: %v %v", ok, err)
				}
				return nil
			})
		})
	}
}

// profileOf is the profile p's tap jumps to for a map and family.
func profileOf(t *testing.T, p *Plan, m string, f Family) string {
	t.Helper()
	for _, d := range p.Dispatch {
		if d.Map == m && d.Family == f {
			return d.Chain
		}
	}
	t.Fatalf("no %s element for %s in the plan", f, m)
	return ""
}

// TestKernelApplyRemove installs a tap over netlink, finds a second
// Apply changes nothing, CHECK names drift, and Remove leaves the
// skeleton only.
func TestKernelApplyRemove(t *testing.T) {
	p, err := Build(sampleConfig(t, "seed", "tap110i0"), DefaultMarks)
	if err != nil {
		t.Fatal(err)
	}
	k := Kernel{Marks: DefaultMarks}
	var first string
	ns := inNS(t, func() error { return k.Apply(p) })
	list := func() string {
		out, err := ns.Run("nft", "list", "ruleset")
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	first = list()
	if err := ns.Do(func() error { return k.Apply(p) }); err != nil {
		t.Fatal(err)
	}
	if again := list(); again != first {
		t.Fatalf("a second apply changed the ruleset:\n%s\n---\n%s", first, again)
	}
	pi4, pi6 := profileOf(t, p, MapIn, IPv4), profileOf(t, p, MapIn, IPv6)
	if !strings.Contains(first, `ip . "tap110i0" counter packets 0 bytes 0 : jump `+profileOf(t, p, MapOut, IPv4)) {
		t.Fatalf("map after apply:\n%s", first)
	}
	diffs := func() []string {
		var d []string
		if err := ns.Do(func() (err error) { d, err = k.Diffs(p); return err }); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := diffs(); len(d) > 0 {
		t.Fatalf("diffs right after apply: %q", d)
	}
	// Drift: a rule added by hand, a map element sent elsewhere.
	for _, cmd := range [][]string{
		{"nft", "add", "rule", "bridge", Table, pi4, "accept"},
		{"nft", "delete", "element", "bridge", Table, MapIn, `{ ip6 . "tap110i0" }`},
		{"nft", "add", "element", "bridge", Table, MapIn, `{ ip6 . "tap110i0" : jump ` + pi4 + ` }`},
	} {
		if out, err := ns.Run(cmd...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	d := strings.Join(diffs(), "\n")
	for _, want := range []string{pi4 + ": rule 10 not wanted", `tfw-in: the element for ip6 . tap110i0 goes to "` + pi4 + `", want ` + pi6} {
		if !strings.Contains(d, want) {
			t.Errorf("diffs do not say %q:\n%s", want, d)
		}
	}
	// The next ADD puts it right.
	if err := ns.Do(func() error { return k.Apply(p) }); err != nil {
		t.Fatal(err)
	}
	if d := diffs(); len(d) > 0 {
		t.Fatalf("diffs after the repairing apply: %q", d)
	}
	if err := ns.Do(func() error { return k.Remove("tap110i0") }); err != nil {
		t.Fatal(err)
	}
	if out := list(); strings.Contains(out, "tap110i0") || strings.Contains(out, pi4) || strings.Contains(out, pi6) {
		t.Fatalf("after remove:\n%s", out)
	}
}

// TestKernelProfilesShared installs three taps, two with the same rules:
// those two share their profiles, whose chains go only with the last tap
// using them; the log chains are each tap's own.
func TestKernelProfilesShared(t *testing.T) {
	for _, perTap := range []bool{false, true} {
		t.Run(fmt.Sprintf("logPerTap=%v", perTap), func(t *testing.T) { testProfilesShared(t, perTap) })
	}
}

// testProfilesShared: with log prefixes naming the tap, each tap has log
// chains of its own, made and removed with it; without, a tap adds no
// chain, and the profile's rate sets go with the profile.
func testProfilesShared(t *testing.T, perTap bool) {
	cfg := sampleConfig(t, "seed", "tap110i0")
	cfg.Tap.LogPerTap = perTap
	plan := func(tap, port string) *Plan { return tapPlan(t, cfg, tap, port) }
	a, b, other := plan("tapa", ""), plan("tapb", ""), plan("tapc", "8080")
	if profileOf(t, a, MapIn, IPv4) != profileOf(t, b, MapIn, IPv4) || profileOf(t, a, MapOut, IPv6) != profileOf(t, b, MapOut, IPv6) {
		t.Fatal("taps with the same rules have different profiles")
	}
	if profileOf(t, a, MapIn, IPv4) == profileOf(t, other, MapIn, IPv4) {
		t.Fatal("taps with different rules share a profile")
	}
	if profileOf(t, a, MapOut, IPv4) != profileOf(t, other, MapOut, IPv4) {
		t.Fatal("taps with the same OUT rules have different OUT profiles")
	}
	shared := profileOf(t, a, MapIn, IPv4)
	k := Kernel{Marks: DefaultMarks}
	ns := inNS(t, func() error {
		for _, p := range []*Plan{a, b, other} {
			if err := k.Apply(p); err != nil {
				return err
			}
		}
		return nil
	})
	has := func(chain string) bool {
		_, err := ns.Run("nft", "list", "chain", "bridge", Table, chain)
		return err == nil
	}
	if perTap != (len(a.Logs) > 0) {
		t.Fatalf("log prefixes per tap %v, yet the tap has %d log chains", perTap, len(a.Logs))
	}
	for _, l := range append(append([]LogChain(nil), a.Logs...), b.Logs...) {
		if !has(l.Name) {
			t.Errorf("log chain %s missing", l.Name)
		}
	}
	hasSet := func(set string) bool {
		_, err := ns.Run("nft", "list", "set", "bridge", Table, set)
		return err == nil
	}
	var rates []string
	for _, pr := range a.Profiles {
		if pr.Name == shared {
			for _, rs := range pr.Rates {
				rates = append(rates, rs.Name)
			}
		}
	}
	if perTap == (len(rates) > 0) {
		t.Fatalf("log prefixes per tap %v, yet the profile has rate sets %v", perTap, rates)
	}
	for _, set := range rates {
		if !hasSet(set) {
			t.Errorf("rate set %s missing", set)
		}
	}
	steps := []struct {
		tap          string
		sharedStays  bool
		wantTapsLeft uint32
	}{{"tapa", true, 2}, {"tapb", false, 1}}
	for _, s := range steps {
		if err := ns.Do(func() error { return k.Remove(s.tap) }); err != nil {
			t.Fatal(err)
		}
		if has(shared) != s.sharedStays {
			t.Errorf("after removing %s: profile %s there: %v, want %v", s.tap, shared, has(shared), s.sharedStays)
		}
		var left uint32
		if err := ns.Do(func() error {
			r, err := newNLReader()
			if err != nil {
				return err
			}
			defer r.close()
			left, _, err = r.chainUse(ChainAnchor)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if left != s.wantTapsLeft {
			t.Errorf("after removing %s: the anchor counts %d taps, want %d", s.tap, left, s.wantTapsLeft)
		}
	}
	for _, l := range b.Logs {
		if has(l.Name) {
			t.Errorf("log chain %s left behind", l.Name)
		}
	}
	for _, set := range rates {
		if hasSet(set) {
			t.Errorf("rate set %s left behind with its profile", set)
		}
	}
	if !has(profileOf(t, other, MapIn, IPv4)) {
		t.Error("the other tap's profile went")
	}
}

// TestKernelMarksChangeRefused: a call with other mark bits than the
// installed skeleton's is refused, naming both, and changes nothing; the
// installed taps' profiles test the installed bits.
func TestKernelMarksChangeRefused(t *testing.T) {
	cfg := sampleConfig(t, "seed", "tap110i0")
	p, err := Build(cfg, DefaultMarks)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := MarksFromMask(0x0001f000)
	cfg.Tap.Name, cfg.Tap.IfName = "tap111i0", "tap111i0"
	q, err := Build(cfg, other)
	if err != nil {
		t.Fatal(err)
	}
	ns := inNS(t, func() error { return Kernel{Marks: DefaultMarks}.Apply(p) })
	before, err := ns.Run("nft", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	err = ns.Do(func() error { return Kernel{Marks: other}.Apply(q) })
	if err == nil || !strings.Contains(err.Error(), "0x1f000000") || !strings.Contains(err.Error(), "0x0001f000") {
		t.Errorf("apply with other marks: %v, want a refusal naming both", err)
	}
	if after, _ := ns.Run("nft", "list", "ruleset"); string(after) != string(before) {
		t.Errorf("the refused apply changed the ruleset:\n%s", after)
	}
}

// TestKernelTapRules: the rules read back from the kernel say in the
// config's words what each rule of the tap's profiles and groups matches
// and does.
func TestKernelTapRules(t *testing.T) {
	p, err := Build(sampleConfig(t, "dualstack", "tap201i0"), DefaultMarks)
	if err != nil {
		t.Fatal(err)
	}
	k := Kernel{Marks: DefaultMarks}
	var got []Shown
	inNS(t, func() error {
		if err := k.Apply(p); err != nil {
			return err
		}
		got, err = k.TapRules("tap201i0")
		return err
	})
	type want struct{ dir, comment, group, match, action string }
	for _, w := range []want{
		{"in", "invalid", "", "ctstate INVALID", "DROP"},
		{"in", "in rule 1 web", "", "tcp dport 80", "ACCEPT"},
		{"in", "in rule 2 ssh", "", "from +mgmt tcp dport 22", "ACCEPT"},
		{"in", "+web: in rule 1 http", "web", "tcp dport 80,443", "ACCEPT"},
		{"in", "+web: in rule 2", "web", "tcp dport 8081", "DROP"},
		{"in", "in group web", "", "", "tfw-g4-web-in"},
		{"in", "policy drop", "", "", "DROP"},
		{"out", "mac anti-spoof", "", "not mac own", "DROP"},
		{"out", "ip anti-spoof", "", "not from own addresses", "DROP"},
		{"out", "no dhcp server", "", "udp sport 67 dport 68", "DROP"},
		{"out", "out rule 1 no mail", "", "tcp dport 25", "REJECT"},
		{"out", "out group web allowed", "", "", "ACCEPT"},
		{"out", "established", "", "ctstate RELATED,ESTABLISHED", "ACCEPT"},
	} {
		found := false
		for _, s := range got {
			if s.Dir == w.dir && s.Family == IPv4 && s.Comment == w.comment && s.Group == w.group && !s.Log {
				found = true
				if s.Match != w.match || s.Action != w.action {
					t.Errorf("%s %q: match %q action %q, want %q %q", w.dir, w.comment, s.Match, s.Action, w.match, w.action)
				}
			}
		}
		if !found {
			t.Errorf("no IPv4 rule %s %q (group %q) in %+v", w.dir, w.comment, w.group, got)
		}
	}
	logs := 0
	for _, s := range got {
		if s.Log {
			logs++
		}
	}
	if logs == 0 {
		t.Error("no log rule read back")
	}
}

// TestKernelApplyAll moves several taps in one transaction: taps that
// share a profile make it once, a profile every tap leaves goes, and a
// second run changes nothing.
func TestKernelApplyAll(t *testing.T) {
	cfg := sampleConfig(t, "seed", "tap110i0")
	plan := func(tap, port string) *Plan { return tapPlan(t, cfg, tap, port) }
	k := Kernel{Marks: DefaultMarks}
	first := []*Plan{plan("tapa", "").HostWide(), plan("tapa", ""), plan("tapb", ""), plan("tapc", "8080")}
	moved := []*Plan{plan("tapa", "").HostWide(), plan("tapa", "9090"), plan("tapb", "9090"), plan("tapc", "")}
	old := profileOf(t, first[3], MapIn, IPv4)
	var said1, said2, said3 []string
	ns := inNS(t, func() error {
		var err error
		if said1, err = k.ApplyAll(first, false); err != nil {
			return err
		}
		if said2, err = k.ApplyAll(first, false); err != nil {
			return err
		}
		if said3, err = k.ApplyAll(moved, false); err != nil {
			return err
		}
		for _, p := range moved[1:] {
			diffs, err := k.Diffs(p)
			if err != nil {
				return err
			}
			if len(diffs) > 0 {
				t.Errorf("%s after the move: %s", p.Tap, strings.Join(diffs, "; "))
			}
		}
		return nil
	})
	if !strings.Contains(strings.Join(said1, "\n"), "host: rules in") || len(said2) != 0 {
		t.Errorf("first apply said %q, the second %q", said1, said2)
	}
	if got := strings.Join(said3, "\n"); got != "tap tapa: its firewall\ntap tapb: its firewall\ntap tapc: its firewall" {
		t.Errorf("the move said:\n%s", got)
	}
	if _, err := ns.Run("nft", "list", "chain", "bridge", Table, old); err == nil {
		t.Errorf("profile %s, which no tap uses any more, is still there", old)
	}
}

// tapPlan is cfg's plan for tap, with an IN rule accepting tcp to port
// after its own (none for "").
func tapPlan(t *testing.T, cfg model.Config, tap, port string) *Plan {
	t.Helper()
	cfg.Tap.Name, cfg.Tap.IfName = tap, tap
	if port != "" {
		cfg.Tap.In = append(append(cfg.Tap.In[:0:0], cfg.Tap.In...), model.Rule{Action: model.Accept, Proto: "tcp", DPort: port})
	}
	p, err := Build(cfg, DefaultMarks)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
