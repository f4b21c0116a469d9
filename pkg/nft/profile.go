package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables/expr"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// A tap's IN and OUT chains are shared. Nothing in them names the tap:
// its addresses and MAC are looked up in the layer-2 sets by the port a
// packet uses, and each of its log rules keeps the port's own rate limit
// in a dynamic set keyed by port. So every tap with the same rules uses
// one chain, a profile, named by a hash of its rules, and a tap adds map
// elements only. That is what keeps an ADD as cheap at 10,000 taps as at
// 100: each commit that adds a jump re-validates what the table's base
// chains reach, but the kernel validates a chain once per commit however
// many elements jump to it, so the cost is a walk over the map elements,
// not over every tap's rules. A prefix naming the tap (logPrefix tap) is
// an expression of the tap's own: its log rules jump, through a map keyed
// by port, to chains of the tap's that hold the limit and the prefix, and
// every commit walks those too.

// Profile is a shared chain of one direction and family, and the log
// maps and rate sets its log rules look up, made and removed with it.
type Profile struct {
	Chain
	Dir    string // in (to the VM) or out (from it)
	Family Family
	Maps   []string
	// Rates are the log rules' rate sets: each port's element keeps that
	// tap's own bucket of the rule's limit.
	Rates []RateSet
}

// RateSet is a profile's dynamic set of per-port rate limits for one log
// rule. An element expires once its bucket would be full again (Timeout:
// the burst at the rate), so an expired element and a full bucket are
// the same.
type RateSet struct {
	Name    string
	Timeout time.Duration
}

// LogChain is a tap's chain for one log rule of its profile: the rate
// limit and the log line with the tap's prefix. Map is the profile's log
// map whose element for the tap's port jumps to it.
type LogChain struct {
	Chain
	Map string
}

// ProfileChain is the name of the profile of a direction and family
// whose rules hash to hash.
func ProfileChain(dir string, f Family, hash string) string {
	return "tfw-p" + dir[:1] + f.digit() + "-" + hash
}

// IsProfileChain says whether name is a profile's chain.
func IsProfileChain(name string) bool {
	for _, p := range []string{"tfw-pi4-", "tfw-po4-", "tfw-pi6-", "tfw-po6-"} {
		if rest, ok := strings.CutPrefix(name, p); ok && len(rest) == profileHashLen {
			return true
		}
	}
	return false
}

// profileHashLen is the length of a profile's hash: 48 bits, in hex.
const profileHashLen = 12

// LogMap is the name of a profile's k-th log map (1-based).
func LogMap(profile string, k int) string { return profile + "-l" + strconv.Itoa(k) }

// LogChainName is a tap's log chain for a direction, family and what the
// log prefix says ("drop", "rej", "r<N>").
func LogChainName(tap, dir string, f Family, what string) string {
	return "tfw-l" + dir[:1] + f.digit() + "-" + tap + "-" + what
}

// profile translates a tap's chain of package ruleset's plan into its
// profile and the tap's log chains. The profile's name is a hash of its
// rules as they read with the log maps not yet named; the rules are then
// made again with the names.
func (cx chainCtx) profile(c ruleset.Chain) (Profile, []LogChain, error) {
	draft, err := cx.profileRules(c, func(k int) string { return "log" + strconv.Itoa(k) })
	if err != nil {
		return Profile{}, nil, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n", cx.fam, cx.dir)
	for _, r := range draft.Rules {
		fmt.Fprintln(h, r.String())
	}
	name := ProfileChain(cx.dir, cx.fam, hex.EncodeToString(h.Sum(nil))[:profileHashLen])
	p, err := cx.profileRules(c, func(k int) string { return LogMap(name, k) })
	if err != nil {
		return Profile{}, nil, err
	}
	p.Table, p.Name = "bridge", name
	for i := range p.Rules {
		p.Rules[i].Chain = name
	}
	return p.Profile, p.logs, nil
}

// String is how nft makes the set.
func (rs RateSet) String() string {
	return fmt.Sprintf("add set bridge %s %s { type ifname ; size %d ; flags dynamic,timeout ; timeout %s ; }", Table, rs.Name, rateSetSize, nftDuration(rs.Timeout))
}

// nftDuration writes d as nft does: 1m30s, 45s.
func nftDuration(d time.Duration) string {
	s := ""
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.d; n > 0 {
			s += strconv.Itoa(int(n)) + u.name
			d -= n * u.d
		}
	}
	if s == "" {
		return "0s"
	}
	return s
}

