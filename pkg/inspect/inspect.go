// Package inspect reads what tapfw installed back into operators' terms:
// the taps, their addresses and rules in the config's own words, and how
// many packets each rule and each direction accepted and dropped. It reads
// iptables-save -c output and ipset contents and changes nothing.
package inspect

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/explain"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// Snapshot is what is installed: both tables and tapfw's ipsets.
type Snapshot struct {
	V4, V6 *netfilter.Table
	Sets   map[string][]netip.Prefix
	// L2Taps are the taps with elements in the bridge table.
	L2Taps []string
	// Bridges maps a tap to the bridge it is a port of, when known.
	Bridges map[string]string

	// leaves is the tries' record of each tap, read on first use.
	leaves map[string]leaf
}

// Read takes a snapshot with the given iptables backend, ipsets and
// bridge table (nil: none).
func Read(ex netfilter.Exec, sets netfilter.Sets, bridge netfilter.Bridge) (*Snapshot, error) {
	s := &Snapshot{Bridges: map[string]string{}}
	for _, e := range []netfilter.Exec{ex, ex.IPv6()} {
		data, err := e.SaveCounters()
		if err != nil {
			return nil, err
		}
		t, err := netfilter.ParseSave(data)
		if err != nil {
			return nil, err
		}
		if e.V6 {
			s.V6 = t
		} else {
			s.V4 = t
		}
	}
	var err error
	if s.Sets, err = sets.List(); err != nil {
		return nil, err
	}
	if bridge != nil {
		if s.L2Taps, err = bridge.Taps(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Snapshot) tables() []*netfilter.Table {
	var out []*netfilter.Table
	for _, t := range []*netfilter.Table{s.V4, s.V6} {
		if t != nil {
			out = append(out, t)
		}
	}
	return out
}

// Rule is one rule of a tap as the config states it, or one of tapfw's own
// (anti-spoofing, neighbour discovery, the policy), with what it counted
// in both families together.
type Rule struct {
	Direction string `json:"direction"` // in (to the VM) or out (from it)
	// Number is the config's number of the rule (rules.in[Number-1]); 0
	// for tapfw's own rules.
	Number int `json:"number,omitempty"`
	// Part is which of the rules config rule Number stands for this one
	// is (a macro's parts, each address of a list), 1-based; 0 when it
	// stands for one.
	Part    int    `json:"part,omitempty"`
	Kind    string `json:"kind"` // rule, builtin or policy
	Name    string `json:"name,omitempty"`
	Action  string `json:"action"` // ACCEPT, DROP, REJECT
	Match   string `json:"match,omitempty"`
	Comment string `json:"comment,omitempty"`
	Log     bool   `json:"log,omitempty"`
	// LogLevel is the syslog level it logs at, when not warning.
	LogLevel string   `json:"logLevel,omitempty"`
	Families []string `json:"families"`
	// Shared is a rule of a security group: its counters are those of
	// every tap that uses the group.
	Shared bool `json:"shared,omitempty"`
	netfilter.Counter
}

// item is one rule of a tap's chain, or of a group chain it jumps to.
type item struct {
	owner, spec, group string
	counter            netfilter.Counter
}

// items lists the rules of a tap's chain in order, each group's rules
// right after the jump to the group.
func items(tb *netfilter.Table, tap, chain string) []item {
	var out []item
	for j, spec := range tb.Chains[chain] {
		out = append(out, item{owner: tap, spec: spec, counter: tb.Counter(chain, j)})
		f, _ := explain.Fields(spec)
		for i := range f {
			if f[i] != "-j" || i+1 >= len(f) {
				continue
			}
			target := f[i+1]
			name, ok := ruleset.IsGroupChain(target)
			if !ok {
				continue
			}
			for k, gs := range tb.Chains[target] {
				out = append(out, item{owner: ruleset.GroupOwner(name), spec: gs, group: name, counter: tb.Counter(target, k)})
			}
		}
	}
	return out
}

// Verdicts is what one direction of a tap accepted and dropped (DROP and
// REJECT).
type Verdicts struct {
	Accepted netfilter.Counter `json:"accepted"`
	Dropped  netfilter.Counter `json:"dropped"`
}

// Tap is one installed tap.
type Tap struct {
	Name        string               `json:"tap"`
	Bridge      string               `json:"bridge,omitempty"`
	MAC         string               `json:"mac,omitempty"`
	IPs         []string             `json:"ips"`
	Network     string               `json:"network,omitempty"`
	ContainerID string               `json:"containerID,omitempty"`
	IfName      string               `json:"ifName,omitempty"`
	Rules       map[string]int       `json:"rules"` // config rules per direction
	Traffic     map[string]*Verdicts `json:"traffic"`
	// Attached is false for leftovers: chains or sets without the
	// dispatch rule that records who attached the tap.
	Attached bool `json:"attached"`
}

// TapNames lists every tap that has anything installed (chains, leaves in
// the tries, an address set or layer-2 elements), sorted: the taps GC
// sees (netfilter.InstalledTaps).
func (s *Snapshot) TapNames() []string {
	return netfilter.InstalledTaps(s.tables(), s.Sets, s.L2Taps)
}

// Shown is a tap with its rules.
type Shown struct {
	Tap   Tap
	Rules []Rule
}

// All lists every installed tap with its rules.
func (s *Snapshot) All() []Shown {
	var out []Shown
	for _, name := range s.TapNames() {
		t, rules := s.Show(name)
		out = append(out, Shown{t, rules})
	}
	return out
}

// Taps lists every installed tap with its summary.
func (s *Snapshot) Taps() []Tap {
	var out []Tap
	for _, name := range s.TapNames() {
		t, _ := s.Show(name)
		out = append(out, t)
	}
	return out
}

// Show returns the tap's summary and its rules, both directions, in the
// order they are checked. A tap with nothing installed has no rules.
func (s *Snapshot) Show(tap string) (Tap, []Rule) {
	t := Tap{Name: tap, Bridge: s.Bridges[tap], IPs: []string{}, Rules: map[string]int{"in": 0, "out": 0},
		Traffic: map[string]*Verdicts{"in": {}, "out": {}}}
	for _, f := range ruleset.Families {
		for _, p := range s.Sets[f.TapSet(tap)] {
			if p.IsSingleIP() {
				t.IPs = append(t.IPs, p.Addr().String())
			} else {
				t.IPs = append(t.IPs, p.String())
			}
		}
	}
	s.readLeaves(&t)
	var rules []Rule
	for _, dir := range []string{"in", "out"} {
		list, n := s.joinFamilies(&t, dir)
		t.Rules[dir] = n
		rules = append(rules, list...)
	}
	return t, rules
}

// joinFamilies lists the rules of the tap's chain for dir in both
// families, a rule both have once, with the counters of both; it adds
// what they accepted and dropped to t's traffic.
func (s *Snapshot) joinFamilies(t *Tap, dir string) ([]Rule, int) {
	chain := ruleset.TapIn(t.Name)
	if dir == "out" {
		chain = ruleset.TapOut(t.Name)
	}
	var listed []Listed
	for _, tb := range s.tables() {
		fam := ruleset.IPv4
		if tb == s.V6 {
			fam = ruleset.IPv6
		}
		for _, it := range items(tb, t.Name, chain) {
			l, ok := describe(it.owner, it.spec)
			if !ok {
				continue
			}
			l.Family, l.Group, l.Counter = fam, it.group, it.counter
			if t.MAC == "" && l.Rest == "mac anti-spoof" {
				t.MAC = macOf(it.spec)
			}
			listed = append(listed, l)
		}
	}
	return Join(dir, listed, t.Traffic[dir])
}

// Listed is one rule of a tap's chain, or of a group's chain it jumps
// to, as a backend reads it back.
type Listed struct {
	Family *ruleset.Family
	// Rest is the rule's comment after its owner's "NAME: " (the tap's
	// or the group's).
	Rest  string
	Group string // the group whose chain holds the rule, if any
	// Match is its matches in the config's words; Action ACCEPT (for
	// whatever lets the packet on), DROP, REJECT or a chain; "" with Log
	// for a rule that only logs.
	Match, Action string
	Log           bool
	LogLevel      string // the level it logs at when not warning
	Counter       netfilter.Counter
}

// Join lists a tap's rules for dir from what the backend read, in order
// per family (IPv4's first): a rule both families have once, with the
// counters of both, each run of config rules in the config's order. It
// adds what they accepted and dropped to traffic, unless that is nil (a
// backend that counts each tap's traffic itself), and returns how many
// config rules there are.
func Join(dir string, listed []Listed, traffic *Verdicts) ([]Rule, int) {
	var list []Rule
	index := map[string]int{}
	pos := -1
	for i, l := range listed {
		if i > 0 && listed[i-1].Family != l.Family {
			pos = -1
		}
		r := Rule{Direction: dir, Match: l.Match, Action: l.Action}
		key, ok := r.kindFrom(dir, l.Rest)
		if !ok {
			continue
		}
		if l.Group != "" {
			r.Kind, r.Name, r.Shared = "group rule", l.Group, true
			key = "group " + l.Group + "|" + key
		}
		k, seen := index[key]
		if !seen {
			// After the rule this family's previous one merged with;
			// a config rule with the other family's config rules
			// that follow there, if any (sortRuns orders them).
			if r.Kind == "rule" && l.Group == "" {
				pos = nextRun(list, pos)
			}
			r.Families = []string{}
			list = append(list[:pos+1], append([]Rule{r}, list[pos+1:]...)...)
			for kk, v := range index {
				if v > pos {
					index[kk] = v + 1
				}
			}
			k = pos + 1
			index[key] = k
		}
		pos = k
		merge(&list[k], r, l, traffic)
	}
	return list, sortRuns(list)
}

// nextRun is where a config rule goes that would go after pos: before
// the first config rule after pos, if one follows, so that config rules
// of one family only join the run of the others.
func nextRun(list []Rule, pos int) int {
	for j := pos + 1; j < len(list); j++ {
		if list[j].Kind == "rule" && !list[j].Shared {
			return j - 1
		}
		if list[j].Kind == "policy" {
			break
		}
	}
	return pos
}

// merge adds one family's rule r (or its LOG rule) and counter c to the
// joined rule j, and c to the direction's traffic unless j is a group's.
func merge(j *Rule, r Rule, l Listed, v *Verdicts) {
	fam, c := l.Family, l.Counter
	if l.Log {
		j.Log = true
		if l.LogLevel != "" {
			j.LogLevel = l.LogLevel
		}
		return
	}
	if j.Action == "" { // its LOG rule came first
		j.Action, j.Match = r.Action, r.Match
	}
	if !contains(j.Families, fam.Name) {
		j.Families = append(j.Families, fam.Name)
	}
	j.Counter.Add(c)
	if j.Shared || v == nil {
		return // counted for every tap of the group
	}
	switch j.Action {
	case "ACCEPT":
		v.Accepted.Add(c)
	case "DROP", "REJECT":
		v.Dropped.Add(c)
	}
}

// sortRuns puts each run of config rules in the config's order (rules of
// one family only were merged in after their neighbours) and returns how
// many config rules there are.
func sortRuns(list []Rule) int {
	n := 0
	for i := 0; i < len(list); {
		j := i
		for j < len(list) && list[j].Kind == "rule" {
			j++
		}
		run := list[i:j]
		sort.SliceStable(run, func(a, b int) bool {
			if run[a].Number != run[b].Number {
				return run[a].Number < run[b].Number
			}
			return run[a].Part < run[b].Part
		})
		for k, r := range run {
			if k == 0 || r.Number != run[k-1].Number {
				n++
			}
		}
		i = j + 1
	}
	return n
}

// readLeaves fills in what the tap's dispatch leaves record: who attached
// it (its leaf in the IN trie) and its MAC (its leaf in the OUT trie).
func (s *Snapshot) readLeaves(t *Tap) {
	if s.leaves == nil {
		s.leaves = s.indexLeaves()
	}
	l := s.leaves[t.Name]
	if l.attached {
		t.Network, t.ContainerID, t.IfName, t.Attached = l.network, l.containerID, l.ifName, true
	}
	if l.mac != "" {
		t.MAC = l.mac
	}
}

// leaf is what the tries' leaves record of a tap: who attached it (the
// IN trie's dispatch rule) and its MAC (the OUT trie's).
type leaf struct {
	network, containerID, ifName, mac string
	attached                          bool
}

// indexLeaves reads every trie leaf once, by tap: reading them for each
// tap would make listing N taps cost N times the tries.
func (s *Snapshot) indexLeaves() map[string]leaf {
	out := map[string]leaf{}
	if s.V4 == nil {
		return out
	}
	for _, ch := range s.V4.Order {
		in, isOut := strings.HasPrefix(ch, ruleset.TrieIn.Root), strings.HasPrefix(ch, ruleset.TrieOut.Root)
		if !in && !isOut {
			continue
		}
		for _, spec := range s.V4.Chains[ch] {
			c := ruleset.StripHash(netfilter.Comment(spec))
			if a, ok := ruleset.ParseDispatchComment(c); in && ok {
				l := out[a.Tap]
				l.network, l.containerID, l.ifName, l.attached = a.Network, a.ContainerID, a.IfName, true
				out[a.Tap] = l
			}
			if tap, mac, ok := ruleset.ParseOutLeafComment(c); isOut && ok && mac != "" {
				l := out[tap]
				l.mac = mac
				out[tap] = l
			}
		}
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func macOf(spec string) string {
	f, _ := explain.Fields(spec)
	for i := range f {
		if f[i] == "--mac-source" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// describe reads one rule of a tap chain, or of a group chain: the
// rule must be the owner's (its comment starts with "OWNER: ").
func describe(owner, spec string) (Listed, bool) {
	comment := ruleset.StripHash(netfilter.Comment(spec))
	rest, found := strings.CutPrefix(comment, owner+": ")
	if !found {
		return Listed{}, false
	}
	f, err := explain.Fields(spec)
	if err != nil {
		return Listed{}, false
	}
	match, target := matchWords(owner, f)
	act, isLog := action(target)
	l := Listed{Rest: rest, Match: match, Action: act, Log: isLog}
	if i := slices.Index(f, "--log-level"); i >= 0 && i+1 < len(f) {
		if n, err := strconv.Atoi(f[i+1]); err == nil && n >= 0 && n < len(model.LogLevels) {
			l.LogLevel = model.LogLevels[n]
		}
	}
	return l, true
}

// matchWords reads the fields of a rule: its matches in the config's
// words ("tcp from +web dport 443"), and its target.
func matchWords(tap string, f []string) (match, target string) {
	var words []string
	neg := false
	protoAt := -1 // where -p's word is: a range reads before it, as -s does
	for i := 0; i < len(f); i++ {
		arg := func() string {
			if i+1 < len(f) {
				i++
				return f[i]
			}
			return ""
		}
		not := ""
		if neg {
			not = "not "
		}
		switch f[i] {
		case "!":
			neg = true
			continue
		case "-p":
			protoAt = len(words)
			words = append(words, not+netfilter.ProtoName(arg()))
		case "-s":
			words = append(words, not+"from "+arg())
		case "-d":
			words = append(words, not+"to "+arg())
		case "--src-range", "--dst-range":
			w := not + "from " + arg()
			if f[i-1] == "--dst-range" {
				w = not + "to " + f[i]
			}
			if protoAt >= 0 {
				words = slices.Insert(words, protoAt, w)
				protoAt++
			} else {
				words = append(words, w)
			}
		case "--match-set":
			name, where := setName(tap, arg()), arg()
			if where == "src" {
				words = append(words, not+"from "+name)
			} else {
				words = append(words, not+"to "+name)
			}
		case "--sport", "--sports":
			words = append(words, not+"sport "+arg())
		case "--dport", "--dports":
			words = append(words, not+"dport "+arg())
		case "--icmp-type", "--icmpv6-type":
			words = append(words, not+"type "+arg())
		case "--ctstate":
			words = append(words, not+"ctstate "+arg())
		case "--mac-source":
			words = append(words, not+"mac "+arg())
		case "-j", "-g":
			target = arg()
		case "--comment", "--log-prefix", "--log-level", "--limit", "--limit-burst", "--nflog-prefix", "--nflog-group", "--reject-with", "-m":
			arg()
		}
		neg = false
	}
	return strings.Join(words, " "), target
}

// action is the Action of a rule with the target: what lets the packet
// on to the VM or the network (a RETURN, a group's allow chains) is
// ACCEPT; a LOG or NFLOG rule has none, it only logs.
func action(target string) (act string, isLog bool) {
	switch target {
	case "ACCEPT", "RETURN", ruleset.ChainGroupAllow, ruleset.ChainGroupAllowed:
		return "ACCEPT", false
	case "LOG", "NFLOG":
		return "", true
	default:
		return target, false
	}
}

// kindFrom sets the rule's kind and name (or number) from rest, its
// comment after "TAP: ", and returns its key: a group (the jump to
// the group's chain), a config rule ("DIR rule N TEXT"), the policy, or
// one of tapfw's own rules, whose key holds its match as well. It fails on
// a config rule without a number.
func (r *Rule) kindFrom(dir, rest string) (key string, ok bool) {
	switch {
	case strings.HasPrefix(rest, dir+" group "):
		r.Kind, r.Name = "group", strings.TrimPrefix(rest, dir+" group ")
		if r.Action != "ACCEPT" {
			r.Action = "GROUP" // a jump to the group's chain
		}
		return rest, true
	case strings.HasPrefix(rest, dir+" rule "):
		num, text, _ := strings.Cut(strings.TrimPrefix(rest, dir+" rule "), " ")
		n, part, ok := ruleNumber(num)
		if !ok {
			return "", false
		}
		if g, isGroup := strings.CutPrefix(text, "group "); isGroup {
			// A check of a group in place: its jump, and on OUT the
			// rule that lets on what the group allowed.
			r.Kind, r.Number, r.Part = "group", n, part
			r.Name, r.Comment, _ = strings.Cut(g, ": ")
			if r.Action != "ACCEPT" {
				r.Action = "GROUP"
			}
			return "rule " + num + " group " + r.Name, true
		}
		r.Kind, r.Number, r.Part, r.Comment = "rule", n, part, text
		return "rule " + num, true
	case strings.HasPrefix(rest, "policy "), rest == "log policy":
		r.Kind, r.Name, r.Match = "policy", "policy", ""
		return "policy", true
	default:
		r.Kind, r.Name = "builtin", rest
		return rest + "|" + r.Match, true
	}
}

// ruleNumber reads a rule's number as its comment gives it: "3", or
// "3.2" for the second of the rules config rule 3 stands for.
func ruleNumber(s string) (n, part int, ok bool) {
	num, p, hasPart := strings.Cut(s, ".")
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || strconv.Itoa(n) != num {
		return 0, 0, false
	}
	if !hasPart {
		return n, 0, true
	}
	part, err = strconv.Atoi(p)
	if err != nil || part < 1 || strconv.Itoa(part) != p {
		return 0, 0, false
	}
	return n, part, true
}

// ID is the rule's number as the config's words give it: "3", "3.2".
func (r Rule) ID() string {
	if r.Part == 0 {
		return strconv.Itoa(r.Number)
	}
	return fmt.Sprintf("%d.%d", r.Number, r.Part)
}

// setName is a set as the config names it: "+name" for a named set,
// "own addresses" for the tap's address set.
func setName(tap, kernel string) string {
	for _, f := range ruleset.Families {
		if kernel == f.TapSet(tap) {
			return "own addresses"
		}
		if name, ok := strings.CutPrefix(kernel, f.SetPrefix+"s-"); ok {
			return "+" + name
		}
	}
	return kernel
}
