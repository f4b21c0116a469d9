package harness

import (
	"slices"
	"testing"
)

// Rules keep their chain's order; a chain without rules is there, empty.
func TestParseNftJSON(t *testing.T) {
	const doc = `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
{"table": {"family": "bridge", "name": "tapfw", "handle": 1}},
{"chain": {"family": "bridge", "table": "tapfw", "name": "tfw-pre", "handle": 1, "type": "filter", "hook": "prerouting", "prio": -200, "policy": "accept"}},
{"chain": {"family": "bridge", "table": "tapfw", "name": "empty", "handle": 2}},
{"map": {"family": "bridge", "name": "tfw-out", "table": "tapfw", "handle": 3, "elem": [["a", {"jump": {"target": "x"}}]]}},
{"rule": {"family": "bridge", "table": "tapfw", "chain": "tfw-pre", "handle": 9, "expr": []}},
{"rule": {"family": "bridge", "table": "tapfw", "chain": "tfw-pre", "handle": 5, "expr": []}},
{"rule": {"family": "inet", "table": "other", "chain": "c", "handle": 4, "expr": []}}]}`
	rs, err := ParseNftJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := rs[NftChain{"bridge", "tapfw", "tfw-pre"}]; !slices.Equal(got, []uint64{9, 5}) {
		t.Errorf("tfw-pre %v", got)
	}
	if got, ok := rs[NftChain{"bridge", "tapfw", "empty"}]; !ok || len(got) != 0 {
		t.Errorf("empty %v %v", got, ok)
	}
	if rs.Rules("tapfw") != 2 || rs.Rules("other") != 1 {
		t.Errorf("rules %d %d", rs.Rules("tapfw"), rs.Rules("other"))
	}
}
