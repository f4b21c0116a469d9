package nft

import (
	"sync"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// aheadWorkers is how many sockets read ahead at once. A call's reads are
// independent dumps, each waiting on the kernel and then on decoding, so
// a second and third socket keep both of a small host's cores busy; more
// only queue.
const aheadWorkers = 3

// reader reads chains for one call: those read ahead (readAhead) from
// what was read, any other on c when asked. The rules read ahead are the
// kernel's as they were before the call changed anything, so a call that
// rewrites the skeleton drops them (forget).
type reader struct {
	c     *nftables.Conn
	ahead map[chainKey]chainRead
}

var _ netfilter.ChainReader = (*reader)(nil)

type chainKey struct {
	family       nftables.TableFamily
	table, chain string
}

func keyOf(tb *nftables.Table, chain string) chainKey { return chainKey{tb.Family, tb.Name, chain} }

// chainWant is a chain to read ahead; sets says whether its rules'
// anonymous sets are needed too (to compare the rules, not only their
// comments).
type chainWant struct {
	table *nftables.Table
	name  string
	sets  bool
}

type chainRead struct {
	rules  []Installed
	exists bool
	sets   bool
	err    error
}

// installed reads a chain with its rules' anonymous sets.
func (rd *reader) installed(tb *nftables.Table, name string) ([]Installed, bool, error) {
	return rd.chain(tb, name, true)
}

// ChainRules implements netfilter.ChainReader.
func (rd *reader) ChainRules(tb *nftables.Table, name string) ([]*nftables.Rule, bool, error) {
	in, exists, err := rd.chain(tb, name, false)
	rules := make([]*nftables.Rule, len(in))
	for i := range in {
		rules[i] = in[i].Rule
	}
	return rules, exists, err
}

// chain is what was read ahead of the chain when that has the sets asked
// for, else a read on c.
func (rd *reader) chain(tb *nftables.Table, name string, sets bool) ([]Installed, bool, error) {
	if r, ok := rd.ahead[keyOf(tb, name)]; ok && (r.sets || !sets) {
		return r.rules, r.exists, r.err
	}
	return readChain(rd.c, tb, name, sets)
}

func (rd *reader) forget() { rd.ahead = nil }

// readAhead reads the chains at once, on rd.c and on sockets of their
// own opened here: a socket belongs to the network namespace of the
// thread that opens it, so the workers read the caller's namespace
// whichever thread runs them. A chain's error is kept for when it is
// asked for, as a read on c would have returned it then.
func (rd *reader) readAhead(open func() (*nftables.Conn, error), want []chainWant) error {
	want = unique(want)
	conns := []*nftables.Conn{rd.c}
	defer func() {
		for _, c := range conns[1:] {
			_ = c.CloseLasting()
		}
	}()
	for len(conns) < min(aheadWorkers, len(want)) {
		c, err := open()
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	got := make([]chainRead, len(want))
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < len(want); i = int(next.Add(1)) - 1 {
				w := want[i]
				rules, exists, err := readChain(c, w.table, w.name, w.sets)
				got[i] = chainRead{rules: rules, exists: exists, sets: w.sets, err: err}
			}
		}()
	}
	wg.Wait()
	rd.ahead = make(map[chainKey]chainRead, len(want))
	for i, w := range want {
		rd.ahead[keyOf(w.table, w.name)] = got[i]
	}
	return nil
}

// unique keeps the first of each chain, with the sets any of its wants
// asks for.
func unique(want []chainWant) []chainWant {
	at := map[chainKey]int{}
	var out []chainWant
	for _, w := range want {
		if i, ok := at[keyOf(w.table, w.name)]; ok {
			out[i].sets = out[i].sets || w.sets
			continue
		}
		at[keyOf(w.table, w.name)] = len(out)
		out = append(out, w)
	}
	return out
}

// skeletonChains are the chains skeletonOK reads: both version chains,
// the static chains, the layer-2 ones and the helpers's, compared by comment.
func skeletonChains() []chainWant {
	out := []chainWant{{table: bridgeTable, name: ChainVersion}, {table: inetTable, name: ChainVersion}}
	for _, sc := range StaticChains {
		out = append(out, chainWant{table: tableOf(sc.Family), name: sc.Name})
	}
	for _, tc := range netfilter.L2SkeletonChains() {
		out = append(out, chainWant{table: tc.Table, name: tc.Chain})
	}
	return out
}

// chainsOf are the chains a call for p compares with p, rule by rule
// (shared, members', profiles, log chains), and the tap's record.
func (p *Plan) chainsOf() []chainWant {
	var out []chainWant
	add := func(family, name string) {
		out = append(out, chainWant{table: tableOf(family), name: name, sets: true})
	}
	for _, ch := range p.Shared {
		add(ch.Table, ch.Name)
	}
	for _, m := range p.Members {
		add(m.Table, m.Chain)
	}
	for _, pr := range p.Profiles {
		add("bridge", pr.Name)
	}
	for _, l := range p.Logs {
		add("bridge", l.Name)
	}
	return append(out, chainWant{table: bridgeTable, name: ruleset.RecordChain(p.Tap)})
}
