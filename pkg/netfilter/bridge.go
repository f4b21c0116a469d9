package netfilter

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Bridge applies the layer-2 checks (table bridge tapfw) to the kernel.
type Bridge interface {
	// Apply puts the taps' elements in the shared sets, in one
	// transaction.
	Apply(ps ...*ruleset.L2Tap) error
	// Remove takes out everything of tap; nothing installed is no error.
	Remove(tap string) error
	// Flush removes the whole table.
	Flush() error
	// Verify lists how the installed checks differ from the plan.
	Verify(p *ruleset.L2Tap) ([]string, error)
	// Taps lists the taps that have checks.
	Taps() ([]string, error)
}

// NFT keeps the table with nft(8) (its skeleton: sets and static rules)
// and netlink (the elements, so a call costs the same at 10 taps or 4000:
// no nft cache, no dump of the shared sets).
type NFT struct{}

var _ Bridge = NFT{}

var l2Table = &nftables.Table{Name: ruleset.L2Table, Family: nftables.TableFamilyBridge}

// helperTable holds the conntrack helpers' sets and chain; the layer-2
// table's skeleton makes it too.
var helperTable = &nftables.Table{Name: ruleset.HelperTable, Family: nftables.TableFamilyINet}

// tableOfSet is the table a shared set is in: the helpers' for their sets.
func tableOfSet(name string) *nftables.Table {
	for _, h := range ruleset.Helpers {
		if name == ruleset.HelperSet(h.Name, 4) || name == ruleset.HelperSet(h.Name, 6) {
			return helperTable
		}
	}
	return l2Table
}

func nftRun(stdin string, args ...string) ([]byte, error) {
	cmd := exec.Command("nft", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// nftRuleComment reads the comment nft stores in a rule's user data.
func nftRuleComment(r *nftables.Rule) string {
	c, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return c
}

// L2SkeletonOK reports whether the layer-2 chain holds exactly its
// static rules.
func L2SkeletonOK(r ChainReader) (bool, error) { return skeletonOK(r) }

// TableChain names a chain with its table.
type TableChain struct {
	Table *nftables.Table
	Chain string
}

// L2SkeletonChains are the chains L2SkeletonOK reads, for a caller that
// reads them ahead.
func L2SkeletonChains() []TableChain {
	var out []TableChain
	for _, ch := range ruleset.L2Chains {
		out = append(out, TableChain{l2Table, ch})
	}
	for _, ch := range ruleset.HelperChains() {
		out = append(out, TableChain{helperTable, ch})
	}
	return out
}

// skeletonOK reports whether the layer-2 chains hold exactly their
// static rules (a missing chain has none).
func skeletonOK(r ChainReader) (bool, error) {
	want := append(ruleset.L2Rules(), ruleset.HelperRules()...)
	for _, tc := range L2SkeletonChains() {
		rules, exists, err := r.ChainRules(tc.Table, tc.Chain)
		if err != nil {
			return false, err
		}
		if !exists {
			return false, nil
		}
		var comments []string
		for _, w := range want {
			if w.Chain == tc.Chain {
				comments = append(comments, w.InstalledComment())
			}
		}
		if len(rules) != len(comments) {
			return false, nil
		}
		for i, r := range rules {
			if nftRuleComment(r) != comments[i] {
				return false, nil
			}
		}
	}
	return true, nil
}

func l2Conn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(BigReadBuffer))
	if err != nil {
		return nil, fmt.Errorf("opening nftables netlink: %w", err)
	}
	return c, nil
}

// BigReadBuffer lets the socket hold the answers to a whole transaction:
// the library asks the kernel to echo every rule it adds, and a tap's
// first ADD adds a hundred (an apply of many taps, more), more than the default buffer takes (the
// kernel then drops them and reports ENOBUFS). As root the limit of
// net.core.rmem_max does not apply.
func BigReadBuffer(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	}); err != nil {
		return err
	}
	if serr != nil {
		return c.SetReadBuffer(16 << 20)
	}
	return nil
}

