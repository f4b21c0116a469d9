package netfilter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/tapfw/tapfw/pkg/ruleset"
)

// FakeTables keeps a filter table in memory and applies restore files to
// it the way iptables-restore --noflush does, all or nothing. Tests use it
// to run the firewall without a kernel and to make a restore fail on demand.
type FakeTables struct {
	mu    sync.Mutex
	table *Table
	// FailRestore, when set, is returned by the next Restore, which then
	// changes nothing.
	FailRestore error
	// Restores counts the restore transactions applied.
	Restores int
}

var _ Tables = (*FakeTables)(nil)

// NewFakeTables returns a table holding only the built-in chains.
func NewFakeTables() *FakeTables {
	return &FakeTables{table: &Table{Order: []string{"INPUT", "FORWARD", "OUTPUT"}, Chains: map[string][]string{"INPUT": nil, "FORWARD": nil, "OUTPUT": nil}}}
}

var builtin = map[string]bool{"INPUT": true, "FORWARD": true, "OUTPUT": true}

// Reader implements Tables. Like the nftables reader, it shows comments
// only, so the code that reads comments is what the fake tests.
func (f *FakeTables) Reader() (Reader, error) {
	r, err := saveReader(f)
	if err != nil {
		return nil, err
	}
	return commentsOnly{r}, nil
}

type commentsOnly struct{ TableReader }

func (c commentsOnly) Chains(names ...string) (map[string][]Installed, error) {
	got, err := c.TableReader.Chains(names...)
	for _, rs := range got {
		for i := range rs {
			rs[i].Spec = ""
		}
	}
	return got, err
}

// Save implements Tables, in iptables-save's format.
func (f *FakeTables) Save() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b bytes.Buffer
	b.WriteString("*filter\n")
	for _, c := range f.table.Order {
		pol := "-"
		if builtin[c] {
			pol = "ACCEPT"
		}
		fmt.Fprintf(&b, ":%s %s [0:0]\n", c, pol)
	}
	for _, c := range f.table.Order {
		for _, r := range f.table.Chains[c] {
			fmt.Fprintf(&b, "-A %s %s\n", c, r)
		}
	}
	b.WriteString("COMMIT\n")
	return b.Bytes(), nil
}

// Restore implements Tables. It understands the lines tapfw writes:
// chain declarations (which flush), -A, -I CHAIN N, -D CHAIN SPEC and -X.
func (f *FakeTables) Restore(data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.FailRestore; err != nil {
		f.FailRestore = nil
		return err
	}
	t := &Table{Order: slices.Clone(f.table.Order), Chains: map[string][]string{}}
	for k, v := range f.table.Chains {
		t.Chains[k] = slices.Clone(v)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if err := applyLine(t, line); err != nil {
			return fmt.Errorf("fake restore line %d %q: %w", n, line, err)
		}
	}
	if err := checkRefs(t); err != nil {
		return err
	}
	f.table = t
	f.Restores++
	return nil
}

func applyLine(t *Table, line string) error {
	switch {
	case line == "" || line == "*filter" || line == "COMMIT" || strings.HasPrefix(line, "#"):
		return nil
	case strings.HasPrefix(line, ":"):
		name, _, _ := strings.Cut(line[1:], " ")
		if !t.Has(name) {
			t.Order = append(t.Order, name)
		}
		t.Chains[name] = nil
		return nil
	}
	f := strings.SplitN(line, " ", 3)
	if len(f) < 2 {
		return errors.New("malformed")
	}
	op, chain := f[0], f[1]
	if !t.Has(chain) {
		return fmt.Errorf("no chain %s", chain)
	}
	spec := ""
	if len(f) == 3 {
		spec = f[2]
	}
	switch op {
	case "-A":
		t.Chains[chain] = append(t.Chains[chain], spec)
	case "-I":
		pos, rest, _ := strings.Cut(spec, " ")
		n, err := strconv.Atoi(pos)
		if err != nil || n < 1 || n > len(t.Chains[chain])+1 {
			return fmt.Errorf("bad position %q", pos)
		}
		t.Chains[chain] = slices.Insert(t.Chains[chain], n-1, rest)
	case "-D":
		i := slices.Index(t.Chains[chain], spec)
		if n, err := strconv.Atoi(spec); err == nil {
			i = n - 1
			if i < 0 || i >= len(t.Chains[chain]) {
				return fmt.Errorf("no rule %d", n)
			}
		}
		if i < 0 {
			return errors.New("no such rule")
		}
		t.Chains[chain] = slices.Delete(t.Chains[chain], i, i+1)
	case "-X":
		if len(t.Chains[chain]) > 0 {
			return errors.New("chain not empty")
		}
		for _, c := range t.Order {
			for _, r := range t.Chains[c] {
				if strings.HasSuffix(r, " "+chain) && (strings.Contains(r, "-j "+chain) || strings.Contains(r, "-g "+chain)) {
					return fmt.Errorf("chain %s is referenced from %s", chain, c)
				}
			}
		}
		delete(t.Chains, chain)
		t.Order = slices.DeleteFunc(t.Order, func(c string) bool { return c == chain })
	default:
		return fmt.Errorf("unknown op %s", op)
	}
	return nil
}

