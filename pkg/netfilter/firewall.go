package netfilter

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tapfw/tapfw/pkg/model"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Locker takes the host-wide lock and returns its release.
type Locker interface {
	Lock() (unlock func(), err error)
}

// Firewall applies plans to the kernel. It reads the installed state,
// works out the difference and applies it: set changes, then one restore
// transaction. Every method holds the lock for its whole run, so calls of
// concurrent processes never interleave. It keeps no state between calls.
type Firewall struct {
	Tables Tables
	// Tables6, when set, is ip6tables: each plan's IPv6 part (Plan.V6)
	// goes there, after the IPv4 part.
	Tables6 Tables
	// Sets holds the ipsets of both families.
	Sets Sets
	// Bridge, when set, gets each tap's layer-2 checks (table bridge
	// tapfw) after its iptables changes.
	Bridge Bridge
	Lock   Locker
	Log    io.Writer // diagnostics; never stdout
	// Trace, when set, gets the time each step of a call took.
	Trace io.Writer
	// Fault, when set, is called after each step that changes the kernel
	// or holds the lock (see FaultSteps); tests make it kill the process
	// there to prove that every call converges after a crash.
	Fault func(step string)
	start time.Time
	// fam is the family of Tables in the per-family view tables()
	// returns; nil is IPv4.
	fam *ruleset.Family
}

func (f *Firewall) family() *ruleset.Family {
	if f.fam == nil {
		return ruleset.IPv4
	}
	return f.fam
}

// tables returns a view of the firewall per table: IPv4, then IPv6 when
// Tables6 is set. A view has no Bridge.
func (f *Firewall) tables() []*Firewall {
	out := []*Firewall{f}
	if f.Tables6 != nil {
		out = append(out, &Firewall{Tables: f.Tables6, Sets: f.Sets, Lock: f.Lock, Log: f.Log, Trace: f.Trace, Fault: f.Fault, fam: ruleset.IPv6})
	}
	return out
}

// plans pairs each table's view with the plan of its family.
func (f *Firewall) plans(p *ruleset.Plan) (views []*Firewall, plans []*ruleset.Plan) {
	for _, v := range f.tables() {
		q := p
		if v.family().V6 {
			q = p.V6
		}
		if q != nil {
			views, plans = append(views, v), append(plans, q)
		}
	}
	return views, plans
}

// FaultSteps are the points at which Fault is called.
var FaultSteps = []string{"locked", "planned", "set-created", "set-filled", "restored", "swapped", "destroyed", "tap-removed"}

func (f *Firewall) fault(step string) {
	if f.Fault != nil {
		f.Fault(step)
	}
}

func (f *Firewall) trace(step string) {
	if f.Trace == nil {
		return
	}
	now := time.Now()
	if !f.start.IsZero() {
		fmt.Fprintf(f.Trace, "tapfw: %-12s %6.2f ms\n", step, float64(now.Sub(f.start).Microseconds())/1000)
	}
	f.start = now
}

func (f *Firewall) logf(format string, a ...any) {
	if f.Log != nil {
		fmt.Fprintf(f.Log, "tapfw: "+format+"\n", a...)
	}
}

// State reads the installed filter table and the named ipsets (all of
// tapfw's when none are named).
func (f *Firewall) State(sets ...string) (*Table, map[string][]netip.Prefix, error) {
	r, err := saveReader(f.Tables)
	if err != nil {
		return nil, nil, err
	}
	got, err := f.Sets.List(sets...)
	if err != nil {
		return nil, nil, err
	}
	return r.T, got, nil
}

func (f *Firewall) locked(fn func() error) error {
	unlock, err := f.Lock.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	f.fault("locked")
	return fn()
}

// Apply makes the kernel match the plan: its IPv4 part, its IPv6 part, its
// layer-2 part. A second call with the same plan finds nothing to change
// and changes nothing. On error the table being changed is left as it
// was: sets made or swapped for this call are put back; a later call
// completes the parts before it.
func (f *Firewall) Apply(p *ruleset.Plan) (changed bool, err error) {
	err = f.locked(func() error {
		views, plans := f.plans(p)
		for i, v := range views {
			c, err := v.applyTable(plans[i])
			changed = changed || c
			if err != nil {
				return err
			}
		}
		if f.Bridge != nil && p.L2 != nil {
			if err := f.Bridge.Apply(p.L2); err != nil {
				return err
			}
			f.trace("bridge table")
		}
		return nil
	})
	return changed, err
}

