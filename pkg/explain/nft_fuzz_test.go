package explain

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/tapfw/tapfw/pkg/nft"
)

// FuzzExplainNFT: any listing nft could print, or not, is read and
// walked without a panic; the walk either fails or gives a verdict.
func FuzzExplainNFT(f *testing.F) {
	for _, name := range []string{"seed.json", "dualstack.json"} {
		data, err := os.ReadFile("../../testdata/nft-json/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(baseChainsOnly(f, data), uint16(22), false)
	}
	f.Add([]byte(`{"nftables":[{"chain":{"family":"bridge","table":"t","name":"c","hook":"forward","prio":-300}},`+
		`{"rule":{"family":"bridge","table":"t","chain":"c","expr":[{"match":{"op":"==","left":{"meta":{"key":"oifname"}},"right":"tap0123456789abcdefgh*"}},{"drop":null}]}}]}`), uint16(80), true)
	f.Fuzz(func(t *testing.T, data []byte, dport uint16, six bool) {
		l, err := nft.ParseListing(data)
		if err != nil {
			return
		}
		p := onBridge("vmbr0", "tap123i0", "tap110i0", "192.0.2.201", "192.0.2.200", dport)
		if six {
			p = onBridge("vmbr6", "tap201i0", "tap202i0", "2001:db8:1::201", "2001:db8:1::202", dport)
		}
		res, err := ExplainNFT(l, p)
		if err == nil && res.Verdict != Accept && res.Verdict != Drop && res.Verdict != Reject {
			t.Fatalf("verdict %q", res.Verdict)
		}
	})
}

// baseChainsOnly keeps a listing's tables, base chains and their rules,
// and its sets and maps: a seed small enough for the fuzzer to mutate
// quickly (a whole listing is 100 kB).
func baseChainsOnly(f *testing.F, data []byte) []byte {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		f.Fatal(err)
	}
	type where struct{ Family, Table, Name, Chain, Hook string }
	base := map[[3]string]bool{}
	for _, o := range doc.Nftables {
		var c where
		if raw, ok := o["chain"]; ok && json.Unmarshal(raw, &c) == nil && c.Hook != "" {
			base[[3]string{c.Family, c.Table, c.Name}] = true
		}
	}
	var keep []map[string]json.RawMessage
	for _, o := range doc.Nftables {
		var w where
		switch {
		case o["table"] != nil, o["set"] != nil, o["map"] != nil:
		case o["chain"] != nil && json.Unmarshal(o["chain"], &w) == nil && base[[3]string{w.Family, w.Table, w.Name}]:
		case o["rule"] != nil && json.Unmarshal(o["rule"], &w) == nil && base[[3]string{w.Family, w.Table, w.Chain}]:
		default:
			continue
		}
		keep = append(keep, o)
	}
	out, err := json.Marshal(map[string]any{"nftables": keep})
	if err != nil {
		f.Fatal(err)
	}
	return out
}
