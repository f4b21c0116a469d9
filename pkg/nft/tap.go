package nft

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// txn is one call's transaction on the bridge table: what it queues and
// what it read to decide it. Profiles a transaction stops using are
// removed in it once no element outside it jumps to them.
type txn struct {
	c  *nftables.Conn
	rd *reader
	r  *nlReader
	// unused counts, per profile, the elements jumping to it that the
	// transaction takes out; keep are the profiles it must keep.
	unused map[string]int
	keep   map[string]bool
	// maps are the log maps of the profiles the transaction takes out.
	maps map[string][]string
	// notes, when not nil, gets each change as an nft command (Preview).
	notes []string
	// done are the chains, sets and members queued already: several
	// plans in one transaction share them (ApplyAll).
	done map[string]bool
	// changed names what the transaction changes in the config's words,
	// each once.
	changed []string
}

func newTxn(rd *reader, r *nlReader) *txn {
	tx := &txn{c: rd.c, rd: rd, r: r}
	tx.init()
	return tx
}

func (tx *txn) init() {
	tx.unused, tx.keep, tx.maps, tx.done = map[string]int{}, map[string]bool{}, map[string][]string{}, map[string]bool{}
}

// first says whether the transaction meets what key names for the first
// time, and marks it met.
func (tx *txn) first(key string) bool {
	if tx.done[key] {
		return false
	}
	tx.done[key] = true
	return true
}

// change notes, once, what the transaction changes, in the config's
// words.
func (tx *txn) change(what string) {
	if what != "" && !slices.Contains(tx.changed, what) {
		tx.changed = append(tx.changed, what)
	}
}

// note records a change for Preview.
func (tx *txn) note(format string, a ...any) {
	if tx.notes != nil {
		tx.notes = append(tx.notes, fmt.Sprintf(format, a...))
	}
}

// profiles makes each profile hold its rules: a missing one is made with
// its log maps, one that differs (changed behind tapfw's back) is
// refilled, for every tap that uses it.
func (tx *txn) profiles(ps []Profile) error {
	for _, p := range ps {
		tx.keep[p.Name] = true
		if !tx.first("bridge " + p.Name) {
			continue
		}
		have, exists, err := tx.rd.installed(bridgeTable, p.Name)
		if err != nil {
			return err
		}
		if exists && sameRules(have, p.Rules) {
			continue
		}
		for _, m := range p.Maps {
			tx.note("add map bridge %s %s { type ifname : verdict ; }", Table, m)
			if err := tx.c.AddSet(logMapSet(m), nil); err != nil {
				return fmt.Errorf("map %s: %w", m, err)
			}
		}
		for _, rs := range p.Rates {
			tx.note("%s", rs)
			if err := tx.c.AddSet(rateSet(rs), nil); err != nil {
				return fmt.Errorf("set %s: %w", rs.Name, err)
			}
		}
		if err := tx.fill(p.Chain, exists); err != nil {
			return err
		}
	}
	return nil
}

// fill makes chain ch, or empties it when it exists, and adds its rules.
func (tx *txn) fill(ch Chain, exists bool) error {
	kc := &nftables.Chain{Name: ch.Name, Table: tableOf(ch.Table)}
	if exists {
		tx.note("flush chain %s %s %s", ch.Table, Table, ch.Name)
		tx.c.FlushChain(kc)
	} else {
		tx.note("add chain %s %s %s", ch.Table, Table, ch.Name)
		tx.c.AddChain(kc)
	}
	return tx.rules(kc, ch.Table, ch.Rules)
}

// rules queues adding rules at the end of a chain of the table of family
// table.
func (tx *txn) rules(kc *nftables.Chain, table string, rules []Rule) error {
	for _, r := range rules {
		tx.note("add rule %s %s %s %s", table, Table, kc.Name, r)
	}
	return queueRules(tx.c, kc, rules)
}

// logMapSet is a profile's log map. Its key, an interface name, is in
// host byte order as nft's ifname type says (nft shows names reversed
// otherwise).
func logMapSet(name string) *nftables.Set {
	return &nftables.Set{Table: bridgeTable, Name: name, IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict, KeyByteOrder: binaryutil.NativeEndian}
}

