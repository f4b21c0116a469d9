// Package baseline is what the benchmark compares tapfw with: the same
// rule set applied the way the CNI firewall plugin applies its rules.
package baseline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/harness"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/taps"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// HelperFlag makes the benchmark's binary the per-rule baseline "plugin";
// the benchmark runs itself with it inside a namespace.
const HelperFlag = "-baseline-helper"

// The baseline: the same rule set applied the way the CNI firewall plugin
// (containernetworking/plugins, iptables backend) applies its rules: one
// go-iptables call per rule. This program runs itself as that "plugin"
// (HelperFlag), one process per ADD or DEL, inside the namespace:
//
//	ADD: iptables.New (runs iptables --version); each named set, the host
//	     sets and the tap's set: `ipset create -exist`, `ipset add -exist`
//	     per entry; each shared chain: ChainExists, NewChain when missing;
//	     each hook: Exists, Insert at 1 when missing; each shared rule and
//	     each of the tap's rules: AppendUnique (iptables -C, then -A when
//	     missing); the tap's chains: ClearChain (-N).
//	DEL: like the CNI firewall plugin's cleanupRules, each rule the ADD
//	     appended for the tap, dispatch rules first: Delete (iptables -D);
//	     then each tap chain: DeleteChain (-X); `ipset destroy` of the
//	     tap's set. Shared chains, rules and sets stay.

// Helper is the entry point of the helper process: args are "add"|"del"
// and the iptables mode; stdin is the taps.Spec as JSON.
func Helper(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "baseline helper: want add|del and the iptables mode")
		return 2
	}
	var t taps.Spec
	if err := json.NewDecoder(os.Stdin).Decode(&t); err != nil {
		fmt.Fprintf(os.Stderr, "baseline helper: %v\n", err)
		return 2
	}
	ipt, err := iptables.New(iptables.Path(harness.IptablesCmd(args[1])))
	if err != nil {
		fmt.Fprintf(os.Stderr, "baseline helper: %v\n", err)
		return 1
	}
	switch args[0] {
	case "add":
		err = baselineAdd(ipt, t)
	case "del":
		err = baselineDel(ipt, t)
	default:
		err = fmt.Errorf("unknown command %q", args[0])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "baseline helper %s %s: %v\n", args[0], t.Name, err)
		return 1
	}
	return 0
}