// checkRefs fails when a rule jumps to a chain that does not exist.
func checkRefs(t *Table) error {
	for _, c := range t.Order {
		for _, r := range t.Chains[c] {
			f := strings.Fields(r)
			for i := 0; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g") && strings.HasPrefix(f[i+1], ruleset.ChainPrefix) && !t.Has(f[i+1]) {
					return fmt.Errorf("rule in %s jumps to missing chain %s", c, f[i+1])
				}
			}
		}
	}
	return nil
}

// FakeSets keeps ipsets in memory. Fail makes the named operation
// ("create", "add", "swap", "destroy") fail once.
type FakeSets struct {
	mu   sync.Mutex
	sets map[string][]netip.Prefix
	Fail map[string]error
}

var _ Sets = (*FakeSets)(nil)

// NewFakeSets returns an empty set store.
func NewFakeSets() *FakeSets {
	return &FakeSets{sets: map[string][]netip.Prefix{}, Fail: map[string]error{}}
}

func (s *FakeSets) fail(op string) error {
	if err, ok := s.Fail[op]; ok {
		delete(s.Fail, op)
		return err
	}
	return nil
}

// List implements Sets.
func (s *FakeSets) List(names ...string) (map[string][]netip.Prefix, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]netip.Prefix{}
	for k, v := range s.sets {
		if len(names) > 0 && !slices.Contains(names, k) {
			continue
		}
		c := slices.Clone(v)
		sort.Slice(c, func(i, j int) bool { return c[i].String() < c[j].String() })
		if c == nil {
			c = []netip.Prefix{}
		}
		out[k] = c
	}
	return out, nil
}

// Create implements Sets.
func (s *FakeSets) Create(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("create"); err != nil {
		return err
	}
	if _, ok := s.sets[name]; ok {
		return fmt.Errorf("set %s exists", name)
	}
	s.sets[name] = []netip.Prefix{}
	return nil
}

// Add implements Sets.
func (s *FakeSets) Add(name string, p netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("add"); err != nil {
		return err
	}
	cur, ok := s.sets[name]
	if !ok {
		return fmt.Errorf("no set %s", name)
	}
	if !slices.Contains(cur, p) {
		s.sets[name] = append(cur, p)
	}
	return nil
}

// Swap implements Sets.
func (s *FakeSets) Swap(a, b string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("swap"); err != nil {
		return err
	}
	x, ok1 := s.sets[a]
	y, ok2 := s.sets[b]
	if !ok1 || !ok2 {
		return fmt.Errorf("swap %s %s: missing set", a, b)
	}
	s.sets[a], s.sets[b] = y, x
	return nil
}

// Destroy implements Sets.
func (s *FakeSets) Destroy(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("destroy"); err != nil {
		return err
	}
	delete(s.sets, name)
	return nil
}

// NoLock is a Locker for tests that run one call at a time.
type NoLock struct{}

// Lock implements Locker.
func (NoLock) Lock() (func(), error) { return func() {}, nil }

// FakeBridge is an in-memory Bridge for tests: it keeps each tap's plan.
type FakeBridge struct {
	Plans map[string]*ruleset.L2Tap
	Fail  error // returned by Apply when set
}

var _ Bridge = (*FakeBridge)(nil)

// Apply implements Bridge.
func (f *FakeBridge) Apply(ps ...*ruleset.L2Tap) error {
	if f.Fail != nil {
		return f.Fail
	}
	if f.Plans == nil {
		f.Plans = map[string]*ruleset.L2Tap{}
	}
	for _, p := range ps {
		f.Plans[p.Tap] = p
	}
	return nil
}

// Remove implements Bridge.
func (f *FakeBridge) Remove(tap string) error { delete(f.Plans, tap); return nil }

// Flush implements Bridge.
func (f *FakeBridge) Flush() error { f.Plans = nil; return nil }

// Verify implements Bridge.
func (f *FakeBridge) Verify(p *ruleset.L2Tap) ([]string, error) {
	got, ok := f.Plans[p.Tap]
	if !ok || got.String() != p.String() {
		return []string{"table bridge tapfw: " + p.Tap + " differs"}, nil
	}
	return nil, nil
}

// Taps implements Bridge.
func (f *FakeBridge) Taps() ([]string, error) {
	var out []string
	for t := range f.Plans {
		out = append(out, t)
	}
	slices.Sort(out)
	return out, nil
}
