package netfilter

import "github.com/google/nftables"

// ChainReader reads the rules of a chain of an nftables table; exists is
// false when the chain is not there. ConnReader asks the kernel on each
// call; the nftables backend's reader answers from the chains it read
// ahead, concurrently.
type ChainReader interface {
	ChainRules(t *nftables.Table, chain string) (rules []*nftables.Rule, exists bool, err error)
}

// ConnReader reads chains on C, one dump each.
type ConnReader struct{ C *nftables.Conn }

// ChainRules implements ChainReader.
func (r ConnReader) ChainRules(t *nftables.Table, chain string) ([]*nftables.Rule, bool, error) {
	rules, err := r.C.GetRules(t, &nftables.Chain{Name: chain, Table: t})
	if isNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	// A dump of a missing chain's rules is empty, not an error: with no
	// rules, ask for the chain.
	if len(rules) == 0 {
		if _, err := r.C.ListChain(t, chain); isNotFound(err) {
			return nil, false, nil
		} else if err != nil {
			return nil, false, err
		}
	}
	return rules, true, nil
}