// rateSet is a profile's rate set: a dynamic set of ports whose
// elements expire when their bucket would be full.
func rateSet(rs RateSet) *nftables.Set {
	return &nftables.Set{Table: bridgeTable, Name: rs.Name, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian,
		Dynamic: true, HasTimeout: true, Timeout: rs.Timeout, Size: rateSetSize}
}

// rateSetSize bounds a rate set; a port that finds it full logs nothing
// until an element expires, and its verdict is the same.
const rateSetSize = 65535

func dispatchMap(name string) *nftables.Set {
	return &nftables.Set{Table: bridgeTable, Name: name, IsMap: true, KeyType: dispatchKey, DataType: nftables.TypeVerdict}
}

// element is one of a tap's elements in a shared map, and the chain it
// jumps to.
type element struct {
	set   *nftables.Set
	key   []byte
	chain string
}

func dispatchElements(ds []Dispatch) []element {
	var out []element
	for _, d := range ds {
		out = append(out, element{dispatchMap(d.Map), DispatchKey(d.Family, d.Port), d.Chain})
	}
	return out
}

func logElements(tap string, ls []logElem) []element {
	var out []element
	for _, l := range ls {
		out = append(out, element{logMapSet(l.Map), ifKey(tap), l.Chain})
	}
	return out
}

// tap moves the tap from what its record says (old) to what p says: its
// log chains and its elements in the dispatch and log maps, read first
// so that one changed or removed by hand is put right, not an error.
func (tx *txn) tap(p *Plan, old tapRecord) error {
	var logs []logElem
	for _, l := range p.Logs {
		logs = append(logs, logElem{Map: l.Map, Chain: l.Name})
	}
	want := append(dispatchElements(p.Dispatch), logElements(p.Tap, logs)...)
	have := append(dispatchElements(old.dispatch), logElements(p.Tap, old.logs)...)
	installed, err := tx.dropElements(want, have)
	if err != nil {
		return err
	}
	if err := tx.dropLogChains(old.logs, p.Logs); err != nil {
		return err
	}
	for _, l := range p.Logs {
		if err := tx.logChain(l.Chain); err != nil {
			return err
		}
	}
	for _, e := range want {
		if installed[e.set.Name+"\x00"+string(e.key)] == e.chain {
			continue
		}
		el := nftables.SetElement{Key: e.key, VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: e.chain}}
		tx.change(ruleset.TapRulesChanged(p.Tap))
		tx.note("add element bridge %s %s { %s : jump %s }", Table, e.set.Name, elementText(e), e.chain)
		if err := tx.c.SetAddElements(e.set, []nftables.SetElement{el}); err != nil {
			return fmt.Errorf("map %s: %w", e.set.Name, err)
		}
	}
	return tx.portElements(p.Tap, true)
}

// dropElements reads each element the tap wants or had, and takes out
// those that are there but not wanted as they are; it returns what stays.
func (tx *txn) dropElements(want, had []element) (map[string]string, error) {
	wanted := map[string]string{}
	for _, e := range want {
		wanted[e.set.Name+"\x00"+string(e.key)] = e.chain
	}
	stays := map[string]string{}
	seen := map[string]bool{}
	for _, e := range append(slices.Clone(want), had...) {
		id := e.set.Name + "\x00" + string(e.key)
		if seen[id] {
			continue
		}
		seen[id] = true
		chain, found, err := tx.r.element(e.set.Name, e.key)
		if err != nil || !found {
			if err != nil {
				return nil, err
			}
			continue
		}
		if w, ok := wanted[id]; ok && w == chain {
			stays[id] = chain
			continue
		}
		tx.note("delete element bridge %s %s { %s }", Table, e.set.Name, elementText(e))
		if err := tx.c.SetDeleteElements(e.set, []nftables.SetElement{{Key: e.key}}); err != nil {
			return nil, fmt.Errorf("map %s: %w", e.set.Name, err)
		}
		if e.set.Name == MapIn || e.set.Name == MapOut {
			tx.unused[chain]++
		}
	}
	return stays, nil
}

