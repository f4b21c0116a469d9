package netfilter

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/tapfw/tapfw/pkg/model"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

type snapshot struct {
	save string
	sets map[string][]netip.Prefix
}

func snap(t *testing.T, fw *Firewall) snapshot {
	t.Helper()
	save, err := fw.Tables.Save()
	if err != nil {
		t.Fatal(err)
	}
	sets, err := fw.Sets.List()
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{string(save), sets}
}

func (s snapshot) equal(o snapshot) bool {
	if s.save != o.save || len(s.sets) != len(o.sets) {
		return false
	}
	for k, v := range s.sets {
		w, ok := o.sets[k]
		if !ok || !samePrefixes(v, w) {
			return false
		}
	}
	return true
}

func TestApplyTwiceChangesNothing(t *testing.T) {
	fw, tb, _ := newFake()
	p := seedPlan(t, "tap110i0")
	changed, err := fw.Apply(p)
	if err != nil || !changed {
		t.Fatalf("first apply: changed=%v err=%v", changed, err)
	}
	if tb.Restores != 1 {
		t.Fatalf("first apply used %d restores, want 1 transaction", tb.Restores)
	}
	before := snap(t, fw)
	changed, err = fw.Apply(p)
	if err != nil || changed {
		t.Fatalf("second apply: changed=%v err=%v, want no change", changed, err)
	}
	if tb.Restores != 1 || !before.equal(snap(t, fw)) {
		t.Fatal("second apply touched the kernel")
	}
	if err := fw.Check(p); err != nil {
		t.Fatalf("check after apply: %v", err)
	}
}

func TestRemoveLeavesNoTrace(t *testing.T) {
	fw, _, _ := newFake()
	if _, err := fw.Apply(seedPlan(t, "tap123i0")); err != nil {
		t.Fatal(err)
	}
	base := snap(t, fw) // shared chains and sets, one other tap
	if _, err := fw.Apply(seedPlan(t, "tap110i0")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := fw.Remove("tap110i0"); err != nil {
			t.Fatalf("remove %d: %v", i+1, err)
		}
	}
	after := snap(t, fw)
	if strings.Contains(after.save, "tap110i0") {
		t.Errorf("tap110i0 left in table:\n%s", after.save)
	}
	if !base.equal(after) {
		t.Errorf("remove did not restore the state before the add:\n--- before\n%s\n--- after\n%s", base.save, after.save)
	}
	if err := fw.Check(seedPlan(t, "tap123i0")); err != nil {
		t.Errorf("the other tap was disturbed: %v", err)
	}
}

func TestCheckNamesWhatDiffers(t *testing.T) {
	fw, tb, sets := newFake()
	p := seedPlan(t, "tap110i0")
	if _, err := fw.Apply(p); err != nil {
		t.Fatal(err)
	}
	// Tamper: drop the user rule (ssh: after invalid, established, igmp
	// and the two dhcp replies) from the IN chain, change the tap's set.
	if err := tb.Restore([]byte("-D TFW-T-tap110i0-IN 6\n")); err != nil {
		t.Fatal(err)
	}
	if err := sets.Add("tfw-t-tap110i0", netip.MustParsePrefix("192.0.2.99/32")); err != nil {
		t.Fatal(err)
	}
	err := fw.Check(p)
	var de *DriftError
	if !errors.As(err, &de) {
		t.Fatalf("check after tampering: %v, want a DriftError", err)
	}
	msg := err.Error()
	for _, want := range []string{"table filter, chain TFW-T-tap110i0-IN", "--dport 22", "ipset tfw-t-tap110i0", "192.0.2.99"} {
		if !strings.Contains(msg, want) {
			t.Errorf("check error does not name %q: %s", want, msg)
		}
	}
	// ADD repairs it.
	if _, err := fw.Apply(p); err != nil {
		t.Fatal(err)
	}
	if err := fw.Check(p); err != nil {
		t.Errorf("check after repair: %v", err)
	}
}

