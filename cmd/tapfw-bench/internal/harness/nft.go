package harness

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// NftTable is the name of tapfw's nftables tables (bridge and inet).
const NftTable = "tapfw"

// NftChain names a chain of the nftables ruleset.
type NftChain struct{ Family, Table, Name string }

func (c NftChain) String() string { return c.Family + " " + c.Table + " " + c.Name }

// NftRuleset is the ruleset of a namespace as `nft -j list ruleset` prints
// it: every chain's rule handles in the order the kernel evaluates them.
type NftRuleset map[NftChain][]uint64

// ReadNft reads the nftables ruleset in ns.
func ReadNft(ctx context.Context, ns *testnet.NS) (NftRuleset, error) {
	out, err := NSRun(ctx, ns, nil, "nft", "-j", "list", "ruleset")
	if err != nil {
		return nil, err
	}
	return ParseNftJSON(out)
}

// ParseNftJSON reads the output of `nft -j list ruleset`.
func ParseNftJSON(b []byte) (NftRuleset, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("nft -j list ruleset: %w", err)
	}
	rs := NftRuleset{}
	for _, obj := range doc.Nftables {
		var x struct {
			Family, Table, Chain, Name string
			Handle                     uint64
		}
		if raw, ok := obj["chain"]; ok {
			if err := json.Unmarshal(raw, &x); err != nil {
				return nil, fmt.Errorf("nft chain: %w", err)
			}
			c := NftChain{x.Family, x.Table, x.Name}
			if _, ok := rs[c]; !ok {
				rs[c] = []uint64{}
			}
		}
		if raw, ok := obj["rule"]; ok {
			if err := json.Unmarshal(raw, &x); err != nil {
				return nil, fmt.Errorf("nft rule: %w", err)
			}
			c := NftChain{x.Family, x.Table, x.Chain}
			rs[c] = append(rs[c], x.Handle)
		}
	}
	return rs, nil
}

// Rules counts the rules in tables named table.
func (rs NftRuleset) Rules(table string) int {
	n := 0
	for c, h := range rs {
		if c.Table == table {
			n += len(h)
		}
	}
	return n
}

// CountInstalled counts the rules the run's backend installed in ns: the
// iptables filter table's, or those of tapfw's nftables tables.
func (h *Harness) CountInstalled(ctx context.Context, ns *testnet.NS) (int, error) {
	if h.O.Backend != "nftables" {
		return h.CountRules(ctx, ns)
	}
	rs, err := ReadNft(ctx, ns)
	if err != nil {
		return 0, err
	}
	return rs.Rules(NftTable), nil
}
