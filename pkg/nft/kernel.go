package nft

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
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
	// Trace, when set, gets the time each step of a call took.
	Trace io.Writer
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

func (k Kernel) tracer() *tracer { return &tracer{w: k.Trace, last: time.Now()} }

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
	c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(bigReadBuffer))
	if err != nil {
		return nil, fmt.Errorf("opening nftables netlink: %w", err)
	}
	return c, nil
}

// bigReadBuffer lets the socket hold the answers to a whole transaction:
// the library asks the kernel to echo every rule it adds, and a tap's
// first ADD adds a hundred, more than the default buffer takes (the
// kernel then drops them and reports ENOBUFS). As root the limit of
// net.core.rmem_max does not apply.
func bigReadBuffer(c *netlink.Conn) error {
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

// Apply makes the kernel hold p: the skeleton, the tap's chains, its map
// elements and its layer-2 elements. A second Apply of the same plan
// changes nothing.
func (k Kernel) Apply(p *Plan) error {
	tr := k.tracer()
	c, err := k.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if err := k.ensureSkeleton(c); err != nil {
		return err
	}
	tr.step("skeleton")
	if err := queueSets(c, p.Sets); err != nil {
		return err
	}
	tr.step("sets")
	if _, err := k.queueChains(c, p); err != nil {
		return err
	}
	tr.step("chains")
	if p.L2 != nil {
		old, err := netfilter.ReadRecord(c, p.Tap)
		if err != nil {
			return err
		}
		if err := netfilter.QueueL2(c, old, &netfilter.Record{Tap: p.Tap, L2: p.L2}); err != nil {
			return err
		}
	}
	tr.step("layer 2")
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing %s: %w", p.Tap, err)
	}
	tr.step("commit")
	k.fault("committed")
	return nil
}

// ensureSkeleton makes the static tables, chains and maps exist with the
// rules this version writes.
func (k Kernel) ensureSkeleton(c *nftables.Conn) error {
	ok, err := skeletonOK(c, k.Marks)
	if err != nil || ok {
		return err
	}
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(Skeleton(k.Marks))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("making tables bridge and inet %s: %w: %s", Table, err, strings.TrimSpace(stderr.String()))
	}
	k.fault("skeleton")
	return nil
}