// Apply implements Bridge.
func (n NFT) Apply(ps ...*ruleset.L2Tap) error {
	c, err := l2Conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	ok, err := skeletonOK(ConnReader{c})
	if err != nil {
		return fmt.Errorf("reading table bridge tapfw: %w", err)
	}
	if !ok {
		if _, err := nftRun(ruleset.L2Skeleton(), "-f", "-"); err != nil {
			return fmt.Errorf("making table bridge tapfw: %w", err)
		}
	}
	var names []string
	for _, p := range ps {
		old, err := ReadRecord(ConnReader{c}, p.Tap)
		if err != nil {
			return err
		}
		if err := QueueL2(c, old, &Record{Tap: p.Tap, L2: p}); err != nil {
			return err
		}
		names = append(names, p.Tap)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("changing table bridge tapfw for %s: %w", strings.Join(names, ", "), err)
	}
	return nil
}

// QueueL2 queues on c, whose transaction the caller sends, what makes the
// table hold rec: the elements of old (the tap's record as read, nil when
// it has none) out, rec's in, and rec as the tap's record. The table's
// skeleton must be there.
func QueueL2(c *nftables.Conn, old, rec *Record) error {
	if old != nil {
		if err := queueElements(c, old.L2, false); err != nil {
			return err
		}
	}
	if err := queueElements(c, rec.L2, true); err != nil {
		return err
	}
	return QueueRecord(c, rec, old != nil)
}

// Remove implements Bridge.
func (n NFT) Remove(tap string) error {
	c, err := l2Conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if ok, err := tableExists(c); err != nil || !ok {
		return err
	}
	old, err := ReadRecord(ConnReader{c}, tap)
	if err != nil || old == nil {
		return err
	}
	if err := QueueL2Remove(c, old); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing %s from table bridge tapfw: %w", tap, err)
	}
	return nil
}

// QueueL2Remove queues on c what takes the elements of old (the tap's
// record as read) and the record itself out of the table.
func QueueL2Remove(c *nftables.Conn, old *Record) error {
	if err := queueElements(c, old.L2, false); err != nil {
		return err
	}
	QueueRecordRemove(c, old.Tap)
	return nil
}

// Flush implements Bridge.
func (n NFT) Flush() error {
	c, err := l2Conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if ok, err := tableExists(c); err != nil || !ok {
		return err
	}
	c.DelTable(l2Table)
	if _, err := c.ListTableOfFamily(helperTable.Name, helperTable.Family); err == nil {
		c.DelTable(helperTable)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing table bridge tapfw: %w", err)
	}
	return nil
}

// tableExists reports whether table bridge tapfw is there.
func tableExists(c *nftables.Conn) (bool, error) {
	_, err := c.ListTableOfFamily(ruleset.L2Table, nftables.TableFamilyBridge)
	switch {
	case err == nil:
		return true, nil
	case isNotFound(err):
		return false, nil
	}
	return false, err
}

// Keys: nftables pads each part of a concatenation to 4 bytes; an
// interface name is 16 bytes, NUL-padded.
func ifKey(name string) []byte {
	k := make([]byte, 16)
	copy(k, name)
	return k
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, pad4(append([]byte(nil), p...))...)
	}
	return out
}

// rangeElem is the element of tap's address or network: a key for an
// address (hash set), a key and an end for a network (interval set).
func rangeElem(tap string, p netip.Prefix) nftables.SetElement {
	lo, hi := p.Masked().Addr().AsSlice(), ruleset.LastAddr(p).AsSlice()
	if p.IsSingleIP() {
		return nftables.SetElement{Key: cat(ifKey(tap), lo)}
	}
	return nftables.SetElement{Key: cat(ifKey(tap), lo), KeyEnd: cat(ifKey(tap), hi)}
}