func ipsetRun(args ...string) error {
	out, err := exec.Command("ipset", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ipset %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func ensureSet(name string, entries []string) error {
	if err := ipsetRun("create", name, "hash:net", "family", "inet", "-exist"); err != nil {
		return err
	}
	for _, e := range entries {
		if err := ipsetRun("add", name, e, "-exist"); err != nil {
			return err
		}
	}
	return nil
}

func baselineAdd(ipt *iptables.IPTables, t taps.Spec) error {
	sh := sharedFor([]string{t.Bridge})
	tp := tapFor(t)
	names := make([]string, 0, len(sh.Sets))
	for n := range sh.Sets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := ensureSet(n, sh.Sets[n]); err != nil {
			return err
		}
	}
	if err := ensureSet(tp.Set, tp.Entries); err != nil {
		return err
	}
	for _, c := range sh.Chains {
		ok, err := ipt.ChainExists("filter", c)
		if err != nil {
			return err
		}
		if !ok {
			if err := ipt.NewChain("filter", c); err != nil {
				return err
			}
		}
	}
	for _, c := range tp.Chains {
		if err := ipt.ClearChain("filter", c); err != nil {
			return err
		}
	}
	for _, r := range tp.Rules {
		if err := ipt.AppendUnique("filter", r.Chain, r.Args...); err != nil {
			return err
		}
	}
	for _, r := range sh.Rules {
		if err := ipt.AppendUnique("filter", r.Chain, r.Args...); err != nil {
			return err
		}
	}
	for _, r := range tp.Dispatch {
		if err := ipt.AppendUnique("filter", r.Chain, r.Args...); err != nil {
			return err
		}
	}
	for _, h := range sh.Hooks {
		ok, err := ipt.Exists("filter", h.Chain, h.Args...)
		if err != nil {
			return err
		}
		if !ok {
			if err := ipt.Insert("filter", h.Chain, 1, h.Args...); err != nil {
				return err
			}
		}
	}
	return nil
}

func baselineDel(ipt *iptables.IPTables, t taps.Spec) error {
	tp := tapFor(t)
	for _, r := range tp.Dispatch {
		if err := ipt.Delete("filter", r.Chain, r.Args...); err != nil {
			return err
		}
	}
	for _, r := range tp.Rules {
		if err := ipt.Delete("filter", r.Chain, r.Args...); err != nil {
			return err
		}
	}
	for _, c := range tp.Chains {
		if err := ipt.DeleteChain("filter", c); err != nil {
			return err
		}
	}
	return ipsetRun("destroy", tp.Set)
}

// RulesPerTap is how many rules one tap's ADD appends (its chains
// and dispatch) and how many shared rules it makes sure of.
func RulesPerTap() (own, shared int) {
	t := tapFor(taps.Filler(0, "vmbr0"))
	sh := sharedFor([]string{"vmbr0"})
	return len(t.Rules) + len(t.Dispatch), len(sh.Rules) + len(sh.Hooks)
}

// State is a namespace holding the baseline's rule set for a
// growing number of taps, built in bulk (one ipset restore and one
// iptables-restore per step) since only the calls after it are measured.
type State struct {
	o       *harness.Options
	ns      *testnet.NS
	bridges []string
	n       int // taps installed
}

// NewState is the baseline's namespace ns with the bridges, no taps yet.
func NewState(o *harness.Options, ns *testnet.NS, bridges []string) *State {
	return &State{o: o, ns: ns, bridges: bridges}
}

// NS is the baseline's namespace.
func (s *State) NS() *testnet.NS { return s.ns }

// Grow installs the rule sets of taps up to n.
func (s *State) Grow(ctx context.Context, n int, bridgeOf func(int) string) error {
	if n <= s.n {
		return nil
	}
	var sets, tables strings.Builder
	tables.WriteString("*filter\n")
	if s.n == 0 {
		sh := sharedFor(s.bridges)
		names := make([]string, 0, len(sh.Sets))
		for name := range sh.Sets {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			fmt.Fprintf(&sets, "create %s hash:net family inet\n", name)
			for _, e := range sh.Sets[name] {
				fmt.Fprintf(&sets, "add %s %s\n", name, e)
			}
		}
		for _, c := range sh.Chains {
			fmt.Fprintf(&tables, ":%s - [0:0]\n", c)
		}
		for _, h := range sh.Hooks {
			fmt.Fprintf(&tables, "-I %s 1 %s\n", h.Chain, restoreArgs(h.Args))
		}
		for _, r := range sh.Rules {
			fmt.Fprintf(&tables, "-A %s %s\n", r.Chain, restoreArgs(r.Args))
		}
	}
	var added []baselineTap
	for i := s.n; i < n; i++ {
		tp := tapFor(taps.Filler(i, bridgeOf(i)))
		added = append(added, tp)
		fmt.Fprintf(&sets, "create %s hash:net family inet\n", tp.Set)
		for _, e := range tp.Entries {
			fmt.Fprintf(&sets, "add %s %s\n", tp.Set, e)
		}
		for _, c := range tp.Chains {
			fmt.Fprintf(&tables, ":%s - [0:0]\n", c)
		}
	}
	for _, tp := range added {
		for _, r := range tp.Rules {
			fmt.Fprintf(&tables, "-A %s %s\n", r.Chain, restoreArgs(r.Args))
		}
		for _, r := range tp.Dispatch {
			fmt.Fprintf(&tables, "-A %s %s\n", r.Chain, restoreArgs(r.Args))
		}
	}
	tables.WriteString("COMMIT\n")
	if _, err := harness.NSRun(ctx, s.ns, []byte(sets.String()), "ipset", "-exist", "restore"); err != nil {
		return fmt.Errorf("baseline state: %w", err)
	}
	if _, err := harness.NSRun(ctx, s.ns, []byte(tables.String()), harness.IptablesCmd(s.o.Iptables)+"-restore", "--noflush", "-w"); err != nil {
		return fmt.Errorf("baseline state: %w", err)
	}
	s.n = n
	return nil
}

// Call runs the helper for one ADD or DEL and measures the process.
func (s *State) Call(ctx context.Context, command string, t taps.Spec) (report.Sample, error) {
	exe, err := os.Executable()
	if err != nil {
		return report.Sample{}, err
	}
	spec, _ := json.Marshal(t)
	_, smp, err := harness.RunIn(ctx, s.ns, spec, nil, exe, HelperFlag, strings.ToLower(command), s.o.Iptables)
	return smp, err
}
