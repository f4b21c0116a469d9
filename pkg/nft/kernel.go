package nft

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/ruleset"
	"golang.org/x/sys/unix"
)

// Kernel applies plans to the nftables tables of the calling thread's
// network namespace, over netlink: a call reads only its tap's chains and
// changes them, their map elements and its layer-2 elements in one
// transaction. Only a missing or outdated skeleton (the first call on a
// host, or after an upgrade) runs nft -f.
type Kernel struct {
	Marks Marks
	// Trace, when set, gets the time each step of a call took; the
	// first step counts from Start when that is set (the process's
	// start, to show what comes before the backend).
	Trace io.Writer
	Start time.Time
	// Fault, when set, is called after each step that changes the kernel
	// (see FaultSteps); tests make it kill the process there.
	Fault func(step string)
}

// FaultSteps are the points at which the nftables backend calls Fault:
// the plugin's "locked" and "tap-removed", and the kernel's own.
var FaultSteps = []string{"locked", "skeleton", "committed", "tap-removed"}

func (k Kernel) fault(step string) {
	if k.Fault != nil {
		k.Fault(step)
	}
}

// tracer times the steps of one call.
type tracer struct {
	w    io.Writer
	last time.Time
}

func (k Kernel) tracer() *tracer {
	t := &tracer{w: k.Trace, last: time.Now()}
	if !k.Start.IsZero() {
		t.last = k.Start
		t.step("before")
	}
	return t
}

func (t *tracer) step(name string) {
	if t.w == nil {
		return
	}
	now := time.Now()
	fmt.Fprintf(t.w, "tapfw: %-12s %6.2f ms\n", name, float64(now.Sub(t.last).Microseconds())/1000)
	t.last = now
}

var (
	bridgeTable = &nftables.Table{Name: Table, Family: nftables.TableFamilyBridge}
	inetTable   = &nftables.Table{Name: Table, Family: nftables.TableFamilyINet}
)

// tableOf is the table of a Chain's or Set's Table.
func tableOf(family string) *nftables.Table {
	if family == "inet" {
		return inetTable
	}
	return bridgeTable
}

func (k Kernel) conn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(netfilter.BigReadBuffer))
	if err != nil {
		return nil, fmt.Errorf("opening nftables netlink: %w", err)
	}
	return c, nil
}

// ensureSkeleton makes the static tables, chains and maps exist with the
// rules this version writes, putting right a skeleton changed behind
// tapfw's back; wrote says it had to.
func (k Kernel) ensureSkeleton(rd netfilter.ChainReader) (wrote bool, err error) {
	ok, err := skeletonOK(rd, k.Marks)
	if err != nil || ok {
		return false, err
	}
	if err := k.sameMarks(rd); err != nil {
		return false, err
	}
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(Skeleton(k.Marks))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return false, fmt.Errorf("making tables bridge and inet %s: %w: %s", Table, err, strings.TrimSpace(stderr.String()))
	}
	k.fault("skeleton")
	return true, nil
}

// skeletonOK reports whether the skeleton is this version's (both
// tables' version rules say so: the sets, maps and chains it makes are
// there) and every static chain, the layer-2 one too, holds exactly its
// rules. A chain a static rule jumps to exists while the rule does; the
// others are looked up. About a dozen chains, whatever the number of
// taps (skeletonChains).
func skeletonOK(rd netfilter.ChainReader, m Marks) (bool, error) {
	if ok, err := versionOK(rd, m); err != nil || !ok {
		return false, err
	}
	if ok, err := netfilter.L2SkeletonOK(rd); err != nil || !ok {
		return false, err
	}
	want := map[string][]string{}
	jumped := map[string]bool{}
	for _, r := range StaticRules(m) {
		want[r.Family+" "+r.Chain] = append(want[r.Family+" "+r.Chain], r.InstalledComment())
		if _, target, ok := strings.Cut(r.Expr, "jump "); ok {
			jumped[r.Family+" "+target] = true
		}
	}
	for _, sc := range StaticChains {
		if !sc.Static() && jumped[sc.Family+" "+sc.Name] {
			continue
		}
		rules, exists, err := rd.ChainRules(tableOf(sc.Family), sc.Name)
		if err != nil {
			return false, fmt.Errorf("reading chain %s %s: %w", sc.Family, sc.Name, err)
		}
		if !exists {
			return false, nil
		}
		if !sc.Static() {
			continue
		}
		w := want[sc.Family+" "+sc.Name]
		if len(rules) != len(w) {
			return false, nil
		}
		for i, r := range rules {
			if comment(r) != w[i] {
				return false, nil
			}
		}
	}
	return true, nil
}

