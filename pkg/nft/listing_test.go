package nft

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The listings in testdata/nft-json are `nft -j list ruleset` (and `nft
// list ruleset`) of a namespace where bin/tapfw installed the seed's and
// the dual-stack taps; testdata/nft-json/capture.sh makes them again.

func readListing(t *testing.T, name string) *Listing {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "nft-json", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseListing(data)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// textRules reads `nft list ruleset` output: each chain's rule lines, by
// "family table chain".
func textRules(t *testing.T, name string) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "testdata", "nft-json", name+".nft"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	var table, chain string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "table "):
			table, chain = strings.TrimSuffix(strings.TrimPrefix(line, "table "), " {"), ""
		case strings.HasPrefix(line, "chain "):
			chain = strings.TrimSuffix(strings.TrimPrefix(line, "chain "), " {")
			out[table+" "+chain] = []string{}
		case line == "}":
			chain = ""
		case chain != "" && line != "" && !strings.HasPrefix(line, "type "):
			out[table+" "+chain] = append(out[table+" "+chain], line)
		}
	}
	return out
}

// TestListingText checks that every rule's Text is the line nft prints.
func TestListingText(t *testing.T) {
	for _, name := range []string{"seed", "dualstack"} {
		t.Run(name, func(t *testing.T) {
			l := readListing(t, name)
			want := textRules(t, name)
			if len(l.Chains) != len(want) {
				t.Errorf("%d chains, nft lists %d", len(l.Chains), len(want))
			}
			for _, c := range l.Chains {
				lines, ok := want[c.Family+" "+c.Table+" "+c.Name]
				if !ok {
					t.Errorf("chain %s %s %s not in the text listing", c.Family, c.Table, c.Name)
					continue
				}
				if len(lines) != len(c.Rules) {
					t.Errorf("%s: %d rules, nft lists %d", c.Name, len(c.Rules), len(lines))
					continue
				}
				for i, r := range c.Rules {
					if got := r.Text(); got != lines[i] {
						t.Errorf("%s rule %d:\n got  %s\n want %s", c.Name, i+1, got, lines[i])
					}
				}
			}
		})
	}
}

// TestListingDecodes checks the typed values of the seed's listing.
func TestListingDecodes(t *testing.T) {
	l := readListing(t, "seed")
	if len(l.Tables) != 3 {
		t.Errorf("tables %v", l.Tables)
	}
	pre := l.Chain("bridge", Table, "tfw-pre")
	if pre == nil || !pre.Base() || pre.Hook != "prerouting" || pre.Priority != -200 || pre.Policy != "accept" || pre.Type != "filter" {
		t.Fatalf("tfw-pre: %+v", pre)
	}
	if c := l.Chain("bridge", Table, ChainAnchor); c == nil || c.Base() || len(c.Rules) != 0 {
		t.Errorf("tfw-anchor: %+v", c)
	}
	// iifname . ether saddr != @tfw-mac
	m := pre.Rules[3].Exprs[1].Match
	if m == nil || m.Op != "!=" || m.Left.Kind != ValConcat || len(m.Left.Parts) != 2 ||
		m.Left.Parts[0].Key != "iifname" || m.Left.Parts[1].Protocol != "ether" || m.Left.Parts[1].Field != "saddr" ||
		m.Right.Kind != ValSetRef || m.Right.Str != "tfw-mac" {
		t.Errorf("mac anti-spoof match: %+v", m)
	}
	// iifname . @th,64,128 != @tfw-nd
	ip6 := l.Chain("bridge", Table, "tfw-pre-ip6")
	if ip6 == nil || ip6.Base() || len(ip6.Rules) != 5 {
		t.Fatalf("tfw-pre-ip6: %+v", ip6)
	}
	nd := ip6.Rules[2].Exprs[2].Match
	if nd == nil || nd.Left.Parts[1].Kind != ValRaw || nd.Left.Parts[1].Base != "th" || nd.Left.Parts[1].Offset != 64 || nd.Left.Parts[1].Len != 128 {
		t.Errorf("nd target match: %+v", nd)
	}
	ct := l.Rules("inet", Table, ChainCtPre)
	if len(ct) != 3 || ct[1].Exprs[0].Match.Op != "in" || ct[1].Exprs[0].Match.Right.Kind != ValList ||
		ct[1].Exprs[1].Mangle == nil || ct[1].Exprs[1].Mangle.Value.Parts[1].Num != uint64(DefaultMarks.Established) {
		t.Errorf("ct state rule: %s", ct[1].Text())
	}
	if r := l.Rules("inet", "tfwx-foreign", "filt"); len(r) != 2 || r[0].Counter == nil || r[1].Exprs[0].Match.Right.Kind != ValRange {
		t.Errorf("foreign rules: %+v", r)
	}
}