// applyTable applies the plan of the view's family; the caller holds the
// lock.
func (f *Firewall) applyTable(p *ruleset.Plan) (changed bool, err error) {
	names, plan := f.tablePlan(p)
	return f.change(names, plan)
}

// tablePlan returns the sets to read for plans ps (of the view's
// family) and the function that works out the changes from them and a
// reader.
func (f *Firewall) tablePlan(ps ...*ruleset.Plan) ([]string, func(Reader, map[string][]netip.Prefix) (*Changes, error)) {
	var names []string
	for _, p := range ps {
		names = append(append(names, planSets(p)...), p.Fam().TapSet(p.Tap))
	}
	slices.Sort(names)
	names = slices.Compact(names)
	for _, n := range names[:len(names):len(names)] {
		names = append(names, ruleset.TempSet(n))
	}
	return names, func(r Reader, sets map[string][]netip.Prefix) (*Changes, error) {
		c, err := PlanChanges(r, sets, ps...)
		if err != nil {
			return nil, err
		}
		// A call killed between a swap and the end leaves the old
		// content under the temporary name.
		swapping := map[string]bool{}
		for _, s := range c.Sets {
			swapping[ruleset.TempSet(s.Name)] = s.Exists
		}
		for n := range sets {
			if ruleset.IsTempSet(n) && !swapping[n] {
				c.Destroy = append(c.Destroy, n)
			}
		}
		sort.Strings(c.Destroy)
		return c, nil
	}
}

// ApplyAll makes the kernel match every plan plans returns in one
// transaction per table (set changes, one restore; then the plans'
// layer-2 parts in one nftables transaction); with dryRun it changes
// nothing. plans is given the
// installed taps and runs under the lock, so no call changes them before
// the plans are installed. ApplyAll returns what changed (or would) in
// each table, IPv4 first. The plans share their host-wide parts; a plan
// for no tap (Plan.HostWide) carries only those.
func (f *Firewall) ApplyAll(plans func([]model.Attachment) ([]*ruleset.Plan, error), dryRun bool) ([]*Changes, error) {
	var out []*Changes
	err := f.locked(func() error {
		r, err := saveReader(f.Tables)
		if err != nil {
			return err
		}
		ps, err := plans(Attachments(r.T))
		if err != nil {
			return err
		}
		for _, v := range f.tables() {
			c, err := v.applyAll(ps, dryRun)
			if err != nil {
				return err
			}
			if c != nil {
				out = append(out, c)
			}
		}
		if dryRun || f.Bridge == nil {
			return nil
		}
		var l2 []*ruleset.L2Tap
		for _, p := range ps {
			if p.L2 != nil {
				l2 = append(l2, p.L2)
			}
		}
		if len(l2) == 0 {
			return nil
		}
		return f.Bridge.Apply(l2...)
	})
	return out, err
}

// applyAll applies the plans' parts of the view's family in one
// transaction and returns what changed (nil: no plan has that family).
// The caller holds the lock.
func (f *Firewall) applyAll(ps []*ruleset.Plan, dryRun bool) (*Changes, error) {
	var fam []*ruleset.Plan
	for _, p := range ps {
		if f.family().V6 {
			p = p.V6
		}
		if p != nil {
			fam = append(fam, p)
		}
	}
	if len(fam) == 0 {
		return nil, nil
	}
	names, plan := f.tablePlan(fam...)
	c, err := f.planned(names, plan)
	if err != nil || dryRun || c.Empty() {
		return c, err
	}
	f.fault("planned")
	return c, f.apply(c)
}