// sameMarks refuses to rewrite a skeleton that uses other mark bits: the
// installed taps' profiles test those bits, and would stop seeing their
// connections' state.
func (k Kernel) sameMarks(rd netfilter.ChainReader) error {
	rules, _, err := rd.ChainRules(bridgeTable, ChainVersion)
	if err != nil {
		return fmt.Errorf("reading chain %s: %w", ChainVersion, err)
	}
	if len(rules) != 1 {
		return nil
	}
	if have, ok := versionMarks(comment(rules[0])); ok && have != k.Marks.All() {
		return fmt.Errorf("tables bridge and inet %s use the mark bits %#08x and this call %#08x: every call on a host must use the same (TAPFW_MARKS, the config's marks); `tapfw flush` removes the tables", Table, have, k.Marks.All())
	}
	return nil
}

// versionOK says whether both tables' version rules name the skeleton
// this version writes, which the transaction that wrote them made whole.
func versionOK(rd netfilter.ChainReader, m Marks) (bool, error) {
	want := versionComment(skeletonBody(m), m)
	for _, tb := range []*nftables.Table{bridgeTable, inetTable} {
		rules, _, err := rd.ChainRules(tb, ChainVersion)
		if err != nil {
			return false, fmt.Errorf("reading chain %s: %w", ChainVersion, err)
		}
		if len(rules) != 1 || comment(rules[0]) != want {
			return false, nil
		}
	}
	return true, nil
}