// dropLogChains removes the log chains the tap had and no longer wants
// (their elements are out by then).
func (tx *txn) dropLogChains(had []logElem, want []LogChain) error {
	for _, l := range had {
		if slices.ContainsFunc(want, func(w LogChain) bool { return w.Name == l.Chain }) {
			continue
		}
		if _, err := tx.c.ListChain(bridgeTable, l.Chain); isNotFound(err) {
			continue
		} else if err != nil {
			return fmt.Errorf("reading chain %s: %w", l.Chain, err)
		}
		tx.note("delete chain bridge %s %s", Table, l.Chain)
		kc := &nftables.Chain{Name: l.Chain, Table: bridgeTable}
		tx.c.FlushChain(kc)
		tx.c.DelChain(kc)
	}
	return nil
}

// logChain makes one of the tap's log chains hold its rule.
func (tx *txn) logChain(ch Chain) error {
	have, exists, err := tx.rd.installed(bridgeTable, ch.Name)
	if err != nil {
		return err
	}
	if exists && sameRules(have, ch.Rules) {
		return nil
	}
	return tx.fill(ch, exists)
}

var anchorMap = &nftables.Set{Table: bridgeTable, Name: MapAnchors, IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict}

// elementText is an element's key as nft writes it.
func elementText(e element) string {
	name := elementName(e)
	if f, port, ok := strings.Cut(name, " . "); ok {
		return f + " . " + strconv.Quote(port)
	}
	return strconv.Quote(name)
}

// portElement is the tap's element in one of portSets.
func portElement(s *nftables.Set, tap string) element {
	if s == anchorMap {
		return element{s, ifKey(tap), ChainAnchor}
	}
	return element{s, ifKey(tap), ""}
}

