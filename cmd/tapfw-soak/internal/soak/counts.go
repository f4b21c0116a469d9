package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// Count is one figure of the sandbox host's netfilter state.
type Count struct {
	Name string
	N    int
}

// Counts is the state of the sandbox host, in a fixed order, and the
// lines it was counted from (for the report when they differ): the
// conntrack table's, and the rulesets' as the save and list commands
// print them, counters left out.
type Counts struct {
	List      []Count
	Conntrack []string
	Rules     map[string][]string // by command: iptables-save, ip6tables-save, ipset save, nft list ruleset
}

// CountSave counts the chains (":NAME" lines) and rules ("-A" lines) of
// iptables-save or ip6tables-save output, every table.
func CountSave(out []byte) (chains, rules int) {
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, ":"):
			chains++
		case strings.HasPrefix(l, "-A "):
			rules++
		}
	}
	return chains, rules
}

// CountIpset counts the sets ("create" lines) and entries ("add" lines)
// of `ipset save` output.
func CountIpset(out []byte) (sets, entries int) {
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "create "):
			sets++
		case strings.HasPrefix(l, "add "):
			entries++
		}
	}
	return sets, entries
}

// NftCounts are the objects of `nft -j list ruleset`.
type NftCounts struct{ Tables, Chains, Rules, Sets, Elements int }

// CountNftJSON counts the tables, chains, rules, sets and maps, and the
// sets' and maps' elements of `nft -j list ruleset` output. Elements of a
// dynamic set with timeouts (a log rule's per-port limits) are the
// packets' and expire by themselves: they are not counted.
func CountNftJSON(out []byte) (NftCounts, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	var c NftCounts
	if err := json.Unmarshal(out, &doc); err != nil {
		return c, fmt.Errorf("parse nft -j list ruleset: %w", err)
	}
	for _, obj := range doc.Nftables {
		for kind, body := range obj {
			switch kind {
			case "table":
				c.Tables++
			case "chain":
				c.Chains++
			case "rule":
				c.Rules++
			case "set", "map":
				c.Sets++
				var s struct {
					Elem  []json.RawMessage `json:"elem"`
					Flags json.RawMessage   `json:"flags"`
				}
				if err := json.Unmarshal(body, &s); err != nil {
					return c, fmt.Errorf("parse nft %s: %w", kind, err)
				}
				if !expiring(s.Flags) {
					c.Elements += len(s.Elem)
				}
			}
		}
	}
	return c, nil
}

// ReadCounts reads the state of ns: iptables and ip6tables (every table,
// with the iptables the plugin uses), ipsets, nftables, and the conntrack
// table (conntrack is per namespace: read on a thread inside ns).
func ReadCounts(ctx context.Context, ns *testnet.NS) (Counts, error) {
	c := Counts{Rules: map[string][]string{}}
	run := func(argv ...string) ([]byte, error) {
		out, _, err := testnet.RunIn(ctx, ns, nil, nil, argv...)
		if err == nil {
			c.Rules[strings.Join(argv, " ")] = ruleLines(out)
		}
		return out, err
	}
	for _, name := range []string{"iptables", "ip6tables"} {
		out, err := run(saveCommand(name, os.Getenv("TAPFW_IPTABLES")))
		if err != nil {
			return c, err
		}
		chains, rules := CountSave(out)
		c.List = append(c.List, Count{name + " chains", chains}, Count{name + " rules", rules})
	}
	out, err := run("ipset", "save")
	if err != nil {
		return c, err
	}
	sets, entries := CountIpset(out)
	c.List = append(c.List, Count{"ipsets", sets}, Count{"ipset entries", entries})
	if _, err := run("nft", "list", "ruleset"); err != nil {
		return c, err
	}
	if out, _, err = testnet.RunIn(ctx, ns, nil, nil, "nft", "-j", "list", "ruleset"); err != nil {
		return c, err
	}
	n, err := CountNftJSON(out)
	if err != nil {
		return c, err
	}
	c.List = append(c.List, Count{"nft tables", n.Tables}, Count{"nft chains", n.Chains}, Count{"nft rules", n.Rules},
		Count{"nft sets and maps", n.Sets}, Count{"nft set elements", n.Elements})
	if err := ns.Do(func() error {
		data, err := os.ReadFile("/proc/thread-self/net/nf_conntrack")
		c.Conntrack = nonEmptyLines(data)
		return err
	}); err != nil {
		return c, fmt.Errorf("reading the conntrack table: %w", err)
	}
	c.List = append(c.List, Count{"conntrack entries", len(c.Conntrack)})
	return c, nil
}

// counters are the parts of a saved or listed rule that change while it
// stays the same rule: packet and byte counters.
var counters = regexp.MustCompile(`^\[\d+:\d+\] |counter packets \d+ bytes \d+|packets \d+ bytes \d+`)

// ruleLines are the lines of a save or list command's output without
// comments, and without counters.
func ruleLines(out []byte) []string {
	var lines []string
	for _, l := range nonEmptyLines(out) {
		if strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, counters.ReplaceAllString(l, ""))
	}
	return lines
}

// Leaked are the lines of the rulesets after that were not there before
// (a line there twice as often counts once more), at most max, each
// prefixed with its command.
func Leaked(before, after Counts, max int) []string {
	var out []string
	for _, cmd := range slices.Sorted(maps.Keys(after.Rules)) {
		seen := map[string]int{}
		for _, l := range before.Rules[cmd] {
			seen[l]++
		}
		for _, l := range after.Rules[cmd] {
			if seen[l] > 0 {
				seen[l]--
				continue
			}
			if len(out) < max {
				out = append(out, cmd+": "+strings.TrimSpace(l))
			}
		}
	}
	return out
}

func nonEmptyLines(data []byte) []string {
	var out []string
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			out = append(out, string(l))
		}
	}
	return out
}

// saveCommand is the save command of family ("iptables", "ip6tables")
// that reads what the plugin writes under TAPFW_IPTABLES=mode.
func saveCommand(family, mode string) string {
	switch mode {
	case "nft", "legacy":
		return family + "-" + mode + "-save"
	}
	return family + "-save"
}

// expiring says whether a set's flags (a word or a list of words) make
// it a dynamic set whose elements time out.
func expiring(flags json.RawMessage) bool {
	var list []string
	if json.Unmarshal(flags, &list) != nil {
		var one string
		if json.Unmarshal(flags, &one) != nil {
			return false
		}
		list = []string{one}
	}
	return slices.Contains(list, "dynamic") && slices.Contains(list, "timeout")
}