// A failed restore leaves the kernel as it was: sets created for the call
// are destroyed and sets swapped are swapped back.
func TestFailedRestoreRollsBackSets(t *testing.T) {
	fw, tb, _ := newFake()
	if _, err := fw.Apply(seedPlan(t, "tap110i0")); err != nil {
		t.Fatal(err)
	}
	before := snap(t, fw)
	// New tap (creates its set) with host IPs changed (swaps tfw-host).
	data := []byte(strings.Replace(string(readSeed(t, "tap123i0")), `"198.51.100.1"`, `"198.51.100.9"`, 1))
	tb.FailRestore = errBoom
	if _, err := fw.Apply(planFrom(t, data, "tap123i0")); !errors.Is(err, errBoom) {
		t.Fatalf("apply: %v, want boom", err)
	}
	if after := snap(t, fw); !before.equal(after) {
		t.Errorf("failed apply changed the kernel:\n--- before %v\n--- after %v", before.sets, after.sets)
	}
}

func TestFailedSetStepChangesNothing(t *testing.T) {
	for _, op := range []string{"create", "add"} {
		t.Run(op, func(t *testing.T) {
			fw, _, sets := newFake()
			if _, err := fw.Apply(seedPlan(t, "tap110i0")); err != nil {
				t.Fatal(err)
			}
			before := snap(t, fw)
			data := []byte(strings.Replace(string(readSeed(t, "tap123i0")), `"198.51.100.1"`, `"198.51.100.9"`, 1))
			sets.Fail[op] = errBoom
			if _, err := fw.Apply(planFrom(t, data, "tap123i0")); !errors.Is(err, errBoom) {
				t.Fatalf("apply: %v, want boom", err)
			}
			if after := snap(t, fw); !before.equal(after) {
				t.Errorf("failed apply changed the kernel:\n--- before %v\n--- after %v", before.sets, after.sets)
			}
		})
	}
}

// A set's new content is swapped in after the restore: if the swap fails
// (or the call dies there), the next call still sees the old content and
// converges.
func TestFailedSwapConverges(t *testing.T) {
	fw, _, sets := newFake()
	if _, err := fw.Apply(seedPlan(t, "tap110i0")); err != nil {
		t.Fatal(err)
	}
	data := []byte(strings.Replace(string(readSeed(t, "tap110i0")), `"192.0.2.200"`, `"192.0.2.210"`, 1))
	p := planFrom(t, data, "tap110i0")
	sets.Fail["swap"] = errBoom
	if _, err := fw.Apply(p); !errors.Is(err, errBoom) {
		t.Fatalf("apply: %v, want boom", err)
	}
	if _, err := fw.Apply(p); err != nil {
		t.Fatal(err)
	}
	if err := fw.Check(p); err != nil {
		t.Errorf("after a retry: %v", err)
	}
	save, _ := fw.Tables.Save()
	if strings.Contains(string(save), "192.0.2.200") {
		t.Errorf("the old address is still dispatched:\n%s", save)
	}
}