// Preview returns what Apply would change in each table (IPv4, then IPv6
// when Tables6 is set), changing nothing: a dry run.
func (f *Firewall) Preview(p *ruleset.Plan) ([]*Changes, error) {
	var out []*Changes
	err := f.locked(func() error {
		views, plans := f.plans(p)
		for i, v := range views {
			names, plan := v.tablePlan(plans[i])
			c, err := v.planned(names, plan)
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

// FlushPreview returns what Flush would remove from each table.
func (f *Firewall) FlushPreview() ([]*Changes, error) {
	var out []*Changes
	err := f.locked(func() error {
		for _, v := range f.tables() {
			t, sets, err := v.State()
			if err != nil {
				return err
			}
			out = append(out, FlushChanges(v.family(), t, sets))
		}
		return nil
	})
	return out, err
}

// planned reads the named sets and, through a reader, the chains plan
// asks for, and returns the changes plan works out. The caller holds the
// lock.
func (f *Firewall) planned(setNames []string, plan func(Reader, map[string][]netip.Prefix) (*Changes, error)) (*Changes, error) {
	f.trace("")
	sets, err := f.Sets.List(setNames...)
	if err != nil {
		return nil, err
	}
	f.trace("read sets")
	r, err := f.Tables.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	c, err := plan(r, sets)
	if err != nil {
		return nil, err
	}
	f.trace("read chains")
	return c, nil
}

// change applies the changes planned returns. The caller holds the lock.
func (f *Firewall) change(setNames []string, plan func(Reader, map[string][]netip.Prefix) (*Changes, error)) (changed bool, err error) {
	c, err := f.planned(setNames, plan)
	if err != nil {
		return false, err
	}
	f.fault("planned")
	if c.Empty() {
		return false, nil
	}
	err = f.apply(c)
	f.trace("apply")
	return true, err
}

// Remove deletes everything of the given taps. Taps with nothing installed
// are no error, so a second call succeeds and changes nothing.
func (f *Firewall) Remove(taps ...string) error {
	return f.locked(func() error {
		for _, tap := range taps {
			if err := f.remove(tap); err != nil {
				return err
			}
		}
		return nil
	})
}

// remove removes one tap in one transaction; the caller holds the lock.
// When it was the last tap and no host firewall is set up, the shared
// chains, hooks and sets go too (cleanUp), so the last DEL leaves nothing.
func (f *Firewall) remove(tap string) error {
	for _, v := range f.tables() {
		if err := v.removeTap(tap); err != nil {
			return err
		}
	}
	if f.Bridge != nil {
		if err := f.Bridge.Remove(tap); err != nil {
			return err
		}
	}
	f.fault("tap-removed")
	return f.cleanUp()
}

// CleanUp removes the shared chains, hooks and sets when no tap is left
// and no host firewall is set up; otherwise it changes nothing.
func (f *Firewall) CleanUp() error { return f.locked(f.cleanUp) }

// cleanUp removes everything tapfw made when no tap is attached and the
// host firewall has no addresses (its chains are then unreachable), so
// taking it away changes no verdict. The caller holds the lock.
func (f *Firewall) cleanUp() error {
	for _, v := range f.tables() {
		host := v.family().SetHost()
		sets, err := f.Sets.List(host)
		if err != nil {
			return err
		}
		if len(sets[host]) > 0 {
			return nil
		}
		r, err := v.Tables.Reader()
		if err != nil {
			return err
		}
		none, err := NoTaps(r)
		r.Close()
		if err != nil || !none {
			return err
		}
	}
	return f.flush()
}

// Flush removes everything tapfw made, and nothing else: hooks, chains,
// sets. What it removes depends on names only, so it also clears what an
// older version or a crash left.
func (f *Firewall) Flush() error {
	return f.locked(f.flush)
}

func (f *Firewall) flush() error {
	if f.Bridge != nil {
		if err := f.Bridge.Flush(); err != nil {
			return err
		}
	}
	for _, v := range f.tables() {
		t, sets, err := v.State()
		if err != nil {
			return err
		}
		c := FlushChanges(v.family(), t, sets)
		if c.Empty() {
			continue
		}
		if err := v.apply(c); err != nil {
			return err
		}
	}
	return nil
}

// removeTap removes one tap's chains, leaves and set from the view's
// table.
func (f *Firewall) removeTap(tap string) error {
	fam := f.family()
	names := []string{fam.TapSet(tap), ruleset.TempSet(fam.TapSet(tap))}
	_, err := f.change(names, func(r Reader, sets map[string][]netip.Prefix) (*Changes, error) {
		return RemoveChanges(fam, r, sets, tap)
	})
	if err == nil || errors.Is(err, ErrBusy) {
		return err
	}
	// Something of the tap is where its paths do not lead (a leaf at an
	// address its set no longer holds): look through the whole table.
	f.logf("removing %s the quick way failed (%v); reading the whole table", tap, err)
	_, err2 := f.change(names, func(_ Reader, sets map[string][]netip.Prefix) (*Changes, error) {
		t, err := saveReader(f.Tables)
		if err != nil {
			return nil, err
		}
		return RemoveEverywhere(fam, t.T, sets, tap)
	})
	if err2 != nil {
		return errors.Join(err, err2)
	}
	return nil
}

// Check compares the plan with the kernel and returns an error listing
// every difference, or nil.
func (f *Firewall) Check(p *ruleset.Plan) error {
	return f.locked(func() error {
		var d []string
		views, plans := f.plans(p)
		for i, v := range views {
			t, sets, err := v.State(planSets(plans[i])...)
			if err != nil {
				return err
			}
			d = append(d, Verify(t, sets, plans[i])...)
		}
		if f.Bridge != nil && p.L2 != nil {
			d2, err := f.Bridge.Verify(p.L2)
			if err != nil {
				return err
			}
			d = append(d, d2...)
		}
		if len(d) > 0 {
			return &DriftError{Diffs: d}
		}
		return nil
	})
}

// DriftError lists how the kernel differs from what a tap wants.
type DriftError struct{ Diffs []string }

func (e *DriftError) Error() string {
	return fmt.Sprintf("tap firewall differs from its config: %s", strings.Join(e.Diffs, "; "))
}

// Attachments lists the installed taps with who attached them.
func (f *Firewall) Attachments() ([]model.Attachment, error) {
	var atts []model.Attachment
	err := f.locked(func() error {
		r, err := saveReader(f.Tables)
		if err != nil {
			return err
		}
		atts = Attachments(r.T)
		return nil
	})
	return atts, err
}

// Attachment reads the record of who attached tap from its leaf in the
// trie of bridge ports in, reading only the chains on its path.
func (f *Firewall) Attachment(tap string) (a model.Attachment, ok bool, err error) {
	err = f.locked(func() error {
		r, err := f.Tables.Reader()
		if err != nil {
			return err
		}
		defer r.Close()
		path := ruleset.TrieIn.PathFor(tap, ruleset.TapOut(tap), "")
		node := path.Nodes[len(path.Nodes)-1]
		got, err := r.Chains(node)
		if err != nil {
			return err
		}
		for _, in := range got[node] {
			if at, isRecord := ruleset.ParseDispatchComment(ruleset.StripHash(in.Comment)); isRecord && at.Tap == tap {
				a, ok = at, true
			}
		}
		return nil
	})
	return a, ok, err
}

// GC removes what belongs to attachments of network that keep rejects,
// and leftovers of any tap that has chains or a set but no dispatch rule
// (what a crash between steps could leave). It returns the taps removed.
// A second call finds nothing and removes nothing.
func (f *Firewall) GC(network string, keep func(model.Attachment) bool) ([]string, error) {
	var removed []string
	err := f.locked(func() error {
		t, sets, err := f.State()
		if err != nil {
			return err
		}
		attached := map[string]bool{}
		for _, a := range Attachments(t) {
			attached[a.Tap] = true
			if a.Network == network && !keep(a) {
				removed = append(removed, a.Tap)
			}
		}
		installed, err := f.installed(t, sets)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, tap := range installed {
			if !attached[tap] && !seen[tap] {
				seen[tap] = true
				removed = append(removed, tap)
			}
		}
		for _, tap := range removed {
			if err := f.remove(tap); err != nil {
				return err
			}
		}
		for name := range sets {
			if ruleset.IsTempSet(name) {
				if err := f.Sets.Destroy(name); err != nil {
					f.logf("%v", err)
				}
			}
		}
		return nil
	})
	return removed, err
}

// installed lists the taps that have anything in a table, a set or the
// bridge table, given the IPv4 table and every set as already read; a tap
// may be listed more than once. The caller holds the lock.
func (f *Firewall) installed(t *Table, sets map[string][]netip.Prefix) ([]string, error) {
	tables := []*Table{t}
	for _, v := range f.tables()[1:] {
		t6, err := saveReader(v.Tables)
		if err != nil {
			return nil, err
		}
		tables = append(tables, t6.T)
	}
	var l2 []string
	if f.Bridge != nil {
		var err error
		if l2, err = f.Bridge.Taps(); err != nil {
			return nil, err
		}
	}
	return InstalledTaps(tables, sets, l2), nil
}

// RemoveGone removes, under the lock, everything of the installed taps
// for which gone reports true (their interface no longer exists), and
// returns them; with dryRun it only returns them. Deciding and removing
// under one lock means an ADD of a tap that comes back meanwhile is never
// undone.
func (f *Firewall) RemoveGone(gone func(tap string) (bool, error), dryRun bool) ([]string, error) {
	var out []string
	err := f.locked(func() error {
		t, sets, err := f.State()
		if err != nil {
			return err
		}
		installed, err := f.installed(t, sets)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		sort.Strings(installed)
		for _, tap := range installed {
			if seen[tap] {
				continue
			}
			seen[tap] = true
			g, err := gone(tap)
			if err != nil {
				return err
			}
			if !g {
				continue
			}
			out = append(out, tap)
			if !dryRun {
				if err := f.remove(tap); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return out, err
}

func planSets(p *ruleset.Plan) []string {
	var names []string
	for _, s := range append(append([]ruleset.Set(nil), p.Sets...), p.BaseSets...) {
		names = append(names, s.Name)
	}
	return names
}

// apply runs set changes, the restore, then set destructions. If the
// restore fails, set changes are undone.
func (f *Firewall) apply(c *Changes) (err error) {
	var undo []func() error
	defer func() {
		if err == nil {
			return
		}
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil {
				f.logf("undoing a set change: %v", uerr)
				err = errors.Join(err, fmt.Errorf("undoing a set change: %w", uerr))
			}
		}
	}()
	var swaps [][2]string
	defer func() {
		for _, sw := range swaps {
			if derr := f.Sets.Destroy(sw[0]); derr != nil {
				f.logf("%v", derr)
			}
		}
	}()
	if undo, swaps, err = f.prepareSets(c.Sets); err != nil {
		return err
	}
	f.trace("set changes")
	if data := c.RestoreFile(); data != nil {
		if f.Trace != nil {
			fmt.Fprintf(f.Trace, "tapfw: restore of %d lines\n", len(c.Restore))
		}
		if err := f.Tables.Restore(data); err != nil {
			return fmt.Errorf("applying iptables changes: %w", err)
		}
	}
	f.trace("restore")
	f.fault("restored")
	undo = nil
	for _, sw := range swaps {
		if err := f.Sets.Swap(sw[0], sw[1]); err != nil {
			return fmt.Errorf("rules are in place, but %w", err)
		}
		f.fault("swapped")
	}
	for _, name := range c.Destroy {
		if err := f.Sets.Destroy(name); err != nil {
			// The rules are in place; a set left over is harmless and GC
			// removes it. Report it all the same.
			f.logf("%v", err)
		}
		f.fault("destroyed")
	}
	return nil
}

// prepareSets makes and fills new sets before the restore, which
// references them. Sets that exist get their new content built aside, to
// be swapped in after the restore: a call killed in between leaves the old
// content, which the next call still sees and changes. It returns how to
// undo the sets it made and the swaps to do, also when it fails part way.
func (f *Firewall) prepareSets(sets []SetChange) (undo []func() error, swaps [][2]string, err error) {
	for _, s := range sets {
		if !s.Exists {
			if err := f.Sets.Create(s.Name); err != nil {
				return undo, swaps, err
			}
			f.fault("set-created")
			name := s.Name
			undo = append(undo, func() error { return f.Sets.Destroy(name) })
			if err := f.fill(s.Name, s.Entries); err != nil {
				return undo, swaps, err
			}
			f.fault("set-filled")
			continue
		}
		tmp := ruleset.TempSet(s.Name)
		if err := f.Sets.Destroy(tmp); err != nil {
			return undo, swaps, err
		}
		if err := f.Sets.Create(tmp); err != nil {
			return undo, swaps, err
		}
		f.fault("set-created")
		swaps = append(swaps, [2]string{tmp, s.Name})
		if err := f.fill(tmp, s.Entries); err != nil {
			return undo, swaps, err
		}
		f.fault("set-filled")
	}
	return undo, swaps, nil
}

func (f *Firewall) fill(name string, entries []netip.Prefix) error {
	for _, e := range entries {
		if err := f.Sets.Add(name, e); err != nil {
			return err
		}
	}
	return nil
}

// Status checks that iptables, ip6tables, ipsets and nftables can be used
// here.
func Status(e Exec, s Sets, v6 bool) error {
	execs := []Exec{e}
	if v6 {
		execs = append(execs, e.IPv6())
	}
	for _, x := range execs {
		if err := x.Probe(); err != nil {
			return fmt.Errorf("%s (%s) cannot be used: %w", x.cmd(), x.Mode, err)
		}
	}
	if _, err := s.List(); err != nil {
		return fmt.Errorf("ipsets cannot be used: %w", err)
	}
	if _, err := nftRun("", "list", "tables", "bridge"); err != nil {
		return fmt.Errorf("nftables (the bridge table) cannot be used: %w", err)
	}
	return nil
}

// ModeFromEnv reads TAPFW_IPTABLES (auto, nft or legacy).
func ModeFromEnv() (Mode, error) { return ParseMode(os.Getenv("TAPFW_IPTABLES")) }