// placed is one element of a tap in one shared set.
type placed struct {
	set  string
	elem nftables.SetElement
	what string // for messages
}

// placements lists where p's elements go, in a fixed order.
func placements(p *ruleset.L2Tap) []placed {
	tap := p.Tap
	out := []placed{{ruleset.L2Taps, nftables.SetElement{Key: ifKey(tap)}, tap}}
	for _, f := range p.Flags {
		out = append(out, placed{ruleset.L2FlagSet(f), nftables.SetElement{Key: ifKey(tap)}, tap})
	}
	if p.MAC != nil {
		out = append(out, placed{ruleset.L2MAC, nftables.SetElement{Key: cat(ifKey(tap), p.MAC)}, tap + " . " + p.MAC.String()})
	}
	for _, x := range p.IP4 {
		out = append(out, placed{ruleset.L2AddrSet(ruleset.L2IP4, x), rangeElem(tap, x), tap + " . " + x.String()})
	}
	for _, x := range p.IP6 {
		for _, set := range []string{ruleset.L2IP6, ruleset.L2ND} { // ND: the same 16 bytes, read as a number
			out = append(out, placed{ruleset.L2AddrSet(set, x), rangeElem(tap, x), tap + " . " + x.String()})
		}
	}
	var macs []string
	for _, x := range p.Pairs {
		mac := x.MAC.String()
		if !slices.Contains(macs, mac) {
			macs = append(macs, mac)
			for _, set := range []string{ruleset.L2MAC, ruleset.L2PMAC} {
				out = append(out, placed{set, nftables.SetElement{Key: cat(ifKey(tap), x.MAC)}, tap + " . " + mac})
			}
		}
		pair, addr := ruleset.L2Pair4, ruleset.L2PIP4
		if x.IP.Is6() {
			pair, addr = ruleset.L2Pair6, ruleset.L2PIP6
		}
		out = append(out, placed{pair, nftables.SetElement{Key: cat(ifKey(tap), x.MAC, x.IP.AsSlice())}, tap + " . " + x.String()},
			placed{addr, nftables.SetElement{Key: cat(ifKey(tap), x.IP.AsSlice())}, tap + " . " + x.IP.String()})
	}
	if slices.Contains(p.Flags, ruleset.FlagL2P) || slices.Contains(p.Flags, ruleset.FlagPairs) {
		out = append(out, placed{ruleset.L2Extra, nftables.SetElement{Key: ifKey(tap), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: ruleset.L2PreExtra}}, tap})
	}
	for _, e := range p.EtherTypes {
		out = append(out, placed{ruleset.L2Types, nftables.SetElement{Key: cat(ifKey(tap), binary.BigEndian.AppendUint16(nil, e))}, tap + " . " + ruleset.EtherTypeString(e)})
	}
	for _, h := range p.Helpers {
		for _, x := range append(append([]netip.Prefix(nil), p.IP4...), p.IP6...) {
			if !x.IsSingleIP() {
				continue // a helper follows the tap's addresses, not its networks
			}
			fam := 4
			if x.Addr().Is6() {
				fam = 6
			}
			out = append(out, placed{ruleset.HelperSet(h, fam), nftables.SetElement{Key: x.Addr().AsSlice()}, h + " " + x.Addr().String()})
		}
	}
	// Each element once (two pairs may share an address).
	seen := map[string]bool{}
	return slices.DeleteFunc(out, func(pl placed) bool {
		k := pl.set + "|" + string(pl.elem.Key)
		dup := seen[k]
		seen[k] = true
		return dup
	})
}

// setCache looks up the table's sets by name once per call (their handles
// and types come from the kernel).
type setCache struct {
	c    *nftables.Conn
	sets map[string]*nftables.Set
}

func newSetCache(c *nftables.Conn) *setCache {
	return &setCache{c: c, sets: map[string]*nftables.Set{}}
}