// A leaf the tap's set no longer leads to (an operator edited the set)
// does not make DEL fail for ever: DEL reads the whole table.
func TestRemoveFindsStrayLeaves(t *testing.T) {
	fw, tb, sets := newFake()
	if _, err := fw.Apply(seedPlan(t, "tap110i0")); err != nil {
		t.Fatal(err)
	}
	if err := sets.Destroy("tfw-t-tap110i0"); err != nil {
		t.Fatal(err)
	}
	if err := sets.Create("tfw-t-tap110i0"); err != nil {
		t.Fatal(err)
	}
	if err := fw.Remove("tap110i0"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	save, _ := tb.Save()
	if strings.Contains(string(save), "tap110i0") || strings.Contains(string(save), ":TFW-DH-") {
		t.Errorf("traces left:\n%s", save)
	}
}

// An edge someone deleted is put back by the next ADD.
func TestApplyRepairsEdges(t *testing.T) {
	fw, tb, _ := newFake()
	p := seedPlan(t, "tap110i0")
	if _, err := fw.Apply(p); err != nil {
		t.Fatal(err)
	}
	save, _ := tb.Save()
	table, _ := ParseSave(save)
	if len(table.Chains["TFW-DI-tap1"]) == 0 {
		t.Fatal("no TFW-DI-tap1")
	}
	if err := tb.Restore([]byte("-D TFW-DI-tap1 1\n")); err != nil {
		t.Fatal(err)
	}
	if err := fw.Check(p); err == nil {
		t.Fatal("check passed without the edge")
	}
	if changed, err := fw.Apply(p); err != nil || !changed {
		t.Fatalf("apply: changed=%v err=%v", changed, err)
	}
	if err := fw.Check(p); err != nil {
		t.Errorf("after repair: %v", err)
	}
}

func TestGCRemovesStaleAttachmentsOnly(t *testing.T) {
	fw, _, sets := newFake()
	for _, tap := range seedTaps {
		if _, err := fw.Apply(seedPlan(t, tap)); err != nil {
			t.Fatal(err)
		}
	}
	// A leftover set of a tap whose ADD died before its restore.
	if err := sets.Create("tfw-t-tap999i0"); err != nil {
		t.Fatal(err)
	}
	removed, err := fw.GC("seed", func(a model.Attachment) bool { return a.ContainerID != "vm-tap123i0" })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(removed, ",") != "tap123i0,tap999i0" {
		t.Errorf("gc removed %v, want tap123i0 and the leftover tap999i0", removed)
	}
	s := snap(t, fw)
	if strings.Contains(s.save, "tap123i0") || s.sets["tfw-t-tap999i0"] != nil || s.sets["tfw-t-tap123i0"] != nil {
		t.Errorf("gc left traces:\n%s\n%v", s.save, s.sets)
	}
	for _, tap := range []string{"tap110i0", "tap115i0"} {
		if err := fw.Check(seedPlan(t, tap)); err != nil {
			t.Errorf("gc disturbed %s: %v", tap, err)
		}
	}
	// Another network's GC touches nothing of "seed".
	before := snap(t, fw)
	if removed, err := fw.GC("other", func(model.Attachment) bool { return false }); err != nil || len(removed) != 0 {
		t.Errorf("gc of another network removed %v (%v)", removed, err)
	}
	if !before.equal(snap(t, fw)) {
		t.Error("gc of another network changed the kernel")
	}
}

func TestParseSaveRoundTrip(t *testing.T) {
	fw, tb, _ := newFake()
	for _, tap := range seedTaps {
		if _, err := fw.Apply(seedPlan(t, tap)); err != nil {
			t.Fatal(err)
		}
	}
	save, _ := tb.Save()
	table, err := ParseSave(save)
	if err != nil {
		t.Fatal(err)
	}
	atts := Attachments(table)
	if len(atts) != 3 || atts[0] != (model.Attachment{Tap: "tap110i0", Network: "seed", ContainerID: "vm-tap110i0", IfName: "tap110i0"}) {
		t.Errorf("attachments read back: %+v", atts)
	}
	if _, err := ParseSave([]byte("*filter\n-A NOPE -j ACCEPT\nCOMMIT\n")); err == nil {
		t.Error("rule in undeclared chain parsed without error")
	}
	if !bytes.Contains(save, []byte(":TFW-FORWARD - [0:0]")) {
		t.Error("no TFW-FORWARD")
	}
}

// The routed tails stay last in TFW-FORWARD, below every bridge's rules,
// whatever order the bridges come in; a copy of them higher up (where it
// would run before a bridge's drops) is drift that ADD repairs.
func TestRoutedTailsStayLast(t *testing.T) {
	fw, tb, _ := newFake()
	for _, tap := range []string{"tap115i0", "tap110i0", "tap123i0"} { // vmbr1, then vmbr0
		if _, err := fw.Apply(seedPlan(t, tap)); err != nil {
			t.Fatal(err)
		}
	}
	p := seedPlan(t, "tap110i0")
	last := func() []string {
		tab, _, err := fw.State()
		if err != nil {
			t.Fatal(err)
		}
		rs := tab.Chains[ruleset.ChainForward]
		return rs[len(rs)-len(p.Tails):]
	}
	for i, r := range last() {
		if Normalize(r) != Normalize(p.Tails[i].Spec()) {
			t.Errorf("TFW-FORWARD ends with %q, want %q", r, p.Tails[i].Spec())
		}
	}
	if err := tb.Restore([]byte("-I TFW-FORWARD 1 " + p.Tails[1].Spec() + "\n")); err != nil {
		t.Fatal(err)
	}
	if err := fw.Check(p); err == nil || !strings.Contains(err.Error(), "chain TFW-FORWARD: does not end with") {
		t.Errorf("check with a copy of the tail on top: %v", err)
	}
	if _, err := fw.Apply(p); err != nil {
		t.Fatal(err)
	}
	if err := fw.Check(p); err != nil {
		t.Errorf("check after repair: %v", err)
	}
}

// applyAll applies the host-wide part of the first plan and every plan,
// as tapfw apply does.
func applyAll(fw *Firewall, ps []*ruleset.Plan, dryRun bool) ([]*Changes, error) {
	return fw.ApplyAll(func([]model.Attachment) ([]*ruleset.Plan, error) {
		return append([]*ruleset.Plan{ps[0].HostWide()}, ps...), nil
	}, dryRun)
}

// said joins what changes say, in the config's words.
func said(cs []*Changes) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Said()...)
	}
	return strings.Join(out, "\n")
}

