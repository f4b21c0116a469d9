package main

import (
	"slices"
	"strings"

	"github.com/tapfw/tapfw/pkg/nft"
	"github.com/tapfw/tapfw/pkg/testnet"
)

// backendInUse is the backend the plugin used, as `tapfw list` says it.
func (d *demo) backendInUse(s *testnet.Seed) string {
	out, err := s.Host.Run(d.plugin, "list")
	if err != nil {
		d.failf("tapfw list: %v", err)
		return ""
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimPrefix(first, "backend: ")
}

// installedNFT is step 4 on the nftables backend: the first tap's map
// elements and profiles (with -v every tap's), and the other taps' in
// one line each.
func (d *demo) installedNFT(s *testnet.Seed) {
	d.printf("\n4. Installed (nft list, table bridge %s, in the host namespace):\n", nft.Table)
	taps := testnet.SeedTaps()
	for i, tap := range taps {
		elems, profiles := d.nftDispatch(s, tap)
		if i > 0 && !d.verbose {
			d.printf("  (%s: %d map elements to profiles %s; -v shows them)\n", tap, len(elems), strings.Join(profiles, " "))
			continue
		}
		d.printf("  # %s: its elements in the dispatch maps (meta protocol . port : its profile)\n", tap)
		for _, e := range elems {
			d.printf("  %s\n", e)
		}
		for _, p := range profiles {
			out, err := s.Host.Run("nft", "list", "chain", "bridge", nft.Table, p)
			if err != nil {
				d.failf("%v", err)
				continue
			}
			d.printf("  # profile %s (shared by every tap with the same rules)\n", p)
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if l = strings.TrimSpace(l); strings.HasPrefix(l, "table ") || strings.HasPrefix(l, "chain ") || l == "}" || l == "" {
					continue
				}
				d.printf("    %s\n", l)
			}
		}
	}
	d.printf("\n  tapfw list (counters: the probes above):\n")
	d.operator(s, "list")
}

// nftDispatch is tap's elements in the dispatch maps, and the profiles
// they name, IPv4's first.
func (d *demo) nftDispatch(s *testnet.Seed, tap string) (elems, profiles []string) {
	for _, m := range []string{nft.MapOut, nft.MapIn} {
		out, err := s.Host.Run("nft", "list", "map", "bridge", nft.Table, m)
		if err != nil {
			d.failf("%v", err)
			return nil, nil
		}
		for _, e := range strings.FieldsFunc(string(out), func(r rune) bool { return r == ',' || r == '{' || r == '}' || r == '\n' }) {
			e = strings.TrimSpace(e)
			if !strings.Contains(e, `"`+tap+`"`) {
				continue
			}
			elems = append(elems, m+": "+e)
			if _, chain, ok := strings.Cut(e, ": jump "); ok && !slices.Contains(profiles, chain) {
				profiles = append(profiles, chain)
			}
		}
	}
	return elems, profiles
}

// leftoversNFT shows that nothing of the taps remains after DEL on the
// nftables backend, and what does.
func (d *demo) leftoversNFT(s *testnet.Seed) {
	out, err := s.Host.Run("nft", "list", "ruleset")
	if err != nil {
		d.failf("%v", err)
		return
	}
	var tapLines []string
	chains := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "chain ") {
			chains++
		}
		for _, tap := range testnet.SeedTaps() {
			if strings.Contains(l, tap) {
				tapLines = append(tapLines, strings.TrimSpace(l))
				break
			}
		}
	}
	if len(tapLines) > 0 {
		d.failf("the ruleset still names a tap:\n    %s", strings.Join(tapLines, "\n    "))
		return
	}
	d.printf("  Nothing of the taps remains: no chain, rule or element names tap110i0, tap123i0 or tap115i0.\n")
	d.printf("  Left in place (shared, owned by no tap): tables bridge and inet %s, %d chains (hooks, host firewall, fail-closed rules).\n", nft.Table, chains)
}
