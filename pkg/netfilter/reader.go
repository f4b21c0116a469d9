package netfilter

// Installed is a rule as read from the kernel.
type Installed struct {
	Comment string
	// Spec is the whole rule as iptables-save prints it, or "" when the
	// reader sees only comments (nftables over netlink). tapfw's comments
	// end in a hash of the whole rule, so comments alone still tell
	// whether a rule is the one wanted.
	Spec string
}

// Reader reads chains of the filter table.
type Reader interface {
	// Chains returns, for each named chain that exists, its rules in order.
	Chains(names ...string) (map[string][]Installed, error)
	// Exist tells which of the named chains exist.
	Exist(names ...string) (map[string]bool, error)
	// Close releases what the reader holds.
	Close() error
}

// TableReader answers from a parsed iptables-save.
type TableReader struct{ T *Table }

var _ Reader = TableReader{}

// Chains implements Reader.
func (r TableReader) Chains(names ...string) (map[string][]Installed, error) {
	out := map[string][]Installed{}
	for _, n := range names {
		specs, ok := r.T.Chains[n]
		if !ok {
			continue
		}
		rs := make([]Installed, len(specs))
		for i, s := range specs {
			rs[i] = Installed{Comment: Comment(s), Spec: s}
		}
		out[n] = rs
	}
	return out, nil
}

// Close implements Reader.
func (TableReader) Close() error { return nil }

// Exist implements Reader.
func (r TableReader) Exist(names ...string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, n := range names {
		out[n] = r.T.Has(n)
	}
	return out, nil
}

// saveReader reads the whole table once, with iptables-save, and answers
// from it: the reader for iptables-legacy, fakes, and whole-table work
// (CHECK, GC).
func saveReader(t Tables) (TableReader, error) {
	out, err := t.Save()
	if err != nil {
		return TableReader{}, err
	}
	tb, err := ParseSave(out)
	if err != nil {
		return TableReader{}, err
	}
	return TableReader{T: tb}, nil
}