func comment(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

// isNotFound says whether a netlink error is ENOENT, which the library
// returns wrapped in text.
func isNotFound(err error) bool {
	return err != nil && (errors.Is(err, unix.ENOENT) || strings.Contains(err.Error(), "no such file or directory"))
}

// shared queues what makes the shared chains the plan carries (the
// groups', the host firewall's) and the bridge's rules in the shared
// chains what p says, changing only those that differ.
func (tx *txn) shared(p *Plan) error {
	for _, ch := range p.Shared {
		if !tx.first(ch.Table + " " + ch.Name) {
			continue
		}
		have, exists, err := tx.rd.installed(tableOf(ch.Table), ch.Name)
		if err != nil {
			return err
		}
		if exists && sameRules(have, ch.Rules) {
			continue
		}
		tx.change(describeChain(ch.Name))
		if err := tx.fill(ch, exists); err != nil {
			return err
		}
	}
	for _, m := range p.Members {
		if err := tx.member(m); err != nil {
			return err
		}
	}
	return tx.bridged(p.Bridge)
}

var (
	portsSet   = &nftables.Set{Table: bridgeTable, Name: SetPorts, KeyType: nftables.TypeIFName}
	dropInSet  = &nftables.Set{Table: bridgeTable, Name: SetDropIn, KeyType: nftables.TypeIFName}
	dropOutSet = &nftables.Set{Table: bridgeTable, Name: SetDropOut, KeyType: nftables.TypeIFName}
)

// portSets are the sets and maps that hold every tap's port (the
// anchors' elements jump to ChainAnchor).
var portSets = []*nftables.Set{portsSet, dropInSet, dropOutSet, anchorMap}

func ifKey(name string) []byte {
	k := make([]byte, 16)
	copy(k, name)
	return k
}

// member replaces the owner's rules in a shared chain when they differ
// from m's, leaving every other owner's rules alone.
func (tx *txn) member(m Member) error {
	if !tx.first("member " + m.Table + " " + m.Chain + " " + m.Owner) {
		return nil
	}
	tb := tableOf(m.Table)
	have, _, err := tx.rd.installed(tb, m.Chain)
	if err != nil {
		return err
	}
	var mine []Installed
	for _, r := range have {
		if ruleset.CommentOwner(comment(r.Rule)) == m.Owner {
			mine = append(mine, r)
		}
	}
	if sameRules(mine, m.Rules) {
		return nil
	}
	for _, r := range mine {
		tx.note("delete rule %s %s %s handle %d", m.Table, Table, m.Chain, r.Rule.Handle)
		if err := tx.c.DelRule(r.Rule); err != nil {
			return fmt.Errorf("chain %s: %w", m.Chain, err)
		}
	}
	return tx.rules(&nftables.Chain{Name: m.Chain, Table: tb}, m.Table, m.Rules)
}

// Installed is a rule as the kernel holds it, with its anonymous sets'
// elements.
type Installed struct {
	Rule *nftables.Rule
	Sets map[string][]nftables.SetElement
}

// readChain reads a chain; exists is false when it is not there.
func readChain(c *nftables.Conn, tb *nftables.Table, name string, sets bool) ([]Installed, bool, error) {
	rules, exists, err := netfilter.ConnReader{C: c}.ChainRules(tb, name)
	if err != nil {
		return nil, false, fmt.Errorf("reading chain %s: %w", name, err)
	}
	if !exists {
		return nil, false, nil
	}
	out := make([]Installed, len(rules))
	for i, r := range rules {
		out[i].Rule = r
		if !sets {
			continue
		}
		for _, e := range r.Exprs {
			lk, ok := e.(*expr.Lookup)
			if !ok || !strings.HasPrefix(lk.SetName, "__set") {
				continue
			}
			els, err := c.GetSetElements(&nftables.Set{Table: tb, Name: lk.SetName, ID: lk.SetID, Anonymous: true})
			if err != nil {
				return nil, false, fmt.Errorf("reading set %s of chain %s: %w", lk.SetName, name, err)
			}
			if out[i].Sets == nil {
				out[i].Sets = map[string][]nftables.SetElement{}
			}
			out[i].Sets[lk.SetName] = els
		}
	}
	return out, true, nil
}

func queueRules(c *nftables.Conn, kc *nftables.Chain, rules []Rule) error {
	for _, r := range rules {
		exprs := append([]expr.Any(nil), r.Exprs...)
		for i, s := range r.Sets {
			ks := &nftables.Set{Table: kc.Table, Anonymous: true, Constant: true, Interval: s.Interval, KeyType: nftables.TypeInetService}
			if err := c.AddSet(ks, s.Elements); err != nil {
				return fmt.Errorf("set of rule %q: %w", r.Comment, err)
			}
			for j, e := range exprs {
				if lk, ok := e.(*expr.Lookup); ok && lk.SetName == anonName(i) {
					l := *lk
					l.SetName, l.SetID = ks.Name, ks.ID
					exprs[j] = &l
				}
			}
		}
		c.AddRule(&nftables.Rule{Table: kc.Table, Chain: kc, Exprs: exprs, UserData: r.UserData()})
	}
	return nil
}

var dispatchKey = nftables.MustConcatSetType(nftables.TypeEtherType, nftables.TypeIFName)

// DispatchKey is a map key: the protocol, then the port's name, each
// padded to the 4-byte registers a concatenation is made of.
func DispatchKey(f Family, port string) []byte {
	et := uint16(unix.ETH_P_IP)
	if f == IPv6 {
		et = unix.ETH_P_IPV6
	}
	key := make([]byte, 4+16)
	key[0], key[1] = byte(et>>8), byte(et)
	copy(key[4:], port)
	return key
}

// Diffs names every way the installed firewall of p's tap differs from
// p: the skeleton, the shared chains and profiles, the tap's log chains,
// its elements, its record, its layer-2 elements and the named sets.
func (k Kernel) Diffs(p *Plan) ([]string, error) {
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	rd := &reader{c: c}
	if err := rd.readAhead(k.conn, append(skeletonChains(), p.chainsOf()...)); err != nil {
		return nil, err
	}
	ok, err := skeletonOK(rd, k.Marks)
	if err != nil {
		return nil, err
	}
	var out []string
	if !ok {
		out = append(out, "the static chains of tables bridge and inet "+Table+" are missing or differ")
	}
	chains := append([]Chain(nil), p.Shared...)
	for _, pr := range p.Profiles {
		chains = append(chains, pr.Chain)
	}
	for _, l := range p.Logs {
		chains = append(chains, l.Chain)
	}
	for _, ch := range chains {
		have, exists, err := rd.installed(tableOf(ch.Table), ch.Name)
		if err != nil {
			return nil, err
		}
		if !exists {
			out = append(out, "chain "+ch.Name+" is missing")
			continue
		}
		for _, d := range diffRules(have, ch.Rules) {
			out = append(out, ch.Name+": "+d)
		}
	}
	tapDiffs, err := k.tapDiffs(rd, p)
	if err != nil {
		return nil, err
	}
	out = append(out, tapDiffs...)
	for _, s := range p.Sets {
		have, err := c.GetSetElements(kernelSet(s))
		switch {
		case isNotFound(err):
			out = append(out, "set "+s.Name+" is missing")
		case err != nil:
			return nil, fmt.Errorf("reading set %s: %w", s.Name, err)
		case !sameElements(withoutZeroEnd(have), intervals(s.Entries)):
			out = append(out, "set "+s.Name+" differs")
		}
	}
	return out, nil
}

// tapDiffs checks the tap's elements (each must jump to its chain), its
// port and anchor, its record and its layer-2 elements.
func (k Kernel) tapDiffs(rd *reader, p *Plan) ([]string, error) {
	r, err := newNLReader()
	if err != nil {
		return nil, err
	}
	defer r.close()
	var logs []logElem
	for _, l := range p.Logs {
		logs = append(logs, logElem{Map: l.Map, Chain: l.Name})
	}
	var out []string
	want := append(dispatchElements(p.Dispatch), logElements(p.Tap, logs)...)
	for _, s := range portSets {
		want = append(want, portElement(s, p.Tap))
	}
	for _, e := range want {
		got, found, err := r.element(e.set.Name, e.key)
		switch {
		case err != nil:
			return nil, err
		case !found:
			out = append(out, fmt.Sprintf("%s: no element for %s", e.set.Name, p.Tap))
		case got != e.chain:
			out = append(out, fmt.Sprintf("%s: the element for %s goes to %q, want %s", e.set.Name, elementName(e), got, e.chain))
		}
	}
	rec, err := netfilter.ReadRecord(rd, p.Tap)
	if err != nil {
		return nil, err
	}
	switch {
	case rec == nil:
		out = append(out, "record "+ruleset.RecordChain(p.Tap)+" is missing")
	case !slices.Equal(rec.Lines, p.recordLines()):
		out = append(out, fmt.Sprintf("record %s says %q, want %q", ruleset.RecordChain(p.Tap), rec.Lines, p.recordLines()))
	}
	if p.L2 != nil {
		l2, err := netfilter.NFT{}.Verify(p.L2)
		if err != nil {
			return nil, err
		}
		out = append(out, l2...)
	}
	return out, nil
}

// elementName is how a difference names an element's key: a dispatch
// key as "ip . tap110i0", any other as the port.
func elementName(e element) string {
	port := strings.TrimRight(string(e.key[len(e.key)-16:]), "\x00")
	if len(e.key) == 4+16 {
		f := IPv4
		if e.key[0] == 0x86 {
			f = IPv6
		}
		return string(f) + " . " + port
	}
	return port
}

// Taps lists the taps that have a record.
func (k Kernel) Taps() ([]string, error) {
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	return taps(c)
}

func taps(c *nftables.Conn) ([]string, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		return nil, fmt.Errorf("listing chains of the bridge family: %w", err)
	}
	var out []string
	for _, ch := range chains {
		if ch.Table.Name != Table {
			continue
		}
		if tap, ok := strings.CutPrefix(ch.Name, ruleset.RecordChain("")); ok && tap != "" {
			out = append(out, tap)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Attachment reads who attached tap from its record.
func (k Kernel) Attachment(tap string) (model.Attachment, bool, error) {
	c, err := k.conn()
	if err != nil {
		return model.Attachment{}, false, err
	}
	defer c.CloseLasting()
	return attachment(c, tap)
}

func attachment(c *nftables.Conn, tap string) (model.Attachment, bool, error) {
	_, r, err := readRecord(netfilter.ConnReader{C: c}, tap)
	if err != nil {
		return model.Attachment{}, false, err
	}
	a, ok := r.attachment()
	return a, ok, nil
}

// Attachments lists every installed tap's record; a tap without one
// (what a call killed half-way leaves) is listed by name only.
func (k Kernel) Attachments() ([]model.Attachment, error) {
	atts, _, err := k.records()
	return atts, err
}

// Recorded says for each installed tap whether it has a record.
func (k Kernel) Recorded() (map[string]bool, error) {
	_, rec, err := k.records()
	return rec, err
}

func (k Kernel) records() ([]model.Attachment, map[string]bool, error) {
	c, err := k.conn()
	if err != nil {
		return nil, nil, err
	}
	defer c.CloseLasting()
	ts, err := taps(c)
	if err != nil {
		return nil, nil, err
	}
	var out []model.Attachment
	rec := map[string]bool{}
	for _, tap := range ts {
		a, ok, err := attachment(c, tap)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			a = model.Attachment{Tap: tap}
		}
		rec[tap] = ok
		out = append(out, a)
	}
	return out, rec, nil
}

// CleanUp removes both tables when no tap is left in them (no element
// jumps to the anchor chain) and the host firewall guards no address;
// otherwise it changes nothing.
func (k Kernel) CleanUp() error {
	c, err := k.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	tr := k.tracer()
	defer tr.step("cleanup")
	r, err := newNLReader()
	if err != nil {
		return err
	}
	defer r.close()
	if n, found, err := r.chainUse(ChainAnchor); err != nil || !found || n > 0 {
		return err
	}
	if host, err := hostSetUp(c); err != nil || host {
		return err
	}
	return flushTables(c)
}

// hostSetUp says whether the host firewall holds addresses to guard.
func hostSetUp(c *nftables.Conn) (bool, error) {
	for _, f := range []Family{IPv4, IPv6} {
		els, err := c.GetSetElements(kernelSet(Set{Table: "inet", Name: HostSet(f), Family: f}))
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("reading set %s: %w", HostSet(f), err)
		}
		if len(withoutZeroEnd(els)) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// Flush removes both tables, everything of tapfw's in nftables, and
// nothing else.
func (k Kernel) Flush() error {
	c, err := k.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	return flushTables(c)
}

func flushTables(c *nftables.Conn) error {
	n := 0
	for _, t := range []*nftables.Table{bridgeTable, inetTable, helperTable} {
		if _, err := c.ListTableOfFamily(t.Name, t.Family); isNotFound(err) {
			continue
		} else if err != nil {
			return fmt.Errorf("reading table %s: %w", t.Name, err)
		}
		c.DelTable(t)
		n++
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing tables %s: %w", Table, err)
	}
	return nil
}

// helperTable is the conntrack helpers' table, which the layer-2
// skeleton makes.
var helperTable = &nftables.Table{Name: ruleset.HelperTable, Family: nftables.TableFamilyINet}

// Tables lists the backend's tables that are there ("bridge tapfw",
// "inet tapfw", "inet tapfw-helpers"): everything Flush removes.
func (k Kernel) Tables() ([]string, error) {
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	var out []string
	for _, t := range []*nftables.Table{bridgeTable, inetTable, helperTable} {
		if _, err := c.ListTableOfFamily(t.Name, t.Family); isNotFound(err) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("reading table %s: %w", t.Name, err)
		}
		out = append(out, map[nftables.TableFamily]string{nftables.TableFamilyBridge: "bridge", nftables.TableFamilyINet: "inet"}[t.Family]+" "+t.Name)
	}
	return out, nil
}

// Holds reports whether this backend's state is on the host: its inet
// table, which only it makes.
func (k Kernel) Holds() (bool, error) {
	c, err := k.conn()
	if err != nil {
		return false, err
	}
	defer c.CloseLasting()
	_, err = c.ListTableOfFamily(Table, nftables.TableFamilyINet)
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("reading table inet %s: %w", Table, err)
}

// TapInfo is what a tap's record and profiles say of it.
type TapInfo struct {
	Attachment model.Attachment
	// Attached is false for a record without the line saying who
	// attached the tap.
	Attached bool
	// L2 is its layer-2 elements: its MAC and addresses as checked.
	L2 *ruleset.L2Tap
	// MAC is the guest's MAC the config gave, checked or not ("" when
	// none).
	MAC string
	// Rules counts the config's rules per direction ("in", "out") in
	// its profiles, a rule of both families once.
	Rules map[string]int
}

// Installed lists every tap that has a record, sorted by name.
func (k Kernel) Installed() ([]TapInfo, error) {
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	ts, err := taps(c)
	if err != nil {
		return nil, err
	}
	ruleNumbers := map[string][]string{} // profile: its "<dir> rule N" numbers
	var out []TapInfo
	for _, tap := range ts {
		rec, r, err := readRecord(netfilter.ConnReader{C: c}, tap)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			continue // removed since the listing
		}
		info := TapInfo{L2: rec.L2, MAC: r.mac, Rules: map[string]int{"in": 0, "out": 0}}
		info.Attachment, info.Attached = r.attachment()
		if !info.Attached {
			info.Attachment = model.Attachment{Tap: tap}
		}
		seen := map[string]bool{}
		for _, d := range r.dispatch {
			nums, ok := ruleNumbers[d.Chain]
			if !ok {
				if nums, err = profileRuleNumbers(c, d.Chain); err != nil {
					return nil, err
				}
				ruleNumbers[d.Chain] = nums
			}
			for _, n := range nums {
				if !seen[n] {
					seen[n] = true
					info.Rules[strings.Fields(n)[0]]++
				}
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// profileRuleNumbers lists the config rules a profile holds, each as
// "<dir> <N>" once.
func profileRuleNumbers(c *nftables.Conn, chain string) ([]string, error) {
	rules, err := c.GetRules(bridgeTable, &nftables.Chain{Name: chain, Table: bridgeTable})
	if err != nil {
		return nil, fmt.Errorf("reading chain %s: %w", chain, err)
	}
	var out []string
	for _, r := range rules {
		f := strings.Fields(comment(r))
		if len(f) < 3 || (f[0] != "in" && f[0] != "out") || f[1] != "rule" {
			continue
		}
		num, _, _ := strings.Cut(f[2], ".") // the parts of one config rule count once
		if !slices.Contains(out, f[0]+" "+num) {
			out = append(out, f[0]+" "+num)
		}
	}
	return out, nil
}