// portElements adds (or takes out) the tap's port in portSets. Taking
// out adds first, in the same transaction, so that one already gone is
// no error; adding one that is there keeps it and its counter.
func (tx *txn) portElements(tap string, add bool) error {
	for _, s := range portSets {
		e := portElement(s, tap)
		el := nftables.SetElement{Key: e.key}
		data := ""
		if e.chain != "" {
			el.VerdictData = &expr.Verdict{Kind: expr.VerdictJump, Chain: e.chain}
			data = " : jump " + e.chain
		}
		if add {
			tx.note("add element bridge %s %s { %q%s } (where missing)", Table, s.Name, tap, data)
		} else {
			tx.note("delete element bridge %s %s { %q }", Table, s.Name, tap)
		}
		if err := tx.c.SetAddElements(s, []nftables.SetElement{el}); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		if add {
			continue
		}
		if err := tx.c.SetDeleteElements(s, []nftables.SetElement{{Key: e.key}}); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	return nil
}

// collect removes the profiles whose last element the transaction takes
// out, with their log maps (named in the records that jumped to them).
func (tx *txn) collect() error {
	for name, n := range tx.unused {
		if tx.keep[name] || !IsProfileChain(name) {
			continue
		}
		use, found, err := tx.r.chainUse(name)
		if err != nil || !found {
			return err
		}
		// A chain's use counts its own rules as well as what jumps to it.
		kc := &nftables.Chain{Name: name, Table: bridgeTable}
		rules, err := tx.c.GetRules(bridgeTable, kc)
		if err != nil {
			return fmt.Errorf("reading chain %s: %w", name, err)
		}
		if int(use)-len(rules) > n {
			continue
		}
		tx.note("delete chain bridge %s %s (its last tap goes)", Table, name)
		tx.c.FlushChain(kc)
		tx.c.DelChain(kc)
		for _, m := range tx.maps[name] {
			tx.note("delete map bridge %s %s", Table, m)
			tx.c.DelSet(logMapSet(m))
		}
		for _, set := range rateSetsOf(rules) {
			tx.note("delete set bridge %s %s", Table, set)
			tx.c.DelSet(&nftables.Set{Table: bridgeTable, Name: set})
		}
	}
	return nil
}

// rateSetsOf are the rate sets a profile's rules update.
func rateSetsOf(rules []*nftables.Rule) []string {
	var out []string
	for _, r := range rules {
		for _, e := range r.Exprs {
			if d, ok := e.(*expr.Dynset); ok && !slices.Contains(out, d.SetName) {
				out = append(out, d.SetName)
			}
		}
	}
	return out
}

// forget notes the log maps of the profiles old's tap used, for collect.
func (tx *txn) forget(old tapRecord) {
	for _, l := range old.logs {
		for _, d := range old.dispatch {
			if len(l.Map) > len(d.Chain) && l.Map[:len(d.Chain)] == d.Chain && !slices.Contains(tx.maps[d.Chain], l.Map) {
				tx.maps[d.Chain] = append(tx.maps[d.Chain], l.Map)
			}
		}
	}
}

// Apply makes the kernel hold p: the skeleton, the named sets, the shared
// chains, the tap's profiles, log chains and elements, and its layer-2
// elements and record, in one transaction. A second Apply of the same
// plan changes no rule.
func (k Kernel) Apply(p *Plan) error {
	_, err := k.apply([]*Plan{p}, p.Tap)
	return err
}

// ApplyAll makes the kernel hold every plan, in one transaction: the
// plans share their host-wide parts (the named sets, the groups', the
// host firewall's chains), which change once; a plan for no tap
// (Plan.HostWide) carries only those. It returns what changed in the
// config's words. With dryRun it changes nothing and says what would.
func (k Kernel) ApplyAll(ps []*Plan, dryRun bool) ([]string, error) {
	if dryRun {
		tx, err := k.preview(ps)
		if err != nil {
			return nil, err
		}
		return tx.changed, nil
	}
	return k.apply(ps, "the new firewall")
}

// apply queues every plan in one transaction and commits it; what names
// the change in the error.
func (k Kernel) apply(ps []*Plan, what string) ([]string, error) {
	tr := k.tracer()
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	rd := &reader{c: c}
	want := skeletonChains()
	for _, p := range ps {
		want = append(want, p.chainsOf()...)
	}
	if err := rd.readAhead(k.conn, want); err != nil {
		return nil, err
	}
	tr.step("read")
	if wrote, err := k.ensureSkeleton(rd); err != nil {
		return nil, err
	} else if wrote {
		rd.forget()
	}
	tr.step("skeleton")
	r, err := newNLReader()
	if err != nil {
		return nil, err
	}
	defer r.close()
	tx := newTxn(rd, r)
	if err := tx.planAll(ps, tr); err != nil {
		return nil, err
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("installing %s: %w", what, err)
	}
	tr.step("commit")
	k.fault("committed")
	return tx.changed, nil
}

// Preview says what Apply(p) would change, as nft commands, changing
// nothing: the same reads and decisions, and no commit.
func (k Kernel) Preview(p *Plan) ([]string, error) {
	tx, err := k.preview([]*Plan{p})
	if err != nil {
		return nil, err
	}
	return tx.notes, nil
}

// preview queues the plans in a transaction it never sends.
func (k Kernel) preview(ps []*Plan) (*txn, error) {
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	tx := &txn{notes: []string{}}
	rd := &reader{c: c}
	if ok, err := skeletonOK(rd, k.Marks); err != nil {
		return nil, err
	} else if !ok {
		if err := k.sameMarks(rd); err != nil {
			return nil, err
		}
		tx.note("# the skeleton of tables bridge and inet %s is missing or differs: nft -f writes it (tapfw render prints only what follows)", Table)
	}
	r, err := newNLReader()
	if err != nil {
		return nil, err
	}
	defer r.close()
	tx.c, tx.rd, tx.r = c, rd, r
	tx.init()
	if err := tx.planAll(ps, &tracer{}); err != nil {
		return nil, err
	}
	return tx, nil
}

// planAll queues each plan, then removes the profiles no tap uses any
// longer.
func (tx *txn) planAll(ps []*Plan, tr *tracer) error {
	for _, p := range ps {
		if err := tx.plan(p, tr); err != nil {
			return err
		}
	}
	if err := tx.collect(); err != nil {
		return err
	}
	tr.step("collect")
	return nil
}

// plan queues what moves the kernel to p: the named sets, the shared
// chains, then the tap's part, read first. A plan for no tap stops after
// the shared chains.
func (tx *txn) plan(p *Plan, tr *tracer) error {
	if err := tx.sets(p.Sets); err != nil {
		return err
	}
	if err := tx.shared(p); err != nil {
		return err
	}
	tr.step("shared")
	if p.Tap == "" {
		return nil
	}
	rec, old, err := readRecord(tx.rd, p.Tap)
	if err != nil {
		return err
	}
	tr.step("record")
	tx.forget(old)
	if err := tx.profiles(p.Profiles); err != nil {
		return err
	}
	tr.step("profiles")
	if err := tx.tap(p, old); err != nil {
		return err
	}
	tr.step("tap")
	if tx.notes != nil {
		// A preview sends nothing, and the layer-2 sets may not be there.
		if p.L2 != nil {
			tx.note("# layer 2: the tap's elements and record, in place of what its record had\n%s", strings.TrimRight(p.L2.String(), "\n"))
		}
		return nil
	}
	if err := netfilter.QueueL2(tx.c, rec, p.record()); err != nil {
		return err
	}
	tr.step("layer 2")
	return nil
}

// HostWide is the part of p that every tap of its config shares: the
// named sets, the groups' and the host firewall's chains. It is what a
// change to the host-wide parts of a config installs for taps whose own
// rules stay as they are; it has no tap. It speaks for the whole host:
// a config without a host section has the host firewall that guards no
// address (the skeleton's empty chains and sets).
func (p *Plan) HostWide() *Plan {
	q := &Plan{Shared: p.Shared, Sets: p.Sets}
	if slices.ContainsFunc(p.Shared, func(c Chain) bool { return c.Name == HostChain("in", IPv4) }) {
		return q
	}
	for _, f := range []Family{IPv4, IPv6} {
		q.Shared = append(q.Shared, Chain{Table: "inet", Name: HostChain("in", f)}, Chain{Table: "inet", Name: HostChain("out", f)})
		q.Sets = append(q.Sets, Set{Table: "inet", Name: HostSet(f), Family: f}, Set{Table: "inet", Name: ClusterSet(f), Family: f})
	}
	return q
}

func readRecord(rd netfilter.ChainReader, tap string) (*netfilter.Record, tapRecord, error) {
	rec, err := netfilter.ReadRecord(rd, tap)
	if err != nil {
		return nil, tapRecord{}, err
	}
	old, err := parseRecord(rec)
	return rec, old, err
}

// Remove takes everything of the taps out: their elements, log chains,
// layer-2 elements and records, and the profiles no other tap uses. A
// tap with nothing installed is no error.
func (k Kernel) Remove(taps ...string) error {
	c, err := k.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if _, err := c.ListTableOfFamily(Table, nftables.TableFamilyBridge); isNotFound(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("reading table bridge %s: %w", Table, err)
	}
	tr := k.tracer()
	r, err := newNLReader()
	if err != nil {
		return err
	}
	defer r.close()
	tx := newTxn(&reader{c: c}, r)
	for _, tap := range taps {
		if err := tx.remove(tap); err != nil {
			return err
		}
	}
	if err := tx.collect(); err != nil {
		return err
	}
	tr.step("read")
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing %s: %w", strings.Join(taps, ", "), err)
	}
	tr.step("commit")
	k.fault("committed")
	return nil
}

// remove queues taking out everything the tap's record names.
func (tx *txn) remove(tap string) error {
	rec, old, err := readRecord(tx.rd, tap)
	if err != nil || rec == nil {
		return err
	}
	tx.forget(old)
	had := append(dispatchElements(old.dispatch), logElements(tap, old.logs)...)
	if _, err := tx.dropElements(nil, had); err != nil {
		return err
	}
	if err := tx.dropLogChains(old.logs, nil); err != nil {
		return err
	}
	if err := tx.portElements(tap, false); err != nil {
		return err
	}
	return netfilter.QueueL2Remove(tx.c, rec)
}