func (sc *setCache) get(name string) (*nftables.Set, error) {
	if s, ok := sc.sets[name]; ok {
		return s, nil
	}
	tb := tableOfSet(name)
	s, err := sc.c.GetSetByName(tb, name)
	if err != nil {
		return nil, fmt.Errorf("set %s of table %s: %w", name, tb.Name, err)
	}
	sc.sets[name] = s
	return s, nil
}

// queueElements queues adding (or deleting) what p puts in the shared sets,
// one message per set. A delete adds the element first, in the same
// transaction: deleting what someone already deleted must not fail the call
// that repairs it. A message names its set, which is all the kernel
// needs: the sets are not looked up (the skeleton, checked first, makes
// them), a request saved per set.
func queueElements(c *nftables.Conn, p *ruleset.L2Tap, add bool) error {
	if p == nil {
		return nil
	}
	var order []string
	els := map[string][]nftables.SetElement{}
	for _, pl := range placements(p) {
		if _, ok := els[pl.set]; !ok {
			order = append(order, pl.set)
		}
		els[pl.set] = append(els[pl.set], pl.elem)
	}
	for _, name := range order {
		s := &nftables.Set{Table: tableOfSet(name), Name: name}
		if err := c.SetAddElements(s, els[name]); err != nil {
			return err
		}
		if !add {
			if err := c.SetDeleteElements(s, els[name]); err != nil {
				return err
			}
		}
	}
	return nil
}

// Taps implements Bridge: the elements of tfw-taps.
func (n NFT) Taps() ([]string, error) {
	c, err := l2Conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	s, err := c.GetSetByName(l2Table, ruleset.L2Taps)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	els, err := c.GetSetElements(s)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range els {
		out = append(out, string(bytes.TrimRight(e.Key, "\x00")))
	}
	slices.Sort(out)
	return out, nil
}

// Verify implements Bridge: the static rules are in place, the tap's record
// says what the plan wants, and every element of the plan is in its shared
// set.
func (n NFT) Verify(p *ruleset.L2Tap) ([]string, error) {
	c, err := l2Conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	var diffs []string
	ok, err := skeletonOK(ConnReader{c})
	if err != nil {
		return nil, err
	}
	if !ok {
		return []string{"table bridge tapfw, chain " + ruleset.L2Pre + ": missing or not tapfw's rules"}, nil
	}
	r, err := ReadRecord(ConnReader{c}, p.Tap)
	if err != nil {
		return nil, err
	}
	var rec *ruleset.L2Tap
	if r != nil {
		rec = r.L2
	}
	want := *p
	want.Flags = slices.Sorted(slices.Values(p.Flags))
	if rec == nil || rec.String() != want.String() {
		got := "nothing"
		if rec != nil {
			got = strings.ReplaceAll(strings.TrimSpace(rec.String()), "\n", "; ")
		}
		diffs = append(diffs, fmt.Sprintf("table bridge tapfw: record of %s is %s, want %s", p.Tap, got, strings.ReplaceAll(strings.TrimSpace(want.String()), "\n", "; ")))
	}
	// Every wanted element present in its shared set.
	sc := newSetCache(c)
	have := map[string]map[string]bool{}
	for _, pl := range placements(p) {
		m, ok := have[pl.set]
		if !ok {
			set, err := sc.get(pl.set)
			if err != nil {
				return nil, err
			}
			els, err := c.GetSetElements(set)
			if err != nil {
				return nil, err
			}
			m = map[string]bool{}
			for _, e := range els {
				m[string(e.Key)+"|"+string(e.KeyEnd)] = true
			}
			have[pl.set] = m
		}
		if !m[string(pl.elem.Key)+"|"+string(pl.elem.KeyEnd)] {
			diffs = append(diffs, fmt.Sprintf("table bridge tapfw, set %s: %s missing", pl.set, pl.what))
		}
	}
	return diffs, nil
}
