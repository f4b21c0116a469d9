package nft

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"golang.org/x/sys/unix"
)

// Kernel applies plans to the nftables tables of the calling thread's
// network namespace, over netlink: a call reads only its tap's chains and
// changes them, their map elements and its layer-2 elements in one
// transaction. Only a missing or outdated skeleton (the first call on a
// host, or after an upgrade) runs nft -f.
type Kernel struct {
	Marks Marks
}

var (
	bridgeTable = &nftables.Table{Name: Table, Family: nftables.TableFamilyBridge}
	inetTable   = &nftables.Table{Name: Table, Family: nftables.TableFamilyINet}
)

func (k Kernel) conn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("opening nftables netlink: %w", err)
	}
	return c, nil
}

// Apply makes the kernel hold p: the skeleton, the tap's chains, its map
// elements and its layer-2 elements. A second Apply of the same plan
// changes nothing.
func (k Kernel) Apply(p *Plan) error {
	c, err := k.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if err := k.ensureSkeleton(c); err != nil {
		return err
	}
	if err := queueSets(c, p.Sets); err != nil {
		return err
	}
	changed, err := k.queueChains(c, p)
	if err != nil {
		return err
	}
	if p.L2 != nil {
		if err := netfilter.QueueL2(c, p.L2); err != nil {
			return err
		}
	}
	_ = changed
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing %s: %w", p.Tap, err)
	}
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
	return nil
}

// skeletonOK reports whether every static chain holds exactly its rules.
func skeletonOK(c *nftables.Conn, m Marks) (bool, error) {
	want := map[string][]string{}
	for _, r := range StaticRules(m) {
		want[r.Family+" "+r.Chain] = append(want[r.Family+" "+r.Chain], r.InstalledComment())
	}
	for _, sc := range StaticChains {
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
		have, exists, err := readChain(c, ch.Name)
		if err != nil {
			return false, err
		}
		if exists && sameRules(have, ch.Rules) {
			continue
		}
		changed = true
		kc := &nftables.Chain{Name: ch.Name, Table: bridgeTable}
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
	}
	return changed, nil
}

// Installed is a rule as the kernel holds it, with its anonymous sets'
// elements.
type Installed struct {
	Rule *nftables.Rule
	Sets map[string][]nftables.SetElement
}

// readChain reads a chain of the bridge table; exists is false when it
// is not there.
func readChain(c *nftables.Conn, name string) ([]Installed, bool, error) {
	// A dump of a missing chain's rules is empty, not an error: ask for
	// the chain first.
	if _, err := c.ListChain(bridgeTable, name); isNotFound(err) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, fmt.Errorf("reading chain %s: %w", name, err)
	}
	rules, err := c.GetRules(bridgeTable, &nftables.Chain{Name: name, Table: bridgeTable})
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
			els, err := c.GetSetElements(&nftables.Set{Table: bridgeTable, Name: lk.SetName, ID: lk.SetID, Anonymous: true})
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
			ks := &nftables.Set{Table: bridgeTable, Anonymous: true, Constant: true, Interval: s.Interval, KeyType: nftables.TypeInetService}
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
		c.AddRule(&nftables.Rule{Table: bridgeTable, Chain: kc, Exprs: exprs, UserData: r.UserData()})
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
	for _, tap := range taps {
		if err := queueRemove(c, tap); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing %s: %w", strings.Join(taps, ", "), err)
	}
	return nil
}

func queueRemove(c *nftables.Conn, tap string) error {
	for _, f := range []Family{IPv4, IPv6} {
		for _, dir := range []string{"out", "in"} {
			name := TapChain(tap, dir, f)
			_, exists, err := readChain(c, name)
			if err != nil {
				return err
			}
			if !exists {
				continue
			}
			m := &nftables.Set{Table: bridgeTable, Name: MapOut, IsMap: true, KeyType: dispatchKey, DataType: nftables.TypeVerdict}
			if dir == "in" {
				m.Name = MapIn
			}
			if err := c.SetDeleteElements(m, []nftables.SetElement{{Key: DispatchKey(f, tap)}}); err != nil {
				return fmt.Errorf("map %s: %w", m.Name, err)
			}
			kc := &nftables.Chain{Name: name, Table: bridgeTable}
			c.FlushChain(kc)
			c.DelChain(kc)
		}
	}
	_, err := netfilter.QueueL2Remove(c, tap)
	return err
}
