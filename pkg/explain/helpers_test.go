package explain

import (
	"bufio"
	"bytes"
	"fmt"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// load parses testdata/name: an iptables-save output followed by the
// ipsets' contents as comment lines ("# ipset NAME: addr addr/len ...").
func load(t *testing.T, name string) (*netfilter.Table, map[string][]netip.Prefix) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := netfilter.ParseSave(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	sets, err := parseSets(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return rs, sets
}

func parseSets(data []byte) (map[string][]netip.Prefix, error) {
	sets := map[string][]netip.Prefix{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "# ipset ")
		if !ok {
			continue
		}
		name, entries, ok := strings.Cut(rest, ":")
		if !ok {
			return nil, fmt.Errorf("ipset line %q", sc.Text())
		}
		sets[name] = []netip.Prefix{}
		for _, e := range strings.Fields(entries) {
			var p netip.Prefix
			var err error
			if strings.Contains(e, "/") {
				p, err = netip.ParsePrefix(e)
			} else {
				var a netip.Addr
				a, err = netip.ParseAddr(e)
				p = netip.PrefixFrom(a, a.BitLen())
			}
			if err != nil {
				return nil, err
			}
			sets[name] = append(sets[name], p)
		}
	}
	return sets, sc.Err()
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// path is the walk in short: "CHAIN N" for a rule, with " ?" when its
// match was unknown, "CHAIN end" for an implicit return and "CHAIN policy".
func path(r Result) []string {
	var out []string
	for _, s := range r.Steps {
		switch s.What {
		case WhatEnd:
			out = append(out, s.Chain+" end")
		case WhatPolicy:
			out = append(out, s.Chain+" policy")
		case WhatUnknown:
			out = append(out, fmt.Sprintf("%s %d ?", s.Chain, s.Index))
		default:
			out = append(out, fmt.Sprintf("%s %d", s.Chain, s.Index))
		}
	}
	return out
}

// decisive is "CHAIN N" of the decisive rule, or "policy".
func decisive(r Result) string {
	if r.Decisive == nil {
		return "policy"
	}
	return fmt.Sprintf("%s %d", r.Decisive.Chain, r.Decisive.Index)
}

// with returns p changed by f.
func with(p Packet, f func(*Packet)) Packet {
	f(&p)
	return p
}

// explainCase is one packet and what the walk must give.
type explainCase struct {
	name     string
	p        Packet
	verdict  string
	decisive string   // "CHAIN N" or "policy"
	path     []string // the whole walk, when given
	// uncertain is how many entries Result.Uncertain must have; each of
	// uncertainHas must be in one of them.
	uncertain    int
	uncertainHas []string
}

func runCases(t *testing.T, file string, cases []explainCase) {
	t.Helper()
	rs, sets := load(t, file)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Explain(rs, sets, c.p)
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != c.verdict || decisive(r) != c.decisive {
				t.Errorf("got %s by %s, want %s by %s\n%s", r.Verdict, decisive(r), c.verdict, c.decisive, r.Text())
			}
			if c.path != nil && strings.Join(path(r), ", ") != strings.Join(c.path, ", ") {
				t.Errorf("path:\n got %q\nwant %q", path(r), c.path)
			}
			if len(r.Uncertain) != c.uncertain {
				t.Errorf("uncertain: got %q, want %d entries", r.Uncertain, c.uncertain)
			}
			for _, h := range c.uncertainHas {
				if !strings.Contains(strings.Join(r.Uncertain, "\n"), h) {
					t.Errorf("uncertain %q: want one to mention %q", r.Uncertain, h)
				}
			}
			if r.Decisive != nil && r.Steps[len(r.Steps)-1].Index != r.Decisive.Index {
				t.Errorf("the decisive rule is not the last step")
			}
		})
	}
}