func TestApplyAllIsOneTransactionPerTable(t *testing.T) {
	fw, tb, _ := newFake()
	ps := []*ruleset.Plan{seedPlan(t, "tap110i0"), seedPlan(t, "tap115i0"), seedPlan(t, "tap123i0")}
	cs, err := applyAll(fw, ps, false)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Restores != 1 || len(cs) != 2 {
		t.Fatalf("%d restores and %d tables changed, want one restore per table", tb.Restores, len(cs))
	}
	for _, p := range ps {
		if err := fw.Check(p); err != nil {
			t.Errorf("check of %s: %v", p.Tap, err)
		}
	}
	for _, w := range []string{"host: rules in", "host: addresses (IPv4) now holds 192.0.2.31, 198.51.100.1", "ipsets.admins (IPv4) now holds 203.0.113.0/28", "tap tap115i0: its firewall"} {
		if !strings.Contains(said(cs)+"\n", w+"\n") {
			t.Errorf("the changes do not say %q:\n%s", w, said(cs))
		}
	}
	before := snap(t, fw)
	if cs, err := applyAll(fw, ps, false); err != nil || said(cs) != "" || tb.Restores != 1 || !before.equal(snap(t, fw)) {
		t.Errorf("a second apply: %v, changes %q, %d restores", err, said(cs), tb.Restores)
	}
}

func TestApplyAllChangesNothingOnDryRunOrFailure(t *testing.T) {
	fw, tb, _ := newFake()
	if _, err := applyAll(fw, []*ruleset.Plan{seedPlan(t, "tap110i0")}, false); err != nil {
		t.Fatal(err)
	}
	before := snap(t, fw)
	// The host gains an address: its set changes in place, no rule does.
	moved := []*ruleset.Plan{}
	for _, tap := range []string{"tap110i0", "tap123i0"} {
		data := strings.Replace(string(readSeed(t, tap)), `"198.51.100.1"`, `"198.51.100.9"`, 1)
		moved = append(moved, planFrom(t, []byte(data), tap))
	}
	cs, err := applyAll(fw, moved, true)
	if err != nil || !strings.Contains(said(cs), "host: addresses (IPv4) now holds 192.0.2.31, 198.51.100.9") {
		t.Errorf("dry run: %v, %q", err, said(cs))
	}
	if !before.equal(snap(t, fw)) || tb.Restores != 1 {
		t.Error("a dry run changed the kernel")
	}
	tb.FailRestore = errBoom
	if _, err := applyAll(fw, moved, false); !errors.Is(err, errBoom) {
		t.Fatalf("apply: %v, want boom", err)
	}
	if !before.equal(snap(t, fw)) {
		t.Error("a failed apply changed the kernel")
	}
	cs, err = applyAll(fw, moved, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range moved {
		if err := fw.Check(p); err != nil {
			t.Errorf("check of %s: %v", p.Tap, err)
		}
	}
}