// logsPerTap says whether log rule r's prefix names the tap, which takes
// a log chain of the tap's own; without the name the profile logs itself,
// each port's rate kept in a rate set.
func logsPerTap(r ruleset.Rule) bool {
	line, ok := ruleset.ParseLogPrefix(r.Verdict.LogPrefix)
	return ok && line.Owner != ""
}

// rendered is a profile as profileRules makes it, unnamed, and the tap's
// log chains.
type rendered struct {
	Profile
	logs []LogChain
}

// profileRules renders the profile's rules, naming its k-th log map or
// rate set mapName(k), and the tap's log chains. A rule's comment loses
// the tap's name, which the profile does not know. A log rule whose
// prefix names the tap keeps its matches in the profile and moves its
// limit and log line to the tap's chain, through the log map; any other
// logs in the profile, its limit kept per port in the rule's rate set.
func (cx chainCtx) profileRules(c ruleset.Chain, mapName func(int) string) (rendered, error) {
	out := rendered{Profile: Profile{Dir: cx.dir, Family: cx.fam}}
	own := cx.tap + ": "
	k := 0
	for _, r := range c.Rules {
		px := cx
		if isLog(r.Verdict) {
			k++
			m := mapName(k)
			switch {
			case logsPerTap(r):
				lc, err := cx.logChain(r, m)
				if err != nil {
					return rendered{}, err
				}
				out.logs = append(out.logs, lc)
				out.Maps = append(out.Maps, m)
				px.logMap = m
				r.Limit, r.LimitBurst = "", 0
			case r.Limit != "":
				t, err := refill(r.Limit, r.LimitBurst)
				if err != nil {
					return rendered{}, fmt.Errorf("rule %q: %w", r.Comment, err)
				}
				out.Rates = append(out.Rates, RateSet{Name: m, Timeout: t})
				px.rateSet = m
			}
		}
		r.Comment = strings.TrimPrefix(r.Comment, own)
		rs, err := px.translate("", r)
		if err != nil {
			return rendered{}, err
		}
		out.Rules = append(out.Rules, rs...)
	}
	return out, nil
}

func isLog(v ruleset.Verdict) bool { return v.Target == "LOG" || v.Target == "NFLOG" }

// logChain is the tap's chain for log rule r: its limit and its log line,
// nothing else (the profile has matched already).
func (cx chainCtx) logChain(r ruleset.Rule, m string) (LogChain, error) {
	line, ok := ruleset.ParseLogPrefix(r.Verdict.LogPrefix)
	if !ok || line.Owner != cx.tap || line.Dir != cx.dir {
		return LogChain{}, fmt.Errorf("rule %q: log prefix %q is not the tap's", r.Comment, r.Verdict.LogPrefix)
	}
	// A config rule's chain is named by its number, which its prefix may
	// shorten (a part's, where it would not fit).
	what := line.What
	if f := strings.Fields(strings.TrimPrefix(r.Comment, cx.tap+": ")); len(f) >= 3 && f[0] == cx.dir && f[1] == "rule" {
		what = "r" + f[2]
	}
	name := LogChainName(cx.tap, cx.dir, cx.fam, what)
	b := &builder{}
	if r.Limit != "" {
		if err := b.limit(r.Limit, r.LimitBurst); err != nil {
			return LogChain{}, fmt.Errorf("rule %q: %w", r.Comment, err)
		}
	}
	if err := cx.statement(b, r.Verdict); err != nil {
		return LogChain{}, fmt.Errorf("rule %q: %w", r.Comment, err)
	}
	return LogChain{Chain: Chain{Table: "bridge", Name: name, Rules: []Rule{b.rule(name, r.Comment)}}, Map: m}, nil
}

// portWord is how a tap's chain names the tap's port: a packet to the VM
// goes out by it, one from the VM comes in by it.
func (cx chainCtx) portWord() (string, expr.MetaKey) {
	if cx.dir == "in" {
		return "oifname", expr.MetaKeyOIFNAME
	}
	return "iifname", expr.MetaKeyIIFNAME
}

// logJump sends the packet to the chain that m's element for its port
// names, the tap's log chain; a port without one goes on.
func (b *builder) logJump(word string, key expr.MetaKey, m string) {
	b.add(word+" vmap @"+m,
		&expr.Meta{Key: key, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: m, IsDestRegSet: true, DestRegister: 0})
}

// macCheck matches a source MAC that is not the one the layer-2 set holds
// for the port the frame came in by.
func (b *builder) macCheck() {
	b.add("iifname . ether saddr != @"+ruleset.L2MAC,
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: regConcat0},
		&expr.Payload{DestRegister: regConcat4, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
		&expr.Lookup{SourceRegister: regConcat0, SetName: ruleset.L2MAC, Invert: true})
}