// skeletonOK reports whether every static chain, the layer-2 one too,
// holds exactly its rules.
func skeletonOK(c *nftables.Conn, m Marks) (bool, error) {
	if ok, err := netfilter.L2SkeletonOK(c); err != nil || !ok {
		return false, err
	}
	want := map[string][]string{}
	for _, r := range StaticRules(m) {
		want[r.Family+" "+r.Chain] = append(want[r.Family+" "+r.Chain], r.InstalledComment())
	}
	for _, sc := range StaticChains {
		if !sc.Static() {
			if _, err := c.ListChain(tableOf(sc.Family), sc.Name); isNotFound(err) {
				return false, nil
			} else if err != nil {
				return false, fmt.Errorf("reading chain %s %s: %w", sc.Family, sc.Name, err)
			}
			continue
		}
		tb := bridgeTable
		if sc.Family == "inet" {
			tb = inetTable
		}
		if _, err := c.ListChain(tb, sc.Name); isNotFound(err) {
			return false, nil
		} else if err != nil {
			return false, fmt.Errorf("reading chain %s %s: %w", sc.Family, sc.Name, err)
		}
		rules, err := c.GetRules(tb, &nftables.Chain{Name: sc.Name, Table: tb})
		if err != nil {
			return false, fmt.Errorf("reading chain %s %s: %w", sc.Family, sc.Name, err)
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

func comment(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

// isNotFound says whether a netlink error is ENOENT, which the library
// returns wrapped in text.
func isNotFound(err error) bool {
	return err != nil && (errors.Is(err, unix.ENOENT) || strings.Contains(err.Error(), "no such file or directory"))
}

// queueChains queues what makes the tap's chains (and the group chains
// the plan carries) what p says, and reports whether anything differs.
// A missing chain is created with its map element; a chain that differs
// is flushed and refilled.
func (k Kernel) queueChains(c *nftables.Conn, p *Plan) (bool, error) {
	changed := false
	for _, ch := range append(append([]Chain(nil), p.Shared...), p.Chains...) {
		have, exists, err := readChain(c, tableOf(ch.Table), ch.Name)
		if err != nil {
			return false, err
		}
		if exists && sameRules(have, ch.Rules) {
			continue
		}
		changed = true
		kc := &nftables.Chain{Name: ch.Name, Table: tableOf(ch.Table)}
		if exists {
			c.FlushChain(kc)
		} else {
			c.AddChain(kc)
		}
		if err := queueRules(c, kc, ch.Rules); err != nil {
			return false, err
		}
	}
	if changed {
		if err := queueDispatch(c, p.Dispatch); err != nil {
			return false, err
		}
		if err := c.SetAddElements(portsSet, []nftables.SetElement{{Key: ifKey(p.Tap)}}); err != nil {
			return false, fmt.Errorf("set %s: %w", SetPorts, err)
		}
	}
	for _, m := range p.Members {
		mc, err := queueMember(c, m)
		if err != nil {
			return false, err
		}
		changed = changed || mc
	}
	return changed, nil
}

var portsSet = &nftables.Set{Table: bridgeTable, Name: SetPorts, KeyType: nftables.TypeIFName}

func ifKey(name string) []byte {
	k := make([]byte, 16)
	copy(k, name)
	return k
}

// queueMember replaces the owner's rules in a shared chain when they
// differ from m's, leaving every other owner's rules alone.
func queueMember(c *nftables.Conn, m Member) (bool, error) {
	tb := tableOf(m.Table)
	have, _, err := readChain(c, tb, m.Chain)
	if err != nil {
		return false, err
	}
	var mine []Installed
	for _, r := range have {
		if ruleset.CommentOwner(comment(r.Rule)) == m.Owner {
			mine = append(mine, r)
		}
	}
	if sameRules(mine, m.Rules) {
		return false, nil
	}
	for _, r := range mine {
		if err := c.DelRule(r.Rule); err != nil {
			return false, fmt.Errorf("chain %s: %w", m.Chain, err)
		}
	}
	return true, queueRules(c, &nftables.Chain{Name: m.Chain, Table: tb}, m.Rules)
}

// Installed is a rule as the kernel holds it, with its anonymous sets'
// elements.
type Installed struct {
	Rule *nftables.Rule
	Sets map[string][]nftables.SetElement
}

// readChain reads a chain; exists is false when it is not there.
func readChain(c *nftables.Conn, tb *nftables.Table, name string) ([]Installed, bool, error) {
	// A dump of a missing chain's rules is empty, not an error: ask for
	// the chain first.
	if _, err := c.ListChain(tb, name); isNotFound(err) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, fmt.Errorf("reading chain %s: %w", name, err)
	}
	rules, err := c.GetRules(tb, &nftables.Chain{Name: name, Table: tb})
	if err != nil {
		return nil, false, fmt.Errorf("reading chain %s: %w", name, err)
	}
	out := make([]Installed, len(rules))
	for i, r := range rules {
		out[i].Rule = r
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

// queueDispatch adds the tap's map elements. Adding an element that is
// there with the same verdict is no error.
func queueDispatch(c *nftables.Conn, ds []Dispatch) error {
	for _, d := range ds {
		m := &nftables.Set{Table: bridgeTable, Name: d.Map, IsMap: true, KeyType: dispatchKey, DataType: nftables.TypeVerdict}
		el := nftables.SetElement{Key: DispatchKey(d.Family, d.Port), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: d.Chain}}
		if err := c.SetAddElements(m, []nftables.SetElement{el}); err != nil {
			return fmt.Errorf("map %s: %w", d.Map, err)
		}
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

// Remove takes everything of the taps out: their map elements, chains
// and layer-2 elements. A tap with nothing installed is no error.
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
	for _, tap := range taps {
		if err := queueRemove(c, tap); err != nil {
			return err
		}
	}
	tr.step("read")
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing %s: %w", strings.Join(taps, ", "), err)
	}
	tr.step("commit")
	k.fault("committed")
	return nil
}

// queueRemove queues the removal of the tap's map elements, then of its
// chains (a chain goes only once nothing in the transaction refers to
// it), then of its layer-2 elements.
func queueRemove(c *nftables.Conn, tap string) error {
	var chains []*nftables.Chain
	for _, f := range []Family{IPv4, IPv6} {
		for _, dir := range []string{"out", "in"} {
			name := TapChain(tap, dir, f)
			if _, err := c.ListChain(bridgeTable, name); isNotFound(err) {
				continue
			} else if err != nil {
				return fmt.Errorf("reading chain %s: %w", name, err)
			}
			m := &nftables.Set{Table: bridgeTable, Name: MapOut, IsMap: true, KeyType: dispatchKey, DataType: nftables.TypeVerdict}
			if dir == "in" {
				m.Name = MapIn
			}
			if err := c.SetDeleteElements(m, []nftables.SetElement{{Key: DispatchKey(f, tap)}}); err != nil {
				return fmt.Errorf("map %s: %w", m.Name, err)
			}
			chains = append(chains, &nftables.Chain{Name: name, Table: bridgeTable})
		}
	}
	for _, kc := range chains {
		c.FlushChain(kc)
		c.DelChain(kc)
	}
	if len(chains) > 0 {
		if err := c.SetDeleteElements(portsSet, []nftables.SetElement{{Key: ifKey(tap)}}); err != nil {
			return fmt.Errorf("set %s: %w", SetPorts, err)
		}
	}
	old, err := netfilter.ReadRecord(c, tap)
	if err != nil || old == nil {
		return err
	}
	return netfilter.QueueL2Remove(c, old)
}

// Diffs names every way the installed firewall of p's tap differs from
// p: its chains, their rules, its map elements and its named sets.
func (k Kernel) Diffs(p *Plan) ([]string, error) {
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	ok, err := skeletonOK(c, k.Marks)
	if err != nil {
		return nil, err
	}
	var out []string
	if !ok {
		out = append(out, "the static chains of tables bridge and inet "+Table+" are missing or differ")
	}
	for _, ch := range append(append([]Chain(nil), p.Shared...), p.Chains...) {
		have, exists, err := readChain(c, tableOf(ch.Table), ch.Name)
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
	mapDiffs, err := dispatchDiffs(p.Dispatch)
	if err != nil {
		return nil, err
	}
	out = append(out, mapDiffs...)
	if p.L2 != nil {
		l2, err := netfilter.NFT{}.Verify(p.L2)
		if err != nil {
			return nil, err
		}
		out = append(out, l2...)
	}
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

// dispatchDiffs checks the tap's map elements: each must send its key to
// its chain.
func dispatchDiffs(ds []Dispatch) ([]string, error) {
	byMap := map[string]map[string]string{}
	var out []string
	for _, d := range ds {
		m, ok := byMap[d.Map]
		if !ok {
			var err error
			if m, err = mapVerdicts(d.Map); err != nil && !isNotFound(err) {
				return nil, err
			}
			byMap[d.Map] = m
		}
		if got, ok := m[string(DispatchKey(d.Family, d.Port))]; !ok {
			out = append(out, fmt.Sprintf("map %s: no element %s . %s", d.Map, d.Family, d.Port))
		} else if got != d.Chain {
			out = append(out, fmt.Sprintf("map %s: %s . %s goes to %q, want %s", d.Map, d.Family, d.Port, got, d.Chain))
		}
	}
	return out, nil
}

// Taps lists the taps that have chains installed.
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
	seen := map[string]bool{}
	var out []string
	for _, ch := range chains {
		if ch.Table.Name != Table {
			continue
		}
		if tap, ok := IsTapChain(ch.Name); ok && !seen[tap] {
			seen[tap] = true
			out = append(out, tap)
		}
	}
	sort.Strings(out)
	return out, nil
}

// IsTapChain returns the tap whose chain this is.
func IsTapChain(name string) (string, bool) {
	for _, p := range []string{"tfw-i4-", "tfw-o4-", "tfw-i6-", "tfw-o6-"} {
		if tap, ok := strings.CutPrefix(name, p); ok && tap != "" {
			return tap, true
		}
	}
	return "", false
}

// Attachment reads who attached tap from its record rule.
func (k Kernel) Attachment(tap string) (model.Attachment, bool, error) {
	c, err := k.conn()
	if err != nil {
		return model.Attachment{}, false, err
	}
	defer c.CloseLasting()
	return attachment(c, tap)
}

func attachment(c *nftables.Conn, tap string) (model.Attachment, bool, error) {
	rules, exists, err := readChain(c, bridgeTable, TapChain(tap, "out", IPv4))
	if err != nil || !exists {
		return model.Attachment{}, false, err
	}
	comments := make([]string, len(rules))
	for i, r := range rules {
		comments[i] = comment(r.Rule)
	}
	a, ok := RecordOf(comments)
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

// CleanUp removes both tables when no tap is left in them; otherwise it
// changes nothing.
func (k Kernel) CleanUp() error {
	c, err := k.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	tr := k.tracer()
	defer tr.step("cleanup")
	ts, err := taps(c)
	if err != nil || len(ts) > 0 {
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
	for _, t := range []*nftables.Table{bridgeTable, inetTable} {
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
