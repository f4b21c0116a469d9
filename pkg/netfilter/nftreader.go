package netfilter

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// NFTReader reads chains of iptables-nft's filter table over netlink, one
// chain at a time, so a call costs the same with 10 taps or 4000; reading
// the whole table with iptables-save grows with every tap.
type NFTReader struct {
	conn  *nftables.Conn
	table *nftables.Table
}

var _ Reader = (*NFTReader)(nil)

// NewNFTReader opens a netlink connection in the caller's namespace to
// read table ip filter, or ip6 filter when v6 is set.
func NewNFTReader(v6 bool) (*NFTReader, error) {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("opening nftables netlink: %w", err)
	}
	fam := nftables.TableFamilyIPv4
	if v6 {
		fam = nftables.TableFamilyIPv6
	}
	return &NFTReader{conn: c, table: &nftables.Table{Name: "filter", Family: fam}}, nil
}

// Close releases the connection.
func (r *NFTReader) Close() error { return r.conn.CloseLasting() }

// Exist implements Reader.
func (r *NFTReader) Exist(names ...string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, n := range names {
		if _, seen := out[n]; seen {
			continue
		}
		_, err := r.conn.ListChain(r.table, n)
		switch {
		case err == nil:
			out[n] = true
		case isNotFound(err):
			out[n] = false
		default:
			return nil, fmt.Errorf("reading chain %s over netlink: %w", n, err)
		}
	}
	return out, nil
}

// Chains implements Reader. A chain's rules come back with their comments
// only; see Installed.
func (r *NFTReader) Chains(names ...string) (map[string][]Installed, error) {
	ex, err := r.Exist(names...)
	if err != nil {
		return nil, err
	}
	out := map[string][]Installed{}
	for _, n := range names {
		if !ex[n] {
			continue
		}
		rules, err := r.conn.GetRules(r.table, &nftables.Chain{Name: n})
		if err != nil {
			return nil, fmt.Errorf("reading rules of %s over netlink: %w", n, err)
		}
		rs := make([]Installed, len(rules))
		for i, rule := range rules {
			rs[i] = Installed{Comment: ruleComment(rule)}
		}
		out[n] = rs
	}
	return out, nil
}

// ruleComment finds the iptables comment of an nftables rule: iptables-nft
// keeps "-m comment" as an xtables match whose data is the text.
func ruleComment(r *nftables.Rule) string {
	for _, e := range r.Exprs {
		m, ok := e.(*expr.Match)
		if !ok || m.Name != "comment" {
			continue
		}
		switch info := m.Info.(type) {
		case *xt.Comment:
			return string(*info)
		case *xt.Unknown:
			raw := []byte(*info)
			if i := bytes.IndexByte(raw, 0); i >= 0 {
				raw = raw[:i]
			}
			return string(raw)
		}
	}
	return ""
}

func isNotFound(err error) bool {
	return err != nil && (errors.Is(err, unix.ENOENT) || strings.Contains(err.Error(), "no such file or directory"))
}

// NFTActive reports whether `iptables` on this host is iptables-nft, by
// where its link leads; no process is run.
func NFTActive() bool {
	p, err := lookPath("iptables")
	if err != nil {
		return false
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return false
	}
	return strings.Contains(filepath.Base(real), "nft")
}

var lookPath = func(name string) (string, error) {
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH", name)
}