func TestListingSets(t *testing.T) {
	l := readListing(t, "seed")
	out := l.Set("bridge", Table, MapOut)
	if out == nil || !out.Map || out.DataType != "verdict" || strings.Join(out.Type, ".") != "ether_type.ifname" || !out.Counter {
		t.Fatalf("tfw-out: %+v", out)
	}
	e := out.Elements[0]
	if len(e.Key) != 2 || e.Key[0].Str != "ip" || e.Key[1].Str != "tap110i0" || e.Counter == nil ||
		e.Data == nil || e.Data.Kind != ValVerdict || e.Data.Verdict.Kind != VerdictJump || !strings.HasPrefix(e.Data.Verdict.Target, "tfw-po4-") {
		t.Errorf("tfw-out element: %+v", e)
	}
	if got := out.ElementText(0); !strings.HasPrefix(got, `ip . "tap110i0" : jump tfw-po4-`) {
		t.Errorf("element text %s", got)
	}
	blocked := l.Set("inet", "tfwx-foreign", "blocked")
	if blocked == nil || blocked.Map || blocked.Flags[0] != "interval" || len(blocked.Elements) != 1 ||
		blocked.Elements[0].Key[0].Kind != ValPrefix || blocked.Elements[0].Key[0].Len != 25 || blocked.Elements[0].Counter == nil {
		t.Errorf("blocked: %+v", blocked)
	}
	d := readListing(t, "dualstack")
	ip6n := d.Set("bridge", Table, "tfw-ip6n")
	var prefix, rng bool
	for _, e := range ip6n.Elements {
		if len(e.Key) == 2 && e.Key[1].Kind == ValPrefix {
			prefix = true
		}
		if len(e.Key) == 2 && e.Key[1].Kind == ValRange {
			rng = true
		}
	}
	if !prefix || ip6n.Flags[0] != "interval" {
		t.Errorf("tfw-ip6n: no concatenated prefix: %+v", ip6n.Elements)
	}
	if ndn := d.Set("bridge", Table, "tfw-ndn"); ndn == nil || !rng && !hasRange(ndn) {
		t.Errorf("no concatenated range in tfw-ip6n or tfw-ndn")
	}
}

func hasRange(s *SetInfo) bool {
	for _, e := range s.Elements {
		for _, k := range e.Key {
			if k.Kind == ValRange {
				return true
			}
		}
	}
	return false
}

func TestListingErrors(t *testing.T) {
	for _, bad := range []string{
		``, `{`, `{"nftables": [{"rule": {"family": "inet", "table": "t", "chain": "nope", "handle": 1, "expr": []}}]}`,
		`{"nftables": [{"chain": {"family": "inet", "table": "t", "name": "c", "prio": "nope"}}]}`,
		`{"nftables": [{"chain": {"family": "inet", "table": "t", "name": "c"}}, {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [{"jump": {}}]}}]}`,
	} {
		if _, err := ParseListing([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	l, err := ParseListing([]byte(`{"nftables": [{"chain": {"family": "inet", "table": "t", "name": "c", "type": "filter", "hook": "input", "prio": "filter", "policy": "drop"}},
		{"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 2, "expr": [{"xt": {"type": "match", "name": "foo"}}, {"counter": null}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	r := l.Rules("inet", "t", "c")
	if len(r) != 1 || r[0].Exprs[0].Unknown != "xt" || r[0].Counter == nil || l.Chain("inet", "t", "c").Policy != "drop" {
		t.Errorf("%+v %+v", r[0], r[0].Exprs)
	}
}
